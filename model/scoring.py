"""Scoring for the pipeline commands (training, calibration, the report): the predictive over a
whole split, and the measures the report computes from it. Not on the serving path."""

from __future__ import annotations

import numpy as np

from model.data import to_input
from model.network import BayesianNet
from model.predictive import PredictiveResult, predictive

ECE_BINS = 15


def predict_images(net: BayesianNet, images: np.ndarray, samples: int, chunk: int | None = None,
                   progress: str | None = None) -> PredictiveResult:
    """uint8 ``[n, 28, 28]`` -> the predictive of every image (on the CPU), ``chunk`` images at a time
    (None: all at once), on the net's device; with ``progress``, a bar of that name. The chunk size
    decides the posterior draws each image gets, so a caller keeps its own to reproduce its numbers."""
    from tqdm import tqdm  # a dev dependency: importing this module (a command's --help) must not need it

    device = next(net.parameters()).device
    step = len(images) if chunk is None else chunk
    starts = range(0, len(images), max(1, step))
    parts = [predictive(net, to_input(images[i : i + step]).to(device), samples)
             for i in tqdm(starts, desc=progress, disable=progress is None, dynamic_ncols=True)]
    return PredictiveResult.concat(parts).cpu()


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               bins: int = ECE_BINS) -> tuple[float, list[dict[str, float]]]:
    """Equal-width confidence bins; ECE = sum_b (n_b / n) |accuracy_b - confidence_b|, and the table."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = index == b
        if not members.any():
            continue
        accuracy, mean_conf = float(correct[members].mean()), float(confidence[members].mean())
        ece += members.mean() * abs(accuracy - mean_conf)
        table.append({"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": int(members.sum()),
                      "accuracy": accuracy, "confidence": mean_conf})
    return float(ece), table


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of a score that should be higher on ``positives`` (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([negatives, positives]))
    n_pos, n_neg = len(positives), len(negatives)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
