"""The report's sections on the test split as the service sees it.

* ``png_files``: every MNIST test digit saved as the plain 28-px PNG file it is, decoded and run
  through the service's transform (what ``POST /predict`` does with such a file): accuracy, ECE,
  referred, accuracy of the accepted, next to the same numbers on the arrays;
* ``service_view``: the test digits three ways (simulated uploads, pen drawings on the page's
  pad, plain PNG files: the mix the threshold was calibrated on, on validation): does the
  guarantee (accepted answers wrong at most alpha) hold, at what coverage, per part; and each part
  at the files-only threshold (the uploads section's ``files_only_point``), where there is one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from model.calibration import Calibration
from model.data import Mnist, Split
from model.network import BayesianNet
from model.report.uploads import Scores, decisions, score
from model.scoring import expected_calibration_error
from model.synth.pools import arrays_as_files, digit_uploads, pen_drawings


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


def served_report(net: BayesianNet, mnist: Mnist, calibration: Calibration, samples: int, workers: int,
                  cache_dir: Path, scale: float = 1.0, files_only_threshold: float | None = None) -> dict[str, Any]:
    """The two sections (JSON-ready). ``scale`` shrinks the test split (tests)."""
    test = mnist.test if scale >= 1 else mnist.test.subset(max(8, int(10_000 * scale)))  # as the uploads section
    parts: dict[str, Split] = {
        "uploads": digit_uploads(test, "test", mnist.source_sha256, workers, cache_dir).split(),
        "pen drawings": pen_drawings(test, "pen-test", mnist.source_sha256, workers, cache_dir).split(),
        "plain PNG files": arrays_as_files(test, "test", mnist.source_sha256, cache_dir).split(),
    }
    rows: dict[str, dict[str, Any]] = {}
    everything = []
    for name, split in parts.items():
        scores = score(net, split.images, samples)
        rows[name] = _rates(scores, split.labels, calibration)
        everything.append((scores, split.labels))
    arrays_scores = score(net, test.images, samples)
    joined = Scores(*(np.concatenate([getattr(s, f) for s, _ in everything]) for f in ("entropy", "predicted", "mass",
                                                                                      "confidence")))
    labels = np.concatenate([labels for _, labels in everything])
    overall = _rates(joined, labels, calibration)
    alpha = calibration.alpha
    overall["guarantee_held"] = None if alpha is None or overall["accepted_accuracy"] is None else \
        bool(overall["accepted_accuracy"] >= 1 - alpha)
    overall["coverage"] = 1 - overall["referred"]
    files_only = {} if files_only_threshold is None else {"files_only_point": {
        "threshold": files_only_threshold,
        "parts": {name: _rates(scores, labels, replace(calibration, threshold=files_only_threshold))
                  for name, (scores, labels) in zip(parts, everything, strict=True)}}}
    return {
        "png_files": {"files": rows["plain PNG files"],
                      "arrays": _rates(arrays_scores, test.labels, calibration),
                      "note": "MNIST test: each digit as the plain 28-px PNG file it is, through the service's decoder "
                              "and transform, next to the arrays fed straight to the network"},
        "service_view": {"parts": rows, "overall": overall, "alpha": alpha,
                         "note": "MNIST test as the service sees it: simulated uploads (seed 13), pen drawings on the "
                                 "page's pad (seed 17), plain PNG files", **files_only},
    }
