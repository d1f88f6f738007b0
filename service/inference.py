"""Uploads -> predictions: the one inference path every predicting route calls. No HTTP types.

:meth:`Inference.classify` checks each upload's size, decodes and preprocesses it in a worker
thread (announced to the micro-batcher, so a gathering pass waits for it), runs every digit
through the network in one micro-batched pass, and returns the results in the uploads' order,
a rejected upload keeping its place as its :class:`ImageRejected`. :meth:`Inference.account`
then draws the audit flag of an answer and counts it in the metrics.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from model.checkpoint import CheckpointError
from service.audit import AuditSampler
from service.batcher import MicroBatcher
from service.metrics import Metrics
from service.predictor import Prediction, Predictor
from service.preprocess import ImageRejected, ImageTooLarge, preprocess
from service.settings import Settings

log = logging.getLogger("service")


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int  # largest single file
    max_pixels: int  # largest width x height, checked from the header before decoding


@dataclass
class Inference:
    predictor: Predictor
    limits: UploadLimits
    metrics: Metrics
    auditor: AuditSampler
    batcher: MicroBatcher | None = None  # None: every call runs its own pass (BNN_MICRO_BATCHING=false)

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics, auditor: AuditSampler) -> Inference:
        """The checkpoint named by ``settings``, its refer rule, and a started micro-batcher; the
        model's facts are published as gauges. Raises CheckpointError with the file and problem."""
        predictor = Predictor.from_checkpoint(settings.model_path, settings.threshold, settings.default_samples,
                                              settings.expected_referral_rate, settings.unfamiliar_threshold)
        if predictor.default_samples > settings.max_samples:
            raise CheckpointError(f"{settings.model_path}: calibrated N={predictor.default_samples} exceeds "
                                  f"BNN_MAX_SAMPLES={settings.max_samples}")
        if predictor.expected_referral_rate is None:
            log.warning("expected referral rate unknown (threshold overridden?): set BNN_EXPECTED_REFERRAL_RATE "
                        "for the referral-rate alert")
        metrics.publish_model(predictor.model_version, predictor.rule.threshold, predictor.expected_referral_rate,
                              auditor.fraction)
        batcher = None
        if settings.micro_batching:
            batcher = MicroBatcher(predictor.predict, settings.batch_max_images, settings.batch_max_wait_ms / 1000.0,
                                   settings.queue_max)
            batcher.start()
        log.info("model %s loaded, thresholds %.4g nats (uncertain), %s (unfamiliar), N=%d", predictor.model_version,
                 predictor.rule.threshold, predictor.rule.unfamiliar_threshold, predictor.default_samples)
        return cls(predictor, UploadLimits(settings.max_upload_bytes, settings.max_pixels), metrics, auditor, batcher)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    @property
    def model_version(self) -> str:
        return self.predictor.model_version

    def prepare(self, data: bytes) -> np.ndarray | ImageRejected:
        """One upload -> the network's uint8 ``[28, 28]``, or why it is refused."""
        try:
            if len(data) > self.limits.max_upload_bytes:
                raise ImageTooLarge(f"file exceeds the limit of {self.limits.max_upload_bytes} bytes")
            return preprocess(data, self.limits.max_pixels)
        except ImageRejected as error:
            return error

    async def classify(self, uploads: list[bytes], samples: int | None) -> list[Prediction | ImageRejected]:
        """Upload bytes -> one Prediction or ImageRejected each, in order; N = ``samples`` or the default."""
        expecting = self.batcher.expect() if self.batcher is not None else contextlib.nullcontext()
        with expecting:
            prepared = await run_in_threadpool(lambda: [self.prepare(data) for data in uploads])
        digits = [item for item in prepared if isinstance(item, np.ndarray)]
        if not digits:
            predictions: list[Prediction] = []
        elif self.batcher is not None:
            predictions = await self.batcher.submit(digits, samples)
        else:
            predictions = await run_in_threadpool(self.predictor.predict, digits, samples)
        answered = iter(predictions)
        return [item if isinstance(item, ImageRejected) else next(answered) for item in prepared]

    def account(self, prediction: Prediction) -> bool:
        """Draw the audit flag of an answer (accepted ones only) and count the answer; returns the flag."""
        audit = self.auditor.draw(prediction.refer)
        self.metrics.record_prediction(prediction.digit, prediction.entropy, prediction.refer_reason,
                                       prediction.samples, audit)
        return audit
