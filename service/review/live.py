"""What the labels say: the live accepted error with its Clopper-Pearson interval
(``model/binomial.py``, no scipy on the serving path), and what the referrals cost.

Audited items are a uniform random sample of the *accepted* answers (``service/audit.py``), so k
wrong of n labelled estimates the live error of accepted answers without bias. An audited answer
is wrong when the reviewer's label differs from the answer's class, ``not_a_digit`` included (the
service accepted something that is not a digit); ``unreadable`` ones are left out of n (nobody
can say) and counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.binomial import CONFIDENCE, clopper_pearson

DIGIT_LABELS = tuple(str(digit) for digit in range(10))
LABELS = (*DIGIT_LABELS, "not_a_digit", "unreadable")
REASONS = ("referred", "audit")  # why an item is in the queue
OUTCOMES = ("right", "wrong", "not_a_digit", "unreadable")  # what a label says of the answer (outcome())


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
