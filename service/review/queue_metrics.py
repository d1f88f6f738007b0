"""The counters and gauges the review queue's buffer, writer and retention pass write to, as a protocol
(``tests/test_layout.py``'s floors: ``service/review/`` imports nothing of the service above it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from prometheus_client import Counter, Gauge

from model.calibration import Channel
from service.review.live import AcceptedError


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
