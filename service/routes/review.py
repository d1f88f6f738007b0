"""The review API and page (``/review``): a reviewer claims the next item, sees the image as
uploaded and as the network saw it, and labels it; stats and an NDJSON export of the labels.

Every route but the page needs a reviewer token (``Authorization: Bearer <token>``,
``service/review/access.py``); the client API key grants none of them. The store's work is in
``service/review/store.py``; a store that does not answer makes these routes 503 (the
prediction routes are unaffected).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image

from service.deps import SinceParam, token_holder
from service.errors import ExportAborted, ReviewUnauthorized, ReviewUnavailable
from service.metrics import Metrics
from service.review.live import AcceptedError, outcome
from service.review.queue import ReviewQueue
from service.review.rows import Item
from service.review.store import ItemConflict, ItemNotFound
from service.routes.page import STATIC
from service.schemas import (
    ACCEPTED_ERROR_FIELDS,
    AcceptedErrorOut,
    ErrorOut,
    ItemLinks,
    LabelIn,
    ReviewItemOut,
    ReviewStatsOut,
)

log = logging.getLogger("service")
BEARER = HTTPBearer(auto_error=False, scheme_name="reviewer token",
                    description="a reviewer's token from BNN_REVIEW_TOKENS (or the one logged at start)")
EXPORT_PAGE = 200
IMAGE_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"BM": "image/bmp",
               b"RIFF": "image/webp"}
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorOut, "description": text} for status, text in {
    400: "a body that is not JSON",
    401: "no valid reviewer token (Authorization: Bearer)",
    422: "invalid parameters or body (the detail says which)",
    503: "the review queue is off (BNN_REVIEW=false) or its store does not answer",
}.items()}
NOT_FOUND = {"model": ErrorOut, "description": "unknown item (never queued, or dropped by retention)"}
CONFLICT = {"model": ErrorOut,
            "description": "another reviewer holds it (who, until when), or it is labelled already (by whom)"}


async def reviewer(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                                Depends(BEARER)]) -> str:
    return token_holder(request.app.state.reviewers, credentials, ReviewUnauthorized)


async def review_queue(request: Request, who: Annotated[str, Depends(reviewer)]) -> ReviewQueue:
    """The queue, for a reviewer (the token is checked first: nobody else learns the store's state), or 503."""
    queue: ReviewQueue | None = request.app.state.reviews
    if queue is None:
        raise ReviewUnavailable("the review queue is off (BNN_REVIEW=false)")
    if not queue.ready:
        raise ReviewUnavailable(f"review store unavailable ({queue.last_error}); predictions continue and referred "
                                "answers are buffered; retry shortly")
    return queue


Reviewer = Annotated[str, Depends(reviewer)]
Queue = Annotated[ReviewQueue, Depends(review_queue)]
router = APIRouter(prefix="/review", tags=["review"], responses=ERRORS)


@contextmanager
def store_errors() -> Iterator[None]:
    """A store that fails mid-request is a 503 with its error, not a 500."""
    try:
        yield
    except (ItemNotFound, ItemConflict, ValueError):
        raise
    except Exception as error:  # any driver's error: its text (SQL, parameters) goes to the log, not the client
        log.warning("review store error: %s: %s", type(error).__name__, error)
        raise ReviewUnavailable(f"review store unavailable ({type(error).__name__}); retry shortly") from None


ITEM_ID = re.compile(r"[0-9a-f]{32}")  # the queue's ids: uuid4().hex


async def item_id_param(item_id: str) -> str:
    """An item's id as the queue makes them; anything else names no item (404) and never reaches the
    store (a NUL byte in it made PostgreSQL's driver fail: a 503 that quoted the SQL)."""
    if ITEM_ID.fullmatch(item_id) is None:
        raise ItemNotFound(f"no review item {item_id[:64]!r}")
    return item_id


ItemId = Annotated[str, Depends(item_id_param)]


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def item_out(item: Item) -> ReviewItemOut:
    base = f"/review/items/{item.id}"
    return ReviewItemOut(
        id=item.id, reason=item.reason, refer=item.refer, audit_fraction=item.audit_fraction,
        refer_reason=item.refer_reason, answer=item.answer,
        model_version=item.model_version, created=datetime.fromtimestamp(item.created, UTC), claimed_by=item.claimed_by,
        lease_expires=_time(item.lease_expires), skips=item.skips, label=item.label, labelled_by=item.labelled_by,
        labelled_at=_time(item.labelled_at),
        links=ItemLinks(file=f"{base}/file" if item.has_file else None, input=f"{base}/input.png"))


@router.get("", include_in_schema=False)
async def review_page() -> FileResponse:
    return FileResponse(STATIC / "review.html", media_type="text/html")


@router.get("/items/next", response_model=ReviewItemOut, responses={204: {"description": "nothing is waiting"}})
async def next_item(request: Request, queue: Queue, who: Reviewer) -> Any:
    """Claim the next item for a lease (BNN_REVIEW_LEASE_S): referred items most doubtful first, audits
    interleaved at their share of the waiting items; an unlabelled claim waits again when the lease ends."""
    with store_errors():
        item = await queue.store.claim(who, request.app.state.settings.review_lease_s)
    if item is None:
        return Response(status_code=204)
    return item_out(item)


@router.get("/items/{item_id}", response_model=ReviewItemOut, responses={404: NOT_FOUND})
async def get_item(queue: Queue, who: Reviewer, item_id: ItemId) -> ReviewItemOut:
    with store_errors():
        return item_out(await queue.store.item(item_id))


@router.post("/items/{item_id}/label", response_model=ReviewItemOut, responses={404: NOT_FOUND, 409: CONFLICT})
async def label_item(request: Request, body: LabelIn, queue: Queue, who: Reviewer, item_id: ItemId) -> ReviewItemOut:
    """Label an item you hold (or a free one): 0-9, 'not_a_digit' or 'unreadable'."""
    with store_errors():
        item = await queue.store.label(item_id, who, str(body.label))
    metrics: Metrics = request.app.state.metrics
    metrics.review_labels.labels(reason=item.reason, outcome=outcome(str(item.label), item.predicted)).inc()
    return item_out(item)


@router.post("/items/{item_id}/skip", response_model=ReviewItemOut, responses={404: NOT_FOUND, 409: CONFLICT})
async def skip_item(queue: Queue, who: Reviewer, item_id: ItemId) -> ReviewItemOut:
    """Give an item back unlabelled; it waits behind the items nobody skipped."""
    with store_errors():
        return item_out(await queue.store.skip(item_id, who))


def _image_type(data: bytes) -> str:
    return next((media for magic, media in IMAGE_TYPES.items() if data.startswith(magic)), "application/octet-stream")


SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "private, no-store"}


@router.get("/items/{item_id}/file", response_class=Response, responses={
    200: {"content": {"image/png": {}},
          "description": "the image as decoded, re-encoded as PNG (at most 384 px a side)"},
    404: {"model": ErrorOut, "description": "unknown item, or sent as a 28 x 28 array (no file)"}})
async def item_file(queue: Queue, who: Reviewer, item_id: ItemId) -> Response:
    with store_errors():
        file, _ = await queue.store.images(item_id)
    if file is None:
        raise ItemNotFound(f"review item {item_id} was sent as a 28 x 28 array: see its input.png")
    return Response(file, media_type=_image_type(file), headers=SAFE_HEADERS)


@router.get("/items/{item_id}/input.png", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "the 28 x 28 the network saw (ink white on black, as MNIST)"},
    404: NOT_FOUND})
async def item_input(queue: Queue, who: Reviewer, item_id: ItemId) -> Response:
    with store_errors():
        _, seen = await queue.store.images(item_id)
    buffer = io.BytesIO()
    Image.fromarray(np.frombuffer(seen, np.uint8).reshape(28, 28), mode="L").save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png", headers=SAFE_HEADERS)


@router.get("/stats", response_model=ReviewStatsOut)
async def review_stats(request: Request, queue: Queue, who: Reviewer) -> ReviewStatsOut:
    """Waiting, claimed and labelled items; the live accepted error from the audit labels (Clopper-Pearson);
    what the referred items turned out to be, by refer_reason."""
    with store_errors():
        stats = await queue.store.stats()
    inference = request.app.state.inference
    calibrations = inference.predictor.calibrations if inference is not None else {}
    errors = {ACCEPTED_ERROR_FIELDS[channel]: accepted_error_out(error, calibrations[channel].alpha
                                                                if channel in calibrations else None)
              for channel, error in stats.accepted_errors.items()}
    return ReviewStatsOut(
        reviewer=who, waiting=stats.waiting, claimed=stats.claimed, labelled=stats.labelled,
        done_today=stats.done_today, agreement=stats.agreement, referrals=stats.referrals, **errors,
        stored_items=stats.stored_items, stored_bytes=stats.stored_bytes, buffered=queue.backlog)


def accepted_error_out(error: AcceptedError, target: float | None) -> AcceptedErrorOut:
    return AcceptedErrorOut(audited=error.audited, wrong=error.wrong, unreadable=error.unreadable, ratio=error.ratio,
                            lower=error.lower, upper=error.upper, confidence=error.confidence, legacy=error.legacy,
                            drawn=error.other_channels, target=target)


@router.get("/export", response_class=StreamingResponse, responses={200: {
    "content": {"application/x-ndjson": {}},
    "description": "one labelled item a line: id, reason, refer_reason, label, labelled_by, labelled_at, created, "
                   "predicted, entropy, model_version, refer, audit_fraction, channel, answer, shadow, input (base64 "
                   "of the 784-byte 28 x 28, row-major), file (base64 of the upload, or null). A store that fails "
                   "mid-stream ends it with a line {\"error\": ...} and an aborted transfer (no final chunk): an "
                   "export that ends cleanly is complete"}})
async def export(request: Request, queue: Queue, who: Reviewer, start: SinceParam) -> StreamingResponse:
    """Labelled items as NDJSON, oldest label first: ready for ``python -m model.evaluate --reviewed FILE``."""
    metrics: Metrics = request.app.state.metrics
    with store_errors():
        first = await queue.store.export_page(start, None, EXPORT_PAGE)  # a store that is down fails here, as a 503

    async def lines() -> AsyncIterator[bytes]:
        page, sent = first, 0
        while page:
            for record in page:
                yield (json.dumps(record) + "\n").encode()
            sent += len(page)
            if len(page) < EXPORT_PAGE:
                return
            last = page[-1]
            try:
                page = await queue.store.export_page(start, (last["labelled_at"], last["id"]), EXPORT_PAGE)
            except Exception as error:  # any driver's error: the status line (200) is gone, so say it in the body
                metrics.review_export_aborted.inc()
                message = (f"the review store failed after {sent} items ({type(error).__name__}); "
                           "this export is incomplete")
                log.error("review export by %s aborted: %s: %s", who, message, error)
                yield (json.dumps({"error": message, "items": sent}) + "\n").encode()
                raise ExportAborted(message) from None  # the server then drops the connection: no final chunk

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="review-labels.ndjson"'})
