"""Categorical sampling shared by the MaskGIT and the autoregressive samplers: numerically
stable log-softmax, top-k filtering and temperature sampling with a caller's numpy Generator.

Everything works on float64 rows: the networks emit float32 (or float16 from TensorRT) logits,
and a float64 log-softmax keeps tiny temperatures and large vocabularies free of overflow and of
probabilities that round to exactly 0 or 1. `sample_rows` samples a whole batch's rows at once
(MaskGIT's step), with every request's own settings and random stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in float64, with the max subtracted first.

    Rows whose largest logit is not finite (all -inf, or any NaN / +inf max) cannot be turned
    into a distribution; they raise instead of silently sampling garbage."""
    x = np.asarray(logits, dtype=np.float64)
    peak = x.max(axis=-1, keepdims=True)
    if not np.all(np.isfinite(peak)):
        raise ValueError("logits contain a row with no finite maximum (all -inf, NaN or +inf)")
    shifted = x - peak
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def top_k_filter(logits: np.ndarray, top_k: int | None) -> np.ndarray:
    """Keeps, per row, the logits at least as large as the row's k-th largest; the rest become
    -inf. Ties at the k-th value are all kept (so a row may keep more than k), which keeps the
    result independent of how a sort orders equal values. None or k >= V is a no-op."""
    if top_k is None or top_k >= logits.shape[-1]:
        return logits
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1; got {top_k}")
    # The k-th largest value per row: partition puts it at index V - k.   # [..., 1]
    kth = np.partition(logits, logits.shape[-1] - top_k, axis=-1)[..., -top_k, None]
    return np.where(logits >= kth, logits, -np.inf)


def guided_logits(cond: np.ndarray, uncond: np.ndarray | None, guidance_scale: float) -> np.ndarray:
    """Classifier-free guidance, shared by both samplers: cond + g * (cond - uncond); exactly
    `cond` (uncond unread) when g == 0."""
    if guidance_scale == 0.0:
        return cond
    if uncond is None:
        raise ValueError(f"guidance_scale {guidance_scale} needs unconditional logits")
    if uncond.shape != cond.shape:
        raise ValueError(f"unconditional logits {uncond.shape} differ from conditional {cond.shape}")
    # In place, in float64: (cond - uncond) * g + cond, which is the same number bit for bit
    # (IEEE addition and multiplication commute) with one array instead of four.
    out = np.subtract(cond, uncond, dtype=np.float64)
    out *= guidance_scale
    out += cond
    return out


def sample_with_log_prob(logits: np.ndarray, temperature: float, top_k: int | None,
                         rng: np.random.Generator, *, log_prob: bool = True
                         ) -> tuple[np.ndarray, np.ndarray | None]:
    """One draw per row of `logits` [M, V] from softmax(top_k(logits) / temperature), and (with
    `log_prob`) each drawn id's log-probability under plain softmax(logits): the model's own
    confidence, unaffected by temperature and top-k. Returns (int64 [M], float64 [M] or None).

    temperature == 0 is greedy (argmax; the lowest id wins a tie) and draws no random numbers.
    Otherwise inverse-CDF sampling: one uniform per row (M numbers from `rng`, never M x V as
    the Gumbel-max trick would need), so a request's random stream depends only on how many
    rows it samples, not on anything else in its batch. (One request's rows of `sample_rows`.)"""
    return sample_rows(logits, [Draw(np.shape(logits)[0], temperature, top_k, rng)], log_prob=log_prob)


@dataclass(frozen=True)
class Draw:
    """One request's consecutive rows of a batched draw, with that request's settings and Generator."""
    rows: int
    temperature: float
    top_k: int | None
    rng: np.random.Generator


def sample_rows(logits: np.ndarray, draws: Sequence[Draw], *, log_prob: bool = True,
                exclude: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """`sample_with_log_prob` for many requests at once: `logits` [M, V] holds each draw's rows
    in turn (M = the sum of their `rows`), and each draw samples its rows with its own
    temperature, top-k and Generator. The result is bit for bit what one `sample_with_log_prob`
    call per draw gives, in any batch: every operation is either elementwise or along a row
    (max, cumsum, the sums), and each Generator gives its uniforms in its own rows' order, so
    the draws must not share a Generator. `exclude`: a column that is never drawn (the [MASK]
    id), as if its logit were -inf.

    Why batched: MaskGIT samples every masked position of every request at every step, about
    U x V numbers per request. Done per request, a step costs a few dozen numpy calls per
    request and a float64 copy of the logits; here each operation is one pass over the rows it
    is given (`sample_many` gives it cache-sized chunks of requests, not the whole batch). It
    stays float64 (see the module docstring), and the input is never copied to float64 on its
    own: float32 logits become float64 in the subtraction of the row maximum."""
    x = np.asarray(logits)
    if x.ndim != 2:
        raise ValueError(f"logits must be [M, V]; got {x.shape}")
    m, v = x.shape
    if sum(d.rows for d in draws) != m:
        raise ValueError(f"the draws cover {sum(d.rows for d in draws)} rows; logits have {m}")
    for d in draws:
        if d.temperature < 0:
            raise ValueError(f"temperature must be >= 0; got {d.temperature}")
        if d.top_k is not None and d.top_k < 1:
            raise ValueError(f"top_k must be >= 1; got {d.top_k}")
    rngs = [id(d.rng) for d in draws if d.rows and d.temperature != 0]
    if len(set(rngs)) != len(rngs):
        raise ValueError("draws of one batch must each have their own Generator")
    if m == 0:
        return np.zeros(0, dtype=np.int64), (np.zeros(0) if log_prob else None)
    if exclude is not None and not 0 <= exclude < v:
        raise ValueError(f"exclude {exclude} is not a column of {v}")
    kept = x if exclude is None else (x[:, :exclude] if exclude == v - 1 else np.delete(x, exclude, axis=1))
    peak = kept.max(axis=-1, keepdims=True).astype(np.float64)      # [M, 1]
    if not np.all(np.isfinite(peak)):
        raise ValueError("logits contain a row with no finite maximum (all -inf, NaN or +inf)")
    shifted = np.subtract(x, peak, dtype=np.float64)                 # [M, V], max 0 per row
    if exclude is not None:
        shifted[:, exclude] = -np.inf
    plain = [d.temperature == 1.0 and (d.top_k is None or d.top_k >= v) for d in draws]
    weights = np.exp(shifted) if (log_prob or any(plain)) else None  # [M, V] unnormalized

    ids = np.empty(m, dtype=np.int64)
    starts = np.cumsum([0] + [d.rows for d in draws])
    # Draws with the same settings are sampled as one block of rows.
    groups: dict[tuple, list[int]] = {}
    for i, (d, p) in enumerate(zip(draws, plain)):
        if d.rows:
            groups.setdefault(("plain",) if p else (d.temperature, d.top_k), []).append(i)
    for key, members in groups.items():
        d0 = draws[members[0]]
        whole = len(members) == len(draws)
        rows = slice(None) if whole else np.concatenate([np.arange(starts[i], starts[i + 1]) for i in members])
        if d0.temperature == 0:
            ids[rows] = shifted[rows].argmax(axis=-1)  # the argmax is always inside the top k
            continue
        w = weights[rows] if key == ("plain",) else np.exp(top_k_filter(shifted[rows] / d0.temperature, d0.top_k))
        cdf = np.cumsum(w, axis=-1)                                  # [R, V]
        # The first index whose cdf exceeds u * total. Scaling u by the row's own total means
        # rounding can never push the draw past the last id, and an id of probability 0 (a
        # flat stretch of the cdf) can never be chosen.
        u = np.concatenate([draws[i].rng.random(draws[i].rows) for i in members]) * cdf[:, -1]
        ids[rows] = (cdf <= u[:, None]).sum(axis=-1)
    if not log_prob:
        return ids, None
    log_z = np.log(weights.sum(axis=-1))                             # [M]
    return ids, shifted[np.arange(m), ids] - log_z


CHUNK_ROWS = 256  # rows per sample_rows call in sample_many: [256, 1025] float64 is 2 MB, cache-sized


def sample_many(block: Callable[[int], np.ndarray], draws: Sequence[Draw], *, log_prob: bool = True,
                exclude: int | None = None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """`sample_rows` for many requests' blocks of rows (`block(i)` gives request i's
    [draws[i].rows, V] logits, one V for all): ids and log-probabilities per request, bit for
    bit what one `sample_with_log_prob` call per request gives. Consecutive requests are drawn
    together up to about CHUNK_ROWS rows (a request is never split), and each block is made
    just before its chunk is drawn: one batch-wide array is slower than many small ones,
    because each of the dozen passes over the rows then streams from memory instead of the
    cache (measured, BENCHMARKS.md), while a chunk still shares each numpy call among many
    requests (the autoregressive sampler's one row per request, MaskGIT's late steps)."""
    out: list[tuple[np.ndarray, np.ndarray | None]] = []
    start = 0
    while start < len(draws):
        stop, rows = start + 1, draws[start].rows
        while stop < len(draws) and rows + draws[stop].rows <= CHUNK_ROWS:
            rows += draws[stop].rows
            stop += 1
        chunk = block(start) if stop == start + 1 else np.concatenate([block(i) for i in range(start, stop)])
        ids, logp = sample_rows(chunk, draws[start:stop], log_prob=log_prob, exclude=exclude)
        cuts = np.cumsum([d.rows for d in draws[start:stop]])[:-1]
        out.extend(zip(np.split(ids, cuts), np.split(logp, cuts) if log_prob else [None] * (stop - start)))
        start = stop
    return out
