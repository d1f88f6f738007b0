"""Fine-tune a checkpoint on what reviewers labelled, without forgetting what it learnt.

    python -m model.train --fine-tune checkpoints/bnn.safetensors --reviewed review-labels.ndjson \
        --out candidate/bnn.safetensors

The export is split by a hash of each item's id (``model/reviewed.py``): every audit and a fixed
30 % of the rest are held out (the calibration's and the comparison's sample) and never trained
on; of the training part, labelled digits join as positives, a batch of their own in every step,
and ``not_a_digit`` / ``unreadable`` items join the outlier-exposure negatives. Each step also
sees the parent recipe's streams (MNIST train arrays, simulated uploads, pen drawings, printed
digits, generated non-digits), rendered for ``replay`` training digits (cached like every pool),
so the network keeps what it knew. Only the head learns (the trunk stays the parent's; ``--learns``),
its KL is to the parent's posterior weight by weight (``--anchor posterior``, as in variational
continual learning; ``prior``: to N(0, prior_sigma^2)), spread over the parent run's training set,
and on the replayed images its answers are held to the parent's (``--distill``). After the last step
the refer rules are fitted on the validation mix at the parent's temperature; ``python -m
model.learn`` then certifies them on the held-out audits with the validation mix and applies the
promotion rule (``model/promote.py``). The variants measured: docs/experiments.md.

The candidate's metadata records its parent, the export (source, sha256) and the split: how
many items trained it, how many were held out, and a sha256 of each side's sorted ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from model.data import Mnist, Split
from model.reviewed import HELD_OUT_SHARE, Reviewed, split

FINE_TUNE_LR = 2e-3
# the KL to the parent's posterior (variational continual learning); "prior": to N(0, prior_sigma^2)
FINE_TUNE_ANCHOR: Literal["prior", "posterior"] = "posterior"
FINE_TUNE_LEARNS: Literal["all", "head", "last"] = "head"  # the trunk stays the parent's
FINE_TUNE_DISTILL = 3.0  # weight of KL(parent || candidate) on the replayed images (learning without forgetting)
FINE_TUNE_EPOCHS = 16  # over the replayed arrays: replay / 128 steps each, with 32 reviewed digits a step
REPLAY = 4_000  # training digits whose simulated uploads, pen drawings and arrays are replayed (and as many outliers)
FINE_TUNE_RENDERS = 2  # renders of each training-font digit and mark of another script (30 and 6 in a full run)
NEGATIVE_LABELS = ("not_a_digit", "unreadable")


@dataclass(frozen=True)
class ReviewedTraining:
    """What a fine-tune takes from an export: positives, negatives and the split's record."""

    positives: Split  # uint8 [n, 28, 28] as the network saw them, with the reviewer's digit
    negatives: np.ndarray  # not_a_digit and unreadable items: outlier exposure
    record: dict[str, Any]  # the candidate's metadata: which items trained it


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def reviewed_training(reviewed: Reviewed, share: float = HELD_OUT_SHARE) -> ReviewedTraining:
    """The training side of the split, as positives (labelled digits only) and negatives."""
    train, held = split(reviewed, share)
    digits = [label.isdigit() for label in train.labels]
    positives = train.take(digits)
    negatives = train.take([label in NEGATIVE_LABELS for label in train.labels])
    record = {"source": reviewed.source, "export_sha256": reviewed.sha256, "export_items": len(reviewed),
              "held_out_share": share, "split": "every audit, and sha256(id) < share of the rest, held out",
              "trained_items": len(train), "trained_positives": len(positives), "trained_negatives": len(negatives),
              "trained_ids_sha256": ids_digest(train.ids), "held_out_items": len(held),
              "held_out_ids_sha256": ids_digest(held.ids),
              "trained_labels": {label: train.labels.count(label) for label in sorted(set(train.labels))}}
    return ReviewedTraining(Split(positives.inputs, np.array([int(label) for label in positives.labels], np.int64)),
                            negatives.inputs, record)


def replay_data(data: Mnist, replay: int) -> Mnist:
    """The parent recipe's streams for the first ``replay`` training digits (validation unchanged)."""
    return replace(data, train=data.train.subset(replay))


def parent_labelled_total(meta: dict[str, Any]) -> int:
    """What the parent run spread its KL over: its arrays and upload-stream positives."""
    described = meta.get("training_data", {})
    total = int(described.get("mnist_train_arrays", 0)) + int(described.get("upload_stream_positives", 0))
    return total or int(meta.get("train_size", 60_000))
