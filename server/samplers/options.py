"""Sampler settings and where their defaults come from.

A request's sampler is resolved once, at validation, field by field (as transformers'
generation_config.json works): the value the request gives; else the model's recommendation for
the request's task and method (the manifest's `sampler_defaults`); else the built-in default,
`SamplerOptions()`. The method itself: the request's, else the one the model recommends for the
task, else MaskGIT (if the model has it). A manifest without `sampler_defaults` behaves as the
built-in defaults alone.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field

from .maskgit import DEFAULT_CHOICE_TEMPERATURE, DEFAULT_STEPS

SAMPLERS = ("maskgit", "autoregressive")


@dataclass(frozen=True)
class SamplerOptions:
    """A fully resolved sampler; the field defaults are the built-in ones."""

    method: str = "maskgit"
    steps: int = DEFAULT_STEPS  # MaskGIT steps (the autoregressive sampler takes one step per token)
    temperature: float = 1.0
    choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE
    guidance_scale: float = 0.0
    top_k: int | None = None


TUNABLE = tuple(f.name for f in fields(SamplerOptions) if f.name != "method")


class SamplerSettings(BaseModel):
    """Some sampler fields (the others are left to the next level down)."""

    model_config = ConfigDict(extra="forbid")
    steps: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, gt=0)
    choice_temperature: float | None = Field(None, ge=0)
    guidance_scale: float | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=1)


class TaskSamplerDefaults(BaseModel):
    """What a model recommends for one task: a method, and settings per method."""

    model_config = ConfigDict(extra="forbid")
    method: str | None = Field(None, description="the sampler a request without sampler.method gets")
    methods: dict[str, SamplerSettings] = Field(default_factory=dict)


def default_method(task_defaults: TaskSamplerDefaults | None, samplers: list[str]) -> str:
    if task_defaults is not None and task_defaults.method is not None:
        return task_defaults.method
    return "maskgit" if "maskgit" in samplers else samplers[0]


def resolve_sampler(requested: Mapping[str, Any], task_defaults: TaskSamplerDefaults | None,
                    samplers: list[str]) -> SamplerOptions:
    """`requested`: the fields a request gave (None or absent = not given). Does not check that the
    method is one of `samplers`: the caller says so in its own error shape."""
    method = requested.get("method") or default_method(task_defaults, samplers)
    recommended = task_defaults.methods.get(method) if task_defaults is not None else None
    chosen: dict[str, Any] = {}
    for name in TUNABLE:
        value = requested.get(name)
        if value is None and recommended is not None:
            value = getattr(recommended, name)
        if value is not None:
            chosen[name] = value
    return replace(SamplerOptions(method=method), **chosen)
