import math

import numpy as np
import pytest

from model.calibrate import (
    CalibrationError,
    clopper_pearson_upper,
    guarantee_threshold,
    referral_rate_threshold,
)


def test_clopper_pearson_zero_errors_matches_closed_form():
    # With zero errors the one-sided bound is 1 - delta ** (1 / n).
    assert math.isclose(clopper_pearson_upper(0, 1000, 0.05), 1 - 0.05 ** (1 / 1000), rel_tol=1e-9)
    assert clopper_pearson_upper(5, 5, 0.05) == 1.0
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0


def test_guarantee_picks_the_threshold_where_errors_begin():
    # 20,000 inputs: entropy uniform on [0, 1]; predictions are perfect below 0.6, 30% wrong above.
    rng = np.random.default_rng(0)
    entropy = rng.uniform(0, 1, 20_000)
    correct = np.where(entropy < 0.6, True, rng.uniform(size=20_000) > 0.3)
    grid = np.linspace(0.01, 1.0, 100)
    result = guarantee_threshold(entropy, correct, alpha=0.01, delta=0.05, grid=grid)
    # accepted error at threshold t > 0.6 is 0.3 (t - 0.6) / t; the largest t with error < 1%
    # is about 0.62; the bound needs a margin, so the choice lies in [0.6, 0.62].
    assert 0.6 <= result.threshold <= 0.62
    accepted = entropy <= result.threshold
    assert 1 - correct[accepted].mean() <= 0.01
    assert result.accepted_error_upper_bound < 0.01
    assert math.isclose(result.validation_coverage, accepted.mean())


def test_guarantee_refuses_when_no_threshold_meets_the_target():
    rng = np.random.default_rng(1)
    entropy = rng.uniform(0, 1, 5_000)
    correct = rng.uniform(size=5_000) > 0.1  # 10% wrong everywhere
    with pytest.raises(CalibrationError, match="no threshold certifies"):
        guarantee_threshold(entropy, correct, alpha=0.005, delta=0.05)


def test_fixed_sequence_stops_at_first_failure():
    # Errors at low entropy, clean above: a loose threshold would pass on its own, but the strict
    # thresholds fail first, so fixed-sequence testing must refuse rather than skip ahead.
    entropy = np.linspace(0, 1, 10_000)
    correct = entropy > 0.2
    with pytest.raises(CalibrationError):
        guarantee_threshold(entropy, correct, alpha=0.01, delta=0.05, grid=np.linspace(0.1, 1.0, 10))


def test_referral_rate_mode_refers_that_fraction():
    entropy = np.arange(1000) / 1000
    result = referral_rate_threshold(entropy, np.ones(1000, dtype=bool), rate=0.05)
    assert math.isclose(1 - result.validation_coverage, 0.05, abs_tol=0.002)
    assert result.mode == "referral_rate" and result.alpha is None
