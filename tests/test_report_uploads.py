"""The uploads report: per-family rows and the operating-point table, on scores with known answers."""

import json
import math

import numpy as np

from model.calibration import Calibration
from model.report.uploads import Family, Scores, decisions, family_row, operating_points


def _calibration(threshold: float, familiar_mass: float | None = None) -> Calibration:
    return Calibration("guarantee", threshold, 100, 0.01, 0.05, None, 100, 0.9, 0.99, 0.009, "test", familiar_mass,
                       precision="float32", channel="file")


def test_decisions_and_rows_follow_the_thresholds():
    scores = Scores(entropy=np.array([0.1, 0.6, 0.2, 0.9]), predicted=np.array([1, 2, 3, 4]),
                    mass=np.array([1.0, 0.9, 0.3, 0.5]))
    uncertain, unfamiliar = decisions(scores, _calibration(0.5, 0.7))  # one reason a referral
    assert uncertain.tolist() == [False, True, False, False] and unfamiliar.tolist() == [False, False, False, True]
    digits = Family("digits", "digits", np.zeros((4, 28, 28), np.uint8), np.array([1, 2, 0, 4]))
    row = family_row(digits, scores, _calibration(0.5, 0.7), None)
    assert row["referred"] == 0.5 and row["referred_uncertain"] == 0.25 and row["referred_unfamiliar"] == 0.25
    assert row["accuracy"] == 0.75 and row["accepted_accuracy"] == 0.5 and row["accepted_errors"] == 1
    without = family_row(digits, scores, _calibration(0.5), None)
    assert without["referred"] == 0.5 and without["referred_unfamiliar"] == 0.0


def test_the_reason_follows_the_top_two_mass():
    scores = Scores(entropy=np.array([0.1, 0.6, 0.9, 2.0]), predicted=np.array([1, 2, 3, 4]),
                    mass=np.array([0.3, 0.95, 0.6, 0.2]))
    calibration = _calibration(0.5, 0.7)
    uncertain, unfamiliar = decisions(scores, calibration)
    assert uncertain.tolist() == [False, True, False, False]  # the first is accepted, whatever its shape
    assert unfamiliar.tolist() == [False, False, True, True]
    ood = Family("ood", "ood", np.zeros((4, 28, 28), np.uint8), np.full(4, -1))
    assert family_row(ood, scores, calibration, None)["unfamiliar_of_referred"] == 2 / 3


def test_auroc_of_a_family_against_the_digits():
    reference = Scores(np.linspace(0, 0.5, 50), np.zeros(50, int))
    far = Scores(np.linspace(0.6, 2.0, 30), np.zeros(30, int))
    mixed = Scores(np.linspace(0, 0.5, 50), np.zeros(50, int))
    ood = Family("ood", "ood", np.zeros((30, 28, 28), np.uint8), np.full(30, -1))
    assert family_row(ood, far, _calibration(0.55), reference)["auroc_entropy"] == 1.0
    same = Family("same", "ood", np.zeros((50, 28, 28), np.uint8), np.full(50, -1))
    assert math.isclose(family_row(same, mixed, _calibration(0.55), reference)["auroc_entropy"], 0.5)


def test_operating_points_trade_digit_referral_for_ood_referral():
    rng = np.random.default_rng(0)
    n = 20_000
    entropy = rng.uniform(0, 1, n)
    labels = rng.integers(0, 10, n)
    predicted = np.where(rng.uniform(size=n) < entropy**3 / 2, (labels + 1) % 10, labels)  # errors at high entropy
    validation = Scores(entropy, predicted)
    test_digits = Family("digits", "digits", np.zeros((n, 28, 28), np.uint8), labels)
    ood = Family("ood", "ood", np.zeros((1000, 28, 28), np.uint8), np.full(1000, -1))
    ood_scores = Scores(rng.uniform(0.2, 1.0, 1000), np.zeros(1000, int))
    rows = operating_points(validation, labels, [test_digits, ood], [validation, ood_scores], 100)
    usable = [r for r in rows if not r.get("refused")]
    assert [r["alpha"] for r in usable] == sorted(r["alpha"] for r in usable)  # strict to loose
    referred = [r["digits: referred"] for r in usable]
    assert referred == sorted(referred, reverse=True)  # a looser alpha refers fewer digits...
    ood_referred = [r["ood: referred"] for r in usable]
    assert ood_referred == sorted(ood_referred, reverse=True)  # ...and fewer non-digits
    for row in usable:
        assert row["digits: accepted accuracy"] >= 1 - row["alpha"] - 0.002
    json.dumps(rows)  # the table is written as JSON
