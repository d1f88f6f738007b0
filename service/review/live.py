"""What the labels say: the live accepted error with its Clopper-Pearson interval, and what the
referrals cost. Plain arithmetic on counts (no scipy on the serving path).

Audited items are a uniform random sample of the *accepted* answers (``service/audit.py``), so k
wrong of n labelled estimates the live error of accepted answers without bias. An audited answer
is wrong when the reviewer's label differs from the answer's class, ``not_a_digit`` included (the
service accepted something that is not a digit); ``unreadable`` ones are left out of n (nobody
can say) and counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

CONFIDENCE = 0.95  # two-sided: each bound holds with 97.5 % (the alert reads the lower one)
DIGIT_LABELS = tuple(str(digit) for digit in range(10))
LABELS = (*DIGIT_LABELS, "not_a_digit", "unreadable")


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
    """The exact two-sided interval for a binomial proportion: (lower, upper). With no trials,
    (0, 1): nothing is known."""
    if not 0 <= errors <= trials:
        raise ValueError(f"need 0 <= errors <= trials, got {errors} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    tail = (1.0 - confidence) / 2
    # lower: P(X >= k | p) = tail, increasing in p; upper: P(X <= k | p) = tail, decreasing in p
    lower = 0.0 if errors == 0 else _bisect(lambda p: 1.0 - binomial_cdf(errors - 1, trials, p), tail, True)
    upper = 1.0 if errors == trials else _bisect(lambda p: binomial_cdf(errors, trials, p), tail, False)
    return lower, upper


@dataclass(frozen=True)
class AcceptedError:
    """The live error of accepted answers, from the audit labels."""

    audited: int  # labelled audits that count (unreadable left out)
    wrong: int
    unreadable: int
    ratio: float | None  # wrong / audited; None before the first label
    lower: float
    upper: float
    confidence: float = CONFIDENCE

    @classmethod
    def of(cls, wrong: int, audited: int, unreadable: int = 0) -> AcceptedError:
        lower, upper = clopper_pearson(wrong, audited)
        return cls(audited, wrong, unreadable, wrong / audited if audited else None, lower, upper)


def outcome(label: str, predicted: int) -> str:
    """What a label says of an answer: ``right``, ``wrong`` (another digit), ``not_a_digit`` or ``unreadable``."""
    if label in ("not_a_digit", "unreadable"):
        return label
    return "right" if label == str(predicted) else "wrong"
