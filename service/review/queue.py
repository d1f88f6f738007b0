"""The write-behind buffer between the predictions and the review store.

A predicting route calls :meth:`ReviewQueue.submit` (no I/O: the item joins an in-memory buffer
and gets its id, the answer's ``review_id``); one task per worker writes the buffer to the store
in batches. So the store never delays nor fails a prediction: while it is slow or down the
buffer holds up to ``buffer_max`` items and ``buffer_bytes`` bytes (``bounds.py``) and the task
retries (with backoff, the error logged and ``bnn_review_store_errors_total`` counted); beyond
that, or at shutdown with the store still down, an item is lost, counted in
``bnn_review_enqueue_failures_total`` and logged, and a prediction that finds the buffer full
answers ``review_id: null``. What is refused on purpose is counted in
``bnn_review_refused_total{reason}``: an upload over ``max_item_bytes`` (the item is queued with
its 28 x 28 only), one source over its share of the buffer (not queued), a row the store refuses
(dropped; the rest of its batch is written).

The same task runs the schema migration at start (retried until the store answers) and the
retention policy every ``retention_interval_s`` (sooner after a source's share of bytes was
written). A second task reads the store's statistics into the gauges every ``stats_interval_s``,
so that a scrape of ``/metrics`` never queries the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prometheus_client import Counter, Gauge
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from model.calibration import Channel
from service.inference.predictor import Prediction
from service.review.bounds import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_ITEM_BYTES,
    DEFAULT_SOURCE_SHARE,
    DEFAULT_STATS_INTERVAL_S,
    BufferBudget,
    item_size,
    source_key,
)
from service.review.export import ExportFailed, append_records, day_file, writable
from service.review.live import AcceptedError
from service.review.store import (
    InvalidItem,
    NewItem,
    RetentionPolicy,
    ReviewStore,
    Stats,
    row_problem,
)

log = logging.getLogger("service")
BATCH = 256  # most items in one insert
# how long the writer lets answers pile up before a write: one transaction then carries many
# items (an insert costs about 2 ms of the worker's time alone, 0.13 ms each in a batch of 256:
# python -m bench.review), and a write is never on a prediction's path anyway
GATHER_S = 0.5
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 10.0
REFUSALS_PER_LOG = 1000
STATS_TIMEOUT_S = 10.0  # a stats read that takes longer leaves the gauges at their last values
RETENTION_MIN_GAP_S = 1.0  # the soonest a pass follows the last one when a source's share of bytes was written
ESSENTIAL = ("migrate", "write")  # what the queue needs to take answers: bnn_review_store_up follows these
MAINTENANCE = ("retention", "export")  # what it runs besides; a failure here is counted and retried, no more


def refused_row(error: BaseException) -> bool:
    """Whether ``error`` is the store refusing a row's values (data or constraint), not the store failing:
    ``row_problem``'s rules, SQLSTATE class 22 or 23 (asyncpg's errors reach SQLAlchemy as a plain
    DBAPIError carrying it), or a value the driver could not bind."""
    if isinstance(error, InvalidItem | DataError | IntegrityError):
        return True
    if isinstance(error, DBAPIError):
        state = getattr(error.orig, "sqlstate", None)
        cause = error.orig.__cause__ if error.orig is not None else None
        return (isinstance(state, str) and state[:2] in ("22", "23")) or isinstance(cause, ValueError)
    return isinstance(error, StatementError)  # raised before the driver: a parameter it could not take


@dataclass(frozen=True)
class Pending:
    """An answer waiting to be written: kept as given, turned into a row by the writer task."""

    id: str
    created: float
    prediction: Prediction
    upload: bytes | None
    audit: bool
    model_version: str
    audit_fraction: float  # the fraction the audit draw ran at (stored with an audited item)
    source: str = source_key(None)  # who sent it, hashed (bounds.source_key)

    @property
    def size(self) -> int:
        return item_size(self.upload)

    def item(self) -> NewItem:
        p = self.prediction
        # the answer's fields as the client got them (routes/predict.py's prediction_out), opt-in ones left out
        fields = {key: value for key, value in vars(p).items() if key not in ("digit", "seen", "spread", "votes")}
        answer: dict[str, Any] = {"class": p.digit, **fields, "audit": self.audit, "model_version": self.model_version,
                                  "review_id": self.id}
        seen = p.seen if p.seen is not None else np.zeros((28, 28), np.uint8)
        # an audited answer is queued as an audit (oldest first, at the audits' share: the labelled audits
        # stay a sample of the traffic), marked referred when it was; a referred one not drawn, as referred
        return NewItem(id=self.id, created=self.created, reason="audit" if self.audit else "referred",
                       refer=p.refer, audit_fraction=self.audit_fraction if self.audit else None,
                       refer_reason=p.refer_reason, predicted=p.digit, entropy=p.entropy, answer=answer,
                       model_version=self.model_version, file=self.upload,
                       input=np.ascontiguousarray(seen, dtype=np.uint8).tobytes(), channel=p.channel,
                       source=self.source)


class QueueMetrics(Protocol):
    """What the queue counts and publishes (``service/metrics.py``'s Metrics has each): named here, so that
    the review queue needs nothing of the service above it."""

    review_store_errors: Counter
    review_store_up: Gauge
    review_refused: Counter
    review_enqueued: Counter
    review_enqueue_failures: Counter
    review_retention_passes: Counter
    review_dropped: Counter
    review_waiting: Gauge
    review_claimed: Gauge

    def publish_accepted_errors(self, errors: Mapping[Channel, AcceptedError]) -> None: ...


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
        self.budget = BufferBudget(buffer_max, buffer_bytes, source_share)
        self.max_item_bytes = max_item_bytes
        self.retention = retention
        self.export_dir = export_dir
        self.retention_interval_s = retention_interval_s
        self.stats_interval_s = stats_interval_s
        self.clock = clock
        self.ready = False  # the schema is in place: the reviewers' routes try the store from then on
        self.errors: dict[str, str] = {}  # the writer's operations whose last attempt failed, with the error
        self._buffer: deque[Pending] = deque()
        self._shadows: deque[tuple[str, dict[str, Any]]] = deque()  # (review id, the shadow's answer)
        self._wake = asyncio.Event()
        self._stopping = False
        self._refused: dict[str, int] = {}  # answers not queued, by why: for a log line per thousand
        self._written_bytes = 0  # since the last retention pass
        self._stats_failing = False
        self._stopped = asyncio.Event()
        self._migrated = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        for operation in (*ESSENTIAL, *MAINTENANCE):
            metrics.review_store_errors.labels(operation=operation)  # every series from 0, before any failure

    @property
    def buffer_max(self) -> int:
        return self.budget.max_items

    async def publish_stats(self, timeout_s: float = STATS_TIMEOUT_S) -> Stats | None:
        """Read the store's stats into the gauges (every ``stats_interval_s``, never on a scrape); None if the
        store does not answer."""
        try:
            stats = await asyncio.wait_for(self.store.stats(), timeout_s)
        except Exception as error:  # any driver's error, or the timeout: the gauges keep their last values
            if not self._stats_failing:  # once until it works again: not a line every interval
                log.warning("review stats unavailable for /metrics (the gauges keep their last values): %s",
                            f"{type(error).__name__}: {error}")
            self._stats_failing = True
            return None
        self._stats_failing = False
        m = self.metrics
        for reason, count in stats.waiting.items():
            m.review_waiting.labels(reason=reason).set(count)
        m.review_claimed.set(stats.claimed)
        m.publish_accepted_errors(stats.accepted_errors)
        return stats

    # -- the prediction's side: no I/O --------------------------------------------------------
    def submit(self, prediction: Prediction, upload: bytes | np.ndarray, audit: bool, model_version: str,
               audit_fraction: float = 0.0, *, source: str | None = None) -> str | None:
        """Queue a referred or audited answer; its review_id, or None when it is not queued (an
        accepted answer not audited, the buffer full, or ``source``'s share of it full). ``upload``:
        the image as the service stores it (bytes; one over ``max_item_bytes`` is left out, the item
        keeps its 28 x 28), or the array sent; ``source``: who sent it (None: unknown, one source)."""
        if not (prediction.refer or audit):
            return None
        file = upload if isinstance(upload, bytes) else None
        if file is not None and len(file) > self.max_item_bytes:
            self.metrics.review_refused.labels(reason="file_too_large").inc()
            file = None
        key = source_key(source)
        size = item_size(file)
        refusal = "stopping" if self._stopping else self.budget.refusal(key, size)
        if refusal is not None:
            self._refuse(refusal)
            return None
        pending = Pending(uuid.uuid4().hex, self.clock(), prediction, file, audit, model_version, audit_fraction, key)
        self.budget.take(key, size)
        self._buffer.append(pending)
        self._wake.set()
        return pending.id

    def admits(self, source: str | None) -> bool:
        """Whether an item from ``source`` would be queued now (its image aside): the service makes the
        image's PNG only then, so a flood past its share costs no encoding."""
        return not self._stopping and self.budget.refusal(source_key(source), 0) is None

    def _refuse(self, why: str) -> None:
        """Count an answer not queued: a full buffer (or a shutdown) is a loss; a source over its share, a refusal."""
        if why == "source_share":
            self.metrics.review_refused.labels(reason="source_share").inc()
        else:
            self.metrics.review_enqueue_failures.inc()
        count = self._refused[why] = self._refused.get(why, 0) + 1
        if count % REFUSALS_PER_LOG == 1:  # the first, then one line per thousand: no log flood
            if why == "source_share":
                log.warning("review items not queued (%d so far): one source holds its share (BNN_REVIEW_SOURCE_SHARE"
                            ") of the buffer", count)
            else:
                log.warning("review items not queued (%d so far): %d items, %d bytes wait for the store "
                            "(BNN_REVIEW_BUFFER, BNN_REVIEW_BUFFER_BYTES); last error: %s", count, self.budget.items,
                            self.budget.bytes, self.last_error)

    def attach_shadow(self, review_id: str, answer: dict[str, Any]) -> None:
        """Store a shadow's answer beside item ``review_id`` (written after the items buffered before it)."""
        if len(self._shadows) < self.buffer_max and not self._stopping:
            self._shadows.append((review_id, answer))
            self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._buffer)

    # -- the writer task -------------------------------------------------------------------------
    def start(self) -> None:
        if self.export_dir is not None and not writable(self.export_dir):
            log.warning("review export directory %s cannot be written: labelled items stay in the store until it can "
                        "(set BNN_REVIEW_EXPORT_DIR to a persistent, writable directory)", self.export_dir)
        self._task = asyncio.create_task(self._run(), name="review-writer")
        self._stats_task = asyncio.create_task(self._refresh_stats(), name="review-stats")

    async def _refresh_stats(self) -> None:
        """The gauges from the store, every ``stats_interval_s`` once the schema is in place."""
        await self._migrated.wait()
        while not self._stopping:
            await self.publish_stats()
            await self._pause(self.stats_interval_s)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (within ``timeout_s``), count what could not be, close the store."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
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
        if self._buffer:
            self.metrics.review_enqueue_failures.inc(len(self._buffer))
            log.error("%d review items lost at shutdown: the store did not take them (%s)", len(self._buffer),
                      self.last_error)
            self._buffer.clear()
            self.budget.clear()
        await self.store.close()

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        while not await self._attempt("migrate", self._prepare):
            if self._stopping:
                return
            await self._pause(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        next_retention = last_retention = 0.0
        delay = RETRY_FIRST_S
        while True:
            self._wake.clear()  # before looking at the buffer: a submit after this sets it again
            if self._buffer:
                if len(self._buffer) < BATCH and not self._stopping:
                    await self._pause(GATHER_S)
                if await self._attempt("write", self.flush):
                    delay = RETRY_FIRST_S
                elif self._stopping:
                    return
                else:
                    await self._pause(delay)  # backoff: submits do not cut it short
                    delay = min(delay * 2, RETRY_MAX_S)
            elif self._shadows:  # every item buffered before them is written: their rows exist
                if not await self._attempt("write", self.flush_shadows):
                    if self._stopping:
                        return
                    await self._pause(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
            elif self._stopping:
                return
            now = time.monotonic()
            if now >= next_retention or (self._written_bytes >= self._early_retention_bytes
                                         and now >= last_retention + RETENTION_MIN_GAP_S):
                # maintenance: a failure is logged and counted, retried at the next interval, and leaves
                # claims, labels, stats and writes alone. Sooner when a source's share of bytes was written
                # since the last pass: a flood is trimmed in seconds, not a minute later
                self._written_bytes = 0
                await self._attempt("retention", self.enforce_retention)
                last_retention = time.monotonic()
                next_retention = last_retention + self.retention_interval_s
            if not self._buffer and not self._shadows and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_retention - time.monotonic()))

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def _attempt(self, operation: str, step: Callable[[], Any]) -> bool:
        """Run one of the writer's steps; a failure is counted under its operation (an export's under
        "export") and logged once until it changes or recovers. Only the schema (``migrate``) gates the
        reviewers' routes, and only writes move ``bnn_review_store_up``."""
        try:
            await step()
        except Exception as error:  # any driver's error: the store is down or refused
            failed = "export" if isinstance(error, ExportFailed) else operation
            message = f"{type(error).__name__}: {error}"
            self.metrics.review_store_errors.labels(operation=failed).inc()
            if self.errors.get(operation) != message:
                log.error("review store: %s failed (%s); %d items buffered, retrying", failed, message,
                          len(self._buffer))
            self.errors[operation] = message
            if operation in ESSENTIAL:
                self.metrics.review_store_up.set(0)
            return False
        if operation == "migrate" and not self.ready:
            log.info("review store ready (%s)", self.store.dialect)
            self._migrated.set()
        elif operation in self.errors:
            log.info("review store: %s works again (%s)", operation, self.store.dialect)
        self.errors.pop(operation, None)
        self.ready = self.ready or operation == "migrate"
        if operation in ESSENTIAL:
            self.metrics.review_store_up.set(1)
        return True

    @property
    def last_error(self) -> str | None:
        """An unresolved failure of the writer, essential operations first (for a 503's detail)."""
        for operation in (*ESSENTIAL, *MAINTENANCE):
            if operation in self.errors:
                return f"{operation}: {self.errors[operation]}"
        return None

    async def _prepare(self) -> None:
        await self.store.migrate()

    @property
    def _early_retention_bytes(self) -> int:
        return self.retention.source_max_bytes or self.retention.max_bytes

    async def flush(self) -> None:
        """Write up to BATCH buffered items; on failure they stay at the front of the buffer. A row the
        store refuses is dropped and counted (``bnn_review_refused_total``), the rest written."""
        batch = [self._buffer.popleft() for _ in range(min(BATCH, len(self._buffer)))]
        try:
            refused = await self._write([pending.item() for pending in batch])
        except BaseException:
            self._buffer.extendleft(reversed(batch))
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

    async def _write(self, new: list[NewItem]) -> dict[str, tuple[str, str]]:
        """Write ``new`` in one transaction; if that fails, one item a transaction, so that one bad row
        cannot hold back the others. Returns the items refused, id -> (reason, error): "invalid"
        (``row_problem``, checked first) or "store_refused" (the store refused it alone). An error that
        is not a row's (the store down) is raised: the batch is then retried whole (ids already written
        are skipped)."""
        refused = {item.id: ("invalid", problem) for item in new if (problem := row_problem(item)) is not None}
        rest = [item for item in new if item.id not in refused]
        try:
            await self.store.add(rest)
        except Exception:
            for item in rest:
                try:
                    await self.store.add([item])
                except Exception as error:
                    if not refused_row(error):
                        raise
                    refused[item.id] = ("store_refused", f"{type(error).__name__}: {error}"[:500])
        return refused

    async def flush_shadows(self) -> None:
        batch = [self._shadows.popleft() for _ in range(min(BATCH, len(self._shadows)))]
        try:
            await self.store.attach_shadow(batch)
        except BaseException:
            self._shadows.extendleft(reversed(batch))
            raise

    async def enforce_retention(self) -> None:
        """Drop unlabelled items beyond the policy, then labelled ones into the export (none without one);
        each drop is counted as it is done, so a failing export leaves the unlabelled drops counted."""
        self._count_dropped(await self.store.drop_unlabelled(self.retention))
        if self.export_dir is not None:
            self._count_dropped(await self.store.drop_labelled(self.retention, self._export), labelled=True)
        self.metrics.review_retention_passes.inc()

    def _count_dropped(self, dropped: dict[str, int], labelled: bool = False) -> None:
        for cause, count in dropped.items():
            if count:
                self.metrics.review_dropped.labels(cause=cause).inc(count)
                log.info("review retention: %d %s items dropped (%s)%s", count, "labelled" if labelled else "unlabelled",
                         cause, f", exported to {self.export_dir}" if labelled else "")

    async def _export(self, records: list[dict[str, Any]]) -> None:
        """Append labelled items about to be dropped to the day's file in ``export_dir``."""
        assert self.export_dir is not None
        await asyncio.to_thread(append_records, day_file(self.export_dir, self.clock()), records)
