"""The write-behind buffer between the predictions and the review store.

A predicting route calls :meth:`ReviewQueue.submit` (no I/O: the item joins an in-memory buffer
and gets its id, the answer's ``review_id``); one task per worker writes the buffer to the store
in batches. So the store never delays nor fails a prediction: while it is slow or down the
buffer holds up to ``buffer_max`` items and the task retries (with backoff, the error logged and
``bnn_review_store_errors_total`` counted); beyond that, or at shutdown with the store still
down, an item is lost, counted in ``bnn_review_enqueue_failures_total`` and logged, and a
prediction that finds the buffer full answers ``review_id: null``.

The same task runs the schema migration at start (retried until the store answers) and the
retention policy every ``retention_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.metrics import Metrics
from service.predictor import Prediction
from service.review.store import SECONDS_PER_DAY, NewItem, RetentionPolicy, ReviewStore, Stats
from service.settings import Settings

log = logging.getLogger("service")
BATCH = 256  # most items in one insert
# how long the writer lets answers pile up before a write: one transaction then carries many
# items (an insert costs about 2 ms of the worker's time alone, 0.13 ms each in a batch of 256:
# python -m bench.review), and a write is never on a prediction's path anyway
GATHER_S = 0.5
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 10.0
REFUSALS_PER_LOG = 1000
ESSENTIAL = ("migrate", "write")  # what the queue needs to take answers: bnn_review_store_up follows these
MAINTENANCE = ("retention", "export")  # what it runs besides; a failure here is counted and retried, no more


class ExportFailed(Exception):
    """Writing labelled items to the export directory failed (the retention pass then keeps them)."""


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
                       input=np.ascontiguousarray(seen, dtype=np.uint8).tobytes(), channel=p.channel)


class ReviewQueue:
    def __init__(self, store: ReviewStore, metrics: Metrics, buffer_max: int, retention: RetentionPolicy,
                 export_dir: Path | None = None, retention_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.metrics = metrics
        self.buffer_max = buffer_max
        self.retention = retention
        self.export_dir = export_dir
        self.retention_interval_s = retention_interval_s
        self.clock = clock
        self.ready = False  # the schema is in place: the reviewers' routes try the store from then on
        self.errors: dict[str, str] = {}  # the writer's operations whose last attempt failed, with the error
        self._buffer: deque[Pending] = deque()
        self._shadows: deque[tuple[str, dict[str, Any]]] = deque()  # (review id, the shadow's answer)
        self._wake = asyncio.Event()
        self._stopping = False
        self._refused = 0  # answers not queued because the buffer was full
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        for operation in (*ESSENTIAL, *MAINTENANCE):
            metrics.review_store_errors.labels(operation=operation)  # every series from 0, before any failure

    @staticmethod
    def retention_policy(settings: Settings) -> RetentionPolicy:
        return RetentionPolicy(settings.review_retention_days * SECONDS_PER_DAY, settings.review_max_items,
                               settings.review_max_bytes)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> ReviewQueue:
        return cls(ReviewStore.open(settings.review_db), metrics, settings.review_buffer,
                   cls.retention_policy(settings), settings.review_export_dir, settings.review_retention_interval_s)

    async def publish_stats(self, timeout_s: float = 2.0) -> Stats | None:
        """Read the store's stats into the gauges (each scrape of /metrics); None if the store does not answer."""
        try:
            stats = await asyncio.wait_for(self.store.stats(), timeout_s)
        except Exception as error:  # any driver's error, or the timeout: the gauges keep their last values
            log.warning("review stats unavailable for /metrics: %s", error)
            return None
        m = self.metrics
        for reason, count in stats.waiting.items():
            m.review_waiting.labels(reason=reason).set(count)
        m.review_claimed.set(stats.claimed)
        accepted = stats.accepted_error
        m.audited.set(accepted.audited)
        m.audited_wrong.set(accepted.wrong)
        m.audited_error.set(float("nan") if accepted.ratio is None else accepted.ratio)
        m.audited_error_lower.set(accepted.lower)
        m.audited_error_upper.set(accepted.upper)
        drawn = stats.drawn_accepted_error
        m.drawn_audited.set(drawn.audited)
        m.drawn_audited_error.set(float("nan") if drawn.ratio is None else drawn.ratio)
        m.drawn_audited_error_lower.set(drawn.lower)
        m.drawn_audited_error_upper.set(drawn.upper)
        return stats

    # -- the prediction's side: no I/O --------------------------------------------------------
    def submit(self, prediction: Prediction, upload: bytes | np.ndarray, audit: bool, model_version: str,
               audit_fraction: float = 0.0) -> str | None:
        """Queue a referred or audited answer; its review_id, or None when it is not queued (an
        accepted answer not audited, or the buffer full)."""
        if not (prediction.refer or audit):
            return None
        if len(self._buffer) >= self.buffer_max or self._stopping:
            self.metrics.review_enqueue_failures.inc()
            self._refused += 1
            if self._refused % REFUSALS_PER_LOG == 1:  # the first, then one line per thousand: no log flood
                log.warning("review items not queued (%d so far): %d wait for the store (BNN_REVIEW_BUFFER); last "
                            "error: %s", self._refused, len(self._buffer), self.last_error)
            return None
        pending = Pending(uuid.uuid4().hex, self.clock(), prediction,
                          upload if isinstance(upload, bytes) else None, audit, model_version, audit_fraction)
        self._buffer.append(pending)
        self._wake.set()
        return pending.id

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
        self._task = asyncio.create_task(self._run(), name="review-writer")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (within ``timeout_s``), count what could not be, close the store."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
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
        await self.store.close()

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        while not await self._attempt("migrate", self._prepare):
            if self._stopping:
                return
            await self._pause(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        next_retention = 0.0
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
            if time.monotonic() >= next_retention:
                # maintenance: a failure is logged and counted, retried at the next interval, and leaves
                # claims, labels, stats and writes alone
                await self._attempt("retention", self.enforce_retention)
                next_retention = time.monotonic() + self.retention_interval_s
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

    async def flush(self) -> None:
        """Write up to BATCH buffered items; on failure they stay at the front of the buffer."""
        batch = [self._buffer.popleft() for _ in range(min(BATCH, len(self._buffer)))]
        try:
            await self.store.add([pending.item() for pending in batch])
        except BaseException:
            self._buffer.extendleft(reversed(batch))
            raise
        for pending in batch:
            self.metrics.review_enqueued.labels(reason="audit" if pending.audit else "referred").inc()

    async def flush_shadows(self) -> None:
        batch = [self._shadows.popleft() for _ in range(min(BATCH, len(self._shadows)))]
        try:
            await self.store.attach_shadow(batch)
        except BaseException:
            self._shadows.extendleft(reversed(batch))
            raise

    async def enforce_retention(self) -> None:
        dropped = await self.store.enforce_retention(self.retention, self._export if self.export_dir else None)
        self.metrics.review_retention_passes.inc()
        for cause, count in dropped.items():
            if count:
                self.metrics.review_dropped.labels(cause=cause).inc(count)
                log.info("review retention: %d items dropped (%s)", count, cause)

    async def _export(self, records: list[dict[str, Any]]) -> None:
        """Append labelled items about to be dropped to ``export_dir/review-YYYY-MM-DD.ndjson``."""
        assert self.export_dir is not None
        path = self.export_dir / time.strftime("review-%Y-%m-%d.ndjson", time.gmtime(self.clock()))
        lines = "".join(json.dumps(record) + "\n" for record in records)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                handle.write(lines)

        try:
            await asyncio.to_thread(write)
        except OSError as error:
            raise ExportFailed(f"{path}: {error}") from error
