"""The retention pass each worker's writer task runs, and the export of the labelled items it drops.

Every ``retention_interval_s``, and sooner after a source's share of bytes was written (a flood is
trimmed in seconds, not a minute later), the writer drops the unlabelled items beyond the policy
(``retention_policy.py``), then labelled ones, only into the export directory (``export.py``: NDJSON,
one file a day); without one, labelled items are never dropped. Each drop is counted in
``bnn_review_dropped_total{cause}`` as it is done, so a failing export leaves the unlabelled drops
counted; a failing pass is counted and retried at the next interval (``health.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.review.export import append_records, day_file, writable
from service.review.queue_metrics import QueueMetrics
from service.review.retention_policy import RetentionPolicy
from service.review.store import Exporter, ReviewStore

log = logging.getLogger("service")
RETENTION_MIN_GAP_S = 1.0  # the soonest a pass follows the last one when a source's share of bytes was written


def early_pass_bytes(policy: RetentionPolicy) -> int:
    """Bytes written since the last pass after which the next comes early: one source's share, else the cap."""
    return policy.source_max_bytes or policy.max_bytes


def check_export_dir(export_dir: Path | None) -> None:
    """Warn at start when labelled items cannot leave the store (the export directory cannot be written)."""
    if export_dir is not None and not writable(export_dir):
        log.warning("review export directory %s cannot be written: labelled items stay in the store until it can "
                    "(set BNN_REVIEW_EXPORT_DIR to a persistent, writable directory)", export_dir)


async def retention_pass(store: ReviewStore, policy: RetentionPolicy, export_dir: Path | None,
                         metrics: QueueMetrics, clock: Callable[[], float]) -> None:
    """Drop unlabelled items beyond ``policy``, then labelled ones into the export (none without
    ``export_dir``); each drop is counted as it is done, so a failing export leaves the unlabelled
    drops counted."""
    count_dropped(metrics, await store.drop_unlabelled(policy), export_dir)
    if export_dir is not None:
        dropped = await store.drop_labelled(policy, exporter(export_dir, clock))
        count_dropped(metrics, dropped, export_dir, labelled=True)
    metrics.review_retention_passes.inc()


def count_dropped(metrics: QueueMetrics, dropped: dict[str, int], export_dir: Path | None,
                  labelled: bool = False) -> None:
    for cause, count in dropped.items():
        if count:
            metrics.review_dropped.labels(cause=cause).inc(count)
            log.info("review retention: %d %s items dropped (%s)%s", count, "labelled" if labelled else "unlabelled",
                     cause, f", exported to {export_dir}" if labelled else "")


def exporter(export_dir: Path, clock: Callable[[], float]) -> Exporter:
    """What appends labelled items about to be dropped to the day's file in ``export_dir``."""

    async def export(records: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(append_records, day_file(export_dir, clock()), records)

    return export
