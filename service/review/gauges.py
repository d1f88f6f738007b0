"""The review gauges, read from the store's statistics in the background and never on a scrape.

A task of each worker (``queue.py``) reads the store's statistics every ``stats_interval_s`` into the
gauges: the items waiting by reason, the items claimed, each channel's live accepted error. So a
scrape of ``/metrics`` never queries the store, and a store that is down or slow leaves the gauges at
their last values (logged once until it answers again).
"""

from __future__ import annotations

import asyncio
import logging

from service.review.queue_metrics import QueueMetrics
from service.review.stats import Stats
from service.review.store import ReviewStore

log = logging.getLogger("service")
STATS_TIMEOUT_S = 10.0  # a stats read that takes longer leaves the gauges at their last values


class StatsGauges:
    """Publishes ``store``'s statistics into ``metrics``' gauges."""

    def __init__(self, store: ReviewStore, metrics: QueueMetrics):
        self.store = store
        self.metrics = metrics
        self._failing = False  # the last read failed: logged once until one works again

    async def publish(self, timeout_s: float = STATS_TIMEOUT_S) -> Stats | None:
        """Read the store's stats into the gauges; None if the store does not answer within ``timeout_s``."""
        try:
            stats = await asyncio.wait_for(self.store.stats(), timeout_s)
        except Exception as error:  # any driver's error, or the timeout: the gauges keep their last values
            if not self._failing:  # once until it works again: not a line every interval
                log.warning("review stats unavailable for /metrics (the gauges keep their last values): %s",
                            f"{type(error).__name__}: {error}")
            self._failing = True
            return None
        self._failing = False
        m = self.metrics
        for reason, count in stats.waiting.items():
            m.review_waiting.labels(reason=reason).set(count)
        m.review_claimed.set(stats.claimed)
        m.publish_accepted_errors(stats.accepted_errors)
        return stats
