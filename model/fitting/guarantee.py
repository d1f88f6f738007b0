"""The statistics of the refer rule: the threshold with a stated guarantee, or at a referral rate,
and the top-two mass that says why a referral is made. Fitting them to a net: ``model/fitting/validation.py``.

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
that accepts at least n_min = ceil(log(delta) / log(1 - alpha)) validation inputs (1,497 at the
defaults), the fewest with which even zero errors could certify; that start depends on the
unlabelled entropies only, never on which predictions are right.

Referral-rate mode: the threshold is the (1 - rate) quantile of validation entropy, so about
``rate`` of inputs like the validation split are referred. No accuracy guarantee.

Defaults: alpha = 0.2 % (files; drawings on the page's pad: 0.4 %), delta = 5 %.

Why a referral is made (``refer_reason``) comes from the shape of the predictive, not from a
second output: outlier exposure trains non-digits towards the uniform prediction, so the mass of
a referred non-digit is spread over many classes, while a referred digit hesitates between two
or three. :func:`familiar_mass` picks the top-two mass below which a referral is "unfamiliar": the
largest that keeps 85 % of the referred validation digits "uncertain"; what it gives on
referred generated validation non-digits (training's generator, a held-out seed: no reported
family is seen) is recorded beside it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from model.calibration import Calibration, Channel
from model.predictive import DEFAULT_SAMPLES

# each channel's allowed error among accepted answers: files 0.2 %; the page's drawings 0.4 % (the issue's
# >= 99.5 % accepted accuracy, with a margin)
DEFAULT_ALPHAS: dict[Channel, float] = {"file": 0.002, "drawn": 0.004}
DEFAULT_DELTA = 0.05
MAX_ENTROPY = math.log(10.0)


class CalibrationError(RuntimeError):
    """No threshold meets the requested guarantee."""


def default_grid() -> np.ndarray:
    """Strict-to-loose thresholds, fixed in advance: geometric from 1e-6 nats to log 10."""
    return np.geomspace(1e-6, MAX_ENTROPY, 1000)


def clopper_pearson_upper(errors: int, trials: int, delta: float) -> float:
    """One-sided upper bound on a binomial rate with confidence 1 - delta."""
    from scipy.stats import beta  # here, not at import: the service reads Calibration without scipy

    if trials == 0 or errors >= trials:
        return 1.0
    return float(beta.ppf(1.0 - delta, errors + 1, trials - errors))


def _summary(entropy: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    accepted = entropy <= threshold
    coverage = float(accepted.mean())
    accuracy = float(correct[accepted].mean()) if accepted.any() else float("nan")
    return coverage, accuracy


def guarantee_threshold(entropy: np.ndarray, correct: np.ndarray, alpha: float,
                        delta: float = DEFAULT_DELTA, samples: int = DEFAULT_SAMPLES,
                        grid: np.ndarray | None = None, data: str = "unnamed", *, channel: Channel = "file",
                        precision: str = "float32") -> Calibration:
    """Fixed-sequence test over ``grid`` (ascending). ``entropy`` [n] in nats, ``correct`` [n] bool;
    ``data`` names what they were measured on, ``channel`` and ``precision`` whose images and scores
    they are (all recorded). The record's place defaults to a file channel's in float32 only for the
    report's operating points (``model/report/uploads.py``); every record that is filed names its own."""
    grid = default_grid() if grid is None else np.asarray(grid)
    if np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be strictly ascending (strict to loose)")
    chosen: tuple[float, float] | None = None
    fewest = min_trials(alpha, delta)
    for threshold in grid:
        accepted = entropy <= threshold
        trials = int(accepted.sum())
        if trials < fewest and chosen is None:
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
    return Calibration("guarantee", chosen[0], samples, alpha, delta, None, len(entropy), coverage, accuracy, chosen[1],
                       data, precision=precision, channel=channel)


MASS_GRID = np.round(np.arange(0.30, 0.996, 0.005), 3)  # candidate top-two masses, fixed in advance


DIGITS_UNCERTAIN_FLOOR = 0.85  # share of referred validation digits that must stay "uncertain"


def familiar_mass(digits: np.ndarray, outliers: np.ndarray,
                  floor: float = DIGITS_UNCERTAIN_FLOOR) -> tuple[float, dict[str, Any]]:
    """The top-two mass below which a referral is "unfamiliar": the largest grid value at which
    at least ``floor`` of the referred digits (``digits``, their masses) are still "uncertain".
    As large as that allows, so that as many non-digits as possible are named "not a digit";
    the floor keeps a margin over the promise that most referred digits are told "unsure which"
    (validation digits are easier than what is sent). ``outliers`` (referred non-digits) are
    only reported: what the rule names right on them."""
    if len(digits) == 0 or len(outliers) == 0:
        raise CalibrationError("the refer reason needs referred validation digits and referred non-digits")
    allowed = [float(m) for m in MASS_GRID if (digits >= m).mean() >= floor]
    if not allowed:
        raise CalibrationError(f"no top-two mass keeps {floor:.0%} of referred validation digits 'uncertain'")
    mass = max(allowed)
    return mass, {"rule": f"largest mass keeping >= {floor:.0%} of referred validation digits uncertain",
                  "referred_digits": len(digits), "referred_digits_uncertain": float((digits >= mass).mean()),
                  "referred_non_digits": len(outliers),
                  "referred_non_digits_unfamiliar": float((outliers < mass).mean())}


def referral_rate_threshold(entropy: np.ndarray, correct: np.ndarray, rate: float,
                            samples: int = DEFAULT_SAMPLES, data: str = "unnamed", *, channel: Channel,
                            precision: str) -> Calibration:
    """The (1 - ``rate``) quantile of ``entropy`` [n] as the threshold (no guarantee), recorded for
    ``channel``'s images scored in ``precision``."""
    if not 0.0 <= rate < 1.0:
        raise ValueError("referral rate must be in [0, 1)")
    threshold = float(np.quantile(entropy, 1.0 - rate, method="higher")) if rate > 0 else MAX_ENTROPY
    coverage, accuracy = _summary(entropy, correct, threshold)
    return Calibration("referral_rate", threshold, samples, None, None, rate, len(entropy), coverage, accuracy, None,
                       data, precision=precision, channel=channel)


def min_trials(alpha: float, delta: float) -> int:
    """The fewest accepted items with which zero errors certify ``alpha`` at ``1 - delta``: 1,497 at the defaults."""
    return math.ceil(math.log(delta) / math.log(1.0 - alpha))
