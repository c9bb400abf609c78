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

from .factored import check_factors, check_width, sample_factored
from .sampling import Draw, guided_logits, sample_many

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
    and its own Generator, so a request gets the same tokens whatever it is batched with.

    Every state is checked before any state changes. The unfactorized states' draws go through
    `sample_many` together: bit for bit what one call per state gives (tests/test_batched_sampling.py
    holds the batch to one state at a time)."""
    logits = np.asarray(logits)
    if logits.ndim != 3 or logits.shape[0] != len(states):
        raise ValueError(f"logits must be [B={len(states)}, N, V]; got {logits.shape}")
    if uncond_logits is not None and len(uncond_logits) != len(states):
        raise ValueError(f"uncond_logits has {len(uncond_logits)} rows for {len(states)} states")
    if len({id(s) for s in states}) != len(states):
        raise ValueError("a state appears twice in one batch")
    steps = [_plan(state, logits[b], None if uncond_logits is None else uncond_logits[b])
             for b, state in enumerate(states)]
    for step in steps:
        step.state.step += 1  # counted even when nothing is masked, so `done` stays a function of steps
    live = [step for step in steps if step.unknown.size]
    plain = [step for step in live if not step.state.factors]
    if plain:
        mask_ids = {step.state.mask_id for step in plain}
        if len(mask_ids) != 1:
            raise ValueError(f"states of one batch must share the mask id; got {sorted(mask_ids)}")
        mask_id, width = mask_ids.pop(), logits.shape[-1]
        drawn = sample_many(lambda i: plain[i].rows(),
                            [Draw(step.unknown.size, step.state.temperature, step.state.top_k, step.state.rng)
                             for step in plain], exclude=mask_id if mask_id < width else None)
        for step, (ids, logp) in zip(plain, drawn):
            step.sampled, step.logp = ids, logp
    for step in live:
        if step.state.factors:
            # [U, sum(factors)] (no [MASK] column): one independent draw per factor; log p summed.
            step.sampled, step.logp = sample_factored(step.rows(), step.state.factors, step.state.temperature,
                                                      step.state.top_k, step.state.rng)
        step.finish()


@dataclass(eq=False)
class _Step:
    """One state's part of a `maskgit_step`: which positions it samples and from what."""
    state: MaskGITState
    logits: np.ndarray  # [N, V] this state's rows
    uncond: np.ndarray | None  # [N, V] its unconditional rows when it is guided, else None
    unknown: np.ndarray  # [U] the positions still masked
    s: int  # the 0-based step being taken
    sampled: np.ndarray | None = None  # [U] drawn ids
    logp: np.ndarray | None = None  # [U] their log-probabilities

    def rows(self) -> np.ndarray:
        """The masked positions' (guided) logits: float32 as the network gave them, or float64
        `cond + g (cond - uncond)` for a guided state."""
        return guided_logits(self.logits[self.unknown], None if self.uncond is None else self.uncond[self.unknown],
                             self.state.guidance_scale)

    def finish(self) -> None:
        """Keeps the drawn tokens, then re-masks the least confident ones (steps 3 and 4)."""
        state, unknown, s, total = self.state, self.unknown, self.s, self.state.steps
        keep_masked = masked_after_step(s, total, state.n_unknown, unknown.size)
        state.tokens[unknown] = self.sampled
        state.confidence[unknown] = np.exp(self.logp)
        if keep_masked == 0:
            return
        # Annealed Gumbel noise: early steps choose which tokens to keep more randomly.
        noise = state.choice_temperature * (1.0 - (s + 1) / total) * state.rng.gumbel(size=unknown.size)
        confidence = self.logp + noise
        # Known positions have +inf confidence in MaskGIT; restricting the choice to `unknown` is
        # the same thing. A stable sort breaks exact ties by position, deterministically.
        lowest = np.argsort(confidence, kind="stable")[:keep_masked]
        state.tokens[unknown[lowest]] = state.mask_id


def _plan(state: MaskGITState, logits: np.ndarray, uncond) -> _Step:
    """Checks one state's step and finds its masked positions; changes nothing."""
    if state.done:
        raise ValueError(f"state already finished ({state.step}/{state.steps} steps)")
    n = state.tokens.shape[0]
    if logits.shape[0] != n:
        raise ValueError(f"logits cover {logits.shape[0]} positions, the state has {n}")
    if state.factors:
        check_width(logits, state.factors)
    uncond = np.asarray(uncond) if uncond is not None and state.guidance_scale != 0.0 else None
    if state.guidance_scale != 0.0:
        if uncond is None:
            raise ValueError(f"guidance_scale {state.guidance_scale} needs unconditional logits")
        if uncond.shape != logits.shape:
            raise ValueError(f"unconditional logits {uncond.shape} differ from conditional {logits.shape}")
    return _Step(state, logits, uncond, np.flatnonzero(state.tokens == state.mask_id), state.step)
