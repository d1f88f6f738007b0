"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import InferenceDep
from service.error_handlers import ERROR_RESPONSES
from service.schemas import HealthOut

router = APIRouter(tags=["probes"])


@router.get("/healthz", response_model=HealthOut, response_model_exclude_none=True)
async def healthz() -> HealthOut:
    """200 while the process lives."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=HealthOut, responses={503: ERROR_RESPONSES[503]})
async def readyz(inference: InferenceDep) -> HealthOut:
    """503 until the model is loaded, then 200 with its version, precision and runtime."""
    return HealthOut(status="ready", model_version=inference.model_version, precision=inference.precision,
                     runtime=inference.runtime, calibrated_on=inference.calibrated_on)
