"""The prediction's side of the review queue: what a worker holds for the store, with no I/O.

A predicting route submits an answer (``ReviewQueue.submit``): the item joins an in-memory buffer and
gets its id, the answer's ``review_id``, at once; the writer task (``queue.py``) takes it from there.
So the store never delays nor fails a prediction. While the store is slow or down the buffer holds up
to ``buffer_max`` items and ``buffer_bytes`` bytes (``bounds.py``); beyond that, or at shutdown, an item
is lost, counted in ``bnn_review_enqueue_failures_total`` and logged (the first, then one line per
thousand), and the prediction answers ``review_id: null``. What is refused on purpose is counted in
``bnn_review_refused_total{reason}``: an upload over ``max_item_bytes`` (the item is queued with its
28 x 28 only), one source over its share of the buffer (not queued).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.inference.predictor import Prediction
from service.review.bounds import BufferBudget, item_size, source_key
from service.review.queue_metrics import QueueMetrics
from service.review.rows import NewItem

log = logging.getLogger("service")
REFUSALS_PER_LOG = 1000


@dataclass(frozen=True)
class Pending:
    """An answer waiting to be written: kept as given, turned into a row by the writer task."""

    id: str
    created: float
    prediction: Prediction
    upload: bytes | None
    audit: bool
    model_version: str
    audit_fraction: float  # the fraction the audit draw ran at (stored with an audited item)
    source: str = source_key(None)  # who sent it, hashed (bounds.source_key)

    @property
    def size(self) -> int:
        return item_size(self.upload)

    def item(self) -> NewItem:
        p = self.prediction
        # the answer's fields as the client got them (routes/predict.py's prediction_out), opt-in ones left out
        fields = {key: value for key, value in vars(p).items() if key not in ("digit", "seen", "spread", "votes")}
        answer: dict[str, Any] = {"class": p.digit, **fields, "audit": self.audit, "model_version": self.model_version,
                                  "review_id": self.id}
        seen = p.seen if p.seen is not None else np.zeros((28, 28), np.uint8)
        # an audited answer is queued as an audit (oldest first, at the audits' share: the labelled audits
        # stay a sample of the traffic), marked referred when it was; a referred one not drawn, as referred
        return NewItem(id=self.id, created=self.created, reason="audit" if self.audit else "referred",
                       refer=p.refer, audit_fraction=self.audit_fraction if self.audit else None,
                       refer_reason=p.refer_reason, predicted=p.digit, entropy=p.entropy, answer=answer,
                       model_version=self.model_version, file=self.upload,
                       input=np.ascontiguousarray(seen, dtype=np.uint8).tobytes(), channel=p.channel,
                       source=self.source)


class ReviewBuffer:
    """The answers and shadow answers waiting for the writer, within ``budget``; its length and its
    iteration are the answers' (shadow answers aside). ``last_error``: the writer's unresolved failure,
    for the line that logs a loss."""

    def __init__(self, budget: BufferBudget, max_item_bytes: int, metrics: QueueMetrics,
                 clock: Callable[[], float], last_error: Callable[[], str | None]):
        self.budget = budget
        self.max_item_bytes = max_item_bytes
        self.metrics = metrics
        self.clock = clock
        self.last_error = last_error
        self.items: deque[Pending] = deque()
        self.shadows: deque[tuple[str, dict[str, Any]]] = deque()  # (review id, the shadow's answer)
        self.wake = asyncio.Event()  # set by every submit: the writer waits on it when there is nothing to do
        self.stopping = False
        self._refused: dict[str, int] = {}  # answers not queued, by why: for a log line per thousand

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Pending]:
        return iter(self.items)

    def submit(self, prediction: Prediction, upload: bytes | np.ndarray, audit: bool, model_version: str,
               audit_fraction: float = 0.0, *, source: str | None = None) -> str | None:
        """Queue a referred or audited answer; its review_id, or None when it is not queued (an
        accepted answer not audited, the buffer full, or ``source``'s share of it full). ``upload``:
        the image as the service stores it (bytes; one over ``max_item_bytes`` is left out, the item
        keeps its 28 x 28), or the array sent; ``source``: who sent it (None: unknown, one source)."""
        if not (prediction.refer or audit):
            return None
        file = upload if isinstance(upload, bytes) else None
        if file is not None and len(file) > self.max_item_bytes:
            self.metrics.review_refused.labels(reason="file_too_large").inc()
            file = None
        key = source_key(source)
        size = item_size(file)
        refusal = "stopping" if self.stopping else self.budget.refusal(key, size)
        if refusal is not None:
            self._refuse(refusal)
            return None
        pending = Pending(uuid.uuid4().hex, self.clock(), prediction, file, audit, model_version, audit_fraction, key)
        self.budget.take(key, size)
        self.items.append(pending)
        self.wake.set()
        return pending.id

    def admits(self, source: str | None) -> bool:
        """Whether an item from ``source`` would be queued now (its image aside): the service makes the
        image's PNG only then, so a flood past its share costs no encoding."""
        return not self.stopping and self.budget.refusal(source_key(source), 0) is None

    def _refuse(self, why: str) -> None:
        """Count an answer not queued: a full buffer (or a shutdown) is a loss; a source over its share, a refusal."""
        if why == "source_share":
            self.metrics.review_refused.labels(reason="source_share").inc()
        else:
            self.metrics.review_enqueue_failures.inc()
        count = self._refused[why] = self._refused.get(why, 0) + 1
        if count % REFUSALS_PER_LOG == 1:  # the first, then one line per thousand: no log flood
            if why == "source_share":
                log.warning("review items not queued (%d so far): one source holds its share "
                            "(BNN_REVIEW_SOURCE_SHARE) of the buffer", count)
            else:
                log.warning("review items not queued (%d so far): %d items, %d bytes wait for the store "
                            "(BNN_REVIEW_BUFFER, BNN_REVIEW_BUFFER_BYTES); last error: %s", count, self.budget.items,
                            self.budget.bytes, self.last_error())

    def attach_shadow(self, review_id: str, answer: dict[str, Any]) -> None:
        """Store a shadow's answer beside item ``review_id`` (written after the items buffered before it)."""
        if len(self.shadows) < self.budget.max_items and not self.stopping:
            self.shadows.append((review_id, answer))
            self.wake.set()

    # -- the writer's side ----------------------------------------------------------------------
    def take(self, most: int) -> list[Pending]:
        """Up to ``most`` items from the front; the writer gives them back (``put_back``) if the store fails."""
        return [self.items.popleft() for _ in range(min(most, len(self.items)))]

    def put_back(self, batch: list[Pending]) -> None:
        self.items.extendleft(reversed(batch))

    def take_shadows(self, most: int) -> list[tuple[str, dict[str, Any]]]:
        return [self.shadows.popleft() for _ in range(min(most, len(self.shadows)))]

    def put_back_shadows(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        self.shadows.extendleft(reversed(batch))

    def lose_all(self) -> int:
        """Empty the buffer (at shutdown, the store not taking it); how many items were lost, counted."""
        lost = len(self.items)
        if lost:
            self.metrics.review_enqueue_failures.inc(lost)
            self.items.clear()
            self.budget.clear()
        return lost
