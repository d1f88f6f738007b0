"""The exact (Clopper-Pearson) interval for a binomial proportion, without scipy: the service
computes it from live review labels (``service/review/live.py``) and ``model/reviewed.py`` from an
export, so both read the same numbers. ``tests/test_reviewed.py`` holds it to scipy's beta
quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable

CONFIDENCE = 0.95  # two-sided: each bound holds with 97.5 %


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (n up to millions)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(term - top) for term in terms))


def _bisect(probability_of: Callable[[float], float], target: float, increasing: bool) -> float:
    """The p in [0, 1] where a monotone ``probability_of(p)`` crosses ``target``."""
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = (low + high) / 2
        value = probability_of(middle)
        if (value < target) == increasing:
            low = middle
        else:
            high = middle
        if high - low < 1e-15:
            break
    return (low + high) / 2


def clopper_pearson(errors: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact two-sided interval: (lower, upper). With no trials, (0, 1): nothing is known."""
    if not 0 <= errors <= trials:
        raise ValueError(f"need 0 <= errors <= trials, got {errors} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    tail = (1.0 - confidence) / 2
    # lower: P(X >= k | p) = tail, increasing in p; upper: P(X <= k | p) = tail, decreasing in p
    lower = 0.0 if errors == 0 else _bisect(lambda p: 1.0 - binomial_cdf(errors - 1, trials, p), tail, True)
    upper = 1.0 if errors == trials else _bisect(lambda p: binomial_cdf(errors, trials, p), tail, False)
    return lower, upper
