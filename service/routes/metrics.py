"""Prometheus exposition: this process's registry, or every worker's values added up; the review
queue's gauges are read from its store first."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.metrics import Metrics
from service.review.queue import ReviewQueue

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    reviews: ReviewQueue | None = request.app.state.reviews
    if reviews is not None and reviews.ready:
        await reviews.publish_stats()  # the queue and the live accepted error, read from the store
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
