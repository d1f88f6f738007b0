"""How every typed error (``service/errors.py``) is answered: its status, the OpenAPI error
responses, and :func:`install_handlers`. Errors carry a JSON ``detail``, or ``error`` on the
Open Inference Protocol's ``/v2`` routes (:func:`error_body`, the protocol's shape); each
rejected request is counted by reason in ``bnn_rejected_requests_total``. Any other exception
is a bug: a 500 in the same shape, counted by route template in ``bnn_http_errors_total`` (alert
``BnnServerErrors``) and logged with its route; Starlette re-raises it once the answer is sent, so
uvicorn logs its traceback too ("Exception in ASGI application").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import (
    AdminUnauthorized,
    BlankImage,
    DecoderBusy,
    DecodeTimeout,
    ExportAborted,
    ImageRejected,
    ImageTooLarge,
    ItemConflict,
    ItemNotFound,
    ModelNotFound,
    ProtocolError,
    QueueFull,
    ReviewUnauthorized,
    ReviewUnavailable,
    ServiceUnavailable,
    TooManyFiles,
    Unauthorized,
    UndecodableImage,
    UnsupportedFormat,
)
from service.metrics import Metrics
from service.schemas import ErrorOut, ProtocolErrorOut, error_body

STATUS_FOR: dict[type[ImageRejected], int] = {UndecodableImage: 400, ImageTooLarge: 413, UnsupportedFormat: 415,
                                              BlankImage: 422, DecodeTimeout: 422, DecoderBusy: 503}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the upload is not a decodable image (empty, truncated, corrupt)"},
    401: {"model": ErrorOut, "description": "BNN_API_KEY is set and X-API-Key is missing or wrong"},
    408: {"model": ErrorOut, "description": "the request body did not arrive within BNN_BODY_TIMEOUT_S"},
    413: {"model": ErrorOut, "description": "request, file or pixel count over the configured limits"},
    415: {"model": ErrorOut, "description": "a recognised format that is not accepted (e.g. TIFF, SVG, PDF)"},
    422: {"model": ErrorOut, "description": "invalid parameters, missing file, or no ink found in the image"},
    503: {"model": ErrorOut,
          "description": "the model is not loaded yet, or the inference queue is full (Retry-After)"},
}
# the same statuses on the /v2 routes, in the protocol's shape; 400 also for a malformed request
# and 404 for an unknown model or version
OIP_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProtocolErrorOut, "description": response["description"]}
    for status, response in ERROR_RESPONSES.items()
} | {400: {"model": ProtocolErrorOut, "description": "a malformed inference request, or an element that is not a "
                                                      "decodable image (the message names it)"},
     404: {"model": ProtocolErrorOut, "description": "unknown model or version"}}
RETRY = {"Retry-After": "1"}
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
UNMATCHED = "unmatched"  # the route label of a failure outside any route (a raw path would mint series)
log = logging.getLogger("service")


def status_for(error: ImageRejected) -> int:
    return STATUS_FOR.get(type(error), 400)


def validation_detail(error: RequestValidationError) -> str:
    """``query.samples: Input should be ...; body.file: Field required``: where, then what."""
    problems = [f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', 'invalid')}"
                for item in error.errors()]
    return "; ".join(problems) or "invalid request"


@dataclass(frozen=True)
class Refusal:
    """How one typed error is answered: the rejection reason it counts under (None: not counted),
    its status, its detail, extra headers."""

    reason: Callable[[Exception], str | None]
    status: Callable[[Exception], int]
    detail: Callable[[Exception], str] = str
    headers: dict[str, str] | None = None


def fixed(value: Any) -> Callable[[Exception], Any]:
    return lambda _error: value


def image_reason(error: Exception) -> str | None:
    return error.reason if isinstance(error, ImageRejected) else None


def image_status(error: Exception) -> int:
    return status_for(error) if isinstance(error, ImageRejected) else 400


def request_detail(error: Exception) -> str:
    return validation_detail(error) if isinstance(error, RequestValidationError) else str(error)


REFUSALS: dict[type[Exception], Refusal] = {
    ImageRejected: Refusal(image_reason, image_status),
    RequestValidationError: Refusal(fixed("invalid_request"), fixed(422), request_detail),
    ProtocolError: Refusal(fixed("invalid_request"), fixed(400)),
    ModelNotFound: Refusal(fixed(None), fixed(404)),
    TooManyFiles: Refusal(fixed("too_many_files"), fixed(422)),
    Unauthorized: Refusal(fixed("unauthorized"), fixed(401), fixed("missing or wrong X-API-Key header")),
    QueueFull: Refusal(fixed("overloaded"), fixed(503), lambda error: f"overloaded: {error}; retry shortly", RETRY),
    ServiceUnavailable: Refusal(fixed(None), fixed(503), fixed("model not loaded yet; retry shortly"), RETRY),
    ReviewUnavailable: Refusal(fixed(None), fixed(503), str, RETRY),
    ReviewUnauthorized: Refusal(fixed("unauthorized"), fixed(401), fixed(
        "missing or wrong reviewer token: send Authorization: Bearer <token> (BNN_REVIEW_TOKENS; the client API key "
        "does not grant review)"), {"WWW-Authenticate": "Bearer"}),
    AdminUnauthorized: Refusal(fixed("unauthorized"), fixed(401), fixed(
        "missing or wrong admin token: send Authorization: Bearer <token> (BNN_ADMIN_TOKENS; reviewer tokens and the "
        "client API key do not grant admin)"), {"WWW-Authenticate": "Bearer"}),
    ItemNotFound: Refusal(fixed(None), fixed(404)),
    ItemConflict: Refusal(fixed(None), fixed(409)),
}


def install_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Map every typed error to its status and JSON detail (:data:`REFUSALS`), counting rejections by reason."""

    def handler(refusal: Refusal) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def refuse(request: Request, error: Exception) -> JSONResponse:
            reason = refusal.reason(error)
            if reason is not None:
                metrics.record_rejection(reason)
            return JSONResponse(error_body(request.url.path, refusal.detail(error)), status_code=refusal.status(error),
                                headers=refusal.headers)
        return refuse

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)  # the router's own 404 and 405, in the route's shape
        return JSONResponse(error_body(request.url.path, str(error.detail)), status_code=error.status_code,
                            headers=error.headers)

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        template = getattr(request.scope.get("route"), "path", None) or UNMATCHED  # set by the router
        if not isinstance(error, ExportAborted):  # a store that failed mid-export: counted as that, not a bug
            metrics.record_http_error(template, 500)
            log.error("500 on %s %s: %s: %s", request.method, template, type(error).__name__, error)
        return JSONResponse(error_body(request.url.path, "internal error (logged and counted); please report it"),
                            status_code=500, headers=NOSNIFF)  # outside the security headers' middleware

    for kind, refusal in REFUSALS.items():
        app.add_exception_handler(kind, handler(refusal))
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)  # Starlette's outermost layer: routes and middleware alike
