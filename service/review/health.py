"""Whether the review store works for the writer task, operation by operation.

The writer runs four operations against the store: ``migrate`` and ``write`` are what the queue needs to
take answers (``bnn_review_store_up`` follows them), ``retention`` and ``export`` what it runs besides (a
failure there is counted and retried, no more). Each failure is counted in
``bnn_review_store_errors_total{operation}`` and logged once until it changes or recovers, so that a
store down for an hour is a few lines, not one per retry; the last unresolved one is what a 503 names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from service.review.export import ExportFailed
from service.review.queue_metrics import QueueMetrics

log = logging.getLogger("service")
ESSENTIAL = ("migrate", "write")  # what the queue needs to take answers: bnn_review_store_up follows these
MAINTENANCE = ("retention", "export")  # what it runs besides; a failure here is counted and retried, no more


class StoreHealth:
    """The writer's operations whose last attempt failed (``errors``), and whether the schema is in place
    (``ready``: the reviewers' routes try the store from then on; ``migrated`` is set with it)."""

    def __init__(self, metrics: QueueMetrics, dialect: str, backlog: Callable[[], int]):
        self.metrics = metrics
        self.dialect = dialect  # the store's, for the log
        self.backlog = backlog  # items buffered, for the log
        self.ready = False
        self.errors: dict[str, str] = {}  # operation -> its last error, while it fails
        self.migrated = asyncio.Event()
        for operation in (*ESSENTIAL, *MAINTENANCE):
            metrics.review_store_errors.labels(operation=operation)  # every series from 0, before any failure

    async def attempt(self, operation: str, step: Callable[[], Awaitable[Any]]) -> bool:
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
                          self.backlog())
            self.errors[operation] = message
            if operation in ESSENTIAL:
                self.metrics.review_store_up.set(0)
            return False
        if operation == "migrate" and not self.ready:
            log.info("review store ready (%s)", self.dialect)
            self.migrated.set()
        elif operation in self.errors:
            log.info("review store: %s works again (%s)", operation, self.dialect)
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
