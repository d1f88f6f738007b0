"""The report's sections on the test split as the service sees it.

* ``png_files``: every MNIST test digit saved as the plain 28-px PNG file it is, decoded and run
  through the service's transform (what ``POST /predict`` does with such a file): accuracy, ECE,
  referred, accuracy of the accepted, next to the same numbers on the arrays;
* ``service_view``: the test digits three ways (simulated uploads, pen drawings on the page's
  pad, plain PNG files: the mix the thresholds were calibrated on, on validation), each part under
  its channel's rule (uploads and PNG files: ``file``; pen drawings: ``drawn``): does each
  channel's guarantee (its accepted answers wrong at most its alpha) hold, at what coverage, per
  part and per channel; ``overall`` is the whole mix so served, its guarantee held when every
  channel's is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model.calibration import Calibration, Channel
from model.data import Mnist, Split
from model.network import BayesianNet
from model.report.uploads import Scores, decisions, score
from model.scoring import expected_calibration_error
from model.synth.pools import PART_CHANNELS, arrays_as_files, digit_uploads, pen_drawings


def _rates(scores: Scores, labels: np.ndarray, calibration: Calibration) -> dict[str, Any]:
    uncertain, unfamiliar = decisions(scores, calibration)
    refer = uncertain | unfamiliar
    right = scores.predicted == labels
    row: dict[str, Any] = {"count": len(labels), "accuracy": float(right.mean()), "referred": float(refer.mean()),
                           "accepted_accuracy": float(right[~refer].mean()) if (~refer).any() else None,
                           "accepted_errors": int((~right[~refer]).sum()),
                           "referred_uncertain_of_referred": float(uncertain[refer].mean()) if refer.any() else None}
    if scores.confidence is not None:
        row["ece"] = expected_calibration_error(scores.confidence, right)[0]
    return row


def _held(row: dict[str, Any], alpha: float | None) -> bool | None:
    """Whether a row's accepted accuracy keeps the promise ``alpha`` (None: no promise, or nothing accepted)."""
    return None if alpha is None or row["accepted_accuracy"] is None else bool(row["accepted_accuracy"] >= 1 - alpha)


def _joined(parts: list[tuple[Scores, np.ndarray]]) -> tuple[Scores, np.ndarray]:
    return (Scores(*(np.concatenate([getattr(s, f) for s, _ in parts]) for f in ("entropy", "predicted", "mass",
                                                                                "confidence"))),
            np.concatenate([labels for _, labels in parts]))


def served_report(net: BayesianNet, mnist: Mnist, channels: dict[Channel, Calibration], samples: int, workers: int,
                  cache_dir: Path, scale: float = 1.0) -> dict[str, Any]:
    """The two sections (JSON-ready), each image under its channel's record (``channels``). ``scale``
    shrinks the test split (tests)."""
    test = mnist.test if scale >= 1 else mnist.test.subset(max(8, int(10_000 * scale)))  # as the uploads section
    parts: dict[str, Split] = {
        "uploads": digit_uploads(test, "test", mnist.source_sha256, workers, cache_dir).split(),
        "pen drawings": pen_drawings(test, "pen-test", mnist.source_sha256, workers, cache_dir).split(),
        "plain PNG files": arrays_as_files(test, "test", mnist.source_sha256, cache_dir).split(),
    }
    rows: dict[str, dict[str, Any]] = {}
    scored: dict[str, tuple[Scores, np.ndarray]] = {}
    for name, split in parts.items():
        scores = score(net, split.images, samples)
        rows[name] = _rates(scores, split.labels, channels[PART_CHANNELS[name]])
        scored[name] = (scores, split.labels)
    arrays_scores = score(net, test.images, samples)
    by_channel: dict[str, dict[str, Any]] = {}
    for channel, calibration in channels.items():
        names = [name for name in parts if PART_CHANNELS[name] == channel]
        row = _rates(*_joined([scored[name] for name in names]), calibration)
        by_channel[channel] = {**row, "parts": names, "threshold": calibration.threshold, "alpha": calibration.alpha,
                               "coverage": 1 - row["referred"], "guarantee_held": _held(row, calibration.alpha)}
    count = sum(row["count"] for row in rows.values())
    overall = {"count": count,
               "accuracy": sum(row["accuracy"] * row["count"] for row in rows.values()) / count,
               "referred": sum(row["referred"] * row["count"] for row in rows.values()) / count,
               "accepted_errors": sum(row["accepted_errors"] for row in rows.values()),
               "guarantee_held": None if any(row["guarantee_held"] is None for row in by_channel.values()) else
               all(row["guarantee_held"] for row in by_channel.values())}
    overall["coverage"] = 1 - overall["referred"]
    return {
        "png_files": {"files": rows["plain PNG files"],
                      "arrays": _rates(arrays_scores, test.labels, channels["file"]),
                      "note": "MNIST test: each digit as the plain 28-px PNG file it is, through the service's decoder "
                              "and transform, next to the arrays fed straight to the network"},
        "service_view": {"parts": rows, "channels": by_channel, "overall": overall,
                         "note": "MNIST test as the service sees it: simulated uploads (seed 13) and plain PNG files "
                                 "(the file channel), pen drawings on the page's pad (seed 17; the drawn channel)"},
    }
