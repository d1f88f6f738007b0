"""Loaded network + calibrated refer rules -> Prediction objects (micro-batching is in batcher.py).

All N samples of all images of a call run in one vectorized pass of
``model.predictive.predictive`` under ``torch.inference_mode``; each answer is then judged by the
checkpoint's refer rule for the call's channel (``model.refer_rule``: whether it is referred, why,
and its candidates): ``file`` for what clients post, ``drawn`` for the page's pad
(``model.calibration``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from model.calibration import CHANNELS, Calibration, Channel, served_precisions
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


def served_precision(choice: PrecisionChoice, requested: str, records: Mapping[str, object],
                     overridden: bool, cannot_run: str | None = None) -> PrecisionChoice:
    """The precision to serve: the choice, when the net can run it (``cannot_run``: why not, e.g. int8
    without a trunk quantized from its weights) and the checkpoint has its calibration records (or the
    threshold is overridden); else, when chosen automatically and float32 has them, float32 with the
    reason. A precision asked for by name is never swapped: CheckpointError, naming what exists."""
    if cannot_run is None and (overridden or choice.precision in records):
        return choice
    have = ", ".join(sorted(records)) or "none"
    lacks = (f"no {choice.precision} calibration record (has: {have})" if cannot_run is None else
             f"no {choice.precision} trunk made from its weights that can run ({cannot_run})")
    if requested == "auto" and "float32" in records:
        return PrecisionChoice("float32", f"{choice.note}; the checkpoint has {lacks}: make calibrate makes "
                                          f"them; so float32", True)
    raise CheckpointError(f"the checkpoint has {lacks}: run make calibrate, or set BNN_PRECISION to one it has",
                          "calibration")


def served_records(meta: dict[str, Any], path: Path, precision: str, overridden: bool,
                   net: BayesianNet) -> tuple[PrecisionChoice, dict[Channel, Calibration]]:
    """The precision to serve (``served_precision``) and each channel's record for it (a precision
    without a record for every channel is not served; with an overridden threshold and no record
    for the precision, float32's, for its temperature; none at all: empty). CheckpointError, check
    ``calibration``, when the records are malformed, missing or not fitted at one temperature."""
    try:
        by_precision = served_precisions(meta)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: the calibration record in its metadata is malformed ({error})",
                              "calibration") from None
    if not overridden and not by_precision:
        raise CheckpointError(f"{path}: no calibrated threshold in its metadata for every channel "
                              f"({', '.join(CHANNELS)}); run python -m model.calibrate or set BNN_THRESHOLD",
                              "calibration")
    try:
        chosen = choose_precision(precision)
        cannot_run = None if net.runs_in(chosen.precision) else net.int8_note or "python -m model.quantize makes it"
        choice = served_precision(chosen, precision, by_precision, overridden, cannot_run)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}", "calibration") from None
    calibrations = by_precision.get(choice.precision, by_precision.get("float32", {}))
    temperatures = {record.temperature for record in calibrations.values()}
    if len(temperatures) > 1:  # one pass serves every channel: at one temperature
        raise CheckpointError(f"{path}: the {choice.precision} records were fitted at different temperatures "
                              f"({', '.join(map(str, sorted(temperatures, key=str)))}); recalibrate", "calibration")
    return choice, calibrations


class Predictor:
    def __init__(self, net: BayesianNet, rules: Mapping[Channel, ReferRule], default_samples: int, model_version: str,
                 calibrations: Mapping[Channel, Calibration] | None = None,
                 expected_referral_rate: float | None = None, precision: PrecisionChoice = FLOAT32):
        if net.precision != precision.precision:
            raise ValueError(f"the net runs its trunk in {net.precision}, not {precision.precision}")
        if set(rules) != set(CHANNELS):
            raise ValueError(f"a rule for each channel ({', '.join(CHANNELS)}), not for {', '.join(rules)}")
        self.net = net.eval()
        self.rules: dict[Channel, ReferRule] = dict(rules)  # each channel's: what its answers are judged by
        self.default_samples = default_samples
        self.model_version = model_version
        # each channel's record (what /readyz and the review stats name); empty when the threshold is overridden
        # on a checkpoint without records
        self.calibrations: dict[Channel, Calibration] = dict(calibrations or {})
        self.precision = precision  # the conv trunk's, and why it was chosen
        # the referral rate the file channel's rule gave on its calibration split: what monitoring compares the
        # live rate of files with (None when unknown, e.g. an overridden threshold)
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
        """Load a checkpoint to run in ``precision`` (``auto``, ``float32`` or ``int8``) with that
        precision's calibration records: its temperature and each channel's refer rule, unless the
        threshold is overridden. The expected referral rate is the file record's unless given, and
        unknown when a threshold is overridden."""
        net, meta = load_checkpoint(path)
        return cls.from_loaded(net, meta, path, threshold, default_samples, expected_referral_rate, precision)

    @classmethod
    def from_loaded(cls, net: BayesianNet, meta: dict[str, Any], path: Path, threshold: float | None = None,
                    default_samples: int | None = None, expected_referral_rate: float | None = None,
                    precision: str = "float32") -> Predictor:
        """:meth:`from_checkpoint` for a checkpoint already loaded from ``path`` (named in errors,
        whose ``check`` is ``calibration``)."""
        choice, calibrations = served_records(meta, path, precision, threshold is not None, net)
        file = calibrations.get("file")
        net = as_served(net, file, choice.precision)
        # no record: only an overridden threshold gets here (refused otherwise); an overridden threshold holds
        # for every channel
        rules = {channel: ReferRule(cast(float, threshold)) if channel not in calibrations
                 else ReferRule.of(calibrations[channel], threshold) for channel in CHANNELS}
        if expected_referral_rate is None and threshold is None and file is not None:
            expected_referral_rate = round(1.0 - file.validation_coverage, 12)
        samples = default_samples or (file.samples if file else DEFAULT_SAMPLES)
        return cls(net, rules, samples, str(meta["model_version"]), calibrations, expected_referral_rate, choice)

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
                      none if result.votes is None else result.votes.tolist(),
                      top_two_mass(probabilities.numpy()).tolist(), digits, strict=True)
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

