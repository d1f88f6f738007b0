"""Training speed: our ELBO step (local reparameterization in the variational head) against a
straightforward weight-sampling step (one weight draw per batch for every Gaussian layer, as
the usual Bayes-by-backprop code does) on the same architecture, data, order and schedule.

    python -m bench.train_speed [--preset head] [--epochs 1] [--train-size 50000]

Prints seconds per epoch and validation accuracy after the same number of epochs.

    python -m bench.train_speed --steps 20

instead times the shipped recipe's training step (``model.train_loop.train_step``: 320 images, the
labelled digits and the outliers of one batch, forward, backward and Adam) with the conv trunk in
float32 and under bfloat16 autocast, side by side (``model/precision.py``; on a CPU without
bfloat16 units bfloat16 is emulated and slower).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from bench.common import best_ms, header
from bench.predictive_pass import sampled_forward
from model.batch_mix import Batch, augment
from model.data import Mnist, to_input
from model.mnist import load_mnist
from model.network import PRESETS, BayesianNet, NetConfig
from model.precision import TRAINED, Precision, units
from model.train_config import TrainConfig
from model.train_loop import evaluate_split, lr_at, train_step


def train(net: BayesianNet, data: Mnist, config: TrainConfig, weight_sampling: bool) -> float:
    """One run of ``config.epochs`` epochs; returns seconds per epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    images, labels = to_input(data.train.images), torch.as_tensor(data.train.labels)
    steps = math.ceil(len(labels) / config.batch_size)
    started = time.perf_counter()
    for epoch in range(config.epochs):
        generator = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(labels), generator=generator)
        net.train()
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps + step, steps * config.epochs, config)
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = augment(images[index], config, generator)
            logits = sampled_forward(net, x) if weight_sampling else net(x)[0]
            loss = F.cross_entropy(logits, labels[index]) + net.kl() / len(labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - started) / config.epochs


def step_ms(precision: Precision, steps: int, architecture: NetConfig = PRESETS["head"]) -> float:
    """Median ms of the shipped recipe's training step with the trunk in ``precision`` (of the
    shipped architecture unless another is given)."""
    torch.manual_seed(0)
    config = replace(TrainConfig(), precision=precision)
    net = BayesianNet(architecture, precision).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    labelled = 2 * config.batch_size  # the arrays and the uploads of one step
    batch = Batch(torch.rand(labelled + config.outlier_batch, 1, 28, 28), torch.randint(0, 10, (labelled,)))
    return best_ms(lambda: train_step(net, optimizer, batch, 1.0, 60_000, config), repeat=steps, warmup=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="head")
    parser.add_argument("--steps", type=int, default=0, help="time this many training steps per precision instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.steps:
        print(header(f"training step of the shipped recipe, {args.threads} threads"))
        print(f"bfloat16 units on this CPU: {', '.join(units('bfloat16')) or 'none (bfloat16 is emulated)'}\n")
        times = {precision: step_ms(precision, args.steps) for precision in TRAINED}
        print("| trunk precision | ms / step | speed-up over float32 |\n|---|---:|---:|")
        for precision, ms in times.items():
            print(f"| {precision} | {ms:.1f} | {times['float32'] / ms:.2f}x |")
        return 0
    data = load_mnist()
    data = Mnist(data.train.subset(args.train_size), data.validation, data.test, data.source_sha256)
    config = TrainConfig(epochs=args.epochs)
    print(header(f"training speed, preset '{args.preset}', {args.train_size} images, {args.epochs} epoch(s)"))
    print("| training | s / epoch | validation accuracy (N=10) |\n|---|---:|---:|")
    results = {}
    for name, weight_sampling in (("ours: local reparameterization", False), ("weight sampling per batch", True)):
        torch.manual_seed(0)
        net = BayesianNet(PRESETS[args.preset])
        seconds = train(net, data, config, weight_sampling)
        accuracy = evaluate_split(net, data.validation, 10)["accuracy"]
        results[name] = seconds
        print(f"| {name} | {seconds:.1f} | {accuracy:.4f} |", flush=True)
    ours, reference = results.values()
    print(f"\nspeed-up (weight sampling / ours): {reference / ours:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
