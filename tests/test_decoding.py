"""server/decoding.py: the batched steppers, against fake networks that record what they are
fed. A guided request adds one null-class row (with its own KV cache for the autoregressive
prior), a request with no class to guide towards adds none, and every request gets the same
tokens alone as in any batch. Gathering changes no state; only the update step does."""
from __future__ import annotations

import numpy as np
import pytest

from server.decoding import ARJob, ARStepper, MaskGITJob, MaskGITStepper
from server.samplers import ar_init, maskgit_init

V, CLASSES, N = 12, 3, 10
NULL_CLASS = CLASSES
L, H, D = 1, 1, 1


def logits_of(seq: np.ndarray) -> np.ndarray:
    """Deterministic logits [V] from a sequence of ids (any length)."""
    rng = np.random.default_rng([int(x) for x in seq] + [len(seq)])
    return rng.normal(size=V).astype(np.float32) * 3


class FakeMaskedPrior:
    def __init__(self):
        self.rows: list[int] = []

    def run(self, feeds):
        self.rows.append(len(feeds["tokens"]))
        out = [np.stack([logits_of(np.append(t, [c, i])) for i, _ in enumerate(t)])
               for t, c in zip(feeds["tokens"], feeds["class_id"])]
        return {"logits": np.stack(out)}


class FakeARPrior:
    """The KV cache holds the fed ids themselves, so logits depend on the whole sequence."""

    def __init__(self):
        self.rows: list[int] = []
        self.first_ids: list[int] = []

    def run(self, feeds):
        ids = feeds["ids"]
        self.rows.append(len(ids))
        new = ids.astype(np.float32)[None, :, None, :, None]  # (L, B, H, n, D)
        key = np.concatenate([feeds["past_key"], new], axis=3)
        if feeds["past_key"].shape[3] == 0:
            self.first_ids += [int(x) for x in ids[:, 0]]
        logits = np.stack([np.stack([logits_of(key[0, b, 0, :p + 1, 0]) for p in range(key.shape[3] - ids.shape[1],
                                                                                        key.shape[3])])
                           for b in range(len(ids))])
        return {"logits": logits, "present_key": key, "present_value": key}


def maskgit_job(class_id: int | None, g: float, seed: int) -> MaskGITJob:
    state = maskgit_init(np.full(N, V), np.zeros(N, bool), mask_id=V, steps=3, guidance_scale=g, seed=seed)
    return MaskGITJob(state, np.full(N, V), np.zeros(N, np.int64), NULL_CLASS if class_id is None else class_id,
                      NULL_CLASS)


def ar_job(class_id: int | None, g: float, seed: int) -> ARJob:
    fixed = np.zeros(N, bool)
    fixed[4:6] = True
    state = ar_init(np.arange(N) % V, fixed, vocab_size=V, num_classes=CLASSES, class_id=class_id,
                    guidance_scale=g, seed=seed)
    return ARJob(state, np.full(N, V), np.zeros(N, np.int64), shape=(L, H, D))


def run_maskgit(jobs):
    net = FakeMaskedPrior()
    stepper = MaskGITStepper(net)
    while not all(j.state.done for j in jobs):
        live = [j for j in jobs if not j.state.done]
        assert stepper(live) == live  # each job comes back as itself
    return net


def run_ar(jobs):
    net = FakeARPrior()
    stepper = ARStepper(net)
    while not all(j.state.done for j in jobs):
        live = [j for j in jobs if not j.state.done]
        for group in {j.group() for j in live}:
            stepper([j for j in live if j.group() == group])
    return net


SPECS = [(1, 3.0), (None, 3.0), (2, 0.0)]  # (class, guidance_scale) per request
SAMPLERS = {"maskgit": (maskgit_job, run_maskgit), "autoregressive": (ar_job, run_ar)}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_guidance_adds_a_row_only_with_a_class_and_batching_changes_nothing(sampler):
    make, run = SAMPLERS[sampler]
    alone = []
    for i, (c, g) in enumerate(SPECS):
        job = make(c, g, i)
        net = run([job])
        assert set(net.rows) == {2 if (c is not None and g) else 1}  # no second row without a class
        alone.append(job.state.tokens.copy())
    together = [make(c, g, i) for i, (c, g) in enumerate(SPECS)]
    assert run(together).rows[0] == 4  # three requests + one null-class row
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b.state.tokens)
    plain = make(None, 0.0, 1)  # guidance with no class changes nothing
    run([plain])
    np.testing.assert_array_equal(plain.state.tokens, alone[1])
    unguided = make(1, 0.0, 0)  # and with a class it steers
    run([unguided])
    assert not np.array_equal(unguided.state.tokens, alone[0])


def test_autoregressive_guidance_keeps_a_null_class_cache():
    for c, g in SPECS:
        job = ar_job(c, g, 0)
        net = run_ar([job])
        guided = c is not None and g != 0
        # The null-class row's cache starts with the null class, the request's with its class.
        assert net.first_ids == [V + (c if c is not None else NULL_CLASS)] + ([V + NULL_CLASS] if guided else [])
        assert (job.uncond_key is not None) == guided
        if guided:
            assert job.uncond_key[0, 0, 0, 0, 0] == V + NULL_CLASS and job.key[0, 0, 0, 0, 0] == V + c
        np.testing.assert_array_equal(job.state.tokens[4:6], [4, 5])  # teacher-forced tokens stay


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_gather_then_forward_then_update(sampler):
    """The three parts of a step: gather stacks one row per job plus a null-class row per guided
    job and changes nothing; the network is called once; update advances every job."""
    make, _ = SAMPLERS[sampler]
    stepper_class, net = (MaskGITStepper, FakeMaskedPrior()) if sampler == "maskgit" else (ARStepper, FakeARPrior())
    stepper = stepper_class(net)
    jobs = [make(c, g, i) for i, (c, g) in enumerate(SPECS)]
    before = [j.state.tokens.copy() for j in jobs]
    batch = stepper.gather(jobs)
    rows = batch.feeds["tokens" if sampler == "maskgit" else "ids"]
    assert len(rows) == 4 and net.rows == []  # three jobs + one null-class row, nothing run yet
    for job, tokens in zip(jobs, before):
        np.testing.assert_array_equal(job.state.tokens, tokens)
    out = stepper.forward(batch)
    assert net.rows == [4]
    stepper.update(batch, out)
    assert net.rows == [4]  # update calls nothing
    assert all(not np.array_equal(j.state.tokens, t) for j, t in zip(jobs, before))
