"""The N-sample predictive, three ways, side by side in one run, for each trunk precision:

(a) a loop of N forward passes with sampled weights (the usual way, written here as reference),
(b) our vectorized predictive (``model.predictive.predictive``),
(c) the floor: the FLOPs that (b) needs divided by the conv/matmul throughput measured now;

then (b) in each precision against (b) in float32, the same run: the trunk alone at 1, 32 and 128
images, and the whole predictive (the ratio column, float32 time / each precision's): float32 and
bfloat16 in PyTorch, int8 in ONNX Runtime (the checkpoint's int8 trunk, ``python -m model.quantize``).

    python -m bench.predictive_pass [--checkpoint checkpoints/bnn.safetensors] [--threads 2]
                               [--precision float32 int8 bfloat16] [--tables kernel ratios agreement served]

It also checks, for each precision, that (a) and (b) give the same predictive distribution
(z-scores of the mean probabilities and the entropy over many samples), so no speed is bought
with other answers; and (``served`` table) how each served precision's answers compare with
float32's on the MNIST test digits posted as PNG files, each judged by its own precision's refer
rule as the service serves it: the class and refer decisions that differ, beside the Monte Carlo
floor (float32 against itself under other posterior draws). On a CPU without a precision's units
(``model/precision.py``) that precision is emulated or runs on slower kernels: the header says
which units the CPU has.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.common import best_ms, header
from model.checkpoint import load_checkpoint
from model.data import IMAGE_SIZE
from model.layers import VariationalConv2d, VariationalLinear
from model.network import BayesianNet
from model.precision import KINDS, PRECISIONS, trunk_precision, units
from model.predictive import predictive, summarize


def head_layers(net: BayesianNet) -> list[VariationalLinear]:
    """The head's variational layers, in order."""
    return [cast(VariationalLinear, layer) for layer in net.head.children()]


def sampled_forward(net: BayesianNet, x: Tensor) -> Tensor:
    """One forward pass with one plain weight draw for every Gaussian layer: [B, C] (divided by the
    config's temperature, as the network's own forward does)."""
    if net.shares_features:
        h = net.features(x)  # the trunk as the net runs it; the head in float32
    else:
        h = x
        with trunk_precision(net.precision):
            for layer in net.trunk:
                if isinstance(layer, VariationalConv2d):
                    weight, bias = layer.sample_weights()
                    h = F.conv2d(h, weight, bias, padding=layer.padding)
                else:
                    h = layer(h)
        h = h.float().flatten(1)
    for index, linear in enumerate(head_layers(net)):
        if index:
            h = F.relu(h)
        weight, bias = linear.sample_weights()
        h = F.linear(h, weight, bias)
    return h / net.config.temperature


@torch.inference_mode()
def loop_predictive(net: BayesianNet, x: Tensor, samples: int) -> Tensor:
    """(a): logits [S, B, 10] from S separate forward passes."""
    return torch.stack([sampled_forward(net, x) for _ in range(samples)])


def forward_flops(net: BayesianNet, batch: int, samples: int) -> tuple[float, float]:
    """(conv FLOPs, matmul FLOPs) of our predictive for ``batch`` images and ``samples`` N."""
    conv, size, channels = 0.0, IMAGE_SIZE, 1
    for layer in net.trunk:
        if isinstance(layer, nn.Conv2d | VariationalConv2d):
            weight = layer.weight if isinstance(layer, nn.Conv2d) else layer.weight_mu
            out_channels, _, k, _ = weight.shape
            conv += 2.0 * size * size * out_channels * channels * k * k
            channels = out_channels
        elif isinstance(layer, nn.MaxPool2d):
            size //= 2
    conv_copies = 1 if net.shares_features else samples
    matmul = 0.0
    for index, linear in enumerate(head_layers(net)):
        out_features, in_features = linear.weight_mu.shape
        copies = 1 if (index == 0 and net.shares_features) else samples
        matmul += 2 * 2.0 * in_features * out_features * copies  # mean and variance
    return conv * conv_copies * batch, matmul * batch


def throughput() -> tuple[float, float]:
    """Measured FLOP/s of a large conv (the trunk's widest; the faster of the two memory layouts)
    and of a large matmul."""
    conv_flops = 2.0 * 256 * 14 * 14 * 64 * 64 * 9
    conv_ms = float("inf")
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.rand(256, 64, 14, 14).contiguous(memory_format=layout)
        w = torch.rand(64, 64, 3, 3).contiguous(memory_format=layout)
        conv_ms = min(conv_ms, best_ms(partial(F.conv2d, x, w, padding=1), repeat=10))
    a, b = torch.rand(1024, 1024), torch.rand(1024, 1024)
    matmul_ms = best_ms(lambda: a @ b, repeat=10)
    return conv_flops / (conv_ms / 1000), 2.0 * 1024**3 / (matmul_ms / 1000)


@torch.inference_mode()
def agreement(net: BayesianNet, images: Tensor, samples: int) -> tuple[float, float, float]:
    """Max |z| of mean-probability differences, share of |z| > 3, max relative entropy gap."""
    a = torch.softmax(loop_predictive(net, images, samples), -1)  # [S, B, 10]
    b = torch.softmax(net(images, samples), -1)
    standard_error = ((a.var(0) + b.var(0)) / samples).sqrt().clamp_min(1e-9)
    z = (a.mean(0) - b.mean(0)) / standard_error
    considered = (a.mean(0) + b.mean(0)) > 1e-4  # classes with any mass
    entropy_a, entropy_b = summarize(a.log()).entropy, summarize(b.log()).entropy
    relative = ((entropy_a - entropy_b).abs() / entropy_a.clamp_min(1e-6)).max().item()
    return z[considered].abs().max().item(), (z[considered].abs() > 3).float().mean().item(), relative


TABLES = ("kernel", "ratios", "agreement", "served")


def served_agreement(checkpoint: Path, precisions: list[str], limit: int) -> None:
    """Each served precision against float32 on the MNIST test digits as PNG files, through the
    service's decode and transform and each precision's served file rule; float32 under other draws
    is the floor (what differs by chance alone)."""
    import numpy as np
    from PIL import Image

    from harness.images import encode
    from model.mnist import load_mnist
    from service.inference.predictor import Predictor
    from service.inference.preprocess import preprocess

    test = load_mnist().test
    digits = [preprocess(encode(Image.fromarray(image)), 40_000_000) for image in test.images[:limit]]

    def answers(precision: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        torch.manual_seed(seed)
        predictions = Predictor.from_checkpoint(checkpoint, precision=precision).predict(digits)
        return np.array([p.digit for p in predictions]), np.array([p.refer for p in predictions])

    reference_class, reference_refer = answers("float32", 0)
    print(f"\n## served answers against float32's, {len(digits)} MNIST test digits as PNG files (file rule)\n")
    print("| precision, draws | class differs % | refer differs % | referred % | accuracy % | accepted accuracy % |")
    print("|---|---:|---:|---:|---:|---:|")
    for precision, seed in (("float32", 1), *((p, 0) for p in precisions if p != "float32")):
        classes, refers = answers(precision, seed)
        right = classes == test.labels[:limit]
        print(f"| {precision}, seed {seed}{' (the floor)' if precision == 'float32' else ''} | "
              f"{100 * np.mean(classes != reference_class):.2f} | {100 * np.mean(refers != reference_refer):.2f} | "
              f"{100 * refers.mean():.2f} | {100 * right.mean():.2f} | {100 * right[~refers].mean():.2f} |")


def kernel_table(net: BayesianNet, conv_rate: float, matmul_rate: float) -> None:
    print(f"\n## {net.precision}\n")
    print("| images | N | (a) loop ms | (b) ours ms | (c) floor ms | a/b | b/c |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch, samples in ((1, 1), (1, 10), (1, 100), (1, 1000), (64, 1), (64, 100), (256, 100)):
        x = torch.rand(batch, 1, IMAGE_SIZE, IMAGE_SIZE)
        repeat = 3 if batch * samples >= 25_600 else 10
        loop_ms = best_ms(partial(loop_predictive, net, x, samples), repeat=repeat, warmup=1)
        ours_ms = best_ms(partial(predictive, net, x, samples), repeat=max(repeat, 10))
        conv_flops, matmul_flops = forward_flops(net, batch, samples)
        floor_ms = 1000 * (conv_flops / conv_rate + matmul_flops / matmul_rate)
        print(f"| {batch} | {samples} | {loop_ms:.2f} | {ours_ms:.2f} | {floor_ms:.3f} | {loop_ms / ours_ms:.1f} | "
              f"{ours_ms / floor_ms:.1f} |")


def precision_table(nets: dict[str, BayesianNet]) -> None:
    """Each precision's trunk alone and whole predictive (N = 100), per image; ratios to float32."""
    names = list(nets)
    print("\n## per image, same run: " + " vs ".join(names) + f" (ratio: {names[0]} / each)\n")
    print("| pass | images | " + " | ".join(f"{name} ms/image" for name in names) + " | ratio |")
    print("|---|---:|" + "---:|" * (len(names) + 1))
    for label, batch in (("trunk", 1), ("trunk", 32), ("trunk", 128), ("predictive N=100", 1),
                         ("predictive N=100", 32)):
        x = torch.rand(batch, 1, IMAGE_SIZE, IMAGE_SIZE).contiguous(memory_format=torch.channels_last)
        times = {}
        for name, net in nets.items():
            if label == "trunk":
                def run(net: BayesianNet = net, x: Tensor = x) -> Tensor:
                    with torch.inference_mode():
                        return net.features(x)
            else:
                def run(net: BayesianNet = net, x: Tensor = x) -> Tensor:
                    return predictive(net, x, 100).entropy
            times[name] = best_ms(run, repeat=50 if batch == 1 else 20) / batch
        ratios = " / ".join(f"{times[names[0]] / times[name]:.2f}x" for name in names[1:]) or "-"
        print(f"| {label} | {batch} | " + " | ".join(f"{times[name]:.3f}" for name in names) + f" | {ratios} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.predictive_pass", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="the trunk precisions to measure (and check against the loop); int8 where the "
                             "checkpoint has its int8 trunk")
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES),
                        help="which parts to run (the loop of the kernel table takes minutes where a precision "
                             "is emulated)")
    parser.add_argument("--served-digits", type=int, default=10_000, help="MNIST test digits of the served table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded, meta = load_checkpoint(args.checkpoint)
    print(header(f"predictive kernel: {meta['model_version']}"))
    for precision in args.precision:
        if KINDS[precision].units:
            print(f"{precision} units on this CPU: {', '.join(units(precision)) or 'none'}")
    conv_rate, matmul_rate = throughput()
    print(f"measured throughput (float32): conv {conv_rate / 1e9:.1f} GFLOP/s, matmul {matmul_rate / 1e9:.1f} GFLOP/s")
    nets = {precision: loaded.in_precision(precision).eval() for precision in args.precision
            if loaded.runs_in(precision)}
    if "kernel" in args.tables:
        for net in nets.values():
            kernel_table(net, conv_rate, matmul_rate)
    if "ratios" in args.tables:
        precision_table(nets)
    if "served" in args.tables:
        served_agreement(args.checkpoint, [p for p in nets if KINDS[p].served], args.served_digits)
    if "agreement" not in args.tables:
        return 0
    images = torch.rand(16, 1, IMAGE_SIZE, IMAGE_SIZE) * (torch.rand(16, 1, 1, 1) > 0.5)
    failed = 0
    for name, net in nets.items():
        z_max, z_share, entropy_gap = agreement(net, images, 2000)
        same = z_max < 5 and z_share < 0.02 and entropy_gap < 0.1
        failed += not same
        print(f"\n{name}: (a) vs (b), 16 images x N=2000: max |z| {z_max:.2f}, share |z|>3 {z_share:.3%} (about "
              f"0.27% expected by chance), max relative entropy gap {entropy_gap:.3f}: "
              f"{'same distribution' if same else 'DIFFERENT'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
