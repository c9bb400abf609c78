"""Raster-order autoregressive decoding with a KV cache, as in VideoGPT (arXiv 2104.10157).

The caller owns the network and its KV cache; this module does the bookkeeping (what to feed
next) and the sampling. Sequence convention, shared with the exported AR prior:

    input ids  x = [c, t_0, t_1, ..., t_{N-2}]       (N ids; x_0 = c, x_i = t_{i-1})
    output i   predicts token t_i from x_0..x_i
    c          = vocab_size + class_id; the null class ("no class") is vocab_size + num_classes

`state.position` is both the number of input ids already in the KV cache (the past length)
and the number of leading tokens already decided. One decoding call:

    count = ar_next_positions(state)                       # 0 when done
    ids   = ar_input_ids(state, state.position, count)     # feed with past = state.position
    ... network -> logits of the LAST fed position ...
    ar_step([state, ...], logits_last)                     # [B, V]

Fixed tokens (the task's given ones) are teacher-forced: never sampled, only fed. A call always
runs up to the next position that must be sampled, so the first call is the prefill (the class
id and every leading fixed token at once), and a run of fixed tokens in the middle (frame
interpolation's last frame, a spatial task's given columns) rides along with the call that
reaches past it; between free positions it is one id per call. Trailing fixed tokens need no
call at all.

Classifier-free guidance (the same `cond + g (cond - uncond)` as MaskGIT): a guided request is
decoded twice in lockstep, once with its class and once with the null class in x_0, each with
its own KV cache; the tokens sampled from the guided logits are fed to both. `needs_uncond`
says whether the caller must run that second row; `ar_input_ids(..., unconditional=True)`
gives its ids.

A factorized vocabulary (`ARState.factors`, server/samplers/factored.py): the logits are
[B, sum(factors)] per call; each factor's sub-token is drawn independently with the state's
temperature and top-k (and guidance, elementwise), in factor order, and the id assembled. The
input ids are unchanged (tokens 0..V-1, classes V + c): the prior embeds them itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .factored import check_factors, sample_factored
from .sampling import Draw, guided_logits, sample_many

UNKNOWN = -1  # a token not decided yet; never a valid input id


@dataclass
class ARState:
    """One request's autoregressive decoding. tokens [N] int64 (UNKNOWN where not decided),
    fixed [N] bool (teacher-forced positions), class_token = vocab_size + class id,
    null_class_token = vocab_size + num_classes (what the unconditional row of guidance feeds)."""

    tokens: np.ndarray
    fixed: np.ndarray
    class_token: int
    vocab_size: int
    temperature: float
    top_k: int | None
    rng: np.random.Generator
    guidance_scale: float = 0.0
    null_class_token: int = -1
    factors: tuple[int, ...] = ()  # the model's token factors (product = vocab_size); () = one vocabulary
    position: int = 0
    # next_free[i]: the first position >= i that must be sampled (N if none). [N + 1]
    next_free: np.ndarray = field(init=False, repr=False)
    # The sampler's confidence per position: 1 where given, the probability of the token drawn
    # under the (guided) softmax it was drawn from, before temperature and top-k (as MaskGIT's),
    # and 0 where not decided yet. [N] float32
    confidence: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens = np.asarray(self.tokens, dtype=np.int64)
        self.fixed = np.asarray(self.fixed, dtype=bool)
        if self.tokens.ndim != 1 or self.tokens.shape != self.fixed.shape:
            raise ValueError(f"tokens {self.tokens.shape} and fixed {self.fixed.shape} must be the same [N]")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0; got {self.temperature}")
        if self.guidance_scale != 0.0 and self.null_class_token < self.vocab_size:
            raise ValueError("classifier-free guidance needs the null class token (>= vocab_size)")
        self.factors = check_factors(self.factors, self.vocab_size)
        n = self.tokens.shape[0]
        free_at = np.where(~self.fixed, np.arange(n), n)
        # A reversed running minimum gives each position the nearest free position at or after it.
        self.next_free = np.append(np.minimum.accumulate(free_at[::-1])[::-1], n)
        self.confidence = self.fixed.astype(np.float32)

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def done(self) -> bool:
        """No position left to sample (trailing fixed tokens are already in `tokens`)."""
        return int(self.next_free[self.position]) >= self.num_tokens

    @property
    def needs_uncond(self) -> bool:
        """Whether each call also runs the unconditional row: guidance_scale != 0 and a class to
        guide towards (with the null class the two rows would be the same, and guiding them
        would change nothing)."""
        return self.guidance_scale != 0.0 and self.class_token != self.null_class_token


def ar_init(tokens_init: np.ndarray, fixed: np.ndarray, *, vocab_size: int, num_classes: int,
            class_id: int | None = None, temperature: float = 1.0, top_k: int | None = None,
            guidance_scale: float = 0.0, seed: int, factors: Sequence[int] = ()) -> ARState:
    """A fresh state. Fixed positions keep `tokens_init`; the others start UNKNOWN. class_id
    None is the null class (unconditional), fed as vocab_size + num_classes. `factors`: the
    model's token factors (the manifest's `token_factors`), () for one vocabulary."""
    tokens = np.asarray(tokens_init, dtype=np.int64).reshape(-1)
    fixed = np.asarray(fixed, dtype=bool).reshape(-1)
    if tokens.shape != fixed.shape:
        raise ValueError(f"tokens_init has {tokens.size} tokens, fixed has {fixed.size}")
    if np.any((tokens[fixed] < 0) | (tokens[fixed] >= vocab_size)):
        raise ValueError(f"fixed tokens must lie in [0, {vocab_size})")
    if class_id is None:
        class_id = num_classes
    elif not 0 <= class_id < num_classes:
        raise ValueError(f"class_id must lie in [0, {num_classes}); got {class_id}")
    return ARState(tokens=np.where(fixed, tokens, UNKNOWN), fixed=fixed.copy(),
                   class_token=int(vocab_size + class_id), vocab_size=int(vocab_size),
                   temperature=float(temperature), top_k=top_k, rng=np.random.default_rng(seed),
                   guidance_scale=float(guidance_scale), null_class_token=int(vocab_size + num_classes),
                   factors=tuple(factors))


def ar_next_positions(state: ARState) -> int:
    """How many input ids the next call feeds, starting at input position `state.position`:
    through the input position that predicts the next free token. 0 when done."""
    target = int(state.next_free[state.position])
    if target >= state.num_tokens:
        return 0
    return target - state.position + 1


def ar_input_ids(state: ARState, start: int, count: int, unconditional: bool = False) -> np.ndarray:
    """Input ids for input positions start..start+count-1: x_0 = class_token (null_class_token
    for the unconditional row of guidance), x_i = t_{i-1}. int64 [count]. Raises if one of
    those tokens is not decided yet."""
    if start < 0 or count < 0 or start + count > state.num_tokens:
        raise ValueError(f"input positions {start}..{start + count - 1} outside 0..{state.num_tokens - 1}")
    ids = np.empty(count, dtype=np.int64)
    if count == 0:
        return ids
    # Input position i carries token i - 1; position 0 carries the class id.
    tok_lo = max(start - 1, 0)
    body = state.tokens[tok_lo:start + count - 1]
    if start == 0:
        ids[0] = state.null_class_token if unconditional else state.class_token
        ids[1:] = body
    else:
        ids[:] = body
    if np.any(body == UNKNOWN):
        raise ValueError(f"input positions {start}..{start + count - 1} need tokens not decided yet")
    return ids


def ar_step(states: Sequence[ARState], logits_last: np.ndarray,
            uncond_last: Sequence[np.ndarray | None] | None = None) -> None:
    """Advances each state past one `ar_next_positions` call, in place: the fixed tokens that
    call fed are kept (teacher forcing) and the next free token is sampled from that state's
    row of logits_last [B, V] (the output at the last fed position) with its temperature,
    top_k and Generator, and its probability kept in `confidence`. Ids >= vocab_size (if the
    head has them) are never sampled. A factorized state's row is [sum(factors)]: one sub-token
    per factor, assembled. uncond_last: None, or one [V]-row-or-None per state: the
    unconditional row's logits, read only by states with guidance_scale != 0.

    Every state is checked before any changes; the unfactorized states' rows are drawn together
    (`sample_many`), bit for bit as one state at a time."""
    logits_last = np.asarray(logits_last)
    if logits_last.ndim != 2 or logits_last.shape[0] != len(states):
        raise ValueError(f"logits_last must be [B={len(states)}, V]; got {logits_last.shape}")
    if uncond_last is not None and len(uncond_last) != len(states):
        raise ValueError(f"uncond_last has {len(uncond_last)} rows for {len(states)} states")
    if len({id(s) for s in states}) != len(states):
        raise ValueError("a state appears twice in one batch")
    targets, rows = [], []
    for b, state in enumerate(states):
        target = int(state.next_free[state.position])
        if target >= state.num_tokens:
            raise ValueError("state already finished")
        uncond = None if uncond_last is None or uncond_last[b] is None else np.asarray(uncond_last[b])
        # A factorized row is taken whole: sample_factored checks it is sum(factors) wide.
        width = None if state.factors else state.vocab_size
        targets.append(target)
        rows.append(guided_logits(logits_last[b, None, :width], None if uncond is None else uncond[None, :width],
                                  state.guidance_scale if state.needs_uncond else 0.0))  # [1, V] or [1, sum(factors)]
    plain = [b for b, state in enumerate(states) if not state.factors]
    drawn = dict(zip(plain, sample_many(lambda i: rows[plain[i]], [
        Draw(1, states[b].temperature, states[b].top_k, states[b].rng) for b in plain])))
    for b, state in enumerate(states):
        if state.factors:
            token, logp = sample_factored(rows[b], state.factors, state.temperature, state.top_k, state.rng)
        else:
            token, logp = drawn[b]
        state.tokens[targets[b]] = token[0]
        state.confidence[targets[b]] = np.exp(logp[0])
        state.position = targets[b] + 1
