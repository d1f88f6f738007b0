"""The refer rule: referred exactly above the threshold, the reason from the top-two mass, the
candidates, and the array form deciding every answer as the one-answer form does."""

import math

import numpy as np
import pytest

from harness.inputs import shipped_calibration
from model.calibration import Calibration
from model.refer_rule import ReferRule, candidates, top_two_mass


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


def test_the_array_form_decides_as_the_one_answer_form():
    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet(np.full(10, 0.3), size=500)  # [500, 10]
    entropy = np.concatenate([rng.uniform(0.0, 1.0, 498), [0.5, math.nextafter(0.5, 1.0)]])  # [500], both sides of 0.5
    mass = top_two_mass(probabilities)  # [500]
    assert mass.shape == (500,) and mass[0] == pytest.approx(sum(sorted(probabilities[0])[-2:]))
    for rule in (ReferRule(0.5, 0.8), ReferRule(0.5)):
        uncertain, unfamiliar = rule.reasons(entropy, mass)
        one_by_one = [rule.reason(e, m) for e, m in zip(entropy.tolist(), mass.tolist(), strict=True)]
        assert uncertain.tolist() == [reason == "uncertain" for reason in one_by_one]
        assert unfamiliar.tolist() == [reason == "unfamiliar" for reason in one_by_one]
        assert rule.refers(entropy).tolist() == [reason is not None for reason in one_by_one]
        assert uncertain.sum() > 0 and (rule.familiar_mass is None) == (unfamiliar.sum() == 0)


def test_the_rule_of_the_shipped_record_and_an_override():
    record = Calibration.from_dict(shipped_calibration())
    assert ReferRule.of(record) == ReferRule(record.threshold, record.familiar_mass)
    assert ReferRule.of(record, 0.25) == ReferRule(0.25, record.familiar_mass)
