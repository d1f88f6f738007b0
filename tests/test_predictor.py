"""The predictor: the refer rule at its thresholds, overrides, and answers consistent with the scores."""

import json
import math
import shutil

import numpy as np
import pytest

from harness.inputs import SHIPPED, load_digit, mnist_fixtures, shipped_calibration
from model.checkpoint import CheckpointError
from service.predictor import Predictor, ReferRule, candidates, top_two_mass


def test_refer_flips_exactly_at_the_entropy_threshold():
    rule = ReferRule(threshold=0.5)
    assert rule.reason(0.5, 1.0) is None  # refer when entropy > threshold: equal is accepted
    assert rule.reason(math.nextafter(0.5, 1.0), 1.0) == "uncertain"
    assert rule.reason(2.0, 0.2) == "uncertain"  # no familiar mass calibrated: every referral is "uncertain"


def test_the_reason_follows_the_top_two_mass_and_never_fires_without_a_referral():
    rule = ReferRule(threshold=0.5, familiar_mass=0.8)
    assert rule.reason(0.4, 0.2) is None  # accepted: no reason, whatever the shape
    assert rule.reason(0.9, 0.8) == "uncertain"  # at the mass: a digit, unsure which of two
    assert rule.reason(0.9, math.nextafter(0.8, 0.0)) == "unfamiliar"
    assert rule.reason(2.3, 0.2) == "unfamiliar"


def test_candidates_and_top_two_mass():
    assert candidates([0.0] * 3 + [0.99] + [0.01 / 6] * 6) == [3]  # sure: the digit alone
    assert candidates([0.0, 0.0, 0.0, 0.55, 0.0, 0.4, 0.0, 0.0, 0.05, 0.0]) == [3, 5]  # 0.95 held after two
    assert candidates([0.0, 0.0, 0.0, 0.5, 0.0, 0.3, 0.0, 0.0, 0.15, 0.05]) == [3, 5, 8]  # at most three
    assert candidates([0.0, 0.0, 0.0, 0.6, 0.0, 0.36, 0.0, 0.0, 0.04, 0.0]) == [3, 5]  # 8 under 5 %
    assert candidates([0.1] * 10) == [0, 1, 2]  # spread evenly: ties in class order
    assert top_two_mass([0.0, 0.0, 0.0, 0.5, 0.0, 0.3, 0.0, 0.0, 0.15, 0.05]) == pytest.approx(0.8)
    assert top_two_mass([0.1] * 10) == pytest.approx(0.2)


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.from_checkpoint(SHIPPED)


def test_thresholds_come_from_the_calibration_unless_overridden(shipped):
    record = shipped_calibration("float32")
    assert shipped.rule.threshold == record["threshold"]
    assert shipped.rule.familiar_mass == record["familiar_mass"]
    assert shipped.expected_referral_rate == pytest.approx(1 - record["validation_coverage"])
    overridden = Predictor.from_checkpoint(SHIPPED, threshold=0.123)
    assert overridden.rule == ReferRule(0.123, record["familiar_mass"])
    assert overridden.expected_referral_rate is None  # unknown for a rule nobody calibrated
    assert Predictor.from_checkpoint(SHIPPED, threshold=0.123, expected_referral_rate=0.04).expected_referral_rate == 0.04


def test_answers_are_consistent_with_their_scores(shipped):
    digits = [load_digit(path) for path, _ in mnist_fixtures()]
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(8)]
    for prediction in shipped.predict(digits + noise, samples=50):
        assert prediction.refer_reason == shipped.rule.reason(prediction.entropy, top_two_mass(prediction.probabilities))
        assert prediction.refer == (prediction.refer_reason is not None)
        assert prediction.candidates == candidates(prediction.probabilities)
        assert prediction.candidates[0] == prediction.digit
        assert math.isclose(sum(prediction.probabilities), 1.0, abs_tol=1e-9)
        assert prediction.digit == int(np.argmax(prediction.probabilities))
        assert 0.0 <= prediction.entropy <= math.log(10) + 1e-6
        assert prediction.samples == 50


def test_real_digits_are_read_and_noise_is_referred(shipped):
    digits = [load_digit(path) for path, _ in mnist_fixtures()]
    labels = [label for _, label in mnist_fixtures()]
    answers = shipped.predict(digits)
    assert [a.digit for a in answers] == labels
    assert sum(a.refer for a in answers) <= 2  # 2.7 % of the test arrays are referred; here 14 and 18 are
    rng = np.random.default_rng(1)
    noise = shipped.predict([rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(20)])
    assert all(a.refer for a in noise)


def test_a_checkpoint_without_calibration_needs_a_threshold(tmp_path):
    weights = tmp_path / "bnn.safetensors"
    shutil.copy(SHIPPED, weights)
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    del meta["calibrations"]
    weights.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no calibrated threshold"):
        Predictor.from_checkpoint(weights)
    assert Predictor.from_checkpoint(weights, threshold=0.7).rule == ReferRule(0.7, None)
    meta["calibrations"] = {"float32": {"threshold": 1.0, "bogus": True}}
    weights.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="calibration record"):
        Predictor.from_checkpoint(weights)
