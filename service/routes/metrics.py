"""Prometheus exposition: this process's registry, or every worker's values added up. The review
queue's gauges are read from its store in the background (``ReviewQueue.stats_interval_s``), never
on a scrape: ``/metrics`` is open, and its scrapes must cost the store nothing."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.metrics import Metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
