"""Audit sampling: mark a uniform random sample of *every* answer for a human spot check.

A referral threshold only promises accuracy on data like its calibration split. A uniform random
sample of all answers, accepted and referred alike, drawn at request time and labelled by a
reviewer, is a sample of the live traffic itself: its accepted part measures the live error of
accepted answers without bias (``service/review/live.py``), and the whole sample is what
``python -m model.calibrate --reviewed`` recalibrates on (Learn-then-Test needs a sample of the
traffic, not of what one model accepted). A referred answer that is also drawn is queued once,
as an audit marked referred. Each item stores the fraction it was drawn with, so estimates stay
unbiased when the fraction changes (each audit weighs 1 / fraction).

The default, 2 %: at the shipped referral rate (about 4 %) it adds half again to the reviewers'
load, and a service answering 10,000 images a day gathers the 1,497 labelled audits that can
certify alpha = 0.2 % at delta = 5 % in 7.5 days (150 days at 1 %, 1.5 days at 10 %); the
arithmetic is in docs/review.md.
"""

from __future__ import annotations

import random

DEFAULT_FRACTION = 0.02


class AuditSampler:
    def __init__(self, fraction: float, rng: random.Random | None = None):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"audit fraction must be in [0, 1], got {fraction}")
        self.fraction = fraction
        self._rng = rng or random.Random()

    def draw(self) -> bool:
        """True for a fraction ``fraction`` of answers, each chosen independently at random
        (whether it was referred or not plays no part)."""
        return self.fraction > 0.0 and self._rng.random() < self.fraction
