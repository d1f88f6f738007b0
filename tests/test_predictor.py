"""The predictor: the refer rule at its thresholds, overrides, and answers consistent with the scores."""

import json
import math
import shutil

import numpy as np
import pytest

from harness.inputs import SHIPPED, load_digit, mnist_fixtures, shipped_calibration
from model.checkpoint import CheckpointError
from model.refer_rule import ReferRule, candidates, top_two_mass
from service.predictor import Predictor


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
