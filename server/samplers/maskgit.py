"""MaskGIT parallel decoding (Chang et al., CVPR 2022), as MAGVIT's parallel_decode runs it.

The sampler is separate from the network (diffusers' scheduler lesson): a `MaskGITState` is
one request's decoding, `maskgit_step` advances a whole batch of states by one step given the
logits that one network call produced for them. A scheduler can therefore put requests of
different tasks, step counts and step numbers into the same call (vLLM's lesson).

One step s (0-based) of S, for each state:
  1. logits = guided logits (see "Classifier-free guidance" below); the [MASK] id is never drawn.
  2. At every still-masked position draw a token from softmax(top_k(logits) / temperature),
     using only the state's own Generator.
  3. confidence = log p(sampled token) under softmax(logits) (the guided distribution at
     temperature 1, so a low temperature changes what is drawn, not how sure the model is)
     + choice_temperature * (1 - (s+1)/S) * Gumbel noise. Positions known before the step
     (fixed by the task, or unmasked at an earlier step) count as +inf: they never change.
  4. Re-mask the `mask_len` lowest-confidence positions among those drawn this step, where
     mask_len = max(1, min(n_masked - 1, mask_schedule(s, S, n_unknown))) before the last
     step (at least one token is revealed per step, at least one stays masked for the next)
     and 0 at the last step, which therefore reveals everything. This is MaskGIT's
     reference rule; mask_schedule is floor(n_unknown * cos(pi/2 * (s+1)/S)).

Classifier-free guidance, the convention used throughout Kinetoscope:
    logits = cond + g * (cond - uncond)      (== uncond + (1 + g) * (cond - uncond))
g = guidance_scale = 0 is plain conditional sampling, bit for bit: the unconditional logits
are then neither needed nor read (`MaskGITState.needs_uncond` tells the scheduler whether to
make the unconditional call at all). g > 0 pushes away from the unconditional prediction.

A factorized vocabulary (`MaskGITState.factors`, server/samplers/factored.py): the logits are
[B, N, sum(factors)] (no [MASK] column); step 2 draws each factor's sub-token independently with
the state's temperature and top-k per factor (guidance is elementwise, so per factor too) and
assembles the id, and step 3's log p is the sum of the drawn sub-tokens' log-probabilities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .factored import check_factors, sample_factored
from .sampling import guided_logits, sample_with_log_prob

DEFAULT_STEPS = 12
DEFAULT_CHOICE_TEMPERATURE = 4.5


def mask_schedule(step: int, steps: int, n_unknown: int) -> int:
    """How many of the `n_unknown` initially unknown tokens the cosine schedule leaves masked
    after 0-based `step` of `steps`: floor(n_unknown * cos(pi/2 * (step+1)/steps)); 0 after
    the last step. `maskgit_step` clamps this per MaskGIT (see the module docstring)."""
    if steps < 1 or not 0 <= step < steps:
        raise ValueError(f"need 0 <= step < steps and steps >= 1; got step={step}, steps={steps}")
    if step == steps - 1:
        return 0  # cos(pi/2) is 6e-17 in floating point, not 0: say it exactly
    return int(math.floor(n_unknown * math.cos(math.pi / 2 * (step + 1) / steps)))


def masked_after_step(step: int, steps: int, n_unknown: int, n_masked: int) -> int:
    """The number of tokens actually left masked after `step` when `n_masked` are masked
    before it: MaskGIT's clamp max(1, min(n_masked - 1, schedule)) before the last step,
    0 at the last step, never more than n_masked."""
    scheduled = mask_schedule(step, steps, n_unknown)
    if step == steps - 1:
        return 0
    return min(n_masked, max(1, min(n_masked - 1, scheduled)))


@dataclass
class MaskGITState:
    """One request's MaskGIT decoding. `tokens` [N] int64 holds `mask_id` at every position not
    yet decided; `fixed` [N] bool marks the task's given tokens, which are never changed."""

    tokens: np.ndarray
    fixed: np.ndarray
    steps: int
    step: int
    temperature: float
    choice_temperature: float
    guidance_scale: float
    top_k: int | None
    rng: np.random.Generator
    mask_id: int
    factors: tuple[int, ...] = ()  # the model's token factors (product = mask_id); () = one vocabulary
    n_unknown: int = field(init=False)  # positions to generate (not fixed); the schedule's base
    # The confidence the sampler used, per position: the model's probability of the token drawn
    # there at the last step it was drawn (kept once decided); 1 where given, 0 before the first step.
    confidence: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = np.asarray(self.tokens, dtype=np.int64)
        self.fixed = np.asarray(self.fixed, dtype=bool)
        if self.tokens.ndim != 1 or self.tokens.shape != self.fixed.shape:
            raise ValueError(f"tokens {self.tokens.shape} and fixed {self.fixed.shape} must be the same [N]")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1; got {self.steps}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0; got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None; got {self.top_k}")
        self.factors = check_factors(self.factors, self.mask_id)  # mask_id == vocab_size
        self.n_unknown = int((~self.fixed).sum())
        self.confidence = self.fixed.astype(np.float32)

    @property
    def done(self) -> bool:
        """All steps taken, or nothing to generate (every token fixed): no network call needed."""
        return self.step >= self.steps or self.n_unknown == 0

    @property
    def num_masked(self) -> int:
        return int((self.tokens == self.mask_id).sum())

    @property
    def needs_uncond(self) -> bool:
        """Whether the next step reads unconditional logits (guidance_scale != 0)."""
        return self.guidance_scale != 0.0


def maskgit_init(tokens_init: np.ndarray, fixed: np.ndarray, *, mask_id: int, steps: int = DEFAULT_STEPS,
                 temperature: float = 1.0, choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE,
                 guidance_scale: float = 0.0, top_k: int | None = None, seed: int,
                 factors: Sequence[int] = ()) -> MaskGITState:
    """A fresh state: positions where `fixed` is True keep `tokens_init`, all others start as
    `mask_id`. `seed` seeds the request's own Generator, so its samples do not depend on which
    other requests share its batches. `factors`: the model's token factors (the manifest's
    `token_factors`), () for one vocabulary."""
    tokens = np.asarray(tokens_init, dtype=np.int64).reshape(-1)
    fixed = np.asarray(fixed, dtype=bool).reshape(-1)
    if tokens.shape != fixed.shape:
        raise ValueError(f"tokens_init has {tokens.size} tokens, fixed has {fixed.size}")
    if np.any(tokens[fixed] == mask_id):
        raise ValueError("a fixed position holds the mask id; fixed tokens must be real tokens")
    return MaskGITState(tokens=np.where(fixed, tokens, mask_id), fixed=fixed.copy(), steps=steps, step=0,
                        temperature=float(temperature), choice_temperature=float(choice_temperature),
                        guidance_scale=float(guidance_scale), top_k=top_k,
                        rng=np.random.default_rng(seed), mask_id=int(mask_id), factors=tuple(factors))


def maskgit_step(states: Sequence[MaskGITState], logits: np.ndarray,
                 uncond_logits: np.ndarray | Sequence[np.ndarray | None] | None = None) -> None:
    """Advances every state by one step, in place.

    logits: [B, N, V], row b from the network fed states[b].tokens (B = len(states); states of
    different N cannot share one array, so batch those separately). V may include the mask id
    (V > mask_id); it is never sampled; a factorized state's rows are [N, sum(factors)] instead.
    uncond_logits: None, an array [B, N, V], or one [N, V]-array-or-None per state; a state
    reads its row only when its guidance_scale != 0. Each state uses only its own logits row
    and its own Generator, so a request gets the same tokens whatever it is batched with."""
    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[0] != len(states):
        raise ValueError(f"logits must be [B={len(states)}, N, V]; got {logits.shape}")
    if uncond_logits is not None and len(uncond_logits) != len(states):
        raise ValueError(f"uncond_logits has {len(uncond_logits)} rows for {len(states)} states")
    for b, state in enumerate(states):
        uncond = None if uncond_logits is None else uncond_logits[b]
        _step_one(state, logits[b], None if uncond is None else np.asarray(uncond))


def _step_one(state: MaskGITState, logits: np.ndarray, uncond: np.ndarray | None) -> None:
    if state.done:
        raise ValueError(f"state already finished ({state.step}/{state.steps} steps)")
    n = state.tokens.shape[0]
    if logits.shape[0] != n:
        raise ValueError(f"logits cover {logits.shape[0]} positions, the state has {n}")
    unknown = np.flatnonzero(state.tokens == state.mask_id)                    # [U]
    s, total = state.step, state.steps
    state.step += 1  # counted even when nothing is masked, so `done` stays a function of steps
    if unknown.size == 0:
        return
    # Only the masked rows matter: guide, exclude [MASK], sample. [U, V]
    rows = guided_logits(logits[unknown], None if uncond is None else uncond[unknown],
                         state.guidance_scale)
    keep_masked = masked_after_step(s, total, state.n_unknown, unknown.size)
    if state.factors:
        # [U, sum(factors)] (no [MASK] column): one independent draw per factor; log p summed.
        sampled, logp = sample_factored(rows, state.factors, state.temperature, state.top_k, state.rng)
    else:
        if state.mask_id < rows.shape[-1]:
            rows = rows.astype(np.float64)  # always a copy: the caller's logits stay untouched
            rows[:, state.mask_id] = -np.inf
        # [U] ids and their log-probabilities under softmax(rows) (no random numbers: the draw is
        # the same with or without them)
        sampled, logp = sample_with_log_prob(rows, state.temperature, state.top_k, state.rng)
    state.tokens[unknown] = sampled
    state.confidence[unknown] = np.exp(logp)
    if keep_masked == 0:
        return
    # Annealed Gumbel noise: early steps choose which tokens to keep more randomly.
    noise = state.choice_temperature * (1.0 - (s + 1) / total) * state.rng.gumbel(size=unknown.size)
    confidence = logp + noise
    # Known positions have +inf confidence in MaskGIT; restricting the choice to `unknown` is
    # the same thing. A stable sort breaks exact ties by position, deterministically.
    lowest = np.argsort(confidence, kind="stable")[:keep_masked]
    state.tokens[unknown[lowest]] = state.mask_id
