"""Fitting the refer rules of a net on the validation mix: for each precision the trunk may be
served in and each channel (``model.calibration.CHANNELS``), a threshold with its guarantee
(``model/fitting/guarantee.py``) on that channel's part of the mix, and the top-two mass that says why
it refers. What training runs after its last epoch and ``python -m model.calibrate`` runs on a
checkpoint (both through :func:`fit_on_validation_mix`); the records are filed through the one writer
(:func:`with_fits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.calibration import CHANNELS, ByChannel, Calibration, Channel, with_records
from model.data import DEFAULT_CACHE, Mnist, Split
from model.fitting.guarantee import (
    DEFAULT_ALPHAS,
    DEFAULT_DELTA,
    CalibrationError,
    familiar_mass,
    guarantee_threshold,
    referral_rate_threshold,
)
from model.fitting.temperature import with_temperature
from model.network import BayesianNet
from model.precision import Precision
from model.predictive import DEFAULT_SAMPLES
from model.refer_rule import ReferRule, top_two_mass
from model.scoring import predict_images


@dataclass(frozen=True)
class CalibrationRequest:
    """How to calibrate: guarantee (each channel's alpha, one delta) or a target referral rate, at N samples."""

    alphas: dict[Channel, float] = field(default_factory=lambda: dict(DEFAULT_ALPHAS))  # {channel: alpha}
    delta: float = DEFAULT_DELTA
    referral_rate: float | None = None
    samples: int = DEFAULT_SAMPLES


@dataclass(frozen=True)
class ReferRuleFit:
    """What one precision's fit gave: the net at its temperature and each channel's record (none:
    refused, and why)."""

    net: BayesianNet
    records: dict[Channel, Calibration]
    refused: str | None = None


@dataclass(frozen=True)
class ChannelData:
    """One channel's validation digits and what they are (recorded as the record's ``data``)."""

    split: Split
    data: str


def validation_scores(net: BayesianNet, split: Split, samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entropy [n], correctness [n] and the top-two mass [n] of a split."""
    result = predict_images(net, split.images, samples)
    probabilities = result.mean_probs.double().numpy()
    correct = probabilities.argmax(-1) == split.labels
    return result.entropy.numpy(), correct, top_two_mass(probabilities)


def calibrate(net: BayesianNet, validation: Split, request: CalibrationRequest,
              data: str, non_digits: np.ndarray | None = None,
              non_digits_data: str = "", channel: Channel = "file") -> Calibration:
    """``channel``'s refer rule for ``net`` from ``validation`` (that channel's digits as the service
    sees them), at that channel's alpha, scored in the net's precision (recorded); with
    ``non_digits`` (uint8 ``[m, 28, 28]``, generated, after the transform), also why it refers."""
    entropy, correct, mass = validation_scores(net, validation, request.samples)
    if request.referral_rate is not None:
        calibration = referral_rate_threshold(entropy, correct, request.referral_rate, request.samples, data,
                                              channel=channel, precision=net.precision)
    else:
        calibration = guarantee_threshold(entropy, correct, request.alphas[channel], request.delta, request.samples,
                                          data=data, channel=channel, precision=net.precision)
    calibration = replace(calibration, temperature=net.config.temperature)
    if non_digits is None:
        return calibration
    outlier_entropy, _, outlier_mass = validation_scores(net, Split(non_digits, np.full(len(non_digits), -1)),
                                                            request.samples)
    refers = ReferRule.of(calibration).refers
    chosen, fit = familiar_mass(mass[refers(entropy)], outlier_mass[refers(outlier_entropy)])
    return replace(calibration, familiar_mass=chosen, reason_fit={**fit, "non_digits": non_digits_data})


def fit_refer_rules(net: BayesianNet, validation: Split, request: CalibrationRequest,
                    channels: dict[Channel, ChannelData], non_digits: np.ndarray | None, non_digits_data: str,
                    precisions: tuple[Precision, ...], seed: int,
                    temperature: bool = True) -> dict[Precision, ReferRuleFit]:
    """For each precision the trunk may be served in, each channel's refer rule (threshold and
    reason) scored in that precision on that channel's digits, each from ``seed`` (so the float32
    fit is the one a training run makes, whatever else is fitted). The temperature (unless
    ``temperature`` is off: the net's own) is fitted once, in float32, on the whole ``validation``
    mix, and shared: fitted again in bfloat16 it moved from 0.276 to 0.337 on an ECE that is flat
    near its minimum, and the two precisions then disagreed on 0.2-0.8 % of refer decisions
    instead of 0-0.05 % (docs/evaluation.md); each record states the temperature it was fitted at."""
    reference = net.in_precision("float32").eval()
    shared = with_temperature(reference, validation, request.samples, seed) if temperature else reference
    fits = {}
    for precision in precisions:
        tuned = shared.in_precision(precision).eval()
        records: dict[Channel, Calibration] = {}
        try:
            for channel in CHANNELS:
                torch.manual_seed(seed)  # the draws `python -m model.calibrate --seed SEED` makes
                part = channels[channel]
                records[channel] = calibrate(tuned, part.split, request, part.data, non_digits, non_digits_data,
                                             channel)
            fits[precision] = ReferRuleFit(tuned, records)
        except CalibrationError as error:
            fits[precision] = ReferRuleFit(tuned, {}, f"{channel} channel: {error}")
    return fits


def fit_on_validation_mix(net: BayesianNet, mnist: Mnist, request: CalibrationRequest,
                          precisions: tuple[Precision, ...], seed: int, temperature: bool = True, *, workers: int = 2,
                          cache_dir: Path = DEFAULT_CACHE, progress: bool = True,
                          non_digits: int | None = None) -> tuple[dict[Precision, ReferRuleFit], dict[str, object]]:
    """:func:`fit_refer_rules` on ``mnist``'s validation mix, each channel on its part, with the mix's
    generated non-digits for the reason rule (``non_digits`` of them; None: the pools' default), both
    read from ``cache_dir`` or built with ``workers``; the fits and the mix's composition (the metadata's)."""
    from model.synth.pools import VALIDATION_NON_DIGITS, validation_mix, validation_non_digits

    split, sha256 = mnist.validation, mnist.source_sha256
    validation, composition = validation_mix(split, sha256, workers, cache_dir, progress)
    outliers, described = validation_non_digits(split, sha256, workers, cache_dir, progress,
                                                VALIDATION_NON_DIGITS if non_digits is None else non_digits)
    fits = fit_refer_rules(net, validation, request, mix_channels(validation, composition), outliers, described,
                           precisions, seed, temperature)
    return fits, composition


def mix_channels(validation: Split, composition: dict[str, object]) -> dict[Channel, ChannelData]:
    """The validation mix split by channel (``model.synth.pools.PART_CHANNELS``: its uploads and PNG
    files are files a client posts, its pen drawings drawings on the page's pad)."""
    from model.synth.pools import PART_CHANNELS, VALIDATION_MIX, channel_parts, mix_parts

    image_channels = np.array([PART_CHANNELS[name] for name in VALIDATION_MIX])[mix_parts(composition)]  # [N]
    whole = str(composition["data"])
    channels = {}
    for channel in CHANNELS:
        mine = image_channels == channel
        channels[channel] = ChannelData(Split(validation.images[mine], validation.labels[mine]),
                                        f"the {channel} channel's part of {whole}: {int(mine.sum())} "
                                        f"{' and '.join(channel_parts(channel))}")
    return channels


def with_fits(meta: dict[str, Any], fits: dict[Precision, ReferRuleFit]) -> dict[str, Any]:
    """``meta`` with every channel's record of these fits filed as fitted on the validation mix
    (replacing those of the same channel and precision); a refused fit adds nothing."""
    done = {precision: fit.records for precision, fit in fits.items() if fit.refused is None}
    by_channel: ByChannel = {channel: {precision: records[channel] for precision, records in done.items()}
                             for channel in CHANNELS}
    return with_records(meta, "validation", by_channel)
