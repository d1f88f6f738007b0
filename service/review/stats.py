"""Where the review queue stands and what its labels say (``GET /review/stats``, the review gauges),
from the store's counts: the store (``store.py``) reads every count in one grouped statement, one
snapshot, and :func:`tally` adds them up with the arithmetic of ``live.py``.

Each channel (``model.calibration.CHANNELS``) has its own live accepted error, held to its own
promise; an item stored before channels is a file. The files' estimate also says what it leaves
out: the audits stored before audits kept their fraction (only files were) and the other
channels' audits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from model.calibration import CHANNELS, Channel
from service.review.live import OUTCOMES, REASONS, AcceptedError, outcome


@dataclass
class Stats:
    """Where the queue stands and what its labels say."""

    waiting: dict[str, int]  # by reason: free to claim (an audit that was referred too counts as an audit)
    claimed: int  # held by a reviewer, lease running
    labelled: dict[str, dict[str, int]]  # by reason, then label
    done_today: dict[str, int]  # labels since 00:00 UTC, by reviewer
    agreement: float | None  # share of labelled items (unreadable left out) whose label is the answer's class
    accepted_errors: dict[Channel, AcceptedError]  # each channel's, from its audit labels (its own promise)
    referrals: dict[str, dict[str, int]]  # by refer_reason (and "all"): right / wrong / not_a_digit / unreadable
    stored_items: int
    stored_bytes: int
    generated: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Labelled:
    """A group of labelled items that share every value the statistics read, and how many they are."""

    reason: str
    refer: bool
    fraction: float | None  # an audit's draw fraction (None: stored before audits kept it)
    refer_reason: str | None
    predicted: int
    label: str
    channel: Channel
    count: int


def tally(groups: Iterable[Any], done_today: dict[str, int], now: float) -> Stats:
    """The statistics from the store's groups, each ``(reason, refer, audit_fraction, refer_reason,
    predicted, label, channel, held, count, bytes)`` (``held``: unlabelled and its lease running)."""
    waiting = dict.fromkeys(REASONS, 0)
    claimed = stored_items = stored_bytes = 0
    labelled: list[Labelled] = []
    for reason, refer, fraction, refer_reason, predicted, label, channel, is_held, count, size in groups:
        stored_items += count
        stored_bytes += int(size)
        if label is not None:
            labelled.append(Labelled(reason, bool(refer), fraction, refer_reason, predicted, label,
                                     stored_channel(channel), count))
        elif is_held:
            claimed += count
        else:
            waiting[reason] = waiting.get(reason, 0) + count
    return Stats(waiting=waiting, claimed=claimed, labelled=labels_by_reason(labelled), done_today=done_today,
                 agreement=agreement(labelled), accepted_errors=accepted_errors(labelled),
                 referrals=referrals(labelled), stored_items=stored_items, stored_bytes=stored_bytes, generated=now)


def stored_channel(raw: str | None) -> Channel:
    """The channel a stored item names; an item stored before channels (null) is a file."""
    return next((channel for channel in CHANNELS if channel == raw), "file")


def labels_by_reason(rows: list[Labelled]) -> dict[str, dict[str, int]]:
    labelled: dict[str, dict[str, int]] = {reason: {} for reason in REASONS}
    for row in rows:
        by_label = labelled.setdefault(row.reason, {})
        by_label[row.label] = by_label.get(row.label, 0) + row.count
    return labelled


def agreement(rows: list[Labelled]) -> float | None:
    """The share of labelled items (unreadable left out) whose label is the answer's class; None before one."""
    results = [(outcome(row.label, row.predicted), row.count) for row in rows]
    judged = sum(count for result, count in results if result != "unreadable")
    agreed = sum(count for result, count in results if result == "right")
    return agreed / judged if judged else None


def accepted_errors(rows: list[Labelled]) -> dict[Channel, AcceptedError]:
    """Each channel's live accepted error from its accepted audits, weighted by their draw fractions."""
    strata: dict[Channel, dict[float, tuple[int, int]]] = {channel: {} for channel in CHANNELS}  # (wrong, audited)
    unreadable = dict.fromkeys(CHANNELS, 0)
    legacy = 0
    for row in rows:
        if row.reason != "audit" or row.refer:
            continue
        result = outcome(row.label, row.predicted)
        if result == "unreadable":
            unreadable[row.channel] += row.count
        elif row.fraction is None:
            legacy += row.count  # only files were stored before audits kept their fraction
        else:
            wrong, audited = strata[row.channel].get(row.fraction, (0, 0))
            strata[row.channel][row.fraction] = (wrong + (0 if result == "right" else row.count), audited + row.count)
    errors = {channel: AcceptedError.weighted(strata[channel], unreadable[channel]) for channel in CHANNELS}
    others = sum(error.audited + error.unreadable for channel, error in errors.items() if channel != "file")
    errors["file"] = replace(errors["file"], legacy=legacy, other_channels=others)
    return errors


def referrals(rows: list[Labelled]) -> dict[str, dict[str, int]]:
    """What the referred items were (every referred item, audited or not), by refer_reason and ``all``."""
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        if not row.refer:
            continue
        result = outcome(row.label, row.predicted)
        for key in (row.refer_reason or "uncertain", "all"):
            bucket = found.setdefault(key, dict.fromkeys(OUTCOMES, 0))
            bucket[result] += row.count
    return found
