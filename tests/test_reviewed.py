"""model.evaluate --reviewed: the review export scored against a checkpoint, by hand-countable cases."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from harness.inputs import SHIPPED, load_digit, mnist_fixtures
from model import evaluate
from model.binomial import clopper_pearson
from model.reviewed import read_export


def record(pixels: np.ndarray, label: str, reason: str, predicted: int) -> str:
    return json.dumps({"id": "x", "reason": reason, "label": label, "predicted": predicted, "model_version": "served",
                       "input": base64.b64encode(pixels.astype(np.uint8).tobytes()).decode(), "file": None})


def test_the_export_scores_audits_referred_digits_and_non_digits(tmp_path: Path) -> None:
    digits = [(load_digit(path), label) for path, label in mnist_fixtures()[:6]]
    noise = np.random.default_rng(0).integers(0, 256, (28, 28))
    lines = [record(pixels, str(label), "audit", label) for pixels, label in digits[:4]]  # served right
    lines.append(record(digits[4][0], str((digits[4][1] + 1) % 10), "audit", digits[4][1]))  # reviewer: served wrong
    lines.append(record(digits[5][0], "unreadable", "audit", digits[5][1]))
    lines.append(record(noise, "not_a_digit", "referred", 0))
    lines.append(record(digits[0][0], str(digits[0][1]), "referred", digits[0][1]))
    export = tmp_path / "labels.ndjson"
    export.write_text("\n".join(lines) + "\n")
    assert evaluate.main(["--checkpoint", str(SHIPPED), "--reviewed", str(export), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "reviewed.json").read_text())
    assert report["items"] == 8 and report["unreadable"] == 1 and report["served_models"] == ["served"]
    served = report["audits"]["served"]
    assert (served["n"], served["wrong"]) == (5, 1)
    assert (served["lower"], served["upper"]) == pytest.approx(scipy_clopper_pearson(1, 5), abs=1e-9)
    mine = report["audits"]["checkpoint"]  # the shipped model accepts these MNIST digits: the same five
    assert (mine["n"], mine["wrong"]) == (5, 1) and report["audits"]["checkpoint_refers"] == 0
    assert report["non_digits"] == {"n": 1, "checkpoint_refers": 1.0}
    assert report["referred_digits"]["n"] == 1 and report["referred_digits"]["checkpoint_accepts"] == 1.0
    assert report["referred_digits"]["accuracy_of_accepted"] == 1.0


def test_a_malformed_line_is_named(tmp_path: Path) -> None:
    export = tmp_path / "bad.ndjson"
    export.write_text(record(np.zeros((28, 28)), "3", "audit", 3) + "\n{\"label\": 3}\n")
    with pytest.raises(ValueError, match=r"bad.ndjson:2: not a review export record"):
        read_export(export)


def scipy_clopper_pearson(errors: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    lower = 0.0 if errors == 0 else float(beta.ppf(tail, errors, trials - errors + 1))
    upper = 1.0 if errors == trials else float(beta.ppf(1 - tail, errors + 1, trials - errors))
    return lower, upper


@pytest.mark.parametrize(("errors", "trials"), [(0, 1), (0, 400), (3, 400), (12, 400), (7, 7), (1, 2), (50, 100000)])
def test_the_interval_without_scipy_is_scipys(errors: int, trials: int) -> None:
    """model/binomial.py computes Clopper-Pearson without scipy (the service uses it): scipy's numbers."""
    assert clopper_pearson(errors, trials) == pytest.approx(scipy_clopper_pearson(errors, trials), abs=1e-9)
