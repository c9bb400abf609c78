"""Categorical sampling shared by the MaskGIT and the autoregressive samplers: numerically
stable log-softmax, top-k filtering and temperature sampling with a caller's numpy Generator.

Everything works on float64 rows: the networks emit float32 (or float16 from TensorRT) logits,
and a float64 log-softmax keeps tiny temperatures and large vocabularies free of overflow and of
probabilities that round to exactly 0 or 1. The cost is small next to a network call.
"""
from __future__ import annotations

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
    cond = cond.astype(np.float64)
    return cond + guidance_scale * (cond - uncond.astype(np.float64))


def sample_categorical(logits: np.ndarray, temperature: float, top_k: int | None,
                       rng: np.random.Generator) -> np.ndarray:
    """One draw per row of `logits` [M, V] from softmax(top_k(logits) / temperature); int64 [M].
    See `sample_with_log_prob`."""
    return sample_with_log_prob(logits, temperature, top_k, rng, log_prob=False)[0]


def sample_with_log_prob(logits: np.ndarray, temperature: float, top_k: int | None,
                         rng: np.random.Generator, *, log_prob: bool = True
                         ) -> tuple[np.ndarray, np.ndarray | None]:
    """One draw per row of `logits` [M, V] from softmax(top_k(logits) / temperature), and (with
    `log_prob`) each drawn id's log-probability under plain softmax(logits): the model's own
    confidence, unaffected by temperature and top-k. Returns (int64 [M], float64 [M] or None).

    temperature == 0 is greedy (argmax; the lowest id wins a tie) and draws no random numbers.
    Otherwise inverse-CDF sampling: one uniform per row (M numbers from `rng`, never M x V as
    the Gumbel-max trick would need), so a request's random stream depends only on how many
    rows it samples, not on anything else in its batch.

    Cost matters here (this runs once per request per step over U x V logits), so the shifted
    logits and their exponentials are computed once and shared between the draw and the
    log-probability whenever temperature is 1 and there is no top-k."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    x = np.asarray(logits, dtype=np.float64)
    m = x.shape[0]
    if m == 0:
        return np.zeros(0, dtype=np.int64), (np.zeros(0) if log_prob else None)
    peak = x.max(axis=-1, keepdims=True)                              # [M, 1]
    if not np.all(np.isfinite(peak)):
        raise ValueError("logits contain a row with no finite maximum (all -inf, NaN or +inf)")
    shifted = x - peak                                                # [M, V], max 0 per row
    plain = temperature == 1.0 and (top_k is None or top_k >= x.shape[-1])
    weights = np.exp(shifted) if (log_prob or plain) else None        # [M, V] unnormalized

    if temperature == 0:
        ids = shifted.argmax(axis=-1)  # the argmax is always inside the top k
    else:
        w = weights if plain else np.exp(top_k_filter(shifted / temperature, top_k))
        cdf = np.cumsum(w, axis=-1)                                   # [M, V]
        # The first index whose cdf exceeds u * total. Scaling u by the row's own total means
        # rounding can never push the draw past the last id, and an id of probability 0 (a
        # flat stretch of the cdf) can never be chosen.
        u = rng.random(m) * cdf[:, -1]                                # [M]
        ids = (cdf <= u[:, None]).sum(axis=-1)
    ids = ids.astype(np.int64)
    if not log_prob:
        return ids, None
    log_z = np.log(weights.sum(axis=-1))                              # [M]
    return ids, shifted[np.arange(m), ids] - log_z
