"""The repo's Prometheus configuration and rules: promtool's checks and unit tests, and the
false-alarm rate of the referral band the alerts use, computed exactly."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import yaml
from scipy.stats import binom

from tests.prometheus_server import DASHBOARD, DEPLOY, binary

Z, SLACK, MIN_IMAGES = 4, 4, 50  # the band in rules.yml: |r - p| > (Z sqrt(n p (1-p)) + SLACK) / n, n >= MIN_IMAGES


def promtool(*args: str) -> str:
    result = subprocess.run([binary("promtool"), *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_configuration_and_rules_pass_promtool_check():
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 31 rules found" in promtool("check", "rules", "rules.yml")


def test_rules_pass_their_unit_tests():
    assert "SUCCESS" in promtool("test", "rules", "rules_test.yml")


def alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
    return {rule["alert"]: " ".join(rule["expr"].split())
            for group in groups for rule in group["rules"] if "alert" in rule}


def test_the_band_in_the_rules_is_the_one_analysed_here():
    expr = alert_exprs()["BnnReferralRateOutOfBand"]
    # the file channel's answers only: the page's drawings have their own rule and referral rate
    assert expr.startswith("( abs(job:bnn_file_referral_rate:ratio_rate1h - job:bnn_expected_referral_rate:max)")
    assert (f"> ({Z} * sqrt(3600 * job:bnn_file_predictions:rate1h * job:bnn_expected_referral_rate:max "
            f"* (1 - job:bnn_expected_referral_rate:max)) + {SLACK}) "
            "/ (3600 * job:bnn_file_predictions:rate1h)") in expr
    assert f"(3600 * job:bnn_file_predictions:rate1h >= {MIN_IMAGES})" in expr
    shift = alert_exprs()["BnnReferralRateShift"]
    assert shift == expr.replace("3600", "300").replace("rate1h", "rate5m")


def test_the_dashboard_draws_the_band_the_alert_uses():
    alert = alert_exprs()["BnnReferralRateOutOfBand"]
    band = re.search(r"> (\(.*\) / \(3600 \* job:bnn_file_predictions:rate1h\))", alert)
    assert band is not None
    exprs = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    assert f"job:bnn_expected_referral_rate:max + {band.group(1)}" in exprs


def false_alarm_probability(n: int, p: float) -> float:
    """P(the band fires) when referrals ~ Binomial(n, p): the live rate is what it should be."""
    half_width = (Z * np.sqrt(n * p * (1 - p)) + SLACK) / n
    above = np.floor(n * (p + half_width))  # fires for counts > n (p + h)
    below = np.ceil(n * (p - half_width))  # and for counts < n (p - h)
    return float(binom.sf(above, n, p) + (binom.cdf(below - 1, n, p) if below >= 1 else 0.0))


@pytest.mark.parametrize("p", [0.0005, 0.0027, 0.01, 0.05, 0.2, 0.5])
def test_band_false_alarm_probability_is_below_1e_4_at_every_volume(p):
    volumes = np.unique(np.logspace(np.log10(MIN_IMAGES), 6, 120).astype(int))
    worst = max(false_alarm_probability(int(n), p) for n in volumes)
    assert worst < 1e-4


def test_band_detects_a_tripled_referral_rate_at_one_image_per_second():
    n, p = 3600, 0.0027  # one hour at 1 image/s, the shipped expectation
    half_width = (Z * np.sqrt(n * p * (1 - p)) + SLACK) / n
    detection = binom.sf(np.floor(n * (p + half_width)), n, 3 * p)
    assert detection > 0.5  # 0.68: and a fivefold rate is caught with certainty
    assert binom.sf(np.floor(n * (p + half_width)), n, 5 * p) > 0.999
