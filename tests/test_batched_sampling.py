"""The batched samplers give every request the tokens it gets alone (issue #10's property test).

`maskgit_step` and `ar_step` draw the rows of every unfactorized state of a batch together
(`sample_many` / `sample_rows`). Property: for any mix of shapes, temperatures, top-k, guidance
and given tokens, decoding a batch gives each state exactly (bit for bit) the tokens and
confidence that decoding it alone, with the same seed, gives.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from server.samplers import (Draw, ar_init, ar_step, maskgit_init, maskgit_step, sample_many, sample_rows,
                             sample_with_log_prob)

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

temperatures = st.sampled_from([0.0, 0.3, 1.0, 2.5])
top_ks = st.sampled_from([None, 1, 3, 10_000])
guidances = st.sampled_from([0.0, 0.0, 3.0])


def fake_network(tokens: np.ndarray, width: int, salt: int) -> np.ndarray:
    """Deterministic logits [B, N, width] that depend on each row's own tokens only."""
    out = []
    for row in np.asarray(tokens):
        rng = np.random.default_rng([salt, *(int(t) + 2 for t in row)])
        out.append(rng.standard_normal((row.size, width)) * rng.uniform(0.5, 6.0))
    return np.asarray(out, dtype=np.float32)


def same_together_as_alone(decode, batch: int) -> list:
    """decode(groups) with all states in one batch and with each alone: the same tokens and
    confidence, bit for bit. Returns the batched states."""
    together = decode([list(range(batch))])
    alone = decode([[i] for i in range(batch)])
    for a, b in zip(together, alone):
        assert np.array_equal(a.tokens, b.tokens)
        assert np.array_equal(a.confidence, b.confidence)
    return together


@SETTINGS
@given(data=st.data(), vocab=st.integers(2, 40), extra=st.integers(0, 1), dtype=st.sampled_from([np.float32, np.float64]))
def test_sample_rows_equals_one_call_per_request(data, vocab, extra, dtype):
    sizes = data.draw(st.lists(st.integers(0, 7), min_size=1, max_size=6))
    width = vocab + extra
    exclude = vocab if extra else None
    draws, blocks, alone = [], [], []
    for i, rows in enumerate(sizes):
        t, k = data.draw(temperatures), data.draw(top_ks)
        logits = (np.random.default_rng(i).standard_normal((rows, width)) * 4).astype(dtype)
        if exclude is not None:
            alone_logits = logits.astype(np.float64)
            alone_logits[:, exclude] = -np.inf
        else:
            alone_logits = logits
        blocks.append(logits)
        draws.append(Draw(rows, t, k, np.random.default_rng(100 + i)))
        alone.append(sample_with_log_prob(alone_logits, t, k, np.random.default_rng(100 + i)))
    batched = sample_many(lambda i: blocks[i], draws, exclude=exclude)
    for (ids, logp), (ids1, logp1) in zip(batched, alone):
        assert np.array_equal(ids, ids1)
        assert np.array_equal(logp, logp1)
        if exclude is not None:
            assert not np.any(ids == exclude)


@SETTINGS
@given(data=st.data(), n=st.integers(1, 30), vocab=st.integers(2, 50), steps=st.integers(1, 8),
       batch=st.integers(1, 6), mask_column=st.booleans())
def test_maskgit_batch_equals_each_state_alone(data, n, vocab, steps, batch, mask_column):
    width = vocab + 1 if mask_column else vocab  # the head may or may not have a [MASK] column
    params = []
    for i in range(batch):
        fixed = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        params.append(dict(tokens_init=np.arange(n) % vocab, fixed=fixed, mask_id=vocab, steps=steps,
                           temperature=data.draw(temperatures), top_k=data.draw(top_ks),
                           guidance_scale=data.draw(guidances), choice_temperature=data.draw(st.sampled_from([0.0, 4.5])),
                           seed=1000 + i))

    def decode(groups):
        states = [maskgit_init(**p) for p in params]
        for _ in range(steps):
            for group in groups:
                live = [states[i] for i in group if not states[i].done]
                if live:
                    tokens = np.stack([s.tokens for s in live])
                    cond, uncond = fake_network(tokens, width, 1), fake_network(tokens, width, 2)
                    maskgit_step(live, cond, [uncond[j] if s.guidance_scale else None for j, s in enumerate(live)])
        return states

    for state in same_together_as_alone(decode, batch):
        assert not np.any(state.tokens == vocab)  # every position decided


@SETTINGS
@given(data=st.data(), n=st.integers(1, 20), vocab=st.integers(2, 50), extra=st.integers(0, 3), batch=st.integers(1, 6))
def test_ar_batch_equals_each_state_alone(data, n, vocab, extra, batch):
    params = []
    for i in range(batch):
        fixed = np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        params.append(dict(tokens_init=np.arange(n) % vocab, fixed=fixed, vocab_size=vocab, num_classes=10,
                           class_id=data.draw(st.sampled_from([None, 4])), temperature=data.draw(temperatures),
                           top_k=data.draw(top_ks), guidance_scale=data.draw(guidances), seed=2000 + i))

    def decode(groups):
        states = [ar_init(**p) for p in params]
        for group in groups:
            while True:
                live = [states[i] for i in group if not states[i].done]
                if not live:
                    break
                seen = np.stack([np.where(s.tokens < 0, vocab, s.tokens) for s in live])
                cond, uncond = fake_network(seen, vocab + extra, 1)[:, 0], fake_network(seen, vocab + extra, 2)[:, 0]
                ar_step(live, cond, [uncond[j] if s.needs_uncond else None for j, s in enumerate(live)])
        return states

    for state in same_together_as_alone(decode, batch):
        assert np.all((state.tokens >= 0) & (state.tokens < vocab))
        assert np.all(state.confidence[state.fixed] == 1) and np.all((state.confidence > 0) & (state.confidence <= 1))


def test_a_batch_is_checked_before_any_state_changes():
    ready = maskgit_init(np.zeros(4, np.int64), np.zeros(4, bool), mask_id=8, steps=2, seed=1)
    finished = maskgit_init(np.zeros(4, np.int64), np.zeros(4, bool), mask_id=8, steps=1, seed=2)
    maskgit_step([finished], np.zeros((1, 4, 9), np.float32))
    with pytest.raises(ValueError, match="already finished"):
        maskgit_step([ready, finished], np.zeros((2, 4, 9), np.float32))
    assert ready.step == 0 and np.all(ready.tokens == 8)  # untouched


def test_draws_of_one_batch_need_their_own_generators():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="own Generator"):
        sample_rows(np.zeros((2, 3)), [Draw(1, 1.0, None, rng), Draw(1, 1.0, None, rng)])
    # greedy draws read no random numbers, so they may share one
    ids, _ = sample_rows(np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]), [Draw(1, 0.0, None, rng), Draw(1, 0.0, None, rng)])
    assert ids.tolist() == [1, 0]


def test_lockstep_rows_feed_the_previous_cache_without_a_copy():
    from server.decoding import joined_cache
    empty = np.zeros((2, 1, 3, 0, 4), np.float32)
    present = np.random.default_rng(0).standard_normal((2, 3, 3, 5, 4)).astype(np.float32)  # last call's output
    rows = [present[:, b:b + 1] for b in range(3)]  # what keep_cache kept per row
    assert joined_cache(rows, empty) is present  # same rows, same order: fed again as it is
    for parts in (rows[::-1], rows[:2], [rows[0], np.ascontiguousarray(rows[1]), rows[2]], [None, None, None]):
        joined = joined_cache(parts, empty)  # anything else: concatenated, the same values
        assert joined is not present
        assert np.array_equal(joined, np.concatenate([empty if p is None else p for p in parts], axis=1))
