"""The FastAPI app: factory, lifespan, routes. Glue only: no tensor code, no image code.

    create_app(Settings()) -> FastAPI
"""


import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import Depends, FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from model.checkpoint import CheckpointError
from service.audit import AuditSampler
from service.batcher import MicroBatcher, QueueFull
from service.limits import BodyLimitMiddleware
from service.metrics import Metrics
from service.predictor import Prediction, Predictor
from service.preprocess import ImageRejected, ImageTooLarge, NoInk, UndecodableImage, UnsupportedFormat, preprocess
from service.schemas import BatchErrorOut, ErrorOut, HealthOut, PredictionOut
from service.settings import Settings

log = logging.getLogger("service")

STATUS_FOR = {UndecodableImage: 400, ImageTooLarge: 413, UnsupportedFormat: 415, NoInk: 422}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the upload is not a decodable image (empty, truncated, corrupt)"},
    401: {"model": ErrorOut, "description": "BNN_API_KEY is set and X-API-Key is missing or wrong"},
    408: {"model": ErrorOut, "description": "the request body did not arrive within BNN_BODY_TIMEOUT_S"},
    413: {"model": ErrorOut, "description": "request, file or pixel count over the configured limits"},
    415: {"model": ErrorOut, "description": "a recognised format that is not accepted (e.g. TIFF, SVG, PDF)"},
    422: {"model": ErrorOut, "description": "invalid parameters, missing file, or no ink found in the image"},
    503: {"model": ErrorOut, "description": "the model is not loaded yet, or the inference queue is full (Retry-After)"},
}


class ServiceUnavailable(Exception):
    pass


class Unauthorized(Exception):
    pass


class TooManyFiles(Exception):
    """More files than the route takes (several in /predict's `file`, or over the batch limit)."""


def _status(error: ImageRejected) -> int:
    return STATUS_FOR.get(type(error), 400)


def _to_out(prediction: Prediction, model_version: str, audit: bool, filename: str | None = None) -> PredictionOut:
    fields = asdict(prediction)
    return PredictionOut(**{"class": fields.pop("digit")}, **fields, audit=audit, model_version=model_version,
                         filename=filename)


def app_from_environment() -> FastAPI:
    """The app built from ``BNN_*`` settings: what each worker process serves (``service/workers.py``)."""
    return create_app(Settings())


def create_app(settings: Settings | None = None, registry: CollectorRegistry | None = None,
               auditor: AuditSampler | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics(registry or CollectorRegistry())
    auditor = auditor or AuditSampler(settings.audit_fraction)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.threads)
        try:
            predictor = Predictor.from_checkpoint(settings.model_path, settings.threshold, settings.default_samples,
                                                  settings.expected_referral_rate, settings.unfamiliar_threshold)
        except CheckpointError as error:
            log.error("cannot start: %s", error)
            raise
        if predictor.default_samples > settings.max_samples:
            raise CheckpointError(f"{settings.model_path}: calibrated N={predictor.default_samples} exceeds "
                                  f"BNN_MAX_SAMPLES={settings.max_samples}")
        metrics.threshold.set(predictor.threshold)
        expected = predictor.expected_referral_rate
        metrics.expected_referral_rate.set(float("nan") if expected is None else expected)
        if expected is None:
            log.warning("expected referral rate unknown (threshold overridden?): set BNN_EXPECTED_REFERRAL_RATE "
                        "for the referral-rate alert")
        metrics.audit_fraction.set(auditor.fraction)
        metrics.model_info.labels(model_version=predictor.model_version).set(1)
        batcher = None
        if settings.micro_batching:
            batcher = MicroBatcher(predictor.predict, settings.batch_max_images, settings.batch_max_wait_ms / 1000.0,
                                   settings.queue_max)
            batcher.start()
        app.state.batcher = batcher
        app.state.predictor = predictor
        log.info("model %s loaded, thresholds %.4g nats (uncertain), %s (unfamiliar), N=%d", predictor.model_version,
                 predictor.rule.threshold, predictor.rule.unfamiliar_threshold, predictor.default_samples)
        yield
        app.state.predictor = None
        if batcher is not None:
            await batcher.stop()

    app = FastAPI(title="Uncertainty-aware digit recognition",
                  description="A variational Bayesian CNN that classifies a digit image, says how unsure it is, "
                              "and refers it to a human when its predictive entropy exceeds a calibrated threshold.",
                  version="1.0.0", lifespan=lifespan)
    app.state.predictor = None
    app.state.batcher = None
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes, timeout_s=settings.body_timeout_s,
                       on_reject=metrics.record_rejection)

    expected_key = settings.api_key.get_secret_value().encode() if settings.api_key else None

    def require_api_key(x_api_key: Annotated[str | None, Header(description="needed when BNN_API_KEY is set")] = None) -> None:
        if expected_key is None:
            return
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected_key):
            raise Unauthorized()

    def predictor_or_503() -> Predictor:
        predictor: Predictor | None = app.state.predictor
        if predictor is None:
            raise ServiceUnavailable()
        return predictor

    @app.exception_handler(ImageRejected)
    async def rejected_image(request: Request, error: ImageRejected) -> JSONResponse:
        metrics.record_rejection(error.reason)
        return JSONResponse({"detail": str(error)}, status_code=_status(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        metrics.record_rejection("invalid_request")
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()))
            problems.append(f"{where}: {item.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(problems) or "invalid request"}, status_code=422)

    @app.exception_handler(TooManyFiles)
    async def too_many_files(request: Request, error: TooManyFiles) -> JSONResponse:
        metrics.record_rejection("too_many_files")
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, error: Unauthorized) -> JSONResponse:
        metrics.record_rejection("unauthorized")
        return JSONResponse({"detail": "missing or wrong X-API-Key header"}, status_code=401)

    @app.exception_handler(QueueFull)
    async def overloaded(request: Request, error: QueueFull) -> JSONResponse:
        metrics.record_rejection("overloaded")
        return JSONResponse({"detail": f"overloaded: {error}; retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, error: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": "model not loaded yet; retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    async def infer(predictor: Predictor, digits: list[np.ndarray], samples: int | None) -> list[Prediction]:
        batcher: MicroBatcher | None = app.state.batcher
        if batcher is not None:
            return await batcher.submit(digits, samples)
        return await run_in_threadpool(predictor.predict, digits, samples)

    def expecting() -> contextlib.AbstractContextManager[None]:
        batcher: MicroBatcher | None = app.state.batcher
        return batcher.expect() if batcher is not None else contextlib.nullcontext()

    def answer(prediction: Prediction, model_version: str, filename: str | None = None) -> PredictionOut:
        audit = auditor.draw(prediction.refer)
        metrics.record_prediction(prediction.digit, prediction.entropy, prediction.refer_reason, prediction.samples,
                                  audit)
        return _to_out(prediction, model_version, audit, filename)

    def check_file_size(data: bytes) -> bytes:
        if len(data) > settings.max_upload_bytes:
            raise ImageTooLarge(f"file exceeds the limit of {settings.max_upload_bytes} bytes")
        return data

    async def read_limited(upload: UploadFile) -> bytes:
        return check_file_size(await upload.read(settings.max_upload_bytes + 1))

    samples_query = Query(ge=1, le=settings.max_samples,
                          description="N posterior samples (default: the N the threshold was calibrated with)")

    @app.get("/healthz", response_model=HealthOut, response_model_exclude_none=True, tags=["probes"])
    async def healthz() -> HealthOut:
        return HealthOut(status="ok")

    @app.get("/readyz", response_model=HealthOut, responses={503: ERROR_RESPONSES[503]}, tags=["probes"])
    async def readyz() -> HealthOut:
        predictor = predictor_or_503()
        return HealthOut(status="ready", model_version=predictor.model_version)

    @app.post("/predict", response_model=PredictionOut, response_model_by_alias=True,
              response_model_exclude_none=True, responses=ERROR_RESPONSES, tags=["predict"],
              dependencies=[Depends(require_api_key)])
    async def predict(request: Request, file: Annotated[UploadFile, File(description="the digit image")],
                      samples: Annotated[int | None, samples_query] = None) -> PredictionOut:
        started = time.perf_counter()
        try:
            predictor = predictor_or_503()
            sent = len((await request.form()).getlist("file"))  # parsed once already; this reads the cache
            if sent > 1:
                raise TooManyFiles(f"{sent} files sent in field 'file'; send one, or use /predict/batch for several")
            data = await read_limited(file)
            with expecting():
                digit = await run_in_threadpool(preprocess, data, settings.max_pixels)
            prediction = (await infer(predictor, [digit], samples))[0]
            return answer(prediction, predictor.model_version)
        finally:
            metrics.latency.labels(route="/predict").observe(time.perf_counter() - started)

    @app.post("/predict/batch", response_model=list[PredictionOut | BatchErrorOut], response_model_by_alias=True,
              responses=ERROR_RESPONSES, tags=["predict"], dependencies=[Depends(require_api_key)])
    async def predict_batch(files: Annotated[list[UploadFile], File(description="digit images, in order")],
                            samples: Annotated[int | None, samples_query] = None) -> list[PredictionOut | BatchErrorOut]:
        started = time.perf_counter()
        try:
            predictor = predictor_or_503()
            if len(files) > settings.max_batch_files:
                raise TooManyFiles(f"{len(files)} files sent; at most {settings.max_batch_files} per request")
            uploads = [(upload.filename, await upload.read(settings.max_upload_bytes + 1)) for upload in files]

            def prepare(data: bytes) -> np.ndarray | ImageRejected:
                try:
                    return preprocess(check_file_size(data), settings.max_pixels)
                except ImageRejected as error:
                    return error

            with expecting():
                prepared = await run_in_threadpool(lambda: [prepare(data) for _, data in uploads])
            digits = [item for item in prepared if isinstance(item, np.ndarray)]
            predictions = iter(await infer(predictor, digits, samples))
            results = [item if isinstance(item, ImageRejected) else next(predictions) for item in prepared]

            answers: list[PredictionOut | BatchErrorOut] = []
            for (filename, _), result in zip(uploads, results, strict=True):
                if isinstance(result, Prediction):
                    answers.append(answer(result, predictor.model_version, filename))
                else:
                    metrics.record_rejection(result.reason)
                    answers.append(BatchErrorOut(filename=filename, status=_status(result), reason=result.reason,
                                                 detail=str(result)))
            return answers
        finally:
            metrics.latency.labels(route="/predict/batch").observe(time.perf_counter() - started)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app
