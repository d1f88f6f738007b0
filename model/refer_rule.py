"""The refer rule, applied: when an answer goes to a human, why, and which digits the human should
weigh. One definition for the service (one image at a time), the calibration, the report and the
reviewed-audit scoring (arrays); the numbers it applies are a checkpoint's
:class:`model.calibration.Calibration` record.

* refer when the predictive entropy over the ten digits > ``threshold`` (nats);
* why, from the predictive's shape: ``uncertain`` (a digit, unsure which) when the two most
  probable classes hold at least ``familiar_mass`` of the probability, else ``unfamiliar``
  (the mass is spread over many classes: probably not a digit). A record without
  ``familiar_mass`` makes every referral ``uncertain``.

``candidates``: the digits worth a reviewer's look, most likely first: the top class, then the
next ones while they hold at least ``CANDIDATE_MIN`` each and the ones before hold less than
``CANDIDATE_MASS`` together, at most ``MAX_CANDIDATES``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from model.calibration import Calibration

ReferReason = Literal["uncertain", "unfamiliar"]
REFER_REASONS: tuple[ReferReason, ...] = ("uncertain", "unfamiliar")

CANDIDATE_MIN = 0.05
CANDIDATE_MASS = 0.95
MAX_CANDIDATES = 3


def top_two_mass(probabilities: np.ndarray) -> np.ndarray:
    """``[..., 10]`` mean probabilities -> ``[...]``: the mass their two most probable classes hold."""
    top = np.sort(np.asarray(probabilities), axis=-1)
    return top[..., -1] + top[..., -2]


def candidates(probabilities: Sequence[float]) -> list[int]:
    """The digits worth a reviewer's look, most likely first (see the module docstring)."""
    order = sorted(range(len(probabilities)), key=lambda k: -probabilities[k])
    chosen, held = [order[0]], probabilities[order[0]]
    for k in order[1:MAX_CANDIDATES]:
        if held >= CANDIDATE_MASS or probabilities[k] < CANDIDATE_MIN:
            break
        chosen.append(k)
        held += probabilities[k]
    return chosen


@dataclass(frozen=True)
class ReferRule:
    """Refer when entropy is above ``threshold``; "unfamiliar" when the top two classes then hold
    less than ``familiar_mass`` (None: every referral "uncertain")."""

    threshold: float
    familiar_mass: float | None = None

    @classmethod
    def of(cls, calibration: Calibration, threshold: float | None = None) -> ReferRule:
        """The rule a calibration record states (``threshold``, when given, overrides its own)."""
        return cls(calibration.threshold if threshold is None else threshold, calibration.familiar_mass)

    def reason(self, entropy: float, top_two: float) -> ReferReason | None:
        """One answer: None (accepted) or why it is referred."""
        if entropy <= self.threshold:
            return None
        if self.familiar_mass is not None and top_two < self.familiar_mass:
            return "unfamiliar"
        return "uncertain"

    def refers(self, entropy: np.ndarray) -> np.ndarray:
        """bool ``[n]``: which of ``[n]`` entropies are referred."""
        return np.asarray(entropy) > self.threshold

    def reasons(self, entropy: np.ndarray, top_two: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(uncertain ``[n]``, unfamiliar ``[n]``): :meth:`reason` for ``[n]`` answers at once, each
        referral with its one reason; neither: accepted. No masses: every referral "uncertain"."""
        refer = self.refers(entropy)
        unfamiliar = np.zeros_like(refer)
        if self.familiar_mass is not None and top_two is not None:
            unfamiliar = refer & (np.asarray(top_two) < self.familiar_mass)
        return refer & ~unfamiliar, unfamiliar
