"""What a larger network costs, before any is trained: each architecture of the capacity sweep
(wider and deeper trunks, wider heads) beside the shipped one, with the conv trunk in float32 and
under bfloat16, side by side in one run.

    python -m bench.capacity [--steps 10] [--threads 2] [--variants shipped 2x-channels ...]

Per variant and precision: parameters and checkpoint size (every tensor saved as float32: the
trunk's weights, the head's means and rhos), the shipped recipe's training step (320 images:
arrays, uploads and outliers; forward, backward, Adam), the ``make train`` time it projects (16
epochs of ceil(50,000 / 128) steps; rendering the pools and the per-epoch validation not
counted), and the served predictive at N = 100 per image, alone and in a batch of 32, on one
thread (a worker's, as the service runs by default). Ratios are to ``two-blocks`` in float32, the
network shipped before the sweep (``head-33b17fd3caa5``) as it was served: a larger network is
affordable where its bfloat16 column is no slower than that. ``third-block`` is the one shipped
since (``head-6f212c8b48a7``, served in bfloat16 where the CPU has the units).
"""

from __future__ import annotations

import argparse
import math

import torch

from bench.common import best_ms, header
from bench.train_speed import step_ms
from model.data import IMAGE_SIZE
from model.network import PRESETS, BayesianNet, NetConfig
from model.precision import PRECISIONS, Precision, bf16_units
from model.predictive import predictive
from model.train_config import TrainConfig

BASELINE = PRESETS["head"]  # two conv blocks: shipped in float32 until the sweep
VARIANTS: dict[str, NetConfig] = {
    "two-blocks": BASELINE,
    "2x-channels": NetConfig(conv_blocks=((64, 64), (128, 128))),
    "4x-channels": NetConfig(conv_blocks=((128, 128), (256, 256))),
    "third-block": NetConfig(conv_blocks=((32, 32), (64, 64), (128, 128))),
    "third-block-2x-channels": NetConfig(conv_blocks=((64, 64), (128, 128), (256, 256))),
    "wide-head": NetConfig(hidden=(1024,)),
    "2x-channels-wide-head": NetConfig(conv_blocks=((64, 64), (128, 128)), hidden=(512,)),
}
TRAIN_SIZE = 50_000
EPOCHS = TrainConfig().epochs


def checkpoint_mb(architecture: NetConfig) -> tuple[int, float]:
    """(parameters, MB of the safetensors file's tensors) of an ``architecture``."""
    count = sum(tensor.numel() for tensor in BayesianNet(architecture).state_dict().values())
    return count, 4 * count / 1e6


def served_ms(architecture: NetConfig, precision: Precision, batch: int, threads: int) -> float:
    """Median ms per image of the predictive at N = 100 for ``batch`` images on ``threads`` threads."""
    torch.manual_seed(0)
    net = BayesianNet(architecture, precision).eval()
    x = torch.rand(batch, 1, IMAGE_SIZE, IMAGE_SIZE)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return best_ms(lambda: predictive(net, x, 100).entropy, repeat=30 if batch == 1 else 10) / batch
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per variant and precision")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the training step (make train's)")
    parser.add_argument("--serving-threads", type=int, default=1, help="of the served pass (the service's "
                        "default: one per worker, a worker per core)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(header(f"capacity sweep: what each architecture costs (served on {args.serving_threads} thread(s))"))
    print(f"bfloat16 units on this CPU: {', '.join(bf16_units()) or 'none (bfloat16 is emulated)'}\n")
    steps_per_epoch = math.ceil(TRAIN_SIZE / TrainConfig().batch_size)
    print("| variant | conv blocks | head | parameters | checkpoint MB | precision | ms / training step | "
          f"make train, {EPOCHS} epochs (min) | served ms/image N=100, 1 image | 32 images | "
          "served ratio to two-blocks float32 (1 image) |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|")
    baseline = served_ms(BASELINE, "float32", 1, args.serving_threads)  # whichever variants are asked for
    for name in args.variants:
        architecture = VARIANTS[name]
        count, megabytes = checkpoint_mb(architecture)
        for precision in PRECISIONS:
            step = step_ms(precision, args.steps, architecture)
            baseline_float32 = architecture == BASELINE and precision == "float32"
            one = baseline if baseline_float32 else served_ms(architecture, precision, 1, args.serving_threads)
            many = served_ms(architecture, precision, 32, args.serving_threads)
            minutes = EPOCHS * steps_per_epoch * step / 60_000
            print(f"| {name} | {architecture.conv_blocks} | {architecture.hidden} | {count:,} | {megabytes:.1f} | "
                  f"{precision} | {step:.0f} | {minutes:.0f} | {one:.2f} | {many:.3f} | {baseline / one:.2f}x |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
