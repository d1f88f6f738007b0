"""Audit sampling marks a uniform random fraction of every answer, accepted or referred alike."""

from __future__ import annotations

import random

import pytest
from scipy.stats import binom, chi2_contingency

from service.inference.audit import DEFAULT_FRACTION, AuditSampler
from service.settings import Settings


def test_fraction_zero_marks_nothing_and_one_marks_every_answer():
    assert not any(AuditSampler(0.0).draw() for _ in range(1000))
    assert all(AuditSampler(1.0).draw() for _ in range(1000))


def test_a_fraction_is_drawn_at_that_rate():
    sampler = AuditSampler(0.01, random.Random(7))
    draws = 100_000
    marked = sum(sampler.draw() for _ in range(draws))
    low, high = binom.interval(0.9999, draws, 0.01)
    assert low <= marked <= high


def test_draws_are_uniform_over_accepted_and_referred_answers():
    """A stream where every tenth answer is referred: the audit rate of the referred equals that of
    the accepted (a chi-squared test of independence at 0.1 %), and both are the fraction."""
    sampler = AuditSampler(0.05, random.Random(11))
    counts = {True: [0, 0], False: [0, 0]}  # refer -> [audited, not]
    for index in range(200_000):
        refer = index % 10 == 0
        counts[refer][0 if sampler.draw() else 1] += 1
    _, p_value, _, _ = chi2_contingency([counts[True], counts[False]])
    assert p_value > 0.001
    for refer, (audited, not_audited) in counts.items():
        low, high = binom.interval(0.9999, audited + not_audited, 0.05)
        assert low <= audited <= high, refer


def test_the_service_audits_by_default():
    assert Settings().audit_fraction == DEFAULT_FRACTION == 0.02


def test_out_of_range_fraction_is_refused():
    with pytest.raises(ValueError, match="audit fraction"):
        AuditSampler(1.5)


def test_estimates_weight_each_audit_by_its_stored_fraction():
    """Audits at one fraction: exactly k / n with its Clopper-Pearson interval. Half the traffic
    audited at 50 % and half at 5 %: each audit stands for 1 / fraction answers, so the 10 wrong of
    the densely sampled period weigh a tenth of the naive 10 / 200."""
    from service.review.live import AcceptedError

    assert AcceptedError.weighted({0.1: (1, 100)}, unreadable=2) == AcceptedError.of(1, 100, 2)
    mixed = AcceptedError.weighted({0.5: (10, 100), 0.05: (0, 100)}, legacy=3)
    assert mixed.ratio == pytest.approx((10 / 0.5) / (100 / 0.5 + 100 / 0.05))  # 0.91 %, not 5 %
    assert (mixed.audited, mixed.wrong, mixed.legacy) == (200, 10, 3)
    assert mixed.lower < mixed.ratio < mixed.upper
