"""Audit sampling marks a uniform random fraction of accepted predictions, never referred ones."""

from __future__ import annotations

import random

import pytest
from scipy.stats import binom

from service.audit import AuditSampler


def test_fraction_zero_marks_nothing_and_one_marks_every_accepted_prediction():
    assert not any(AuditSampler(0.0).draw(refer=False) for _ in range(1000))
    always = AuditSampler(1.0)
    assert all(always.draw(refer=False) for _ in range(1000))
    assert not any(always.draw(refer=True) for _ in range(1000))


def test_a_fraction_is_drawn_at_that_rate():
    sampler = AuditSampler(0.01, random.Random(7))
    draws = 100_000
    marked = sum(sampler.draw(refer=False) for _ in range(draws))
    low, high = binom.interval(0.9999, draws, 0.01)
    assert low <= marked <= high


def test_out_of_range_fraction_is_refused():
    with pytest.raises(ValueError, match="audit fraction"):
        AuditSampler(1.5)
