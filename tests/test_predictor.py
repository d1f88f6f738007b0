"""The predictor: the refer rule at its thresholds, overrides, and answers consistent with the scores."""

import json
import math
import shutil

import numpy as np
import pytest
import torch

from harness.inputs import SHIPPED, blended_digits, load_digit, mnist_fixtures, shipped_calibration
from model.checkpoint import CheckpointError
from model.int8_trunk import trunk_path
from model.refer_rule import ReferRule, candidates, top_two_mass
from service.inference.predictor import Predictor


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
    assert Predictor.from_checkpoint(SHIPPED, threshold=0.123,
                                     expected_referral_rate=0.04).expected_referral_rate == 0.04


def test_answers_are_consistent_with_their_scores(shipped):
    digits = [load_digit(path) for path, _ in mnist_fixtures()]
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(8)]
    for prediction in shipped.predict(digits + noise, samples=50):
        assert prediction.refer_reason == shipped.rule.reason(prediction.entropy,
                                                              top_two_mass(prediction.probabilities))
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
    meta["calibrations"] = {"validation": {"file": {"float32": {"threshold": 1.0, "bogus": True}}}}
    weights.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"calibration record in its metadata is malformed \(unknown calibration "
                                              r"keys: \['bogus'\]\)"):
        Predictor.from_checkpoint(weights)
    shipped = json.loads(SHIPPED.with_suffix(".json").read_text())["calibrations"]
    meta["calibrations"] = {"validation": {"file": shipped["validation"]["file"]}}  # no drawn record: not served
    weights.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError,
                       match=r"no calibrated threshold in its metadata for every channel \(file, drawn\)"):
        Predictor.from_checkpoint(weights)


def test_each_channel_is_judged_by_its_own_calibrated_rule(shipped):
    """Drawings on the page's pad have a record of their own (a stricter threshold at their own alpha);
    the same scores are judged by the channel's rule, and an overridden threshold holds for both."""
    file, drawn = shipped_calibration("float32"), shipped_calibration("float32", "drawn")
    assert (file["channel"], file["alpha"], drawn["channel"], drawn["alpha"]) == ("file", 0.002, "drawn", 0.004)
    assert drawn["threshold"] < file["threshold"] and drawn["temperature"] == file["temperature"]
    assert shipped.rules["drawn"] == ReferRule(drawn["threshold"], drawn["familiar_mass"])
    digits = [load_digit(path) for path, _ in mnist_fixtures()] + blended_digits()
    torch.manual_seed(0)
    as_files = shipped.predict(digits, 100)
    torch.manual_seed(0)
    as_drawn = shipped.predict(digits, 100, channel="drawn")
    for posted, drawing in zip(as_files, as_drawn, strict=True):
        assert drawing.entropy == posted.entropy and (posted.channel, drawing.channel) == ("file", "drawn")
        assert (posted.threshold, drawing.threshold) == (file["threshold"], drawn["threshold"])
        assert posted.refer == (posted.entropy > file["threshold"])
        assert drawing.refer_reason == shipped.rules["drawn"].reason(drawing.entropy,
                                                                     top_two_mass(drawing.probabilities))
    assert sum(d.refer for d in as_drawn) > sum(f.refer for f in as_files)  # some between the two thresholds
    overridden = Predictor.from_checkpoint(SHIPPED, threshold=0.123)
    assert overridden.rules["drawn"].threshold == overridden.rules["file"].threshold == 0.123


def test_records_of_one_precision_fitted_at_different_temperatures_are_refused(tmp_path):
    """One pass serves every channel, at one temperature: a drawn record fitted at another is a promise
    the served net cannot keep."""
    weights = tmp_path / "bnn.safetensors"
    shutil.copy(SHIPPED, weights)
    shutil.copy(trunk_path(SHIPPED), trunk_path(weights))
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    meta["calibrations"]["validation"]["drawn"]["float32"]["temperature"] = 0.5
    weights.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"the float32 records were fitted at different temperatures"):
        Predictor.from_checkpoint(weights, precision="float32")
    assert Predictor.from_checkpoint(weights, precision="int8").net.config.temperature == meta["config"]["temperature"]
