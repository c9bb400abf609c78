"""Step-level (continuous) batching: many requests' network calls share one engine call.

Each decoding request awaits `BatchQueue.submit` with its own feeds for one step; the queue
concatenates what is waiting into one batch, runs the network once in an executor (so the event
loop stays free), splits the outputs and hands every caller its own rows: LitServe's
batch -> predict -> unbatch, with the same length check after unbatching. Requests join and
leave between steps, at any step number, which is what makes the batching continuous.

When does a batch run? As soon as the engine is free: there is one network call at a time per
queue, and submissions that arrive while it runs are all in the next batch. The queue never sits
out a timer for requests that may or may not come. It only lets the event loop settle: it keeps
yielding while new submissions for the batch keep arriving, loop turn after loop turn, so that
the callers of the batch that just finished (which resubmit their next step right away) ride
together instead of the first one running alone. `max_wait_ms` bounds that extra waiting for a
fuller batch; a full batch (`max_batch_size` rows) runs at once.

Feeds whose non-batch shapes or dtypes differ can never be concatenated, so they are grouped
apart automatically; `group_key` separates further what must not share a call (for example the
past length of an autoregressive KV cache). Batches take the oldest waiting submission's group
first, so no group starves.

Why not a library: the serving libraries that batch (LitServe, Ray Serve, Triton) batch whole
requests behind their own servers; we need one engine call shared by in-flight decoding loops
inside our process, which is this small, tested class.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np

log = logging.getLogger(__name__)

Feeds = dict[str, np.ndarray]


class BatchSizeMismatch(RuntimeError):
    """run_batch returned an output whose leading dimension is not the batch's row count."""


@dataclass(eq=False)
class _Submission:
    feeds: Feeds
    rows: int  # the leading dimension shared by all feeds
    key: Hashable  # (group_key, the feeds' names, non-batch shapes and dtypes)
    future: asyncio.Future


def _signature(feeds: Feeds) -> tuple:
    """What must agree for feeds to be concatenated along axis 0: names, trailing shapes, dtypes."""
    return tuple(sorted((name, a.shape[1:], a.dtype.str) for name, a in feeds.items()))


class BatchQueue:
    """Batches concurrent `submit` calls into `run_batch` calls, one at a time.

    run_batch: feeds -> outputs, every array with the batch as its leading dimension. It runs in
        `executor` (None: the event loop's default executor).
    name: shown in logs and passed to `on_batch(name, rows)`, called once per batch (a metric).
    max_batch_size: most rows per call; 1 turns batching off. A single submission with more rows
        than this still runs, alone (a request is never split).
    max_wait_ms: the longest a ready batch keeps collecting submissions that are still arriving.
    """

    def __init__(self, run_batch: Callable[[Feeds], Feeds], *, name: str, max_batch_size: int,
                 max_wait_ms: float, executor: Executor | None = None,
                 on_batch: Callable[[str, int], None] | None = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1; got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0; got {max_wait_ms}")
        self.run_batch = run_batch
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait_ms = max_wait_ms
        self.executor = executor
        self.on_batch = on_batch
        self._pending: list[_Submission] = []  # arrival order
        self._arrivals = 0  # submissions ever made; tells the settle loop that more came
        self._worker: asyncio.Task | None = None
        self._running: list[_Submission] = []  # the batch in the engine now

    @property
    def pending_rows(self) -> int:
        """Rows waiting for a batch (not counting the one running): a queue-depth metric."""
        return sum(s.rows for s in self._pending if not s.future.done())

    async def submit(self, feeds: Feeds, group_key: Hashable = None) -> Feeds:
        """Runs one request's feeds (leading batch dim n >= 1, the same for every feed) in some
        batch and returns that request's n rows of every output. Raises whatever run_batch
        raised for the batch, or BatchSizeMismatch. Cancelling this await leaves others alone."""
        if not feeds:
            raise ValueError("feeds must name at least one input")
        feeds = {name: np.asarray(a) for name, a in feeds.items()}
        rows = {a.shape[0] if a.ndim else None for a in feeds.values()}
        if len(rows) != 1 or None in rows or 0 in rows:
            shapes = {name: a.shape for name, a in feeds.items()}
            raise ValueError(f"{self.name}: every feed needs the same leading batch dim >= 1; got {shapes}")
        loop = asyncio.get_running_loop()
        sub = _Submission(feeds=feeds, rows=rows.pop(), key=(group_key, _signature(feeds)),
                          future=loop.create_future())
        self._pending.append(sub)
        self._arrivals += 1
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name=f"batch-queue-{self.name}")
        # Awaiting the future directly: cancelling the caller cancels only its own future,
        # which the worker then skips (or, mid-call, simply does not fill).
        return await sub.future

    # --- the worker: one task per queue while there is work, so one call at a time ----------

    async def _work(self) -> None:
        try:
            while True:
                self._pending = [s for s in self._pending if not s.future.done()]
                if not self._pending:
                    return  # the next submit starts a new worker
                await self._settle()
                batch = self._take_batch()
                if batch:
                    await self._execute(batch)
        except BaseException as exc:  # the worker itself was cancelled (loop shutting down)
            for sub in self._running + self._pending:
                if not sub.future.done():
                    sub.future.set_exception(RuntimeError(f"batch queue {self.name} stopped: {exc!r}"))
            raise

    async def _settle(self) -> None:
        """Yield to the event loop while submissions keep arriving (bounded by max_wait_ms),
        unless the oldest group is already full."""
        deadline = time.monotonic() + self.max_wait_ms / 1000.0
        while True:
            before = self._arrivals
            await asyncio.sleep(0)
            if self._arrivals == before or self._oldest_group_full() or time.monotonic() >= deadline:
                return

    def _oldest_group_full(self) -> bool:
        live = [s for s in self._pending if not s.future.done()]
        if not live:
            return True
        key = live[0].key
        return sum(s.rows for s in live if s.key == key) >= self.max_batch_size

    def _take_batch(self) -> list[_Submission]:
        """The oldest live submission's group, in arrival order, up to max_batch_size rows
        (a submission that does not fit waits for the next batch; the first always goes)."""
        live = [s for s in self._pending if not s.future.done()]
        if not live:
            return []
        key, batch, rows = live[0].key, [], 0
        for sub in live:
            if sub.key == key and (not batch or rows + sub.rows <= self.max_batch_size):
                batch.append(sub)
                rows += sub.rows
                if rows >= self.max_batch_size:
                    break
        taken = set(map(id, batch))
        self._pending = [s for s in live if id(s) not in taken]
        return batch

    async def _execute(self, batch: list[_Submission]) -> None:
        rows = sum(s.rows for s in batch)
        if self.on_batch is not None:
            try:
                self.on_batch(self.name, rows)
            except Exception:  # a broken metric must not fail requests
                log.exception("on_batch callback of batch queue %s failed", self.name)
        names = batch[0].feeds.keys()
        loop = asyncio.get_running_loop()
        self._running = batch
        try:
            # [rows, ...] per feed; a lone submission is passed through without a copy
            feeds = ({n: batch[0].feeds[n] for n in names} if len(batch) == 1
                     else {n: np.concatenate([s.feeds[n] for s in batch], axis=0) for n in names})
            outputs = await loop.run_in_executor(self.executor, self.run_batch, feeds)
            parts = self._unbatch(outputs, batch, rows)
        except Exception as exc:
            # Every caller of this batch gets the error; the queue itself carries on.
            log.warning("batch of %d rows on %s failed: %r", rows, self.name, exc)
            for sub in batch:
                if not sub.future.done():
                    sub.future.set_exception(exc)
            return
        finally:
            self._running = []
        for sub, part in zip(batch, parts):
            if not sub.future.done():  # a cancelled caller just does not get its rows
                sub.future.set_result(part)

    def _unbatch(self, outputs: Feeds, batch: list[_Submission], rows: int) -> list[Feeds]:
        """Splits every output along axis 0 back into the submissions' rows, after checking
        that each output has exactly `rows` rows (else a row would go to the wrong caller)."""
        if not isinstance(outputs, dict):
            raise TypeError(f"{self.name}: run_batch must return a dict of arrays; got {type(outputs).__name__}")
        outputs = {n: np.asarray(a) for n, a in outputs.items()}
        for n, a in outputs.items():
            if a.ndim == 0 or a.shape[0] != rows:
                raise BatchSizeMismatch(f"{self.name}: output {n!r} has shape {a.shape}, "
                                        f"expected a leading batch dim of {rows}")
        parts, start = [], 0
        for sub in batch:
            parts.append({n: a[start:start + sub.rows] for n, a in outputs.items()})
            start += sub.rows
        return parts
