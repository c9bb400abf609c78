"""The samplers' behaviour: MaskGIT's schedule and re-masking, fixed tokens, guidance, seeds,
batch independence, temperature and top-k; the autoregressive sampler's feeding and forcing.

The "network" is a tiny deterministic function of the input ids (a fixed random linear map
with a global context term), so that what a request samples depends on what it decoded before,
just as with the real prior."""
from __future__ import annotations

import math

import numpy as np
import pytest

from server.samplers import (UNKNOWN, ar_init, log_softmax, sample_with_log_prob, ar_input_ids, ar_next_positions, ar_step,
                             guided_logits, mask_schedule, maskgit_init, maskgit_step)

VOCAB = 16
MASK = VOCAB  # manifest: mask_token_id == vocab_size
N = 48


class FakePrior:
    """logits[n] = (E[x_n] + mean_m E[x_m] + P[n]) @ W: each position sees its own id and the
    whole sequence. Outputs VOCAB + 1 columns, the last for [MASK], which gets a huge logit so
    that a sampler that forgot to exclude it would be caught."""

    def __init__(self, seed: int = 0, n: int = N, in_vocab: int = VOCAB + 1, scale: float = 2.0):
        rng = np.random.default_rng(seed)
        d = 8
        self.E = rng.normal(size=(in_vocab, d))
        self.P = rng.normal(size=(n, d))
        self.W = rng.normal(size=(d, VOCAB + 1)) * scale

    def __call__(self, tokens: np.ndarray) -> np.ndarray:  # [B, N] -> [B, N, V+1] float32
        h = self.E[tokens]                                           # [B, N, d]
        h = h + h.mean(axis=1, keepdims=True) + self.P[: tokens.shape[1]]
        logits = h @ self.W
        logits[..., MASK] = 50.0
        return logits.astype(np.float32)


prior = FakePrior()
uncond_prior = FakePrior(seed=1)


def run_maskgit(states, guided=False, record=None):
    """Steps all states together until every one is done (each stops at its own step count)."""
    while True:
        live = [s for s in states if not s.done]
        if not live:
            return
        tokens = np.stack([s.tokens for s in live])
        uncond = uncond_prior(tokens) if guided else None
        maskgit_step(live, prior(tokens), uncond)
        if record is not None:
            record.append([s.tokens.copy() for s in states])


def expected_masked(n_unknown: int, steps: int) -> list[int]:
    """MaskGIT's reference: mask_len = max(1, min(masked - 1, floor(N cos(pi/2 r)))), 0 at the end."""
    out, masked = [], n_unknown
    for s in range(steps):
        if s == steps - 1:
            masked = 0
        else:
            masked = max(1, min(masked - 1, math.floor(n_unknown * math.cos(math.pi / 2 * (s + 1) / steps))))
        out.append(masked)
    return out


def test_mask_schedule_is_cosine_and_ends_at_zero():
    assert [mask_schedule(s, 12, 100) for s in range(12)] == \
        [math.floor(100 * math.cos(math.pi / 2 * (s + 1) / 12)) for s in range(11)] + [0]
    assert mask_schedule(0, 1, 100) == 0
    with pytest.raises(ValueError):
        mask_schedule(12, 12, 100)


@pytest.mark.parametrize("steps,n_fixed", [(12, 0), (12, 20), (4, 0), (12, 43), (1, 10), (30, 0)])
def test_masked_count_after_each_step_follows_the_reference(steps, n_fixed):
    fixed = np.zeros(N, dtype=bool)
    fixed[np.random.default_rng(3).permutation(N)[:n_fixed]] = True
    init = np.arange(N) % VOCAB
    state = maskgit_init(init, fixed, mask_id=MASK, steps=steps, seed=7)
    assert state.num_masked == N - n_fixed
    record = []
    run_maskgit([state], record=record)
    counts = [int((toks[0] == MASK).sum()) for toks in record]
    assert counts == expected_masked(N - n_fixed, steps)
    assert counts[-1] == 0 and state.done and state.step == steps


def test_known_tokens_never_change_and_output_is_in_vocabulary():
    fixed = np.zeros(N, dtype=bool)
    fixed[::3] = True
    init = (np.arange(N) * 5) % VOCAB
    state = maskgit_init(init, fixed, mask_id=MASK, seed=0)
    record = []
    run_maskgit([state], record=record)
    previous = state.tokens.copy()
    previous[:] = MASK
    previous[fixed] = init[fixed]
    for (toks,) in record:
        np.testing.assert_array_equal(toks[fixed], init[fixed])
        known = previous != MASK
        np.testing.assert_array_equal(toks[known], previous[known])  # revealed stays revealed
        previous = toks
    assert np.all(state.tokens < VOCAB) and np.all(state.tokens >= 0)  # [MASK] never sampled
    with pytest.raises(ValueError, match="finished"):
        maskgit_step([state], prior(state.tokens[None]))


def test_nothing_to_generate_is_done_at_once():
    state = maskgit_init(np.ones(N), np.ones(N, dtype=bool), mask_id=MASK, seed=0)
    assert state.done and state.num_masked == 0


def test_same_seed_same_tokens_other_seed_other_tokens():
    def decode(seed):
        s = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, seed=seed)
        run_maskgit([s])
        return s.tokens
    np.testing.assert_array_equal(decode(11), decode(11))
    assert not np.array_equal(decode(11), decode(12))


def test_guidance_zero_is_plain_conditional_sampling():
    def decode(guided, g=0.0):
        s = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, seed=5, guidance_scale=g)
        assert s.needs_uncond == (g != 0.0)
        run_maskgit([s], guided=guided)
        return s.tokens
    plain = decode(guided=False)
    np.testing.assert_array_equal(decode(guided=True), plain)  # uncond supplied but unread
    assert not np.array_equal(decode(guided=True, g=3.0), plain)
    with pytest.raises(ValueError, match="unconditional"):
        decode(guided=False, g=3.0)


def test_guidance_formula_and_uncond_equal_to_cond_is_a_no_op():
    cond, uncond = np.array([[1.0, 2.0]]), np.array([[0.5, 3.0]])
    np.testing.assert_allclose(guided_logits(cond, uncond, 2.0), uncond + 3.0 * (cond - uncond))
    assert guided_logits(cond, None, 0.0) is cond
    # uncond == cond: any scale is plain sampling
    a = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, seed=9, guidance_scale=4.0)
    b = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, seed=9)
    while not a.done:
        logits = prior(a.tokens[None])
        maskgit_step([a], logits, logits)
    run_maskgit([b])
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_per_state_optional_uncond_rows():
    a = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, seed=1, guidance_scale=1.5)
    b = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, seed=2)
    logits = prior(np.stack([a.tokens, b.tokens]))
    maskgit_step([a, b], logits, [uncond_prior(a.tokens[None])[0], None])
    assert a.step == b.step == 1


def make_mixed_states():
    rng = np.random.default_rng(42)
    specs = [  # steps, fixed fraction, temperature, guidance, top_k, steps taken alone first
        (12, 0.0, 1.0, 0.0, None, 0),
        (4, 0.5, 0.7, 2.0, None, 1),
        (8, 0.25, 1.3, 0.0, 5, 3),
        (12, 0.9, 1.0, 1.0, 3, 5),
        (3, 0.0, 0.0, 0.0, None, 0),
    ]
    states = []
    for i, (steps, frac, temp, g, k, _) in enumerate(specs):
        fixed = rng.random(N) < frac
        init = rng.integers(0, VOCAB, N)
        states.append(maskgit_init(init, fixed, mask_id=MASK, steps=steps, temperature=temp,
                                   guidance_scale=g, top_k=k, seed=100 + i))
    return states, [spec[-1] for spec in specs]


def test_a_mixed_batch_equals_each_request_alone():
    alone, warmups = make_mixed_states()
    for s in alone:
        run_maskgit([s], guided=True)
    batched, _ = make_mixed_states()
    for s, w in zip(batched, warmups):  # bring states to different step numbers first
        for _ in range(w):
            run_one = s.tokens[None]
            maskgit_step([s], prior(run_one), uncond_prior(run_one))
    assert len({s.step for s in batched}) > 1 and len({s.steps for s in batched}) > 1
    run_maskgit(batched, guided=True)
    for a, b in zip(alone, batched):
        np.testing.assert_array_equal(a.tokens, b.tokens)


def test_temperature_zero_and_near_zero_pick_the_argmax():
    tokens = np.full(N, MASK)
    want = prior(tokens[None])[0, :, :VOCAB].argmax(-1)
    for t in (0.0, 1e-6):
        s = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, steps=1, temperature=t, seed=3)
        maskgit_step([s], prior(s.tokens[None]))
        np.testing.assert_array_equal(s.tokens, want)


def test_top_k_restricts_the_draw():
    logits = prior(np.full((1, N), MASK))[0, :, :VOCAB]
    allowed = np.argsort(-logits, axis=-1)[:, :2]
    for seed in range(20):
        s = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, steps=1, temperature=5.0,
                         top_k=2, seed=seed)
        maskgit_step([s], prior(s.tokens[None]))
        assert all(s.tokens[i] in allowed[i] for i in range(N))
    s = maskgit_init(np.zeros(N), np.zeros(N, dtype=bool), mask_id=MASK, steps=1, temperature=5.0, top_k=1, seed=0)
    maskgit_step([s], prior(s.tokens[None]))
    np.testing.assert_array_equal(s.tokens, logits.argmax(-1))


def test_confidence_is_the_untempered_log_probability_of_the_drawn_token():
    logits = np.random.default_rng(0).normal(size=(64, VOCAB)).astype(np.float32) * 3
    for temperature, top_k in [(1.0, None), (0.5, 4), (0.0, None), (2.0, None)]:
        ids, logp = sample_with_log_prob(logits, temperature, top_k, np.random.default_rng(1))
        np.testing.assert_allclose(logp, log_softmax(logits)[np.arange(64), ids], rtol=1e-12)


# --- autoregressive -------------------------------------------------------------------------

NUM_CLASSES = 3
ar_net = FakePrior(seed=4, in_vocab=VOCAB + NUM_CLASSES + 1)


def run_ar(states, fed_log=None):
    """Drives states to the end like a scheduler with a KV cache would: each call feeds
    ar_next_positions ids from state.position. The fake network re-reads the whole fed prefix
    (its "cache") and returns the output at the last fed position."""
    fed = fed_log if fed_log is not None else {id(s): [] for s in states}
    while True:
        live = [s for s in states if not s.done]
        if not live:
            return fed
        last = []
        for s in live:
            count = ar_next_positions(s)
            assert count >= 1
            fed[id(s)].extend(ar_input_ids(s, s.position, count))
            seq = np.array(fed[id(s)])[None]
            last.append(ar_net(seq)[0, -1])
        ar_step(live, np.stack(last))


def test_ar_prefill_feeds_class_and_leading_fixed_then_one_at_a_time():
    fixed = np.zeros(N, dtype=bool)
    fixed[:10] = True
    init = np.arange(N) % VOCAB
    s = ar_init(init, fixed, vocab_size=VOCAB, num_classes=NUM_CLASSES, class_id=2, seed=0)
    assert ar_next_positions(s) == 11
    np.testing.assert_array_equal(ar_input_ids(s, 0, 11), [VOCAB + 2, *init[:10]])
    ar_step([s], ar_net(ar_input_ids(s, 0, 11)[None])[:, -1])
    assert s.position == 11 and 0 <= s.tokens[10] < VOCAB
    assert ar_next_positions(s) == 1
    np.testing.assert_array_equal(ar_input_ids(s, 11, 1), [s.tokens[10]])


def test_ar_fixed_tokens_are_forced_and_feeding_follows_the_sequence_convention():
    fixed = np.zeros(N, dtype=bool)
    fixed[:4] = fixed[20:26] = fixed[-5:] = True  # leading, interior and trailing runs
    init = (np.arange(N) * 7) % VOCAB
    s = ar_init(init, fixed, vocab_size=VOCAB, num_classes=NUM_CLASSES, seed=1)
    assert s.class_token == VOCAB + NUM_CLASSES  # the null class
    fed = run_ar([s])[id(s)]
    np.testing.assert_array_equal(s.tokens[fixed], init[fixed])
    assert np.all((s.tokens >= 0) & (s.tokens < VOCAB)) and UNKNOWN not in s.tokens
    # Everything fed is [c, t_0, ..., t_{k-1}] up to the last free position; trailing fixed
    # tokens needed no call.
    last_free = np.flatnonzero(~fixed)[-1]
    np.testing.assert_array_equal(fed, [s.class_token, *s.tokens[:last_free]])
    np.testing.assert_array_equal(ar_input_ids(s, 0, N), [s.class_token, *s.tokens[:-1]])


def test_ar_interior_fixed_run_rides_with_one_call():
    fixed = np.zeros(8, dtype=bool)
    fixed[3:6] = True
    s = ar_init(np.zeros(8), fixed, vocab_size=VOCAB, num_classes=NUM_CLASSES, seed=0)
    counts = []
    while not s.done:
        counts.append(ar_next_positions(s))
        ar_step([s], np.zeros((1, VOCAB)))
    assert counts == [1, 1, 1, 4, 1]  # t0, t1, t2, then x3..x6 -> t6, then x7 -> t7
    assert ar_next_positions(s) == 0


def test_ar_determinism_and_batch_independence():
    def states():
        rng = np.random.default_rng(0)
        out = []
        for i, (frac, temp, k) in enumerate([(0.0, 1.0, None), (0.3, 0.8, 4), (0.6, 0.0, None)]):
            out.append(ar_init(rng.integers(0, VOCAB, N), rng.random(N) < frac, vocab_size=VOCAB,
                               num_classes=NUM_CLASSES, class_id=i % NUM_CLASSES, temperature=temp,
                               top_k=k, seed=i))
        return out
    alone = states()
    for s in alone:
        run_ar([s])
    together = states()
    run_ar(together)
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a.tokens, b.tokens)


def test_ar_all_fixed_needs_no_call_and_bad_inputs_are_refused():
    s = ar_init(np.ones(N), np.ones(N, dtype=bool), vocab_size=VOCAB, num_classes=NUM_CLASSES, seed=0)
    assert s.done and ar_next_positions(s) == 0
    with pytest.raises(ValueError):
        ar_step([s], np.zeros((1, VOCAB)))
    free = ar_init(np.zeros(N), np.zeros(N, dtype=bool), vocab_size=VOCAB, num_classes=NUM_CLASSES, seed=0)
    with pytest.raises(ValueError, match="not decided"):
        ar_input_ids(free, 0, 3)
    with pytest.raises(ValueError):
        ar_init(np.zeros(N), np.zeros(N, dtype=bool), vocab_size=VOCAB, num_classes=NUM_CLASSES, class_id=3, seed=0)


def test_ar_guidance_feeds_the_null_class_and_samples_from_guided_logits():
    s = ar_init(np.zeros(4), np.zeros(4, dtype=bool), vocab_size=VOCAB, num_classes=NUM_CLASSES, class_id=1,
                temperature=0.0, guidance_scale=2.0, seed=0)
    assert s.needs_uncond
    np.testing.assert_array_equal(ar_input_ids(s, 0, 1), [VOCAB + 1])
    np.testing.assert_array_equal(ar_input_ids(s, 0, 1, unconditional=True), [VOCAB + NUM_CLASSES])
    # The class raises token 1 a little over the null class, which prefers token 1 even more:
    # conditionally token 1 wins, guided (2 + 2 * (2 - 3) = 0 < 1) token 2 wins.
    cond, uncond = np.zeros(VOCAB), np.zeros(VOCAB)
    cond[1], cond[2], uncond[1], uncond[2] = 2.0, 1.0, 3.0, 1.0
    ar_step([s], cond[None], [uncond])
    assert s.tokens[0] == 2
    # Later calls feed the sampled tokens, the same in both rows.
    np.testing.assert_array_equal(ar_input_ids(s, 1, 1), ar_input_ids(s, 1, 1, unconditional=True))
    with pytest.raises(ValueError, match="unconditional logits"):
        ar_step([s], cond[None])


def test_ar_without_guidance_ignores_uncond_rows_bit_for_bit():
    def run(uncond):
        s = ar_init(np.zeros(N), np.zeros(N, dtype=bool), vocab_size=VOCAB, num_classes=NUM_CLASSES, class_id=0,
                    seed=5)
        assert not s.needs_uncond
        rng = np.random.default_rng(1)
        while not s.done:
            logits, other = rng.normal(size=(1, VOCAB)), rng.normal(size=VOCAB)
            ar_step([s], logits, [other] if uncond else None)
        return s.tokens
    np.testing.assert_array_equal(run(False), run(True))
