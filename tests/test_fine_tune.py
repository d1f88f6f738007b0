"""Fine-tuning on reviewed items: what trains and what is held out, and the loop end to end on tiny data."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from model.batch_mix import BatchMix, TrainingData
from model.data import Split
from model.fine_tune import ids_digest, reviewed_training
from model.reviewed import held_out, parse_export, split
from model.train_config import TrainConfig

HELD, TRAINED = 250, 100  # the pixel value of held-out items and of training items in the export below


def export_bytes(count: int = 600) -> bytes:
    """Referred digits, audits, and referred not_a_digit / unreadable items; each item's pixels say
    which side of the split it falls on (HELD or TRAINED), so a batch shows what it was made of."""
    lines = []
    for n in range(count):
        item_id = f"{n:032x}"
        reason = "audit" if n % 5 == 0 else "referred"
        label = "not_a_digit" if n % 7 == 0 else "unreadable" if n % 11 == 0 else str(n % 10)
        side = HELD if reason == "audit" or held_out(item_id) else TRAINED
        pixels = np.full((28, 28), side, np.uint8)
        lines.append(json.dumps({"id": item_id, "reason": reason, "label": label, "predicted": n % 10,
                                 "refer": reason == "referred", "audit_fraction": 0.02 if reason == "audit" else None,
                                 "model_version": "live", "labelled_at": 1.8e9 + n,
                                 "input": base64.b64encode(pixels.tobytes()).decode()}))
    return ("\n".join(lines) + "\n").encode()


def test_only_the_training_split_trains_and_non_digits_never_become_positives() -> None:
    reviewed = parse_export(export_bytes(), "memory")
    training = reviewed_training(reviewed)
    train, held = split(reviewed)
    digits = [label.isdigit() for label in train.labels]
    assert len(training.positives) == sum(digits) and set(training.positives.labels.tolist()) <= set(range(10))
    assert len(training.negatives) == sum(label in ("not_a_digit", "unreadable") for label in train.labels)
    assert (training.positives.images == TRAINED).all() and (training.negatives == TRAINED).all()
    record = training.record
    assert (record["trained_ids_sha256"] == ids_digest(train.ids)
            and record["held_out_ids_sha256"] == ids_digest(held.ids))
    assert record["trained_items"] + record["held_out_items"] == len(reviewed) == 600
    assert "not_a_digit" in record["trained_labels"] and record["trained_positives"] == sum(digits)


def test_no_held_out_item_reaches_a_training_batch() -> None:
    """Every step's batch, over two epochs: the reviewed parts are training-split items only."""
    training = reviewed_training(parse_export(export_bytes(), "memory"))
    arrays = Split(np.zeros((256, 28, 28), np.uint8), np.zeros(256, np.int64))
    config = replace(TrainConfig(), batch_size=64, augment=False, uploads=False, outlier_batch=0, arrays_as_files=0.0)
    mix = BatchMix(TrainingData(arrays, reviewed=training.positives, reviewed_outliers=training.negatives,
                                labelled_total=60_000), config)
    assert mix.labelled == 60_000  # the KL is spread as in the parent run
    for epoch in range(2):
        for batch in mix.epoch(epoch):
            reviewed_part = batch.images[64:]  # after the arrays: reviewed digits, then reviewed non-digits
            assert len(reviewed_part) > config.reviewed_batch
            values = set(torch.unique((reviewed_part * 255).round()).tolist())  # to_input scales to [0, 1]
            assert values == {float(TRAINED)}, values
            assert len(batch.labels) == 64 + config.reviewed_batch  # non-digits are not labelled positives
            # what distillation keeps the parent's answers on: the recipe's rows, never a reviewed one
            assert batch.replayed is not None and batch.replayed[:64].all() and not batch.replayed[64:].any()


def test_the_loop_end_to_end_on_tiny_data(tmp_path: Path) -> None:
    """examples.flywheel --tiny: a real two-worker service, the scripted reviewer through the review API, then
    python -m model.learn while traffic keeps arriving: the export, a dry-run fine-tune that records its split,
    and the calibration, which cannot certify a dry run's candidate: the live model is kept (the stages after
    it, evaluation and the rule, are model.evaluate's and model.promote's tests; the shadow and the promotion
    are test_learn.py's)."""
    from examples import flywheel

    code = flywheel.main(["--out", str(tmp_path), "--tiny"])
    summary = json.loads((tmp_path / "flywheel.json").read_text())
    collected = summary["collected"]
    assert collected["posted"] == 300 and collected["labelled"] == collected["queued"] > 100  # most are referred
    candidate = tmp_path / "models" / "candidate"
    export = parse_export((candidate / "review-labels.ndjson").read_bytes(), "export")
    assert len(export) == collected["labelled"]
    train, held = split(export)
    meta = json.loads((candidate / "bnn.json").read_text())
    record = meta["fine_tune"]["reviewed"]
    assert record["trained_ids_sha256"] == ids_digest(train.ids) and record["held_out_items"] == len(held)
    parent = json.loads(Path("checkpoints/bnn.json").read_text())
    assert meta["fine_tune"]["parent"] == parent["model_version"]
    assert meta["fine_tune"]["anchor"] == "posterior" and meta["fine_tune"]["learns"] == "head"
    # the parent's closing shapes are replayed at the run's scale (a dry run's 64), not rendered in full
    assert parent["train_config"]["closing_shapes"] == 8000 and meta["train_config"]["closing_shapes"] == 64
    report = json.loads((candidate / "learn-report.json").read_text())
    # a dry run's candidate is calibrated on 256 validation images, too few to certify any threshold: the loop
    # stops at its calibration, keeps the live model and says why, and every worker still serves the live model
    assert code == summary["learn"]["exit"] == 3, report
    assert list(report["seconds"]) == ["inspect", "export", "fine-tune", "calibrate"]
    assert report["outcome"] == "kept the live model: the candidate's thresholds could not be certified"
    assert any("certified no threshold" in reason for reason in report["reasons"])
    assert summary["fresh"]["after"]["fresh style"]["model_versions"] == [parent["model_version"]]
    assert summary["during_the_loop"]["requests"] > 0 and summary["during_the_loop"]["failed"] == 0
