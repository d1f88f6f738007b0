"""The FastAPI app: ``create_app(settings)`` composes the service's rooms and nothing else.

Where each step of a request lives: the HTTP edge's middleware (``edge/``: body limits, latency,
security headers), the routes (``routes/``) and their dependencies (``deps.py``), the one inference path
(``pipeline.py`` over ``inference/``), the error handlers (``error_handlers.py``); what a worker runs
while it serves (the models, the review queue, model control) is the lifespan in ``runtime.py``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from service.deps import document_samples_limit
from service.edge.latency import LatencyMiddleware
from service.edge.limits import BodyLimitMiddleware, BodyLimits
from service.edge.security_headers import SecurityHeadersMiddleware
from service.error_handlers import install_handlers
from service.inference.audit import AuditSampler
from service.metrics import Metrics
from service.routes import admin_api, page, predict, probes, review, v2
from service.routes import metrics as metrics_routes
from service.runtime import admins_for, reviewers_for, serving
from service.settings import Settings

DESCRIPTION = ("A variational Bayesian CNN that classifies a digit image, says how unsure it is, and refers it to a "
               "human when its predictive entropy exceeds a calibrated threshold, saying why: unsure which digit, or "
               "probably not a digit.")


def create_app(settings: Settings | None = None, registry: CollectorRegistry | None = None,
               auditor: AuditSampler | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics(registry or CollectorRegistry())
    lifespan = serving(settings, metrics, auditor or AuditSampler(settings.audit_fraction))
    app = FastAPI(title="Uncertainty-aware digit recognition", description=DESCRIPTION, version="1.0.0",
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # served from our own files: routes/page.py
    app.state.inference = app.state.reviews = app.state.control = None
    app.state.reviewers, app.state.admins = reviewers_for(settings), admins_for(settings)
    app.state.settings, app.state.metrics = settings, metrics
    routers = [probes.router, predict.router, metrics_routes.router, v2.router, page.router, review.router]
    if settings.admin_tokens is not None:  # no admins: no admin routes (404)
        routers.append(admin_api.router)
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    metrics.time_routes([route.path for router in routers for route in router.routes if isinstance(route, APIRoute)])
    document_samples_limit(app, settings.max_samples)
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits(settings.max_request_bytes, settings.max_upload_bytes),
                       timeout_s=settings.body_timeout_s, on_reject=metrics.record_rejection)
    app.add_middleware(LatencyMiddleware, observe=metrics.observe_latency)
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: a 413 or 408 gets the headers too
    install_handlers(app, metrics)
    return app
