"""The queue's statistics from the store's groups, without a store: each channel's live error apart,
an item stored before channels counted as a file."""

import pytest

from service.review.stats import tally


def group(reason, label, predicted=3, refer=False, fraction=0.5, channel="file", held=False, count=1, size=100):
    """One of the store's groups: (reason, refer, audit_fraction, refer_reason, predicted, label, channel, held,
    count, bytes: the sum of the group's)."""
    return (reason, refer, fraction, "uncertain" if refer else None, predicted, label, channel, held, count, size)


def test_tally_adds_up_the_groups_each_channel_apart():
    stats = tally([
        group("audit", "3", count=3),  # files right
        group("audit", "8", channel=None),  # stored before channels: a file, wrong
        group("audit", "3", fraction=None, count=2),  # stored before audits kept their fraction: left out
        group("audit", "unreadable", channel="drawn"),
        group("audit", "5", channel="drawn", count=4),  # drawings wrong
        group("audit", "3", refer=True, channel="drawn"),  # referred: not an accepted answer
        group("referred", "not_a_digit", refer=True, count=2),
        group("referred", None, refer=True, count=5, size=10),  # waiting
        group("audit", None, held=True),  # claimed
    ], {"ana": 7}, 1.8e9)
    files, drawings = stats.accepted_errors["file"], stats.accepted_errors["drawn"]
    assert (files.audited, files.wrong, files.legacy, files.other_channels) == (4, 1, 2, 5)  # 4 drawings + 1 unreadable
    assert files.ratio == pytest.approx(1 / 4)
    assert (drawings.audited, drawings.wrong, drawings.unreadable, drawings.legacy,
            drawings.other_channels) == (4, 4, 1, 0, 0)
    assert stats.waiting == {"referred": 5, "audit": 0} and stats.claimed == 1 and stats.done_today == {"ana": 7}
    assert stats.labelled == {"audit": {"3": 6, "8": 1, "unreadable": 1, "5": 4}, "referred": {"not_a_digit": 2}}
    assert stats.referrals["all"] == {"right": 1, "wrong": 0, "not_a_digit": 2, "unreadable": 0}
    assert stats.agreement == pytest.approx(6 / 13)  # right: 3 + 2 + 1 of the 14 labelled, the unreadable left out
    assert (stats.stored_items, stats.stored_bytes, stats.generated) == (20, 8 * 100 + 10, 1.8e9)  # bytes: by group
