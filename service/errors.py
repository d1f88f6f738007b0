"""Every error the API answers with: the typed errors, their statuses, the OpenAPI error
responses, and :func:`install_handlers`. Errors carry a JSON ``detail``, or ``error`` on the
Open Inference Protocol's ``/v2`` routes (:func:`error_body`, the protocol's shape); each
rejected request is counted by reason in ``bnn_rejected_requests_total``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.batcher import QueueFull
from service.metrics import Metrics
from service.oip import ProtocolError
from service.preprocess import ImageRejected, ImageTooLarge, NoInk, UndecodableImage, UnsupportedFormat
from service.review.store import ItemConflict, ItemNotFound
from service.schemas import ErrorOut, ProtocolErrorOut, error_body


class ServiceUnavailable(Exception):
    """The model is not loaded (yet): 503 with Retry-After."""


class Unauthorized(Exception):
    """BNN_API_KEY is set and X-API-Key is missing or wrong: 401."""


class ModelNotFound(Exception):
    """A /v2 route named a model (or version) this server does not serve: 404."""


class ReviewUnavailable(Exception):
    """The review queue is off, or its store does not answer: 503 (predictions go on regardless)."""


class ReviewUnauthorized(Exception):
    """A review route without a valid reviewer token (Authorization: Bearer): 401."""


class TooManyFiles(Exception):
    """More files than the route takes (several in /predict's `file`, or over the batch limit): 422."""


STATUS_FOR: dict[type[ImageRejected], int] = {UndecodableImage: 400, ImageTooLarge: 413, UnsupportedFormat: 415,
                                              NoInk: 422}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the upload is not a decodable image (empty, truncated, corrupt)"},
    401: {"model": ErrorOut, "description": "BNN_API_KEY is set and X-API-Key is missing or wrong"},
    408: {"model": ErrorOut, "description": "the request body did not arrive within BNN_BODY_TIMEOUT_S"},
    413: {"model": ErrorOut, "description": "request, file or pixel count over the configured limits"},
    415: {"model": ErrorOut, "description": "a recognised format that is not accepted (e.g. TIFF, SVG, PDF)"},
    422: {"model": ErrorOut, "description": "invalid parameters, missing file, or no ink found in the image"},
    503: {"model": ErrorOut, "description": "the model is not loaded yet, or the inference queue is full (Retry-After)"},
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


def status_for(error: ImageRejected) -> int:
    return STATUS_FOR.get(type(error), 400)


def validation_detail(error: RequestValidationError) -> str:
    """``query.samples: Input should be ...; body.file: Field required``: where, then what."""
    problems = [f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', 'invalid')}"
                for item in error.errors()]
    return "; ".join(problems) or "invalid request"


def install_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Map every typed error to its status and JSON detail, counting rejections by reason."""

    def reject(request: Request, reason: str | None, status: int, detail: str,
               headers: dict[str, str] | None = None) -> JSONResponse:
        if reason is not None:
            metrics.record_rejection(reason)
        return JSONResponse(error_body(request.url.path, detail), status_code=status, headers=headers)

    async def rejected_image(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ImageRejected)
        return reject(request, error.reason, status_for(error), str(error))

    async def invalid_request(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return reject(request, "invalid_request", 422, validation_detail(error))

    async def protocol_error(request: Request, error: Exception) -> JSONResponse:
        return reject(request, "invalid_request", 400, str(error))

    async def model_not_found(request: Request, error: Exception) -> JSONResponse:
        return reject(request, None, 404, str(error))

    async def too_many_files(request: Request, error: Exception) -> JSONResponse:
        return reject(request, "too_many_files", 422, str(error))

    async def unauthorized(request: Request, error: Exception) -> JSONResponse:
        return reject(request, "unauthorized", 401, "missing or wrong X-API-Key header")

    async def overloaded(request: Request, error: Exception) -> JSONResponse:
        return reject(request, "overloaded", 503, f"overloaded: {error}; retry shortly", RETRY)

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        return reject(request, None, 503, "model not loaded yet; retry shortly", RETRY)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)  # the router's own 404 and 405, in the route's shape
        return JSONResponse(error_body(request.url.path, str(error.detail)), status_code=error.status_code,
                            headers=error.headers)

    async def review_unavailable(request: Request, error: Exception) -> JSONResponse:
        return reject(request, None, 503, str(error), RETRY)

    async def review_unauthorized(request: Request, error: Exception) -> JSONResponse:
        return reject(request, "unauthorized", 401, "missing or wrong reviewer token: send Authorization: Bearer "
                      "<token> (BNN_REVIEW_TOKENS; the client API key does not grant review)",
                      {"WWW-Authenticate": "Bearer"})

    async def item_not_found(request: Request, error: Exception) -> JSONResponse:
        return reject(request, None, 404, str(error))

    async def item_conflict(request: Request, error: Exception) -> JSONResponse:
        return reject(request, None, 409, str(error))

    app.add_exception_handler(ReviewUnavailable, review_unavailable)
    app.add_exception_handler(ReviewUnauthorized, review_unauthorized)
    app.add_exception_handler(ItemNotFound, item_not_found)
    app.add_exception_handler(ItemConflict, item_conflict)
    app.add_exception_handler(ImageRejected, rejected_image)
    app.add_exception_handler(ProtocolError, protocol_error)
    app.add_exception_handler(ModelNotFound, model_not_found)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(TooManyFiles, too_many_files)
    app.add_exception_handler(Unauthorized, unauthorized)
    app.add_exception_handler(QueueFull, overloaded)
    app.add_exception_handler(ServiceUnavailable, unavailable)
