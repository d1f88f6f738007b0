"""Does recalibrating on live audits keep its promise? A simulation over seeded streams.

    python -m bench.recalibration_guarantee                 # 20 streams of 3,000 labelled audits
    python -m bench.recalibration_guarantee --audits 1500 --streams 50

The traffic: MNIST test as the service sees it (simulated uploads, pen drawings on the page's pad,
plain PNG files: the report's service view, 30,000 images), scored once by the checkpoint as it
is served. Each stream draws ``--audits`` of them uniformly at random (what the audit sample
gives ``python -m model.calibrate --reviewed``), fits the threshold by the same Learn-then-Test
function (``model.calibrate.guarantee_threshold``, alpha and delta as shipped), and measures the
accepted error on the rest, the fresh traffic the new threshold would then answer. The promise:
that error is at most alpha, except in at most a fraction delta of the streams. Prints one row
per stream and the violation rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model.calibrate import DEFAULT_ALPHA, DEFAULT_DELTA, CalibrationError, guarantee_threshold
from model.calibration import calibrations
from model.checkpoint import as_served, load_checkpoint
from model.data import DEFAULT_CACHE
from model.mnist import load_mnist
from model.report.uploads import score
from model.synth.pools import arrays_as_files, digit_uploads, pen_drawings


def traffic(checkpoint: Path, samples: int, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Entropy and correctness of every image of the service view (cached pools, else rendered)."""
    net, meta = load_checkpoint(checkpoint)
    served = as_served(net, calibrations(meta)["float32"], "float32")
    mnist = load_mnist(None, cache_dir)
    test, sha = mnist.test, mnist.source_sha256
    parts = [digit_uploads(test, "test", sha, 2, cache_dir).split(), pen_drawings(test, "pen-test", sha, 2, cache_dir)
             .split(), arrays_as_files(test, "test", sha, cache_dir).split()]
    torch.manual_seed(0)
    entropy, correct = [], []
    for part in parts:
        scores = score(served, part.images, samples)
        entropy.append(scores.entropy)
        correct.append(scores.predicted == part.labels)
    return np.concatenate(entropy), np.concatenate(correct)


def simulate(entropy: np.ndarray, correct: np.ndarray, audits: int, streams: int, alpha: float, delta: float,
             samples: int) -> list[dict[str, float | int | None]]:
    """One row per seeded stream: its threshold, and the accepted error and referral rate on the rest."""
    rows: list[dict[str, float | int | None]] = []
    for seed in range(streams):
        order = np.random.default_rng(seed).permutation(len(entropy))
        drawn, fresh = order[:audits], order[audits:]
        try:
            threshold = guarantee_threshold(entropy[drawn], correct[drawn], alpha, delta, samples).threshold
        except CalibrationError:
            rows.append({"seed": seed, "threshold": None, "fresh_accepted_error": None, "fresh_referred": None})
            continue
        accepted = entropy[fresh] <= threshold
        error = float((~correct[fresh][accepted]).mean()) if accepted.any() else 0.0
        rows.append({"seed": seed, "threshold": threshold, "fresh_accepted_error": error,
                     "fresh_referred": float(1 - accepted.mean()), "violated": int(error > alpha)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recalibration_guarantee", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--audits", type=int, default=3000, help="labelled audits per stream")
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    parser.add_argument("--delta", type=float, default=DEFAULT_DELTA)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    entropy, correct = traffic(args.checkpoint, args.samples, args.cache_dir)
    print(f"traffic: {len(entropy)} images, error {100 * (1 - correct.mean()):.2f} % before any referral\n")
    rows = simulate(entropy, correct, args.audits, args.streams, args.alpha, args.delta, args.samples)
    print("| stream | threshold (nats) | fresh: accepted error | fresh: referred |\n|---:|---:|---:|---:|")
    for row in rows:
        if row["threshold"] is None:
            print(f"| {row['seed']} | refused | | |")
        else:
            print(f"| {row['seed']} | {row['threshold']:.4g} | {100 * float(row['fresh_accepted_error'] or 0):.3f} % | "
                  f"{100 * float(row['fresh_referred'] or 0):.2f} % |")
    fitted = [row for row in rows if row["threshold"] is not None]
    violations = sum(int(row.get("violated") or 0) for row in fitted)
    # the promise is over the draw: a refusal promises nothing and breaks nothing
    print(f"\n{len(fitted)} of {len(rows)} streams certified; accepted error above alpha = {100 * args.alpha:.2g} % on "
          f"the fresh traffic in {violations} of {len(rows)} streams ({violations / max(1, len(rows)):.0%}; the "
          f"promise: at most delta = {args.delta:.0%}), {violations} of the {len(fitted)} certified")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
