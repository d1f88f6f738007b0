"""Loaded network + calibrated refer rules -> Prediction objects (micro-batching is in batcher.py).

All N samples of all images of a call run in one vectorized pass of
``model.predictive.predictive`` under ``torch.inference_mode``; each answer is then judged by the
checkpoint's refer rule for the call's channel (``model.refer_rule``: whether it is referred, why,
and its candidates): ``file`` for what clients post, ``drawn`` for the page's pad
(``model.calibration``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from model.calibration import Calibration, Channel, served_calibrations, served_channels
from model.checkpoint import CheckpointError, as_served, load_checkpoint
from model.data import to_input
from model.network import BayesianNet
from model.precision import PrecisionChoice, choose_precision
from model.predictive import DEFAULT_SAMPLES, predictive
from model.refer_rule import ReferReason, ReferRule, candidates, top_two_mass


@dataclass(frozen=True)
class Prediction:
    digit: int  # argmax of probabilities
    probabilities: list[float]  # mean over samples, sums to 1
    entropy: float  # predictive entropy of the mean probabilities, nats
    expected_entropy: float  # aleatoric part, nats
    mutual_information: float  # epistemic part, nats
    refer: bool  # refer_reason is not None
    refer_reason: ReferReason | None
    candidates: list[int]  # digits worth a reviewer's look, most likely first (the digit alone when sure)
    threshold: float
    samples: int
    model_version: str  # the model whose pass produced it
    channel: Channel = "file"  # whose refer rule judged it
    # on request (``predict(..., spread=True)``): how the samples disagree
    spread: list[float] | None = None  # each class probability's standard deviation over the samples
    votes: list[int] | None = None  # how many samples put each class first
    seen: np.ndarray | None = field(default=None, compare=False)  # the uint8 [28, 28] the network was given


FLOAT32 = PrecisionChoice("float32", "float32 (not chosen: the default of a Predictor built directly)")


def served_precision(choice: PrecisionChoice, requested: str, records: dict[str, Calibration],
                     overridden: bool) -> PrecisionChoice:
    """The precision to serve: the choice, when the checkpoint has its calibration record (or the
    threshold is overridden); else, when chosen automatically and float32 has one, float32 with the
    reason. A precision asked for by name is never swapped: CheckpointError, naming what exists."""
    if overridden or choice.precision in records:
        return choice
    have = ", ".join(sorted(records)) or "none"
    if requested == "auto" and "float32" in records:
        return PrecisionChoice("float32", f"{choice.note}; the checkpoint has no {choice.precision} calibration "
                                          f"record (has: {have}; make calibrate makes both), so float32", True)
    raise CheckpointError(f"no calibration record for {choice.precision} in the checkpoint's metadata (has: {have}): "
                          f"run make calibrate, or set BNN_PRECISION to one it has", "calibration")


class Predictor:
    def __init__(self, net: BayesianNet, rule: ReferRule, default_samples: int, model_version: str,
                 calibration: Calibration | None = None, expected_referral_rate: float | None = None,
                 precision: PrecisionChoice = FLOAT32, drawn_rule: ReferRule | None = None,
                 drawn_calibration: Calibration | None = None):
        if net.precision != precision.precision:
            raise ValueError(f"the net runs its trunk in {net.precision}, not {precision.precision}")
        self.net = net.eval()
        # each channel's rule; without a drawn one, drawings are judged as files
        self.rules: dict[Channel, ReferRule] = {"file": rule, "drawn": drawn_rule or rule}
        self.default_samples = default_samples
        self.model_version = model_version
        self.calibration = calibration  # the file channel's record
        self.drawn_calibration = drawn_calibration or calibration  # the drawn channel's (what /readyz names)
        self.precision = precision  # the conv trunk's, and why it was chosen
        # the referral rate this rule gave on its calibration split: what monitoring compares the
        # live rate with (None when unknown, e.g. an overridden threshold)
        self.expected_referral_rate = expected_referral_rate

    @property
    def rule(self) -> ReferRule:
        """The file channel's rule: what clients' posts are judged by."""
        return self.rules["file"]

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    @classmethod
    def from_checkpoint(cls, path: Path, threshold: float | None = None, default_samples: int | None = None,
                        expected_referral_rate: float | None = None, precision: str = "float32") -> Predictor:
        """Load a checkpoint to run in ``precision`` (``auto``, ``float32`` or ``bfloat16``) with that
        precision's calibration record: its temperature and refer rule, unless the threshold is
        overridden. The expected referral rate is the record's unless given, and unknown when a
        threshold is overridden."""
        net, meta = load_checkpoint(path)
        return cls.from_loaded(net, meta, path, threshold, default_samples, expected_referral_rate, precision)

    @classmethod
    def from_loaded(cls, net: BayesianNet, meta: dict[str, Any], path: Path, threshold: float | None = None,
                    default_samples: int | None = None, expected_referral_rate: float | None = None,
                    precision: str = "float32") -> Predictor:
        """:meth:`from_checkpoint` for a checkpoint already loaded from ``path`` (named in errors,
        whose ``check`` is ``calibration``)."""
        try:
            records = served_calibrations(meta)
            channels = {name: served_channels(meta, name) for name in records}
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: the calibration record in its metadata is malformed ({error})",
                                  "calibration") from None
        if threshold is None and not records:
            raise CheckpointError(f"{path}: no calibrated threshold in its metadata; run python -m model.calibrate "
                                  "or set BNN_THRESHOLD", "calibration")
        overridden = threshold is not None
        try:
            choice = served_precision(choose_precision(precision), precision, records, overridden)
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error}", "calibration") from None
        calibration = records.get(choice.precision, records.get("float32"))
        drawn = None if calibration is None else channels[calibration.precision]["drawn"]
        net = as_served(net, calibration, choice.precision)
        # no record: only an overridden threshold gets here (refused above otherwise); an overridden
        # threshold holds for every channel
        rule = ReferRule(cast(float, threshold)) if calibration is None else ReferRule.of(calibration, threshold)
        drawn_rule = None if drawn is None else ReferRule.of(drawn, threshold)
        if expected_referral_rate is None and not overridden and calibration is not None:
            expected_referral_rate = round(1.0 - calibration.validation_coverage, 12)
        samples = default_samples or (calibration.samples if calibration else DEFAULT_SAMPLES)
        return cls(net, rule, samples, str(meta["model_version"]), calibration, expected_referral_rate, choice,
                   drawn_rule, drawn)

    def predict(self, digits: list[np.ndarray], samples: int | None = None, spread: bool = False,
                channel: Channel = "file") -> list[Prediction]:
        """uint8 ``[28, 28]`` digits -> one Prediction each, all in one vectorized pass, judged by
        ``channel``'s rule; with ``spread``, each also says how its samples disagree."""
        if not digits:
            return []
        count = samples or self.default_samples
        with torch.inference_mode():
            result = predictive(self.net, to_input(np.stack(digits)), count, spread=spread)  # [B, 10], [B]
        probabilities = result.mean_probs.double()
        probabilities = probabilities / probabilities.sum(-1, keepdim=True)
        # to Python once per tensor, not once per element (indexing a tensor costs microseconds)
        none: list[None] = [None] * len(digits)
        columns = zip(probabilities.argmax(-1).tolist(), probabilities.tolist(), result.entropy.tolist(),
                      result.expected_entropy.tolist(), result.mutual_information.tolist(),
                      none if result.spread is None else result.spread.tolist(),
                      none if result.votes is None else result.votes.tolist(), top_two_mass(probabilities.numpy()).tolist(),
                      digits, strict=True)
        rule = self.rules[channel]
        predictions = []
        for digit, probs, entropy, expected_entropy, mutual_information, deviation, votes, top_two, seen in columns:
            reason = rule.reason(entropy, top_two)
            predictions.append(Prediction(
                digit=digit, probabilities=probs, entropy=entropy, expected_entropy=expected_entropy,
                mutual_information=mutual_information, refer=reason is not None, refer_reason=reason,
                candidates=candidates(probs), threshold=rule.threshold, samples=count,
                model_version=self.model_version, channel=channel, spread=deviation,
                votes=votes, seen=seen,
            ))
        return predictions
