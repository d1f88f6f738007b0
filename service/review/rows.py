"""A review item on its way into the store and out of it, in the shapes the rest of the service uses.

In: :class:`NewItem` (what the write-behind queue hands the store), the rule both backends refuse a
row by (``row_problem``: checked before writing, so that SQLite and PostgreSQL refuse alike) and the
column values an item is written as. Out: :class:`Item` (what a reviewer sees) and the NDJSON export
record (what retraining reads). The statements that move these rows are all in ``store.py``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from service.review.schema import items


@dataclass(frozen=True)
class NewItem:
    """What the service queues: an answer to review and what it was given."""

    id: str  # uuid4 hex: the answer's review_id
    created: float  # Unix seconds
    reason: str  # "referred" or "audit"
    refer_reason: str | None
    predicted: int
    entropy: float
    answer: dict[str, Any]  # the full answer as the client got it
    model_version: str
    file: bytes | None  # the upload as sent; None for a 28 x 28 array
    input: bytes  # the 28 x 28 uint8 the network saw, row-major
    refer: bool  # the answer said refer (an audit may be referred too)
    audit_fraction: float | None  # an audit: the fraction it was drawn with; None for a referred item not drawn
    channel: str = "file"  # whose refer rule judged it: "file", or "drawn" (the page's pad)
    source: str | None = None  # who sent it, hashed (bounds.source_key); None: stored as unknown

    def row(self) -> dict[str, Any]:
        """The item's values in ``review_items`` (its images go to ``review_images``: ``picture``)."""
        return {"id": self.id, "created": self.created, "reason": self.reason, "refer_reason": self.refer_reason,
                "predicted": self.predicted, "entropy": self.entropy, "answer": json.dumps(self.answer),
                "model_version": self.model_version, "has_file": self.file is not None,
                "file_bytes": len(self.input) + (len(self.file) if self.file is not None else 0), "skips": 0,
                "refer": self.refer, "audit_fraction": self.audit_fraction, "channel": self.channel,
                "source": self.source}

    def picture(self) -> dict[str, Any]:
        """The item's values in ``review_images``."""
        return {"id": self.id, "file": self.file, "input": self.input}


class InvalidItem(ValueError):
    """An item the store refuses before writing it (the same on both backends): the message says why."""


def row_problem(item: NewItem) -> str | None:
    """Why the store would refuse ``item``, or None: a text longer than its column (PostgreSQL would
    refuse it and SQLite keep it; checked here so that both refuse it alike)."""
    values = {"id": item.id, "reason": item.reason, "refer_reason": item.refer_reason,
              "model_version": item.model_version, "channel": item.channel, "source": item.source}
    for name, value in values.items():
        length = getattr(items.c[name].type, "length", None)
        if value is not None and length is not None and len(value) > length:
            return f"{name} is {len(value)} characters, over {length}"
    return None


@dataclass(frozen=True)
class Item:
    """A queued item as a reviewer sees it (no image bytes: they have their own routes)."""

    id: str
    reason: str
    refer_reason: str | None
    predicted: int
    entropy: float
    answer: dict[str, Any]
    model_version: str
    created: float
    has_file: bool
    skips: int
    claimed_by: str | None
    lease_expires: float | None
    label: str | None
    labelled_by: str | None
    labelled_at: float | None
    refer: bool
    audit_fraction: float | None

    @classmethod
    def from_row(cls, row: Any) -> Item:
        """The item from a row of ``store.ITEM_COLUMNS`` (JSON and the backends' booleans decoded)."""
        values = row._asdict()
        values["answer"] = json.loads(values["answer"])
        values["has_file"] = bool(values["has_file"])
        values["refer"] = bool(values["refer"])
        return cls(**values)


def export_record(row: Any, pictures: Any = None) -> dict[str, Any]:
    """One labelled item as an NDJSON record: ready to retrain or recalibrate from (``model/reviewed.py``
    reads it). ``input`` is the 28 x 28 uint8 the network saw, base64 of 784 bytes, row-major. The
    images come from ``pictures`` when given, else from ``row`` itself (a join)."""
    pictures = pictures if pictures is not None else row
    return {
        "id": row.id, "reason": row.reason, "refer_reason": row.refer_reason, "label": row.label,
        "labelled_by": row.labelled_by, "labelled_at": row.labelled_at, "created": row.created,
        "predicted": row.predicted, "entropy": row.entropy, "model_version": row.model_version,
        "refer": bool(row.refer), "audit_fraction": row.audit_fraction, "channel": row.channel or "file",
        "answer": json.loads(row.answer), "shadow": json.loads(row.shadow) if row.shadow else None,
        "input_shape": [28, 28],
        "input": base64.b64encode(pictures.input).decode(),
        "file": None if pictures.file is None else base64.b64encode(pictures.file).decode(),
    }
