"""What the labels say: the live accepted error with its Clopper-Pearson interval
(``model/binomial.py``, no scipy on the serving path), and what the referrals cost.

Audited items are a uniform random sample of *every* answer (``service/inference/audit.py``), so the
accepted ones among them are a uniform sample of the accepted answers: k wrong of n labelled
estimates the live error of accepted answers without bias. Each audit weighs 1 / the fraction it
was drawn with, so that a change of ``BNN_AUDIT_FRACTION`` does not tilt the estimate towards the
period sampled more densely; the interval is then Clopper-Pearson at Kish's effective sample size
(exact when every audit shares one fraction, as it does unless the setting changed). Audits
stored before schema 2 (drawn from accepted answers at a fraction that was not kept) are counted
apart (``legacy``) and left out. An audited answer is wrong when the reviewer's label differs
from the answer's class, ``not_a_digit`` included (the service accepted something that is not a
digit); ``unreadable`` ones are left out of n (nobody can say) and counted apart. Each channel
has its own estimate, held to its own promise: files (``bnn_accepted_error_target``) and the
audits of drawings on the page's pad (``bnn_drawn_accepted_error_target``). The file channel's
estimate (the one from before channels) counts the other channels' audits it leaves out (``other_channels``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from model.binomial import CONFIDENCE, clopper_pearson

DIGIT_LABELS = tuple(str(digit) for digit in range(10))
LABELS = (*DIGIT_LABELS, "not_a_digit", "unreadable")
REASONS = ("referred", "audit")  # why an item is in the queue: referred and not drawn, or drawn (maybe referred)
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
    legacy: int = 0  # labelled accepted audits stored before schema 2 (no fraction kept): left out
    other_channels: int = 0  # the file channel's: labelled accepted audits of the other channels
    # (other promises), left out

    @classmethod
    def of(cls, wrong: int, audited: int, unreadable: int = 0) -> AcceptedError:
        lower, upper = clopper_pearson(wrong, audited)
        return cls(audited, wrong, unreadable, wrong / audited if audited else None, lower, upper)

    @classmethod
    def weighted(cls, strata: dict[float, tuple[int, int]], unreadable: int = 0, legacy: int = 0,
                 other_channels: int = 0) -> AcceptedError:
        """From ``{fraction: (wrong, audited)}``: each audit weighs 1 / fraction; the interval is
        Clopper-Pearson at Kish's effective size (exactly :meth:`of` for one fraction)."""
        strata = {fraction: counts for fraction, counts in strata.items() if counts[1] > 0 and fraction > 0}
        audited = sum(n for _, n in strata.values())
        wrong = sum(k for k, _ in strata.values())
        if len(strata) <= 1:
            return replace(cls.of(wrong, audited, unreadable), legacy=legacy, other_channels=other_channels)
        weight = sum(n / f for f, (_, n) in strata.items())
        ratio = sum(k / f for f, (k, _) in strata.items()) / weight
        effective = round(weight**2 / sum(n / f**2 for f, (_, n) in strata.items()))
        lower, upper = clopper_pearson(min(effective, round(ratio * effective)), effective)
        return cls(audited, wrong, unreadable, ratio, lower, upper, legacy=legacy, other_channels=other_channels)


@dataclass(frozen=True)
class ShadowOnAudits:
    """Both models' accepted error on the same labelled audits (those the shadow answered too)."""

    shadow_version: str
    items: int  # labelled audits the shadow answered
    live: AcceptedError
    shadow: AcceptedError


def accepted_strata(rows: list[tuple[bool, int, str, float]]) -> tuple[dict[float, tuple[int, int]], int]:
    """``(refer, predicted, label, fraction)`` rows -> the accepted ones' ``{fraction: (wrong, audited)}``
    and how many accepted ones were unreadable."""
    strata: dict[float, tuple[int, int]] = {}
    unreadable = 0
    for refer, predicted, label, fraction in rows:
        if refer:
            continue
        result = outcome(label, predicted)
        if result == "unreadable":
            unreadable += 1
            continue
        wrong, audited = strata.get(fraction, (0, 0))
        strata[fraction] = (wrong + (result != "right"), audited + 1)
    return strata, unreadable


def outcome(label: str, predicted: int) -> str:
    """What a label says of an answer: ``right``, ``wrong`` (another digit), ``not_a_digit`` or ``unreadable``."""
    if label in ("not_a_digit", "unreadable"):
        return label
    return "right" if label == str(predicted) else "wrong"
