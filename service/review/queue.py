"""The write-behind queue between the predictions and the review store: its buffer and its writer task.

A predicting route calls :meth:`ReviewQueue.submit` (no I/O: the item joins the buffer, ``buffer.py``,
and gets its id, the answer's ``review_id``); one task per worker writes the buffer to the store in
batches (``writes.py``). So the store never delays nor fails a prediction: while it is slow or down the
buffer holds what its bounds allow (``bounds.py``) and the task retries with backoff, the error logged
and counted (``health.py``); at shutdown with the store still down, what is buffered is lost, counted in
``bnn_review_enqueue_failures_total`` and logged.

The same task runs the schema migration at start (retried until the store answers) and the retention
pass every ``retention_interval_s`` (``retention.py``: sooner after a source's share of bytes was
written). A second task reads the store's statistics into the gauges every ``stats_interval_s``
(``gauges.py``), so that a scrape of ``/metrics`` never queries the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.inference.predictor import Prediction
from service.review.bounds import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_ITEM_BYTES,
    DEFAULT_SOURCE_SHARE,
    DEFAULT_STATS_INTERVAL_S,
    BufferBudget,
)
from service.review.buffer import ReviewBuffer
from service.review.gauges import STATS_TIMEOUT_S, StatsGauges
from service.review.health import StoreHealth
from service.review.queue_metrics import QueueMetrics
from service.review.retention import RETENTION_MIN_GAP_S, check_export_dir, early_pass_bytes, retention_pass
from service.review.retention_policy import RetentionPolicy
from service.review.stats import Stats
from service.review.store import ReviewStore
from service.review.writes import write_items

log = logging.getLogger("service")
BATCH = 256  # most items in one insert
# how long the writer lets answers pile up before a write: one transaction then carries many
# items (an insert costs about 2 ms of the worker's time alone, 0.13 ms each in a batch of 256:
# python -m bench.review), and a write is never on a prediction's path anyway
GATHER_S = 0.5
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 10.0


class ReviewQueue:
    """The buffer and its writer. ``export_dir``: where labelled items go before retention drops them
    (None: labelled items are never dropped)."""

    def __init__(self, store: ReviewStore, metrics: QueueMetrics, buffer_max: int, retention: RetentionPolicy,
                 export_dir: Path | None = None, retention_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.time, *, buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                 max_item_bytes: int = DEFAULT_ITEM_BYTES, source_share: float = DEFAULT_SOURCE_SHARE,
                 stats_interval_s: float = DEFAULT_STATS_INTERVAL_S):
        self.store = store
        self.metrics = metrics
        self.retention = retention
        self.export_dir = export_dir
        self.retention_interval_s = retention_interval_s
        self.stats_interval_s = stats_interval_s
        self.clock = clock
        self.health = StoreHealth(metrics, store.dialect, lambda: len(self._buffer))
        self._buffer = ReviewBuffer(BufferBudget(buffer_max, buffer_bytes, source_share), max_item_bytes, metrics,
                                    clock, lambda: self.health.last_error)
        self.gauges = StatsGauges(store, metrics)
        self._written_bytes = 0  # since the last retention pass
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None

    # -- the prediction's side (buffer.py): no I/O ------------------------------------------------
    def submit(self, prediction: Prediction, upload: bytes | np.ndarray, audit: bool, model_version: str,
               audit_fraction: float = 0.0, *, source: str | None = None) -> str | None:
        """Queue a referred or audited answer; its review_id, or None when it is not queued
        (``ReviewBuffer.submit`` says when)."""
        return self._buffer.submit(prediction, upload, audit, model_version, audit_fraction, source=source)

    def admits(self, source: str | None) -> bool:
        """Whether an item from ``source`` would be queued now (its image aside)."""
        return self._buffer.admits(source)

    def attach_shadow(self, review_id: str, answer: dict[str, Any]) -> None:
        """Store a shadow's answer beside item ``review_id`` (written after the items buffered before it)."""
        self._buffer.attach_shadow(review_id, answer)

    @property
    def budget(self) -> BufferBudget:
        return self._buffer.budget

    @property
    def buffer_max(self) -> int:
        return self._buffer.budget.max_items

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    # -- what the store's state is (health.py, gauges.py) -----------------------------------------
    @property
    def ready(self) -> bool:
        """The schema is in place: the reviewers' routes try the store from then on."""
        return self.health.ready

    @property
    def last_error(self) -> str | None:
        """An unresolved failure of the writer, essential operations first (for a 503's detail)."""
        return self.health.last_error

    async def publish_stats(self, timeout_s: float = STATS_TIMEOUT_S) -> Stats | None:
        """Read the store's stats into the gauges (every ``stats_interval_s``, never on a scrape); None if the
        store does not answer."""
        return await self.gauges.publish(timeout_s)

    # -- the writer task ----------------------------------------------------------------------------
    def start(self) -> None:
        check_export_dir(self.export_dir)
        self._task = asyncio.create_task(self._run(), name="review-writer")
        self._stats_task = asyncio.create_task(self._refresh_stats(), name="review-stats")

    async def _refresh_stats(self) -> None:
        """The gauges from the store, every ``stats_interval_s`` once the schema is in place."""
        await self.health.migrated.wait()
        while not self._buffer.stopping:
            await self.publish_stats()
            await self._pause(self.stats_interval_s)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (within ``timeout_s``), count what could not be, close the store."""
        self._buffer.stopping = True
        self._stopped.set()
        self._buffer.wake.set()
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stats_task
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        why = self.last_error or (f"no answer within {timeout_s:g} s" if self._task is not None  # a hang is no error
                                  else "its writer never started")
        lost = self._buffer.lose_all()
        if lost:
            log.error("%d review items lost at shutdown: the store did not take them (%s)", lost, why)
        await self.store.close()

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        while not await self.health.attempt("migrate", self.store.migrate):
            if self._buffer.stopping:
                return
            await self._pause(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        next_retention = last_retention = 0.0
        delay = RETRY_FIRST_S
        while True:
            self._buffer.wake.clear()  # before looking at the buffer: a submit after this sets it again
            if self._buffer:
                if len(self._buffer) < BATCH and not self._buffer.stopping:
                    await self._pause(GATHER_S)
                if await self.health.attempt("write", self.flush):
                    delay = RETRY_FIRST_S
                elif self._buffer.stopping:
                    return
                else:
                    await self._pause(delay)  # backoff: submits do not cut it short
                    delay = min(delay * 2, RETRY_MAX_S)
            elif self._buffer.shadows:  # every item buffered before them is written: their rows exist
                if not await self.health.attempt("write", self.flush_shadows):
                    if self._buffer.stopping:
                        return
                    await self._pause(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
            elif self._buffer.stopping:
                return
            now = time.monotonic()
            if now >= next_retention or (self._written_bytes >= early_pass_bytes(self.retention)
                                         and now >= last_retention + RETENTION_MIN_GAP_S):
                # maintenance: a failure is logged and counted, retried at the next interval, and leaves
                # claims, labels, stats and writes alone. Sooner when a source's share of bytes was written
                # since the last pass: a flood is trimmed in seconds, not a minute later
                self._written_bytes = 0
                await self.health.attempt("retention", self.enforce_retention)
                last_retention = time.monotonic()
                next_retention = last_retention + self.retention_interval_s
            if not self._buffer and not self._buffer.shadows and not self._buffer.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._buffer.wake.wait(), max(0.0, next_retention - time.monotonic()))

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def flush(self) -> None:
        """Write up to BATCH buffered items; on failure they stay at the front of the buffer. A row the
        store refuses is dropped and counted (``bnn_review_refused_total``), the rest written."""
        batch = self._buffer.take(BATCH)
        try:
            refused = await write_items(self.store, [pending.item() for pending in batch])
        except BaseException:
            self._buffer.put_back(batch)
            raise
        for pending in batch:
            self.budget.release(pending.source, pending.size)
            if pending.id in refused:
                reason, why = refused[pending.id]
                self.metrics.review_refused.labels(reason=reason).inc()
                log.error("review item %s dropped: the store refused it (%s)", pending.id, why)
            else:
                self._written_bytes += pending.size
                self.metrics.review_enqueued.labels(reason="audit" if pending.audit else "referred").inc()

    async def flush_shadows(self) -> None:
        """Store up to BATCH shadow answers beside their items; on failure they stay at the front."""
        batch = self._buffer.take_shadows(BATCH)
        try:
            await self.store.attach_shadow(batch)
        except BaseException:
            self._buffer.put_back_shadows(batch)
            raise

    async def enforce_retention(self) -> None:
        """One retention pass (``retention.py``) under the policy and export directory set now."""
        await retention_pass(self.store, self.retention, self.export_dir, self.metrics, self.clock)
