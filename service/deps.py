"""Typed dependencies: what a route needs, read from ``request.app.state`` (set by the lifespan).

``InferenceDep`` is the loaded model's inference path or a 503; ``SettingsDep`` the settings the
app was built with; ``require_api_key`` guards the prediction routes when BNN_API_KEY is set (in
constant time; an empty header never passes);
``token_holder`` names the reviewer or admin a bearer token belongs to (or refuses it);
``SamplesParam`` is the ``samples`` query parameter, bounded by BNN_MAX_SAMPLES; ``IncludeParam``
the opt-in answer fields (``include=spread,input``); ``ChannelParam`` whose refer rule judges the
answers (``channel=drawn`` for drawings on the page's pad); ``SinceParam`` the export's ``since`` as
Unix seconds.

All are ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in its
thread pool, a thread hand-off per dependency per request (four on /predict, measured in a
profile under load).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import TypeAdapter, ValidationError

from model.calibration import Channel
from service.errors import ServiceUnavailable, Unauthorized
from service.pipeline import Inference
from service.review.access import Reviewers
from service.schemas import INCLUDE_VALUES, Include
from service.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_inference(request: Request) -> Inference:
    inference: Inference | None = request.app.state.inference
    if inference is None:
        raise ServiceUnavailable()
    return inference


async def require_api_key(request: Request,
                          x_api_key: Annotated[str | None,
                                               Header(description="needed when BNN_API_KEY is set")] = None) -> None:
    expected = (await get_settings(request)).api_key
    if expected is None:
        return
    if not x_api_key or not same_secret(x_api_key, expected.get_secret_value()):
        raise Unauthorized()


def same_secret(given: str, expected: str) -> bool:
    """Whether ``given`` is ``expected``, in time that depends on neither's content nor length: both
    are hashed to 32 bytes first, then compared in constant time. An empty ``given`` never is."""
    return bool(given) and hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                                               hashlib.sha256(expected.encode()).digest())


def token_holder(holders: Reviewers, credentials: HTTPAuthorizationCredentials | None,
                 refused: type[Exception]) -> str:
    """The name ``holders`` give the bearer token of ``credentials`` (reviewers or admins), or ``refused``."""
    name = holders.who(credentials.credentials) if credentials is not None else None
    if name is None:
        raise refused()
    return name


async def samples_param(request: Request, samples: Annotated[int | None, Query(
        ge=1, description="N posterior samples, at most BNN_MAX_SAMPLES (default: the N the threshold was "
                          "calibrated with)")] = None) -> int | None:
    limit = (await get_settings(request)).max_samples
    if samples is not None and samples > limit:
        raise RequestValidationError([{"type": "less_than_equal", "loc": ("query", "samples"),
                                       "msg": f"Input should be less than or equal to {limit}", "input": samples}])
    return samples


async def include_param(include: Annotated[list[str] | None, Query(
        description="opt-in answer fields, comma-separated or repeated: 'spread' (how the N samples disagree: "
                    "each class's standard deviation and votes) and 'input' (the 28 x 28 image the network saw); "
                    "off by default")] = None) -> Include:
    names = {part.strip() for value in include or [] for part in value.split(",") if part.strip()}
    unknown = sorted(names - set(INCLUDE_VALUES))
    if unknown:
        raise RequestValidationError([{"type": "enum", "loc": ("query", "include"), "input": include,
                                       "msg": f"unknown field(s) {', '.join(unknown)}; expected spread and/or input"}])
    return Include(spread="spread" in names, input="input" in names)


def document_samples_limit(app: FastAPI, limit: int) -> None:
    """Put the bound that ``samples_param`` enforces (BNN_MAX_SAMPLES) into the OpenAPI schema: the
    query itself declares only ``ge=1``, since routers are built before the settings."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # cached by FastAPI after the first call; edited in place once
        for operation in (op for path in schema.get("paths", {}).values() for op in path.values()):
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "samples":
                    for branch in parameter["schema"].get("anyOf", [parameter["schema"]]):
                        if branch.get("type") == "integer":
                            branch["maximum"] = limit
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


UNIX_SECONDS = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z
DATES = TypeAdapter(datetime)


def since_seconds(text: str) -> float:
    """A moment as Unix seconds: a number is seconds however large (pydantic's datetime reads one of
    2e10 or more as milliseconds: the year 10000 became 1978), anything else an ISO 8601 date, in UTC
    unless it names its offset. ValueError, saying why, for anything else or outside 1970-9999."""
    if UNIX_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            moment = DATES.validate_python(text)
        except ValidationError:
            raise ValueError("give an ISO 8601 date or Unix seconds") from None
        seconds = (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()
    if not 0.0 <= seconds <= LAST_SECOND:
        raise ValueError("the date is out of range: give one between 1970 and 9999")
    return seconds


async def since_param(since: Annotated[str | None, Query(
        description="labelled at or after this: ISO 8601 (UTC unless it names its offset) or Unix seconds, "
                    "1970 to 9999; default: everything")] = None) -> float:
    try:
        return 0.0 if since is None else since_seconds(since)
    except ValueError as error:
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "since"), "input": since,
                                       "msg": str(error)}]) from None


def client_source(request: Request) -> str | None:
    """Who sent a request, as far as its connection tells (uvicorn takes X-Forwarded-For only from
    its trusted proxies): what bounds one sender's share of the review queue."""
    return request.client.host if request.client is not None else None


SettingsDep = Annotated[Settings, Depends(get_settings)]
InferenceDep = Annotated[Inference, Depends(get_inference)]
SamplesParam = Annotated[int | None, Depends(samples_param)]
IncludeParam = Annotated[Include, Depends(include_param)]
SinceParam = Annotated[float, Depends(since_param)]
ChannelParam = Annotated[Channel, Query(
    description="how the image was made, each with its own calibrated threshold and promise: 'file' (the default: "
                "a scan, photo or image file) or 'drawn' (drawn on the try-it page's pad)")]
