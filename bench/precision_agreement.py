"""bfloat16 against float32, image by image: do they give the same answers?

Each precision runs the conv trunk as the service would (``model/precision.py``) with its own
calibration record (temperature, threshold, refer reason), on the same images with the same
posterior draws (the same seed before each). On the MNIST test split (arrays, plain PNG files,
simulated uploads, pen drawings) and every family of ``make evaluate``'s uploads section, it
prints per set: class agreement, refer-decision agreement (refer or accept), refer-reason
agreement, and for digit sets each precision's accuracy, ECE, share referred and accepted
accuracy. Each set is judged by its channel's record (pen drawings: the drawn channel's; the rest
are files); the rows "files" (uploads and PNG files together) and "pen drawings" hold each
channel's guarantee test, as ``make evaluate`` reports it: accepted accuracy >= 1 - its alpha.

    python -m bench.precision_agreement [--checkpoint checkpoints/bnn.safetensors] [--scale 1.0]

Needs Fashion-MNIST for the clothing family (``apt-get install dataset-fashion-mnist``; the family
is left out without it). Renders and caches the report's pools like ``make evaluate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.common import header
from model.calibration import Calibration, Channel, served_channels
from model.checkpoint import as_served, load_checkpoint
from model.data import DEFAULT_CACHE, Split
from model.mnist import DataError, load_fashion_test, load_mnist
from model.precision import PRECISIONS, bf16_units
from model.report.uploads import Scores, build_families, decisions, score
from model.scoring import expected_calibration_error
from model.synth.pools import arrays_as_files, digit_uploads, pen_drawings


def sets(scale: float, workers: int, cache_dir: Path) -> dict[str, tuple[Split, bool, Channel]]:
    """Name -> (images and labels, whether they are digits, the channel that judges them), as the report
    renders them."""
    mnist = load_mnist(None, cache_dir)
    test = mnist.test if scale >= 1 else mnist.test.subset(max(8, int(10_000 * scale)))
    chosen: dict[str, tuple[Split, bool, Channel]] = {
        "MNIST test arrays": (test, True, "file"),
        "plain PNG files": (arrays_as_files(test, "test", mnist.source_sha256, cache_dir).split(), True, "file"),
        "uploads": (digit_uploads(test, "test", mnist.source_sha256, workers, cache_dir).split(), True, "file"),
        "pen drawings": (pen_drawings(test, "pen-test", mnist.source_sha256, workers, cache_dir).split(), True,
                         "drawn"),
    }
    files = [chosen[name][0] for name in ("uploads", "plain PNG files")]
    chosen["files (uploads and PNG files)"] = (Split(np.concatenate([part.images for part in files]),
                                                     np.concatenate([part.labels for part in files])), True, "file")
    try:
        fashion: Split | None = load_fashion_test()
    except DataError:
        fashion = None
    for family in build_families(mnist, fashion, workers, cache_dir, scale)[1:]:  # the first: uploads, above
        chosen[family.name] = (Split(family.images, family.labels), family.kind == "digits", "file")
    return chosen


def reasons(scores: Scores, calibration: Calibration) -> np.ndarray:
    """0 accepted, 1 uncertain, 2 unfamiliar, per image."""
    uncertain, unfamiliar = decisions(scores, calibration)
    return uncertain.astype(int) + 2 * unfamiliar.astype(int)


def compare(nets: dict[str, torch.nn.Module], records: dict[str, Calibration], split: Split, digits: bool,
            samples: int, seed: int) -> dict[str, float | None]:
    scores, decided = {}, {}
    for name, net in nets.items():
        torch.manual_seed(seed)
        scores[name] = score(net, split.images, samples)  # type: ignore[arg-type]
        decided[name] = reasons(scores[name], records[name])
    low, high = "bfloat16", "float32"
    row: dict[str, float | None] = {
        "images": float(len(split.images)),
        "class": float((scores[low].predicted == scores[high].predicted).mean()),
        "refer": float(((decided[low] > 0) == (decided[high] > 0)).mean()),
        "reason": float((decided[low] == decided[high]).mean()),
    }
    for name in (high, low):
        row[f"referred {name}"] = float((decided[name] > 0).mean())
        if digits:
            correct = scores[name].predicted == split.labels
            row[f"accuracy {name}"] = float(correct.mean())
            row[f"ece {name}"] = expected_calibration_error(scores[name].confidence, correct)[0]  # type: ignore[arg-type]
            accepted = decided[name] == 0
            row[f"accepted accuracy {name}"] = float(correct[accepted].mean()) if accepted.any() else None
    return row


def percent(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def pair(row: dict[str, float | None], key: str, digits: int = 2) -> str:
    return f"{percent(row.get(f'{key} float32'), digits)} / {percent(row.get(f'{key} bfloat16'), digits)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision_agreement", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every set (a quick look)")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering the pools (cached)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    loaded, meta = load_checkpoint(args.checkpoint)
    channels = {name: served_channels(meta, name) for name in PRECISIONS}
    missing = [name for name in PRECISIONS if not channels[name]]
    if missing:
        print(f"no calibration record for {', '.join(missing)}: run python -m model.calibrate first")
        return 2
    nets = {name: as_served(loaded, channels[name]["file"], name) for name in PRECISIONS}
    samples = channels["float32"]["file"].samples
    print(header(f"bfloat16 vs float32: {meta['model_version']}, N = {samples}"))
    units = ", ".join(bf16_units()) or "none (bfloat16 is emulated: bfloat16 rounding on other kernels, slower)"
    print(f"bfloat16 units on this CPU: {units}")
    for name in PRECISIONS:
        for channel, record in channels[name].items():
            print(f"{name}, {channel}: temperature {record.temperature}, threshold {record.threshold:.4f} nats, "
                  f"familiar mass {record.familiar_mass}, validation referred {percent(1 - record.validation_coverage)} %")
    print("\n| set | images | class agree % | refer agree % | reason agree % | referred f32 / bf16 % "
          "| accuracy f32 / bf16 % | ECE f32 / bf16 % | accepted accuracy f32 / bf16 % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for set_name, (split, digits, channel) in sets(args.scale, args.workers, args.cache_dir).items():
        records = {precision: channels[precision][channel] for precision in PRECISIONS}
        row = compare(nets, records, split, digits, samples, args.seed)  # type: ignore[arg-type]
        print(f"| {set_name} | {row['images']:.0f} | {percent(row['class'])} | {percent(row['refer'])} | "
              f"{percent(row['reason'])} | {pair(row, 'referred', 1)} | {pair(row, 'accuracy') if digits else '–'} | "
              f"{pair(row, 'ece') if digits else '–'} | {pair(row, 'accepted accuracy') if digits else '–'} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
