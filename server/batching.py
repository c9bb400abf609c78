"""Step-level (continuous) batching: many requests' network calls share one engine call.

Three layers, each testable alone:

- `BatchPolicy` decides, with no asyncio: which waiting items form the next batch, and whether
  a ready batch waits one more event-loop turn for submissions still arriving.
- `BatchQueue[Item, Result]` runs the policy: each caller awaits `submit(item)`, the worker hands
  the next batch to `run_batch(list[Item]) -> list[Result]` in an executor (so the event loop
  stays free) and gives every caller its own result, after checking that there is exactly one
  per item (LitServe's batch -> predict -> unbatch). Decoding states travel as themselves.
- `FeedsQueue` is the BatchQueue of a plain engine: items are dicts of numpy arrays, batched by
  concatenating along axis 0 and unbatched by splitting every output back into each caller's rows.

Requests join and leave between steps, at any step number, which is what makes the batching
continuous.

When does a batch run? As soon as the engine is free: there is one network call at a time per
queue, and submissions that arrive while it runs are all in the next batch. The queue never sits
out a timer for requests that may or may not come. It only lets the event loop settle: it keeps
yielding while new submissions keep arriving, loop turn after loop turn, so that the callers of
the batch that just finished (which resubmit their next step right away) ride together instead
of the first one running alone. `max_wait_ms` bounds that extra waiting for a fuller batch; a
full batch (`max_batch_size` rows) stops it.

Which items? The oldest waiting item's group, in arrival order, up to `max_batch_size` rows.
Groups never share a call: `group_key` separates what must not (for example the past length of
an autoregressive KV cache), and a FeedsQueue also separates feeds whose names, non-batch shapes
or dtypes differ, since those cannot be concatenated. Taking the oldest item's group first means
no group starves, however fast another keeps arriving.

Why not a library: the serving libraries that batch (LitServe, Ray Serve, Triton) batch whole
requests behind their own servers, and vLLM's scheduler is bound to its token model and KV-cache
blocks; we need one engine call shared by in-flight decoding loops inside our process, with a
plain policy in the shape of vLLM's (add the waiting, ask for the next batch, test it without
running anything), which is this small, tested module.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Sequence, TypeVar

import numpy as np

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
Feeds = dict[str, np.ndarray]


class BatchSizeMismatch(RuntimeError):
    """run_batch returned a number of results (or, for feeds, output rows) other than the batch's."""


# --- the policy: which waiting items run next (plain Python, no event loop) ---------------------

@dataclass(eq=False)
class Waiting(Generic[Item]):
    """One submission as the policy sees it."""
    item: Item
    rows: int  # what it counts against max_batch_size
    group: Hashable  # only items of one group share a batch


class BatchPolicy(Generic[Item]):
    """The batching decisions of one queue.

    `add` items as they arrive (their order is their age); `next_batch` takes the oldest
    item's group, in arrival order, up to `max_batch_size` rows: an item that would overflow
    the batch waits for the next one, where it is the oldest of its group; the first item always
    goes, so one larger than the cap runs alone (a request is never split). `abandoned(item)`
    says which items nobody waits for any more (their callers were cancelled): they are
    forgotten before every decision.

    Settling: `start_settling(now)` when a batch could run; after each event-loop turn
    `keep_settling(now)` says whether to give the loop one more (something arrived during the
    last one, the oldest group is not full, `max_wait_ms` has not passed)."""

    def __init__(self, max_batch_size: int, max_wait_ms: float,
                 abandoned: Callable[[Item], bool] = lambda item: False):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1; got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0; got {max_wait_ms}")
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.abandoned = abandoned
        self.waiting: list[Waiting[Item]] = []  # arrival order
        self.arrivals = 0  # items ever added: tells settling that more came
        self._seen = 0  # arrivals when the last event-loop turn began
        self._deadline = 0.0

    def add(self, item: Item, rows: int = 1, group: Hashable = None) -> Waiting[Item]:
        if rows < 1:
            raise ValueError(f"an item needs rows >= 1; got {rows}")
        entry = Waiting(item, rows, group)
        self.waiting.append(entry)
        self.arrivals += 1
        return entry

    def live(self) -> list[Waiting[Item]]:
        """The waiting items someone still waits for, oldest first (the others are dropped)."""
        self.waiting = [w for w in self.waiting if not self.abandoned(w.item)]
        return self.waiting

    @property
    def pending_rows(self) -> int:
        return sum(w.rows for w in self.live())

    def oldest_group_full(self) -> bool:
        """Whether the next batch would be full already (true when nothing waits: no reason to wait)."""
        live = self.live()
        if not live:
            return True
        group = live[0].group
        return sum(w.rows for w in live if w.group == group) >= self.max_batch_size

    def next_batch(self) -> list[Waiting[Item]]:
        """Removes and returns the next batch: the oldest live item's group, in arrival order,
        up to max_batch_size rows. Empty when nothing waits."""
        live = self.live()
        if not live:
            return []
        group, batch, rows = live[0].group, [], 0
        for entry in live:
            if entry.group == group and (not batch or rows + entry.rows <= self.max_batch_size):
                batch.append(entry)
                rows += entry.rows
                if rows >= self.max_batch_size:
                    break
        taken = set(map(id, batch))
        self.waiting = [w for w in live if id(w) not in taken]
        return batch

    def start_settling(self, now: float) -> None:
        self._deadline = now + self.max_wait_ms / 1000.0
        self._seen = self.arrivals

    def keep_settling(self, now: float) -> bool:
        """Called after each event-loop turn since start_settling: whether to yield once more."""
        arrived, self._seen = self.arrivals != self._seen, self.arrivals
        return arrived and not self.oldest_group_full() and now < self._deadline


# --- the queue: the policy on an event loop, run_batch in an executor ---------------------------

@dataclass(eq=False)
class _Submission(Generic[Item]):
    item: Item
    future: asyncio.Future


class BatchQueue(Generic[Item, Result]):
    """Batches concurrent `submit` calls into `run_batch` calls, one at a time.

    run_batch: list of items -> one result per item, in order. It runs in `executor` (None: the
        event loop's default executor).
    name: shown in logs and passed to `on_batch(name, rows)`, called once per batch (a metric).
    max_batch_size: most rows per call; 1 turns batching off.
    max_wait_ms: the longest a ready batch keeps collecting submissions that are still arriving.
    """

    def __init__(self, run_batch: Callable[[list[Item]], Sequence[Result]], *, name: str,
                 max_batch_size: int, max_wait_ms: float, executor: Executor | None = None,
                 on_batch: Callable[[str, int], None] | None = None):
        self.policy: BatchPolicy[_Submission[Item]] = BatchPolicy(
            max_batch_size, max_wait_ms, abandoned=lambda sub: sub.future.done())
        self.run_batch = run_batch
        self.name = name
        self.executor = executor
        self.on_batch = on_batch
        self._worker: asyncio.Task | None = None
        self._running: list[_Submission[Item]] = []  # the batch in the engine now

    @property
    def max_batch_size(self) -> int:
        return self.policy.max_batch_size

    @property
    def max_wait_ms(self) -> float:
        return self.policy.max_wait_ms

    @property
    def pending_rows(self) -> int:
        """Rows waiting for a batch (not counting the one running): a queue-depth metric."""
        return self.policy.pending_rows

    async def submit(self, item: Item, group_key: Hashable = None, *, rows: int = 1) -> Result:
        """Runs `item` in some batch with items of the same `group_key` and returns its result.
        Raises whatever run_batch raised for the batch, or BatchSizeMismatch. Cancelling this
        await leaves others alone."""
        loop = asyncio.get_running_loop()
        sub = _Submission(item, loop.create_future())
        self.policy.add(sub, rows, group_key)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name=f"batch-queue-{self.name}")
        # Awaiting the future directly: cancelling the caller cancels only its own future,
        # which the policy then forgets (or, mid-call, the worker simply does not fill).
        return await sub.future

    # --- the worker: one task per queue while there is work, so one call at a time ----------

    async def _work(self) -> None:
        try:
            while self.policy.live():  # when nothing waits, the next submit starts a new worker
                await self._settle()
                batch = self.policy.next_batch()
                if batch:
                    await self._execute(batch)
        except BaseException as exc:  # the worker itself was cancelled (loop shutting down)
            for sub in self._running + [w.item for w in self.policy.waiting]:
                if not sub.future.done():
                    sub.future.set_exception(RuntimeError(f"batch queue {self.name} stopped: {exc!r}"))
            raise

    async def _settle(self) -> None:
        self.policy.start_settling(time.monotonic())
        while True:
            await asyncio.sleep(0)
            if not self.policy.keep_settling(time.monotonic()):
                return

    async def _execute(self, batch: list[Waiting[_Submission[Item]]]) -> None:
        rows = sum(w.rows for w in batch)
        if self.on_batch is not None:
            try:
                self.on_batch(self.name, rows)
            except Exception:  # a broken metric must not fail requests
                log.exception("on_batch callback of batch queue %s failed", self.name)
        subs = [w.item for w in batch]
        loop = asyncio.get_running_loop()
        self._running = subs
        try:
            results = await loop.run_in_executor(self.executor, self.run_batch, [s.item for s in subs])
            results = self._one_per_item(results, len(subs))
        except Exception as exc:
            # Every caller of this batch gets the error; the queue itself carries on.
            log.warning("batch of %d rows on %s failed: %r", rows, self.name, exc)
            for sub in subs:
                if not sub.future.done():
                    sub.future.set_exception(exc)
            return
        finally:
            self._running = []
        for sub, result in zip(subs, results):
            if not sub.future.done():  # a cancelled caller just does not get its result
                sub.future.set_result(result)

    def _one_per_item(self, results, items: int) -> list:
        """Checks that run_batch gave exactly one result per item (else one would go to the wrong caller)."""
        if not isinstance(results, Sequence):
            raise TypeError(f"{self.name}: run_batch must return a list of results; got {type(results).__name__}")
        if len(results) != items:
            raise BatchSizeMismatch(f"{self.name}: run_batch returned {len(results)} results for {items} items")
        return list(results)


# --- numpy feeds: a plain engine's queue --------------------------------------------------------

def _signature(feeds: Feeds) -> tuple:
    """What must agree for feeds to be concatenated along axis 0: names, trailing shapes, dtypes."""
    return tuple(sorted((name, a.shape[1:], a.dtype.str) for name, a in feeds.items()))


def _rows(feeds: Feeds) -> int:
    return next(iter(feeds.values())).shape[0]


class FeedsQueue(BatchQueue[Feeds, Feeds]):
    """A BatchQueue whose items are an engine's feeds (every array with the request's rows as its
    leading dimension) and whose results are that request's rows of every output.

    run: feeds -> outputs of one engine call, every array with the batch as its leading dimension.
    A single submission with more rows than max_batch_size still runs, alone."""

    def __init__(self, run: Callable[[Feeds], Feeds], **queue):
        super().__init__(self._run_concatenated, **queue)
        self.run = run

    async def submit(self, feeds: Feeds, group_key: Hashable = None) -> Feeds:
        """Runs one request's feeds (leading batch dim n >= 1, the same for every feed) in some
        batch and returns that request's n rows of every output."""
        if not feeds:
            raise ValueError("feeds must name at least one input")
        feeds = {name: np.asarray(a) for name, a in feeds.items()}
        rows = {a.shape[0] if a.ndim else None for a in feeds.values()}
        if len(rows) != 1 or None in rows or 0 in rows:
            shapes = {name: a.shape for name, a in feeds.items()}
            raise ValueError(f"{self.name}: every feed needs the same leading batch dim >= 1; got {shapes}")
        return await super().submit(feeds, (group_key, _signature(feeds)), rows=rows.pop())

    def _run_concatenated(self, batch: list[Feeds]) -> list[Feeds]:
        """batch -> one engine call on the concatenated feeds -> each request's rows of the outputs."""
        names = batch[0].keys()
        # [rows, ...] per feed; a lone submission is passed through without a copy
        feeds = ({n: batch[0][n] for n in names} if len(batch) == 1
                 else {n: np.concatenate([f[n] for f in batch], axis=0) for n in names})
        return self._split(self.run(feeds), [_rows(f) for f in batch])

    def _split(self, outputs: Feeds, rows: list[int]) -> list[Feeds]:
        """Splits every output along axis 0 back into the submissions' rows, after checking
        that each output has exactly sum(rows) rows (else a row would go to the wrong caller)."""
        if not isinstance(outputs, dict):
            raise TypeError(f"{self.name}: run must return a dict of arrays; got {type(outputs).__name__}")
        outputs = {n: np.asarray(a) for n, a in outputs.items()}
        total = sum(rows)
        for n, a in outputs.items():
            if a.ndim == 0 or a.shape[0] != total:
                raise BatchSizeMismatch(f"{self.name}: output {n!r} has shape {a.shape}, "
                                        f"expected a leading batch dim of {total}")
        parts, start = [], 0
        for count in rows:
            parts.append({n: a[start:start + count] for n, a in outputs.items()})
            start += count
        return parts
