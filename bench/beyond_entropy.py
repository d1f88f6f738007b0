"""Can a second signal refer the printed letters and symbols the file channel accepts?

Issue 30's letter and symbol targets are missed by images the network reads as a digit with
confidence: no threshold on the predictive's entropy (or on its shape: docs/experiments.md) refers
them without referring more digits. This measures two signals from outside the predictive, each
at an equal cost in validation files referred (the fair comparison: lowering the entropy
threshold alone also refers more letters):

* **distance in feature space**: a test image's cosine distance to its k-th nearest neighbour
  among the conv trunk's features of the training digits (8,000 from each digit pool of the
  shipped recipe: uploads, PNG files, pen drawings, printed digits). Refer when the entropy rule
  does or the distance is above the share ``--budgets`` of validation files flagged.
* **a second network** (``--ensemble CKPT``, e.g. the same recipe trained from another seed):
  the mean of both predictives, its file threshold fitted again (the same fixed-sequence test)
  on the validation files; the shipped network alone at the same validation referral beside it.

    python -m bench.beyond_entropy [--checkpoint C] [--ensemble C2] [--budgets 0.005 0.01 0.02]

The reference is training data, the thresholds are set on validation, the report families are
the test families of ``make evaluate`` (float32, in process, the file channel's rule). About
2 minutes with the pools cached (``make train`` or ``make evaluate`` renders them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model.calibrate import guarantee_threshold
from model.calibration import Calibration, served_channels
from model.checkpoint import as_served, load_checkpoint
from model.data import DEFAULT_CACHE, to_input
from model.mnist import Mnist, load_fashion_test, load_mnist
from model.network import BayesianNet
from model.predictive import entropy
from model.report.uploads import build_families
from model.scoring import predict_images
from model.synth.pools import arrays_as_files, digit_uploads, mix_files, pen_drawings, printed_digits, validation_mix

REFERENCE_PER_POOL = 8_000
NEIGHBOUR = 10  # the k-th nearest training feature
VALIDATION, PNG = "validation files", "MNIST test as PNG files"
REPORTED = ("MNIST test digits as uploads", "MNIST test as PNG files", "printed digits",
            "printed letters unlike digits", "printed letters", "printed symbols", "clothing (Fashion-MNIST test)",
            "photo crops", "generated scribbles")


@torch.inference_mode()
def trunk_features(net: BayesianNet, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    """uint8 ``[n, 28, 28]`` -> the conv trunk's features ``[n, F]``, unit length (float32)."""
    parts = []
    for start in range(0, len(images), batch):
        x = to_input(images[start : start + batch]).contiguous(memory_format=torch.channels_last)
        parts.append(net.trunk(x).flatten(1).float())
    features = torch.cat(parts)
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


def knn_distance(reference: torch.Tensor, features: torch.Tensor, k: int = NEIGHBOUR) -> np.ndarray:
    """Cosine distance of each row of ``features`` to its ``k``-th nearest row of ``reference``."""
    out = [1.0 - (features[i : i + 2000] @ reference.T).topk(k, dim=1).values[:, -1]
           for i in range(0, len(features), 2000)]
    return torch.cat(out).numpy()


class Sets:
    """The images every rule is read off (validation files first), and one network's predictive on them."""

    def __init__(self, images: dict[str, np.ndarray], samples: int):
        self.images, self.samples = images, samples
        self.entropies: dict[str, np.ndarray] = {}  # the checkpoint's, once scored

    def probabilities(self, model: BayesianNet) -> dict[str, np.ndarray]:
        return {name: predict_images(model, images, self.samples, 1000).mean_probs.double().numpy()
                for name, images in self.images.items()}

    def table(self, rows: list[tuple[str, dict[str, np.ndarray]]]) -> str:
        """Markdown: each rule's share referred (%) of each set."""
        lines = ["| rule | " + " | ".join(self.images) + " |", "|---|" + "---:|" * len(self.images)]
        lines += [f"| {label} | " + " | ".join(f"{100 * refer[name].mean():.1f}" for name in self.images) + " |"
                  for label, refer in rows]
        return "\n".join(lines)


def entropies(probabilities: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: entropy(torch.from_numpy(p)).numpy() for name, p in probabilities.items()}


def above(values: dict[str, np.ndarray], threshold: float) -> dict[str, np.ndarray]:
    return {name: value > threshold for name, value in values.items()}


def as_many(values: dict[str, np.ndarray], share: float) -> tuple[float, dict[str, np.ndarray]]:
    """The entropy threshold alone that refers ``share`` of the validation files, and what it refers."""
    threshold = float(np.quantile(values[VALIDATION], 1.0 - share))
    return threshold, above(values, threshold)


def distance_rows(net: BayesianNet, sets: Sets, mnist: Mnist, shipped: dict[str, np.ndarray], budgets: list[float],
                  cache_dir: Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """For each budget: the shipped rule or the distance, and the entropy alone at as many validation files."""
    sha = mnist.source_sha256
    pools = [digit_uploads(mnist.train, "train", sha, 2, cache_dir, False), arrays_as_files(mnist.train, "train", sha, cache_dir),
             pen_drawings(mnist.train, "pen-train", sha, 2, cache_dir, False), printed_digits(2, cache_dir, False)]
    rng = np.random.default_rng(0)
    reference = trunk_features(net, np.concatenate(
        [pool.images[rng.choice(len(pool.images), min(REFERENCE_PER_POOL, len(pool.images)), replace=False)]
         for pool in pools]))
    distances = {name: knn_distance(reference, trunk_features(net, images)) for name, images in sets.images.items()}
    rows = []
    for budget in budgets:
        cut = float(np.quantile(distances[VALIDATION], 1.0 - budget))
        joint = {name: shipped[name] | (distances[name] > cut) for name in sets.images}
        threshold, alone = as_many(sets.entropies, float(joint[VALIDATION].mean()))
        rows += [(f"entropy or distance (flags {budget:.1%} of validation files)", joint),
                 (f"entropy alone > {threshold:.4f}, as many validation files", alone)]
    return rows


def ensemble_rows(first: dict[str, np.ndarray], second: dict[str, np.ndarray], labels: np.ndarray, rule: Calibration,
                  sets: Sets) -> tuple[list[tuple[str, dict[str, np.ndarray]]], dict[str, np.ndarray]]:
    """This network fitted on the validation files, both (their mean predictive) fitted the same way, and this
    one alone at as many validation files; and both's mean predictive."""
    def fitted(probabilities: dict[str, np.ndarray]) -> float:
        values = entropies(probabilities)
        right = probabilities[VALIDATION].argmax(-1) == labels
        return guarantee_threshold(values[VALIDATION], right, rule.alpha or 0.002, rule.delta or 0.05,
                                   sets.samples).threshold

    mean = {name: (first[name] + second[name]) / 2 for name in first}
    own, both = fitted(first), fitted(mean)
    referred = above(entropies(mean), both)
    threshold, alone = as_many(sets.entropies, float(referred[VALIDATION].mean()))
    return [(f"this network alone, fitted the same way (> {own:.4f})", above(sets.entropies, own)),
            (f"both, fitted (> {both:.4f})", referred),
            (f"this network alone > {threshold:.4f}, as many validation files", alone)], mean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--ensemble", type=Path, default=None, help="a second checkpoint to average with")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.005, 0.01, 0.02],
                        help="shares of validation files the distance alone may flag")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, meta = load_checkpoint(args.checkpoint)
    rule = served_channels(meta, "float32")["file"]
    served = as_served(net, rule, "float32")
    mnist = load_mnist()
    mix, composition = validation_mix(mnist.validation, mnist.source_sha256, cache_dir=args.cache_dir, progress=False)
    files = mix_files(composition)
    test_png = arrays_as_files(mnist.test, "test", mnist.source_sha256, args.cache_dir)
    families = {family.name: family.images for family in build_families(mnist, load_fashion_test(), 2, args.cache_dir)}
    families[PNG] = test_png.images
    sets = Sets({VALIDATION: mix.images[files], **{name: families[name] for name in REPORTED}}, args.samples)
    probabilities = sets.probabilities(served)
    sets.entropies = entropies(probabilities)
    shipped = above(sets.entropies, rule.threshold)
    print(f"{meta['model_version']}, file channel, float32, N {args.samples}; % referred\n")
    print("Distance in feature space (the k-th nearest training digit, cosine), at equal validation referral:\n")
    print(sets.table([(f"entropy > {rule.threshold:.4f} (shipped)", shipped),
                      *distance_rows(net, sets, mnist, shipped, args.budgets, args.cache_dir)]))
    if args.ensemble is not None:
        other, other_meta = load_checkpoint(args.ensemble)
        second = sets.probabilities(as_served(other, served_channels(other_meta, "float32")["file"], "float32"))
        rows, mean = ensemble_rows(probabilities, second, mix.labels[files], rule, sets)
        print(f"\nTwo networks' mean predictive ({args.ensemble}), its file threshold fitted on validation files "
              f"at alpha {rule.alpha}:\n")
        print(sets.table(rows))
        right = {name: 100 * float((p[PNG].argmax(-1) == test_png.labels).mean())
                 for name, p in (("this network", probabilities), ("both", mean))}
        print(f"\n{PNG}, accuracy: " + ", ".join(f"{name} {value:.2f} %" for name, value in right.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
