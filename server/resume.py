"""Resumable decoding: a running job's decoding state, small and exact, so that a job a dead worker
held goes on at the step it reached instead of from zero.

What a checkpoint holds is what a masked-token decode needs and nothing it can recompute: the
window being decoded, the tokens (and confidence map) of the windows already finished, and, in
the middle of a MaskGIT window, its step, its tokens, its confidence map and its random
generator's state. The pixels of finished windows, the condition tokens and the given pixels are
recomputed (every network call gives a request the same result whatever it is batched with), so
a resumed job's video is byte-identical to an uninterrupted run with the same seed. An
autoregressive window is checkpointed only when it ends (its KV cache is large and cheap to
rebuild by running the window again, which draws the same tokens from the same seed).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.samplers import MaskGITState


def _b64(array: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode()


def _unb64(text: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).copy()


@dataclass
class Checkpoint:
    window: int  # the window being decoded (== the number of finished windows)
    units: int  # the pipeline's progress units done, so progress goes on from there
    windows: list[dict[str, Any]] = field(default_factory=list)  # finished: {"tokens", "confidence"}
    state: dict[str, Any] | None = None  # mid-window MaskGIT state (`capture`), None at a window's start
    truncated: dict[str, int] | None = None

    @property
    def step(self) -> int:
        """The MaskGIT step reached in the current window (0 at its start)."""
        return self.state["step"] if self.state else 0

    def to_bytes(self) -> bytes:
        return json.dumps({"window": self.window, "units": self.units, "windows": self.windows, "state": self.state,
                           "truncated": self.truncated}, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Checkpoint":
        return cls(**json.loads(data))


def finished_window(tokens: np.ndarray, confidence: np.ndarray | None) -> dict[str, Any]:
    return {"tokens": _b64(tokens.reshape(-1), np.int32),
            "confidence": None if confidence is None else _b64(confidence.reshape(-1), np.float32)}


def window_arrays(saved: dict[str, Any], grid: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    tokens = _unb64(saved["tokens"], np.int32).astype(np.int64).reshape(grid)
    confidence = None if saved["confidence"] is None else _unb64(saved["confidence"], np.float32).reshape(grid)
    return tokens, confidence


def capture(state: MaskGITState) -> dict[str, Any]:
    """What a MaskGIT state needs to go on exactly: the rest is the request's (steps, temperature...)."""
    return {"step": state.step, "steps": state.steps, "temperature": state.temperature,
            "tokens": _b64(state.tokens, np.int32), "confidence": _b64(state.confidence, np.float32),
            "rng": state.rng.bit_generator.state}


def restore(state: MaskGITState, saved: dict[str, Any]) -> None:
    """Puts a captured state back into a freshly initialised one of the same request and window."""
    tokens = _unb64(saved["tokens"], np.int32).astype(np.int64)
    if tokens.shape != state.tokens.shape:
        raise ValueError(f"checkpoint holds {tokens.size} tokens; the window has {state.tokens.size}")
    state.tokens, state.step = tokens, int(saved["step"])
    state.steps, state.temperature = int(saved["steps"]), float(saved["temperature"])  # a deadline may have cut them
    state.confidence = _unb64(saved["confidence"], np.float32)
    state.rng.bit_generator.state = saved["rng"]
