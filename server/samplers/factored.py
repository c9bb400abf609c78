"""A factorized token vocabulary: sub-tokens, their logits, and the ids they assemble to.

A model with `token_factors` (f_0, f_1, ...) (the manifest's; V = prod f_k) emits, per position,
each factor's logits concatenated: a row of sum(f_k) numbers instead of V. A token id is the
number whose digits in the mixed radix (f_0, f_1, ...), low digit first, are its sub-tokens:

    id = sum_k sub_k * prod(f_0 .. f_{k-1})        sub_k = (id // prod(f_0 .. f_{k-1})) % f_k

(for the LFQ tokenizer's bit groups, f_k = 2^b_k and sub_k is bit group k of the id).

How the samplers use it: the network predicts the sub-tokens of a position independently given
the context (its loss is the sum of per-factor cross-entropies), so a token is drawn as one
independent draw per factor, each from its own logits with the request's temperature and top-k
(and classifier-free guidance, which is elementwise and so per factor by construction); the
token's log-probability is the sum of its sub-tokens' log-probabilities. Open-MAGVIT2 instead
draws the sub-tokens one after another with a small intra-token autoregressive head; independent
draws are the simple first step, need no extra network call, and match how the prior is trained.

Random numbers: the factors draw in factor order, each as `sample_with_log_prob` draws (one
uniform per row, none at temperature 0), so a request's stream depends only on its own rows.
An empty `factors` is never passed here: unfactorized models keep the samplers' own paths.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .sampling import log_softmax, sample_with_log_prob


def check_factors(factors: Sequence[int], vocab_size: int | None = None) -> tuple[int, ...]:
    """`factors` as a tuple of ints, each >= 2, whose product is `vocab_size` (when given)."""
    factors = tuple(int(f) for f in factors)
    if any(f < 2 for f in factors):
        raise ValueError(f"token factors must each be >= 2; got {list(factors)}")
    if factors and vocab_size is not None and math.prod(factors) != vocab_size:
        raise ValueError(f"the product of token factors {list(factors)} is not the vocabulary size {vocab_size}")
    return factors


def factor_slices(factors: Sequence[int]) -> list[slice]:
    """Each factor's columns in a concatenated logits row."""
    out, start = [], 0
    for f in factors:
        out.append(slice(start, start + f))
        start += f
    return out


def split_ids(ids: np.ndarray, factors: Sequence[int]) -> list[np.ndarray]:
    """Token ids -> one int64 array of sub-tokens per factor, low factor first."""
    ids = np.asarray(ids, dtype=np.int64)
    subs, stride = [], 1
    for f in factors:
        subs.append((ids // stride) % f)
        stride *= f
    return subs


def assemble_ids(subs: Sequence[np.ndarray], factors: Sequence[int]) -> np.ndarray:
    """One sub-token array per factor -> the token ids they spell (int64)."""
    ids, stride = np.zeros(np.shape(subs[0]), dtype=np.int64), 1
    for sub, f in zip(subs, factors):
        ids += np.asarray(sub, dtype=np.int64) * stride
        stride *= f
    return ids


def check_width(logits: np.ndarray, factors: Sequence[int]) -> None:
    if logits.shape[-1] != sum(factors):
        raise ValueError(f"a factorized model's logits have sum(token_factors) = {sum(factors)} columns "
                         f"(token_factors {list(factors)}); got {logits.shape[-1]}")


def sample_factored(logits: np.ndarray, factors: Sequence[int], temperature: float, top_k: int | None,
                    rng: np.random.Generator, *, log_prob: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """One token per row of `logits` [M, sum(factors)]: each factor's sub-token drawn from
    softmax(top_k(its logits) / temperature), then assembled into an id. Returns (int64 [M],
    and with `log_prob` float64 [M]: the sum of the drawn sub-tokens' log-probabilities under
    plain softmax per factor, i.e. the token's log-probability under the model)."""
    check_width(logits, factors)
    subs, total = [], None
    for part in factor_slices(factors):
        sub, logp = sample_with_log_prob(logits[:, part], temperature, top_k, rng, log_prob=log_prob)
        subs.append(sub)
        if log_prob:
            total = logp if total is None else total + logp
    return assemble_ids(subs, factors), total


def factored_argmax(logits: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """The most likely token per row of `logits` [..., sum(factors)]: each factor's argmax (the
    lowest sub-token wins a tie), which is the most likely id when the factors are independent."""
    check_width(logits, factors)
    return assemble_ids([logits[..., part].argmax(axis=-1) for part in factor_slices(factors)], factors)


def token_log_prob(logits: np.ndarray, targets: np.ndarray, factors: Sequence[int] = ()) -> np.ndarray:
    """log p(targets) under `logits` [..., V or sum(factors)], float64 [...]: the log-softmax at
    each target, or factorized the sum over factors of each sub-token's log-softmax."""
    targets = np.asarray(targets, dtype=np.int64)
    if not factors:
        logp = log_softmax(np.asarray(logits).astype(np.float64))
        return np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    check_width(logits, factors)
    total = np.zeros(targets.shape, dtype=np.float64)
    for part, sub in zip(factor_slices(factors), split_ids(targets, factors)):
        logp = log_softmax(np.asarray(logits[..., part]).astype(np.float64))
        total += np.take_along_axis(logp, sub[..., None], axis=-1)[..., 0]
    return total
