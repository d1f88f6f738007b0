"""Audit sampling: mark a random fraction of *accepted* predictions for a human spot check.

A referral threshold only promises accuracy on data like its calibration split. Sending a
uniform random sample of the predictions the service accepted (``refer: false``) to a human
measures the live accepted accuracy without bias: if ``k`` of ``n`` audited answers are wrong,
``k / n`` estimates the live error rate among accepted predictions. Referred predictions go
to a human anyway, so they are never marked.
"""

from __future__ import annotations

import random


class AuditSampler:
    def __init__(self, fraction: float, rng: random.Random | None = None):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"audit fraction must be in [0, 1], got {fraction}")
        self.fraction = fraction
        self._rng = rng or random.Random()

    def draw(self, refer: bool) -> bool:
        """True for a fraction ``fraction`` of accepted predictions, chosen independently at random."""
        return not refer and self.fraction > 0.0 and self._rng.random() < self.fraction
