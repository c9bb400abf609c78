"""server/batching.py. BatchPolicy on its own, with no event loop: groups never mix, the oldest
group goes first, the row cap holds, nobody starves, FIFO within a group, settling stops when it
should. BatchQueue and FeedsQueue: concurrent submissions share network calls, every caller gets
exactly its result (its rows), groups and shapes stay apart, errors and cancellations stay
contained."""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from server.batching import BatchPolicy, BatchQueue, BatchSizeMismatch, FeedsQueue


# --- BatchPolicy: the decisions alone, no event loop ---------------------------------------------

def batches(policy: BatchPolicy) -> list[list]:
    """Every batch the policy hands out until nothing waits, as lists of items."""
    out = []
    while batch := policy.next_batch():
        out.append([w.item for w in batch])
    return out


def test_policy_groups_never_mix_and_the_oldest_group_goes_first():
    policy = BatchPolicy(max_batch_size=16, max_wait_ms=2)
    for item, group in [("b1", "B"), ("a1", "A"), ("b2", "B"), ("c1", "C"), ("a2", "A"), ("b3", "B")]:
        policy.add(item, group=group)
    assert batches(policy) == [["b1", "b2", "b3"], ["a1", "a2"], ["c1"]]


def test_policy_is_fifo_within_a_group_and_caps_rows():
    policy = BatchPolicy(max_batch_size=4, max_wait_ms=2)
    for i in range(10):
        policy.add(i)
    assert batches(policy) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_policy_an_item_that_does_not_fit_waits_and_goes_first_next():
    policy = BatchPolicy(max_batch_size=4, max_wait_ms=2)
    for item, rows in [("x", 3), ("y", 2), ("z", 1), ("w", 2)]:
        policy.add(item, rows=rows)
    # y would make 5 rows: it waits, z fills the batch; next time y is the oldest
    assert batches(policy) == [["x", "z"], ["y", "w"]]


def test_policy_an_item_larger_than_the_cap_runs_alone():
    policy = BatchPolicy(max_batch_size=4, max_wait_ms=2)
    policy.add("small", rows=1)
    policy.add("big", rows=9)
    policy.add("tiny", rows=1)
    assert batches(policy) == [["small", "tiny"], ["big"]]
    policy.add("big", rows=9)
    policy.add("small", rows=1)
    assert batches(policy) == [["big"], ["small"]]


def test_policy_a_group_that_keeps_arriving_does_not_starve_an_older_one():
    """B resubmits two items after every batch (a busy group); A's one item still runs next."""
    policy = BatchPolicy(max_batch_size=2, max_wait_ms=2)
    policy.add("b0", group="B")
    policy.add("b1", group="B")
    policy.add("a0", group="A")
    ran = []
    for step in range(4):
        ran.append([w.item for w in policy.next_batch()])
        policy.add(f"b{2 * step + 2}", group="B")
        policy.add(f"b{2 * step + 3}", group="B")
    assert ran == [["b0", "b1"], ["a0"], ["b2", "b3"], ["b4", "b5"]]


def test_policy_forgets_abandoned_items():
    gone = {"b"}
    policy = BatchPolicy(max_batch_size=16, max_wait_ms=2, abandoned=lambda item: item in gone)
    for item in "abc":
        policy.add(item, rows=2)
    assert policy.pending_rows == 4
    gone.add("a")  # abandoned after it arrived: its group no longer leads
    policy.add("d", group="D")
    assert batches(policy) == [["c"], ["d"]]


def test_policy_settles_while_items_arrive_until_full_or_out_of_time():
    policy = BatchPolicy(max_batch_size=3, max_wait_ms=5)
    policy.add("a")
    policy.start_settling(now=10.0)
    assert not policy.keep_settling(now=10.0)  # nothing came during the turn: run now
    policy.start_settling(now=10.0)
    policy.add("b")
    assert policy.keep_settling(now=10.001)  # something came: one more turn
    policy.add("c", group="other")
    assert policy.keep_settling(now=10.002)  # still arriving, the oldest group has 2 of 3 rows
    policy.add("d")
    assert not policy.keep_settling(now=10.003)  # the oldest group is full
    policy = BatchPolicy(max_batch_size=3, max_wait_ms=5)
    policy.add("a")
    policy.start_settling(now=10.0)
    policy.add("b")
    assert not policy.keep_settling(now=10.006)  # max_wait_ms passed


def test_policy_refuses_bad_limits():
    with pytest.raises(ValueError):
        BatchPolicy(max_batch_size=0, max_wait_ms=2)
    with pytest.raises(ValueError):
        BatchPolicy(max_batch_size=4, max_wait_ms=-1)
    with pytest.raises(ValueError):
        BatchPolicy(max_batch_size=4, max_wait_ms=2).add("x", rows=0)


# --- the queues -----------------------------------------------------------------------------------


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown(wait=True)


class Net:
    """A fake network: y = 2x + 1 per row, recording batch sizes and concurrent calls."""

    def __init__(self, gate: threading.Event | None = None, fail_if=None):
        self.keys: list[set] = []
        self.gate = gate
        self.fail_if = fail_if
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def __call__(self, feeds):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                assert self.gate.wait(5)
            time.sleep(0.002)
            x = feeds["x"]
            if "k" in feeds:
                self.keys.append(set(feeds["k"].tolist()))
            if self.fail_if is not None and self.fail_if(x):
                raise RuntimeError("engine exploded")
            return {"y": 2 * x + 1, "rowsum": x.reshape(len(x), -1).sum(axis=1)}
        finally:
            with self.lock:
                self.active -= 1


def make_queue(net, executor, max_batch_size=16, max_wait_ms=2.0):
    seen: list[int] = []
    q = FeedsQueue(net, name="prior", max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                   executor=executor, on_batch=lambda name, rows: seen.append(rows))
    return q, seen


async def test_concurrent_submissions_share_one_call_and_get_their_own_rows(executor):
    net = Net()
    q, seen = make_queue(net, executor)
    xs = [np.full((1, 3), i, dtype=np.float32) for i in range(8)]
    outs = await asyncio.gather(*(q.submit({"x": x}) for x in xs))
    assert seen == [8]
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out["y"], 2 * x + 1)
        assert out["rowsum"].shape == (1,)


async def test_multi_row_submissions_are_split_back(executor):
    q, seen = make_queue(Net(), executor)
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    b = np.arange(100, 104, dtype=np.float32).reshape(2, 2)
    out_a, out_b = await asyncio.gather(q.submit({"x": a}), q.submit({"x": b}))
    assert seen == [5]
    np.testing.assert_array_equal(out_a["y"], 2 * a + 1)
    np.testing.assert_array_equal(out_b["y"], 2 * b + 1)


async def test_max_batch_size_is_respected(executor):
    net = Net()
    q, seen = make_queue(net, executor, max_batch_size=4)
    xs = [np.full((1, 2), i, dtype=np.float32) for i in range(10)]
    outs = await asyncio.gather(*(q.submit({"x": x}) for x in xs))
    assert seen == [4, 4, 2]
    assert net.max_active == 1  # one network call at a time, even with 4 executor threads
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out["y"], 2 * x + 1)


async def test_batching_off(executor):
    q, seen = make_queue(Net(), executor, max_batch_size=1)
    xs = [np.full((1, 2), i, dtype=np.float32) for i in range(5)]
    outs = await asyncio.gather(*(q.submit({"x": x}) for x in xs))
    assert seen == [1] * 5
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out["y"], 2 * x + 1)


async def test_group_keys_and_shapes_never_share_a_call(executor):
    net = Net()
    q, seen = make_queue(net, executor)
    subs = []
    for i in range(6):
        key = "past=3" if i % 2 else "past=7"
        subs.append(q.submit({"x": np.full((1, 2), i, np.float32), "k": np.array([hash(key) % 1000])}, key))
    # same key, different trailing shape: split automatically
    subs.append(q.submit({"x": np.zeros((1, 5), np.float32), "k": np.array([hash("past=3") % 1000])}, "past=3"))
    outs = await asyncio.gather(*subs)
    assert sorted(seen) == [1, 3, 3]
    assert all(len(keys) == 1 for keys in net.keys)
    assert outs[-1]["y"].shape == (1, 5)
    for i, out in enumerate(outs[:6]):
        np.testing.assert_array_equal(out["y"], np.full((1, 2), 2 * i + 1))


async def test_errors_reach_every_caller_of_the_batch_and_the_queue_recovers(executor):
    net = Net(fail_if=lambda x: bool((x < 0).any()))
    q, seen = make_queue(net, executor)
    results = await asyncio.gather(q.submit({"x": np.ones((1, 2))}), q.submit({"x": -np.ones((1, 2))}),
                                   return_exceptions=True)
    assert seen == [2]
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)
    out = await q.submit({"x": np.ones((1, 2))})
    np.testing.assert_array_equal(out["y"], np.full((1, 2), 3.0))


async def test_an_output_with_the_wrong_batch_size_is_refused(executor):
    q = FeedsQueue(lambda feeds: {"y": np.zeros((1, 2))}, name="bad", max_batch_size=8,
                   max_wait_ms=2, executor=executor)
    results = await asyncio.gather(q.submit({"x": np.ones((1, 2))}), q.submit({"x": np.ones((1, 2))}),
                                   return_exceptions=True)
    assert all(isinstance(r, BatchSizeMismatch) for r in results)


async def test_submissions_during_a_call_form_the_next_batch(executor):
    gate = threading.Event()
    q, seen = make_queue(Net(gate=gate), executor, max_wait_ms=1000)
    first = asyncio.ensure_future(q.submit({"x": np.zeros((1, 2))}))
    await asyncio.sleep(0.05)  # the first call is in the engine, blocked on the gate
    rest = [asyncio.ensure_future(q.submit({"x": np.full((1, 2), i)})) for i in range(1, 6)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *rest)
    assert seen == [1, 5]


async def test_a_lone_request_does_not_wait_for_max_wait_ms(executor):
    q, seen = make_queue(Net(), executor, max_wait_ms=2000)
    start = time.monotonic()
    await q.submit({"x": np.zeros((1, 2))})
    assert time.monotonic() - start < 0.5 and seen == [1]


async def test_cancelling_one_caller_leaves_the_others_alone(executor):
    gate = threading.Event()
    q, seen = make_queue(Net(gate=gate), executor)
    # a: in the engine; b, c: waiting. Cancel a mid-call and b before its batch.
    a = asyncio.ensure_future(q.submit({"x": np.zeros((1, 2))}))
    await asyncio.sleep(0.05)
    b = asyncio.ensure_future(q.submit({"x": np.ones((1, 2))}))
    c = asyncio.ensure_future(q.submit({"x": np.full((1, 2), 2.0)}))
    await asyncio.sleep(0)
    a.cancel()
    b.cancel()
    gate.set()
    out_c = await c
    np.testing.assert_array_equal(out_c["y"], np.full((1, 2), 5.0))
    assert a.cancelled() and b.cancelled()
    assert seen == [1, 1]  # b never reached the engine
    out = await q.submit({"x": np.zeros((1, 2))})
    np.testing.assert_array_equal(out["y"], np.ones((1, 2)))


async def test_step_level_loops_stay_batched_together(executor):
    """Eight decoding loops that resubmit their next step at once ride in the same calls."""
    q, seen = make_queue(Net(), executor)

    async def decode(i: int, steps: int):
        x = np.full((1, 2), i, dtype=np.float32)
        for _ in range(steps):
            x = (await q.submit({"x": x}))["y"] * 0 + x + 1  # some "sampling" on the result
        return x

    outs = await asyncio.gather(*(decode(i, 5) for i in range(8)))
    assert seen == [8] * 5
    for i, x in enumerate(outs):
        np.testing.assert_array_equal(x, np.full((1, 2), i + 5))


async def test_invalid_feeds_are_refused(executor):
    q, _ = make_queue(Net(), executor)
    with pytest.raises(ValueError):
        await q.submit({"x": np.zeros((1, 2)), "z": np.zeros((2, 2))})
    with pytest.raises(ValueError):
        await q.submit({})


class Job:
    """A decoding state: the generic queue hands it to run_batch and back as itself."""

    def __init__(self, group: str):
        self.group = group
        self.steps = 0


async def test_generic_items_travel_as_themselves(executor):
    calls: list[list[str]] = []

    def step(jobs: list[Job]) -> list[Job]:
        calls.append([j.group for j in jobs])
        for job in jobs:
            job.steps += 1
        return jobs

    seen: list[int] = []
    q = BatchQueue(step, name="prior", max_batch_size=16, max_wait_ms=2, executor=executor,
                   on_batch=lambda name, rows: seen.append(rows))
    jobs = [Job("even" if i % 2 == 0 else "odd") for i in range(6)]
    outs = await asyncio.gather(*(q.submit(j, group_key=j.group) for j in jobs))
    assert all(out is job and job.steps == 1 for out, job in zip(outs, jobs))
    assert sorted(seen) == [3, 3] and all(len(set(c)) == 1 for c in calls)


async def test_generic_rows_count_against_the_cap(executor):
    seen: list[int] = []
    q = BatchQueue(lambda items: items, name="prior", max_batch_size=4, max_wait_ms=2, executor=executor,
                   on_batch=lambda name, rows: seen.append(rows))
    assert await asyncio.gather(q.submit("a", rows=3), q.submit("b", rows=3), q.submit("c")) == ["a", "b", "c"]
    assert seen == [4, 3]  # a + c fill the first call, b runs next


async def test_generic_results_must_be_one_per_item(executor):
    short = BatchQueue(lambda items: items[:1], name="short", max_batch_size=8, max_wait_ms=2, executor=executor)
    results = await asyncio.gather(short.submit(1), short.submit(2), return_exceptions=True)
    assert all(isinstance(r, BatchSizeMismatch) for r in results)
    lone = BatchQueue(lambda items: None, name="none", max_batch_size=8, max_wait_ms=2, executor=executor)
    with pytest.raises(TypeError):
        await lone.submit(1)
