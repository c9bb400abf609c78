"""The load tester's options: the task mix, argument checks, and BenchError."""
from __future__ import annotations

import math
import re
from typing import Literal, Mapping, get_args

from server.tasks import ALL_TASKS

Mode = Literal["closed", "open"]
WaitStrategy = Literal["poll", "prefer"]
Target = Literal["kinetoscope", "litserve", "fastapi"]  # Kinetoscope's job API, or a peer (cli/bench/peers/)
TARGETS: tuple[str, ...] = get_args(Target)

DEFAULT_REQUESTS = 20  # bench_command's run length when neither a duration nor a count is given


class BenchError(ValueError):
    """Arguments the load tester cannot run with, or a deployment it cannot set up against."""


def parse_task_mix(text: str) -> dict[str, float]:
    """"class_conditional=0.5,frame_prediction=0.5" -> normalized weights. A bare name weighs 1."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, has_value, value = (s.strip() for s in part.partition("="))
        if name in weights:
            raise BenchError(f"task {name!r} appears twice in the task mix {text!r}")
        try:
            weights[name] = float(value) if has_value else 1.0
        except ValueError:
            raise BenchError(f"the weight of {name!r} must be a number; got {value!r}") from None
    return validate_task_mix(weights)


def parse_steps(text: str | None) -> list[int] | None:
    """"4,8,12" -> [4, 8, 12]: MaskGIT step counts, one drawn per request; empty or None -> None."""
    if text is None or not text.strip():
        return None
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchError(f"steps are whole numbers separated by commas, e.g. '4,8,12'; got {text!r}") from None
    return validate_steps(steps)


def validate_steps(steps) -> list[int] | None:
    if steps is None:
        return None
    steps = [int(s) for s in steps]
    if not steps or any(s < 1 for s in steps):
        raise BenchError(f"step counts must be at least 1; got {steps}")
    return steps


def validate_task_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """Check names and weights and scale the weights to sum to 1; zero weights are dropped."""
    if not mix:
        raise BenchError("the task mix is empty; give e.g. 'class_conditional=1'")
    unknown = [name for name in mix if name not in ALL_TASKS]
    if unknown:
        raise BenchError(f"unknown task(s) {unknown} in the task mix; known tasks: {', '.join(ALL_TASKS)}")
    bad = {name: w for name, w in mix.items() if not (math.isfinite(w) and w >= 0)}
    if bad:
        raise BenchError(f"task weights must be finite and >= 0; got {bad}")
    total = sum(mix.values())
    if total <= 0:
        raise BenchError("the task mix weights sum to 0; give at least one task a positive weight")
    return {name: w / total for name, w in mix.items() if w > 0}


def _check_arguments(mode, concurrency, rate, duration_s, num_requests, size, num_frames, wait, prefer_wait_s) -> None:
    if mode not in ("closed", "open"):
        raise BenchError(f"mode must be 'closed' or 'open'; got {mode!r}")
    if mode == "closed" and concurrency < 1:
        raise BenchError(f"closed-loop concurrency must be at least 1; got {concurrency}")
    if mode == "open" and not rate > 0:
        raise BenchError(f"open-loop rate must be positive; got {rate}")
    if duration_s is None and num_requests is None:
        raise BenchError("give a duration, a request count, or both")
    if duration_s is not None and not duration_s > 0:
        raise BenchError(f"the duration must be positive; got {duration_s}")
    if num_requests is not None and num_requests < 1:
        raise BenchError(f"the request count must be at least 1; got {num_requests}")
    if size is not None and not re.fullmatch(r"\d+x\d+", size):
        raise BenchError(f"size is 'WxH', e.g. '32x32'; got {size!r}")
    if num_frames is not None and num_frames < 1:
        raise BenchError(f"the frame count must be at least 1; got {num_frames}")
    if wait not in ("poll", "prefer"):
        raise BenchError(f"wait must be 'poll' or 'prefer'; got {wait!r}")
    if not prefer_wait_s > 0:
        raise BenchError(f"prefer_wait_s must be positive; got {prefer_wait_s}")


def check_target(target: str) -> None:
    if target not in TARGETS:
        raise BenchError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
