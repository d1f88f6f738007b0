"""The FastAPI app: ``create_app(settings)`` -> lifespan, middleware, routers. Nothing else.

Where each step of a request lives: the body limits (``limits.py``) and latency (``latency.py``)
middleware, the routes (``routes/``), their dependencies (``deps.py``), the one inference path
(``inference.py``: preprocess, micro-batch, predict), and the error handlers (``error_handlers.py``).
"""

from __future__ import annotations

import gc
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from threadpoolctl import threadpool_limits

from model.checkpoint import CheckpointError
from service.audit import AuditSampler
from service.deps import document_samples_limit
from service.error_handlers import install_handlers
from service.inference import Inference
from service.latency import LatencyMiddleware
from service.limits import BodyLimitMiddleware, BodyLimits
from service.metrics import Metrics
from service.model_control import ModelControl
from service.models import CandidateRefused, ModelSet, load_verified
from service.review.access import Reviewers, show_review_address
from service.review.queue import ReviewQueue
from service.review.schema import local_directory
from service.routes import admin_api, page, predict, probes, review, v2
from service.routes import metrics as metrics_routes
from service.security_headers import SecurityHeadersMiddleware
from service.settings import Settings
from service.shadow import Shadow

log = logging.getLogger("service")
DESCRIPTION = ("A variational Bayesian CNN that classifies a digit image, says how unsure it is, and refers it to a "
               "human when its predictive entropy exceeds a calibrated threshold, saying why: unsure which digit, or "
               "probably not a digit.")


def reviewers_for(settings: Settings) -> Reviewers:
    """BNN_REVIEW_TOKENS, or one reviewer made now, its token written beside the store (``python -m
    service`` makes it before its workers start, so this is for an app built in process)."""
    if settings.review_tokens is not None:
        return Reviewers.parse(settings.review_tokens.get_secret_value())
    reviewers = Reviewers.generated()
    if settings.review:
        show_review_address(settings.host, settings.port, reviewers, local_directory(settings.review_db))
    return reviewers


def with_shadow(inference: Inference, settings: Settings) -> ModelSet:
    """The models with BNN_SHADOW_CHECKPOINT as shadow; CheckpointError naming the check that refused it."""
    assert settings.shadow_checkpoint is not None
    try:
        shadow = load_verified(settings.shadow_checkpoint.resolve(), inference.precision, settings)
    except CandidateRefused as refused:
        raise CheckpointError(f"BNN_SHADOW_CHECKPOINT refused ({refused.check}): {refused.reason}") from None
    log.info("shadow %s loaded: answers %.0f %% of traffic off the response path", shadow.version,
             100 * settings.shadow_fraction)
    return inference.models.with_shadow(shadow)


def control_directory(settings: Settings, cleanup: ExitStack) -> Path:
    """BNN_CONTROL_DIR (python -m service sets one for its workers), or a fresh one for this app alone."""
    if settings.control_dir is not None:
        settings.control_dir.mkdir(parents=True, exist_ok=True)
        return settings.control_dir
    directory = Path(tempfile.mkdtemp(prefix="bnn-control-"))
    cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
    return directory


def load_inference(settings: Settings, metrics: Metrics, auditor: AuditSampler,
                   reviews: ReviewQueue | None) -> Inference:
    """The live model (and BNN_SHADOW_CHECKPOINT's shadow) with the shadow runner started."""
    try:
        inference = Inference.load(settings, metrics, auditor, reviews)
        if settings.shadow_checkpoint is not None:
            inference.swap(with_shadow(inference, settings))
    except CheckpointError as error:
        log.error("cannot start: %s", error)
        raise
    inference.shadow = Shadow(settings.shadow_fraction, metrics, lambda: inference.models.shadow,
                              reviews.attach_shadow if reviews is not None else None)
    inference.shadow.start()
    return inference


def serving(settings: Settings, metrics: Metrics,
            auditor: AuditSampler) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the model, the review queue and (with admins) model control, started and stopped."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.threads)
        # numpy's OpenBLAS too (the transform's least-squares fits): left at one thread per core in
        # every worker, it oversubscribed the cores and cut the rate of photo-like uploads under load
        # 3.8x (64 x 64 noise, 16 connections: 99 vs 379 images/s, measured with wrk)
        threadpool_limits(settings.threads, user_api="blas")
        reviews = ReviewQueue.from_settings(settings, metrics) if settings.review else None
        inference = load_inference(settings, metrics, auditor, reviews)
        shadow = inference.shadow
        assert shadow is not None
        control = None
        with ExitStack() as cleanup:
            if settings.admin_tokens is not None:
                control = ModelControl(control_directory(settings, cleanup), settings, lambda: inference.models,
                                       inference.swap, shadow.summary)
                await control.start()
            if reviews is not None:
                reviews.start()  # the store is migrated, and written, in the background: it never holds up start-up
            app.state.inference, app.state.reviews, app.state.control = inference, reviews, control
            gc.freeze()  # what start-up loaded lives as long as the process: keep it out of every collection
            yield
            app.state.inference = app.state.reviews = app.state.control = None
            if control is not None:
                await control.stop()
            await shadow.stop()
            await inference.close()
            if reviews is not None:
                await reviews.stop()

    return lifespan


def create_app(settings: Settings | None = None, registry: CollectorRegistry | None = None,
               auditor: AuditSampler | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics(registry or CollectorRegistry())
    lifespan = serving(settings, metrics, auditor or AuditSampler(settings.audit_fraction))
    app = FastAPI(title="Uncertainty-aware digit recognition", description=DESCRIPTION, version="1.0.0",
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # served from our own files: routes/page.py
    app.state.inference = app.state.reviews = app.state.control = None
    app.state.reviewers = reviewers_for(settings)
    app.state.admins = (Reviewers.parse(settings.admin_tokens.get_secret_value(), "BNN_ADMIN_TOKENS")
                        if settings.admin_tokens is not None else None)
    app.state.settings = settings
    app.state.metrics = metrics
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
