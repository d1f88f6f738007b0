"""The review export read back: its split by id hash, the audits as one sample, recalibration on
them, and a checkpoint scored against it."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.inputs import SHIPPED, load_digit, mnist_fixtures
from model import calibrate, evaluate
from model.binomial import clopper_pearson
from model.calibration import read_records, served
from model.checkpoint import as_served, load_checkpoint, read_metadata
from model.reviewed import HELD_OUT_SHARE, parse_export, read_export, reviewed_report, split, uniform_audits
from model.scoring import predict_images


def record(pixels: np.ndarray, label: str, reason: str, predicted: int, item_id: str = "x",
           audit_fraction: float | None = 0.02, refer: bool | None = None, channel: str | None = None) -> str:
    return json.dumps({"id": item_id, "reason": reason, "label": label, "predicted": predicted,
                       "model_version": "served", "refer": reason == "referred" if refer is None else refer,
                       "audit_fraction": audit_fraction if reason == "audit" else None, "labelled_at": 1.8e9,
                       "input": base64.b64encode(pixels.astype(np.uint8).tobytes()).decode(), "file": None,
                       **({} if channel is None else {"channel": channel})})


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
    assert report["drawn_audits"]["served"]["n"] == 0 and report["drawn_audits"]["alpha"] == 0.004
    assert report["alpha"] == {"file": 0.002, "drawn": 0.004}  # each channel's


def test_each_audit_is_judged_by_its_channels_rule(tmp_path: Path) -> None:
    """The same digit as a file and as a drawing: with the file threshold at its entropy and the drawn
    one below, the checkpoint accepts the file and refers the drawing."""
    net, meta = load_checkpoint(SHIPPED)
    rules = served(meta, "float32")
    served_net = as_served(net, rules["file"], "float32")
    fixture, label = mnist_fixtures()[0]
    pixels = np.array(load_digit(fixture))
    torch.manual_seed(0)  # the draws the report makes below: both copies in one pass
    as_file, as_drawing = predict_images(served_net, np.stack([pixels, pixels]), 50).entropy.tolist()
    assert as_drawing > 0
    rules = {"file": replace(rules["file"], threshold=as_file),
             "drawn": replace(rules["drawn"], threshold=as_drawing / 2)}
    export = tmp_path / "two.ndjson"
    export.write_text(record(pixels, str(label), "audit", label, "a") + "\n"
                      + record(pixels, str(label), "audit", label, "b", channel="drawn") + "\n")
    torch.manual_seed(0)
    report = reviewed_report(served_net, rules, read_export(export), 50)
    assert report["audits"]["checkpoint"]["n"] == 1 and report["audits"]["checkpoint_refers"] == 0
    assert report["drawn_audits"]["checkpoint"]["n"] == 0 and report["drawn_audits"]["checkpoint_refers"] == 1
    assert report["drawn_audits"]["served"]["n"] == 1  # its served answer was accepted: it counts


def test_the_channel_is_read_from_the_record_or_its_answer() -> None:
    """Exports name the channel; earlier ones only in the answer, and those before channels nowhere (files)."""
    pixels = np.zeros((28, 28), np.uint8)
    lines = [record(pixels, "1", "audit", 1, "a", channel="drawn"), record(pixels, "1", "audit", 1, "b")]
    answer_only = json.loads(record(pixels, "1", "audit", 1, "c"))
    answer_only["answer"] = {"class": 1, "channel": "drawn"}
    lines.append(json.dumps(answer_only))
    assert parse_export("\n".join(lines).encode(), "x").channels == ["drawn", "file", "drawn"]
    with pytest.raises(ValueError, match="unknown channel 'pad'"):
        parse_export(record(pixels, "1", "audit", 1, "d", channel="pad").encode(), "x")


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


def test_the_split_is_by_id_hash_disjoint_and_every_audit_is_held_out() -> None:
    pixels = np.zeros((28, 28))
    lines = [record(pixels, "3", "audit" if n % 4 == 0 else "referred", 3, item_id=f"{n:032x}") for n in range(4000)]
    reviewed = parse_export("\n".join(lines).encode(), "memory")
    train, held = split(reviewed)
    assert set(train.ids).isdisjoint(held.ids) and len(train) + len(held) == len(reviewed)
    assert all(reason == "referred" for reason in train.reasons)  # no audit is trained on
    assert sum(reason == "audit" for reason in held.reasons) == 1000
    assert 0.27 < (len(held) - 1000) / 3000 < 0.33  # the hash's share of the rest, about HELD_OUT_SHARE
    shuffled = parse_export("\n".join(reversed(lines)).encode(), "memory")
    assert set(split(shuffled)[1].ids) == set(held.ids)  # by id, not by position
    assert HELD_OUT_SHARE == 0.3


def test_audits_at_different_fractions_become_one_uniform_sample() -> None:
    """Half the period audited at 50 %, half at 5 %: the dense half is thinned to a tenth."""
    pixels = np.zeros((28, 28))
    lines = [record(pixels, "3", "audit", 3, item_id=f"a{n}", audit_fraction=0.5) for n in range(5000)]
    lines += [record(pixels, "3", "audit", 3, item_id=f"b{n}", audit_fraction=0.05) for n in range(500)]
    lines += [record(pixels, "3", "referred", 3, item_id=f"r{n}") for n in range(50)]
    audits = uniform_audits(parse_export("\n".join(lines).encode(), "memory"))
    dense = sum(item_id.startswith("a") for item_id in audits.ids)
    assert sum(item_id.startswith("b") for item_id in audits.ids) == 500 and 430 < dense < 570
    assert not any(item_id.startswith("r") for item_id in audits.ids)


def audits_export(path: Path, count: int, wrong_label: str | None = None, wrong: int = 0, drawn: int = 0) -> Path:
    """``count`` audits of files (no channel: as exported before channels), then ``drawn`` of drawings."""
    digits = [(load_digit(fixture), label) for fixture, label in mnist_fixtures()]
    lines = []
    for n in range(count + drawn):
        pixels, label = digits[n % len(digits)]
        lines.append(record(pixels, wrong_label if n < wrong and wrong_label else str(label), "audit", label,
                            item_id=f"audit{n:05d}", channel="drawn" if n >= count else None))
    path.write_text("\n".join(lines) + "\n")
    return path


def shipped_copy(tmp_path: Path) -> Path:
    import shutil

    for suffix in (".safetensors", ".json"):
        shutil.copy(SHIPPED.with_suffix(suffix), tmp_path / f"bnn{suffix}")
    return tmp_path / "bnn.safetensors"


def test_recalibration_refuses_saying_how_many_more_audits_it_needs(tmp_path: Path, capsys) -> None:
    checkpoint = shipped_copy(tmp_path)
    export = audits_export(tmp_path / "few.ndjson", 100)
    assert calibrate.main(["--checkpoint", str(checkpoint), "--reviewed", str(export), "--precision", "float32"]) == 2
    said = capsys.readouterr()
    assert "100 audits with their fraction" in said.out
    assert "file channel: 100 labelled audits" in said.err and "at least 1497" in said.err and "1397 more" in said.err
    assert "drawn channel: 0 labelled audits" in said.err and "at least 748" in said.err  # its alpha: 0.4 %
    assert read_records(read_metadata(checkpoint))["reviewed"] == {"file": {}, "drawn": {}}  # nothing written


def test_recalibration_on_audits_is_recorded_with_provenance_and_served(tmp_path: Path) -> None:
    from service.inference.predictor import Predictor

    checkpoint = shipped_copy(tmp_path)
    export = audits_export(tmp_path / "audits.ndjson", 1600)
    assert calibrate.main(["--checkpoint", str(checkpoint), "--reviewed", str(export), "--precision", "float32",
                           "--samples", "20"]) == 0
    record_ = read_records(read_metadata(checkpoint))["reviewed"]["file"]["float32"]
    provenance = record_.provenance or {}
    assert provenance["audits_used"] == 1600 == record_.validation_size and provenance["source"] == str(export)
    assert provenance["export_sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()
    assert provenance["labelled_from"] == provenance["labelled_to"] == 1.8e9
    shipped = read_metadata(SHIPPED)["calibrations"]["validation"]["file"]["float32"]
    assert record_.temperature == shipped["temperature"] and record_.familiar_mass == shipped["familiar_mass"]
    assert record_.accepted_error_upper_bound is not None and record_.accepted_error_upper_bound < 0.002
    served = Predictor.from_checkpoint(checkpoint, precision="float32")
    assert served.calibrations["file"] == record_ and served.threshold == record_.threshold
    # no drawn audits: the page's drawings keep the rule fitted on the validation mix's pen drawings
    drawn = read_records(read_metadata(checkpoint))["validation"]["drawn"]["float32"]
    assert served.calibrations["drawn"] == drawn
    assert served.rules["drawn"].threshold == drawn.threshold != record_.threshold


def test_each_channel_is_recalibrated_on_its_own_audits_at_its_own_alpha(tmp_path: Path, capsys) -> None:
    """1,600 file audits and 800 drawn ones (enough for the drawn channel's 0.4 %, not for 0.2 %):
    each channel's record is fitted on its audits alone, and served to that channel."""
    from service.inference.predictor import Predictor

    checkpoint = shipped_copy(tmp_path)
    export = audits_export(tmp_path / "audits.ndjson", 1600, drawn=800)
    assert calibrate.main(["--checkpoint", str(checkpoint), "--reviewed", str(export), "--precision", "float32",
                           "--samples", "20"]) == 0
    meta = read_metadata(checkpoint)
    reviewed = read_records(meta)["reviewed"]
    file, drawn = reviewed["file"]["float32"], reviewed["drawn"]["float32"]
    assert (file.channel, file.validation_size, file.alpha) == ("file", 1600, 0.002)
    assert (drawn.channel, drawn.validation_size, drawn.alpha) == ("drawn", 800, 0.004)
    assert (drawn.provenance or {})["audits_used"] == 800
    validation = read_records(meta)["validation"]
    assert drawn.familiar_mass == validation["drawn"]["float32"].familiar_mass  # the drawn reason rule kept
    assert (drawn.temperature, file.temperature) == (validation["drawn"]["float32"].temperature,) * 2
    served = Predictor.from_checkpoint(checkpoint, precision="float32")
    assert served.rules["file"].threshold == file.threshold and served.rules["drawn"].threshold == drawn.threshold
    said = capsys.readouterr().out
    assert "file channel, float32: threshold" in said and "on 1600 audits" in said and "on 800 audits" in said


def test_audits_fitted_with_the_validation_part_need_no_minimum_and_their_errors_count(tmp_path: Path) -> None:
    """model.learn's certificate: 100 file audits (too few alone) with 2,000 validation digits are one sample of
    2,100, and it certifies; five of the audits labelled not_a_digit are errors the network is sure of, which no
    threshold over 2,100 items can carry at 0.2 %, so the same fit is refused."""
    from model.fitting.audits import reviewed_calibration
    from model.fitting.guarantee import CalibrationError
    from model.fitting.validation import CalibrationRequest, ChannelData
    from model.mnist import load_mnist

    net, meta = load_checkpoint(SHIPPED)
    base = read_records(meta)["validation"]["file"]["float32"]
    served_net = as_served(net, base, "float32").eval()
    alongside = ChannelData(load_mnist().validation.subset(2000), "2000 MNIST validation arrays")
    request = CalibrationRequest({"file": 0.002, "drawn": 0.004}, 0.05, None, 20)
    right = uniform_audits(read_export(audits_export(tmp_path / "right.ndjson", 100)))
    union = reviewed_calibration(served_net, base, right, request, {"audits_used": 100}, alongside)
    assert union.validation_size == 2100 and (union.provenance or {})["validation_items"] == 2000
    assert "with 2000 MNIST validation arrays" in (union.data or "")
    assert union.accepted_error_upper_bound is not None and union.accepted_error_upper_bound < 0.002
    wrong = uniform_audits(read_export(audits_export(tmp_path / "wrong.ndjson", 100, "not_a_digit", 5)))
    with pytest.raises(CalibrationError, match="no threshold certifies"):
        reviewed_calibration(served_net, base, wrong, request, {"audits_used": 100}, alongside)


def test_an_accepted_not_a_digit_counts_as_an_error(tmp_path: Path, capsys) -> None:
    """20 of 1,600 confidently read digits labelled not_a_digit: 1.25 % errors the model is sure of;
    no threshold can certify 0.2 %, so the calibration refuses."""
    checkpoint = shipped_copy(tmp_path)
    export = audits_export(tmp_path / "audits.ndjson", 1600, wrong_label="not_a_digit", wrong=20)
    assert calibrate.main(["--checkpoint", str(checkpoint), "--reviewed", str(export), "--precision", "float32",
                           "--samples", "20"]) == 2
    assert "no threshold certifies" in capsys.readouterr().err
