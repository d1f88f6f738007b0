"""Loaded network + calibrated threshold -> Prediction objects. Batching lives here.

All N samples of all images of a request run in one vectorized pass of
``model.predictive.predictive`` under ``torch.inference_mode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import CheckpointError, load_checkpoint
from model.data import to_input
from model.network import BayesianNet
from model.predictive import DEFAULT_SAMPLES, predictive


@dataclass(frozen=True)
class Prediction:
    digit: int  # argmax of probabilities
    probabilities: list[float]  # mean over samples, sums to 1
    entropy: float  # predictive entropy of the mean probabilities, nats
    expected_entropy: float  # aleatoric part, nats
    mutual_information: float  # epistemic part, nats
    refer: bool  # entropy > threshold
    threshold: float
    samples: int


@dataclass(frozen=True)
class CalibrationInfo:
    mode: str
    alpha: float | None
    delta: float | None
    samples: int
    validation_coverage: float | None


class Predictor:
    def __init__(self, net: BayesianNet, threshold: float, default_samples: int, model_version: str,
                 calibration: CalibrationInfo | None = None, expected_referral_rate: float | None = None):
        self.net = net.eval()
        self.threshold = threshold
        self.default_samples = default_samples
        self.model_version = model_version
        self.calibration = calibration
        # the referral rate this threshold gave on its calibration split: what monitoring compares
        # the live rate with (None when unknown, e.g. an overridden threshold)
        self.expected_referral_rate = expected_referral_rate

    @classmethod
    def from_checkpoint(cls, path: Path, threshold: float | None = None, default_samples: int | None = None,
                        expected_referral_rate: float | None = None) -> Predictor:
        """Load a checkpoint; the threshold comes from its calibration unless overridden. The expected
        referral rate is the calibration split's unless given, and unknown for an overridden threshold."""
        net, meta = load_checkpoint(path)
        raw = meta.get("calibration")
        calibration = None
        if raw is not None:
            calibration = CalibrationInfo(raw["mode"], raw.get("alpha"), raw.get("delta"), int(raw["samples"]),
                                          raw.get("validation_coverage"))
        if threshold is None:
            if calibration is None:
                raise CheckpointError(f"{path}: no calibrated threshold in its metadata; run python -m model.calibrate "
                                      "or set BNN_THRESHOLD")
            threshold = float(raw["threshold"])  # type: ignore[index]
            if expected_referral_rate is None and calibration.validation_coverage is not None:
                expected_referral_rate = round(1.0 - float(calibration.validation_coverage), 12)
        samples = default_samples or (calibration.samples if calibration else DEFAULT_SAMPLES)
        return cls(net, threshold, samples, str(meta["model_version"]), calibration, expected_referral_rate)

    def predict(self, digits: list[np.ndarray], samples: int | None = None) -> list[Prediction]:
        """uint8 ``[28, 28]`` digits -> one Prediction each, all in one vectorized pass."""
        if not digits:
            return []
        count = samples or self.default_samples
        with torch.inference_mode():
            result = predictive(self.net, to_input(np.stack(digits)), count)  # [B, 10], [B]
        probabilities = result.mean_probs.double()
        probabilities = probabilities / probabilities.sum(-1, keepdim=True)
        return [
            Prediction(
                digit=int(probabilities[i].argmax()),
                probabilities=probabilities[i].tolist(),
                entropy=float(result.entropy[i]),
                expected_entropy=float(result.expected_entropy[i]),
                mutual_information=float(result.mutual_information[i]),
                refer=bool(float(result.entropy[i]) > self.threshold),
                threshold=self.threshold,
                samples=count,
            )
            for i in range(len(digits))
        ]
