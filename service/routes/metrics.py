"""Prometheus exposition: this process's registry, or every worker's values added up."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.metrics import Metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
