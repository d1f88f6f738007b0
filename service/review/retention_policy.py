"""What retention keeps: the caps every worker's retention pass applies to the store, and why an item goes.

The caps count every item; unlabelled items are dropped first (oldest first), labelled ones only when they
alone exceed a cap, and only into an export. A bound per source protects the others' items from one
source's flood. The statements that apply a policy are in ``store.py``; the pass that runs them, counts
and exports, in ``retention.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CAUSES = ("age", "source", "rows", "bytes")  # why retention drops an item, in the order each pass applies them


@dataclass(frozen=True)
class RetentionPolicy:
    """What retention keeps. The caps count every item; unlabelled items are dropped first (oldest first),
    labelled ones only when they alone exceed a cap, and only into an export. ``source_max_*`` bound one
    source's unlabelled items (None: no bound)."""

    max_age_s: float
    max_items: int
    max_bytes: int
    source_max_items: int | None = None
    source_max_bytes: int | None = None

    @property
    def bounds_sources(self) -> bool:
        return self.source_max_items is not None or self.source_max_bytes is not None

    def in_pass(self, stored: int, size: int, sources: int) -> RetentionPolicy:
        """The policy as it applies to a store holding ``stored`` items of ``size`` bytes, ``sources``
        of them sending unlabelled ones. The per-source bound protects others' items from one source's
        flood, so it applies only when the store is over a cap (else nothing needs to go), and never
        below an equal part of each cap for each source: behind a proxy every client is one source,
        which then keeps the whole store (a fixed share would cut it to a tenth)."""
        if not self.bounds_sources:
            return self
        if sources <= 1 or (stored <= self.max_items and size <= self.max_bytes):
            return replace(self, source_max_items=None, source_max_bytes=None)  # the caps alone decide
        return replace(self, source_max_items=max(self.source_max_items or 0, self.max_items // sources),
                       source_max_bytes=max(self.source_max_bytes or 0, self.max_bytes // sources))
