"""What a worker runs while it serves: the live model (and BNN_SHADOW_CHECKPOINT's shadow), the
review queue and, with admins, model control: built, started and stopped by :func:`serving`, the
app's lifespan (``app.py`` composes the app around it)."""

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
from threadpoolctl import threadpool_limits

from model.checkpoint import CheckpointError
from service.inference.audit import AuditSampler
from service.lifecycle.checks import CandidateRefused, load_verified
from service.lifecycle.control import ModelControl
from service.lifecycle.held import ModelSet
from service.metrics import Metrics
from service.pipeline import Inference
from service.review.access import Reviewers, show_review_address
from service.review.bounds import share_of
from service.review.queue import ReviewQueue
from service.review.retention_policy import RetentionPolicy
from service.review.schema import local_directory
from service.review.store import SECONDS_PER_DAY, ReviewStore
from service.settings import Settings

log = logging.getLogger("service")


def reviewers_for(settings: Settings) -> Reviewers:
    """BNN_REVIEW_TOKENS, or one reviewer made now, its token written beside the store (``python -m
    service`` makes it before its workers start, so this is for an app built in process)."""
    if settings.review_tokens is not None:
        return Reviewers.parse(settings.review_tokens.get_secret_value())
    reviewers = Reviewers.generated()
    if settings.review:
        show_review_address(settings.host, settings.port, reviewers, local_directory(settings.review_db))
    return reviewers


def retention_policy(settings: Settings) -> RetentionPolicy:
    """What retention keeps: BNN_REVIEW_RETENTION_DAYS, BNN_REVIEW_MAX_ITEMS and _BYTES, and one source's
    share of each (BNN_REVIEW_SOURCE_SHARE; 1: one source may hold every cap, no bound of its own)."""
    share = settings.review_source_share
    return RetentionPolicy(settings.review_retention_days * SECONDS_PER_DAY, settings.review_max_items,
                           settings.review_max_bytes,
                           source_max_items=share_of(share, settings.review_max_items) if share < 1 else None,
                           source_max_bytes=share_of(share, settings.review_max_bytes) if share < 1 else None)


def export_directory(settings: Settings) -> Path:
    """BNN_REVIEW_EXPORT_DIR, else ``review-export`` beside the SQLite store (``data/`` for PostgreSQL)."""
    return settings.review_export_dir or local_directory(settings.review_db) / "review-export"


def review_queue(settings: Settings, metrics: Metrics) -> ReviewQueue:
    """The review queue over BNN_REVIEW_DB, bounded as the settings say."""
    return ReviewQueue(ReviewStore.open(settings.review_db), metrics, settings.review_buffer,
                       retention_policy(settings), export_directory(settings), settings.review_retention_interval_s,
                       buffer_bytes=settings.review_buffer_bytes, max_item_bytes=settings.review_max_item_bytes,
                       source_share=settings.review_source_share, stats_interval_s=settings.review_stats_interval_s)


def admins_for(settings: Settings) -> Reviewers | None:
    """BNN_ADMIN_TOKENS (None: no admin routes)."""
    if settings.admin_tokens is None:
        return None
    return Reviewers.parse(settings.admin_tokens.get_secret_value(), "BNN_ADMIN_TOKENS")


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
    """The live model (and BNN_SHADOW_CHECKPOINT's shadow), started; CheckpointError logged and raised."""
    try:
        inference = Inference.load(settings, metrics, auditor, reviews)
        if settings.shadow_checkpoint is not None:
            inference.swap(with_shadow(inference, settings))
    except CheckpointError as error:
        log.error("cannot start: %s", error)
        raise
    inference.start()
    return inference


def limit_threads(settings: Settings) -> None:
    """BNN_THREADS for torch and for numpy's OpenBLAS (the transform's least-squares fits): left at one
    thread per core in every worker, OpenBLAS oversubscribed the cores and cut the rate of photo-like
    uploads under load 3.8x (64 x 64 noise, 16 connections: 99 vs 379 images/s, measured with wrk)."""
    torch.set_num_threads(settings.threads)
    threadpool_limits(settings.threads, user_api="blas")


def serving(settings: Settings, metrics: Metrics,
            auditor: AuditSampler) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the model, the review queue and (with admins) model control, started and stopped."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit_threads(settings)
        reviews = review_queue(settings, metrics) if settings.review else None
        inference = load_inference(settings, metrics, auditor, reviews)
        control = None
        with ExitStack() as cleanup:
            if settings.admin_tokens is not None:
                control = ModelControl(control_directory(settings, cleanup), settings, lambda: inference.models,
                                       inference.swap, inference.shadow.summary)
                await control.start()
            if reviews is not None:
                reviews.start()  # the store is migrated, and written, in the background: it never holds up start-up
            app.state.inference, app.state.reviews, app.state.control = inference, reviews, control
            gc.freeze()  # what start-up loaded lives as long as the process: keep it out of every collection
            yield
            app.state.inference = app.state.reviews = app.state.control = None
            if control is not None:
                await control.stop()
            await inference.close()
            if reviews is not None:
                await reviews.stop()

    return lifespan
