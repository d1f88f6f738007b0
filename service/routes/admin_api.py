"""The admin API (``/admin``; ``python -m service.lifecycle.admin`` calls it): the models the service holds, a
shadow on live traffic, promotion and rollback, each applied by every worker or by none
(``service/lifecycle/control.py``).

Included only when ``BNN_ADMIN_TOKENS`` is set (otherwise every ``/admin`` path is a 404). Every
route needs an admin token (``Authorization: Bearer <token>``); reviewer tokens and the client
API key never grant these routes. A refused candidate answers 422 with the check that failed
(``path``, ``file``, ``architecture``, ``calibration``, ``weights``, ``fixtures``, or ``timeout`` and
``crash`` for a check that hung or failed) and its reason; the live model stays. A path is refused
before anything is read unless it is a regular file inside ``BNN_MODELS_DIR`` under
``BNN_MAX_CHECKPOINT_BYTES`` (``rule`` says which: ``nul``, ``models_dir``, ``regular_file``, ``size``).
Bodies are JSON objects: FastAPI answers 400 to one it cannot parse (too deep, a number past
Python's digit limit) and 422 to a wrong field.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from service.deps import token_holder
from service.errors import (
    AdminUnauthorized,
    ModelChangeConflict,
    ModelChangeRefused,
    ModelChangeTimeout,
    ServiceUnavailable,
)
from service.lifecycle.checks import CandidateRefused
from service.lifecycle.control import ModelControl
from service.lifecycle.held import HeldModel
from service.review.live import AcceptedError
from service.review.queue import ReviewQueue
from service.routes.page import STATIC
from service.schemas import ErrorOut

STORE_TIMEOUT_S = 2.0
BEARER = HTTPBearer(auto_error=False, scheme_name="admin token", description="an admin's token from BNN_ADMIN_TOKENS")
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorOut, "description": text} for status, text in {
    401: "no valid admin token (Authorization: Bearer)",
    409: "another change is in progress, or there is nothing to promote or roll back to",
    422: "the path, or a worker's check, refused the candidate (check, rule, reason, workers); the live model stays",
    503: "the model is not loaded yet",
    504: "a worker did not answer in time (the detail says whether anything was committed)",
}.items()}


MAX_PATH_CHARS = 4096  # PATH_MAX on Linux


class CheckpointIn(BaseModel):
    path: str = Field(description="the checkpoint's weights file on the server (its .json beside it), inside "
                                  "BNN_MODELS_DIR", max_length=MAX_PATH_CHARS)


class PromoteIn(BaseModel):
    path: str | None = Field(None, description="a checkpoint to promote, inside BNN_MODELS_DIR; omitted: the shadow",
                             max_length=MAX_PATH_CHARS)


def refused(check: str, reason: str, rule: str | None, workers: list[dict[str, Any]]) -> JSONResponse:
    named = f"{check}, {rule}" if rule else check
    return JSONResponse({"detail": f"refused ({named}): {reason}; the live model stays", "check": check,
                         "rule": rule, "reason": reason, "workers": workers}, status_code=422)


async def admin(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> str:
    return token_holder(request.app.state.admins, credentials, AdminUnauthorized)


async def control(request: Request, who: Annotated[str, Depends(admin)]) -> ModelControl:
    found: ModelControl | None = request.app.state.control
    if found is None:
        raise ServiceUnavailable()
    return found


Control = Annotated[ModelControl, Depends(control)]
Admin = Annotated[str, Depends(admin)]
router = APIRouter(prefix="/admin", tags=["admin"], responses=ERRORS)


def shadow_summary(workers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The shadow's comparison added up over the workers' tallies (each for the shadow it holds)."""
    total: Counter[str] = Counter()
    version = None
    for worker in workers:
        tallies = dict(worker.get("shadow_tallies") or {})
        if tallies.get("shadow_version") is None or tallies["shadow_version"] != worker.get("shadow"):
            continue
        version = tallies.pop("shadow_version")
        total.update({key: int(value) for key, value in tallies.items()})
    if version is None:
        return None
    compared = total["compared"]

    def share(key: str) -> float | None:
        return round(total[key] / compared, 6) if compared else None

    return {"shadow_version": version, "compared": compared, "dropped": total["dropped"],
            "class_agreement": share("class_agree"), "refer_agreement": share("refer_agree"),
            # on the answers the live model accepted: the kinds it already reads
            "class_agreement_live_accepted": round(total["live_accepted_class_agree"] / total["live_accepted"], 6)
            if total["live_accepted"] else None,
            "live_referred": round(1 - share("live_accepted"), 6) if compared else None,  # type: ignore[operator]
            "shadow_referred": round(1 - share("shadow_accepted"), 6) if compared else None,  # type: ignore[operator]
            "reasons": {role: {reason: total[f"{role}_{reason}"] for reason in ("accepted", "uncertain", "unfamiliar")}
                        for role in ("live", "shadow")}}


async def changed(control: ModelControl, action: str, path: str | None = None) -> JSONResponse:
    try:
        result = await control.change(action, path)
    except ModelChangeConflict as error:
        return JSONResponse({"detail": str(error)}, status_code=409)
    except CandidateRefused as error:  # the path, refused by the coordinator before any worker read it
        return refused(error.check, error.reason, error.rule, [])
    except ModelChangeRefused as error:
        rule = next((worker.get("rule") for worker in error.workers if worker.get("rule")), None)
        return refused(error.check, error.reason, rule if isinstance(rule, str) else None, error.workers)
    except ModelChangeTimeout as error:
        return JSONResponse({"detail": str(error), "workers": error.workers}, status_code=504)
    return JSONResponse(result)


@router.get("", include_in_schema=False)
async def admin_page() -> FileResponse:
    """The models page (its API calls carry the token; the page itself is static)."""
    return FileResponse(STATIC / "admin.html", media_type="text/html")


def error_out(error: AcceptedError) -> dict[str, Any]:
    return {"wrong": error.wrong, "audited": error.audited, "ratio": error.ratio, "lower": error.lower,
            "upper": error.upper, "unreadable": error.unreadable}


async def on_audits(reviews: ReviewQueue | None, shadow: HeldModel | None) -> dict[str, Any] | None:
    """Both models' accepted error on the labelled audits the shadow answered (None: no shadow, no store)."""
    if shadow is None or reviews is None or not reviews.ready:
        return None
    try:
        found = await asyncio.wait_for(reviews.store.shadow_on_audits(shadow.version), STORE_TIMEOUT_S)
    except Exception:  # any driver's error, or the timeout: the rest of the answer stands
        return None
    return {"shadow_version": found.shadow_version, "labelled_audits": found.items, "live": error_out(found.live),
            "shadow": error_out(found.shadow)}


@router.get("/models")
async def models(request: Request, control: Control) -> dict[str, Any]:
    """What this worker holds (live, previous, shadow, with provenance), what every worker serves, the
    shadow's comparison on live traffic so far, and both models' accepted error on the labelled audits."""
    workers = control.worker_files()
    held = control.current()
    settings = request.app.state.settings
    return {"worker": control.pid, "generation": control.generation, "models": held.describe(),
            "models_dir": os.path.realpath(settings.models_dir),
            # in a Kubernetes pod this API reaches one pod's workers only (the Service picks the pod)
            "pod": {"name": socket.gethostname(), "one_of_several": settings.one_of_several_pods},
            "workers": [{key: worker.get(key) for key in ("pid", "generation", "live", "previous", "shadow")}
                        for worker in workers],
            "shadow_fraction": settings.shadow_fraction, "shadow": shadow_summary(workers),
            "shadow_on_audits": await on_audits(request.app.state.reviews, held.shadow)}


@router.post("/models/shadow")
async def load_shadow(body: CheckpointIn, control: Control) -> JSONResponse:
    """Load a candidate beside the live model on every worker; it answers BNN_SHADOW_FRACTION of traffic off the
    response path."""
    return await changed(control, "shadow", body.path)


@router.delete("/models/shadow")
async def drop_shadow(control: Control) -> JSONResponse:
    """Stop and unload the shadow."""
    return await changed(control, "unshadow")


@router.post("/models/promote")
async def promote(control: Control, body: PromoteIn | None = None) -> JSONResponse:
    """Make the shadow (or the checkpoint at ``path``) live on every worker, after each verified it; the model
    live before is kept loaded for a rollback."""
    return await changed(control, "promote", body.path if body is not None else None)


@router.post("/models/rollback")
async def rollback(control: Control) -> JSONResponse:
    """Make the previous live model live again (the one rolled back from becomes the previous)."""
    return await changed(control, "rollback")
