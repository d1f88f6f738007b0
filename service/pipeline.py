"""Uploads -> predictions: the one inference path every predicting route calls. No HTTP types.

:meth:`Inference.classify` has the request's uploads checked, decoded and preprocessed
within the request's limits (``inference/decoding.py``: large ones decoded in a bounded pool, each
within a deadline; small ones left to the pass), then hands them to the micro-batcher, whose
pass (on the event loop, or in the inference thread: see ``inference/batcher.py``) decodes the small ones
and runs every digit of the pass through the network at once; the results come back in the uploads' order,
a rejected upload keeping its place as its :class:`ImageRejected`. An item may also be an already-prepared
``[28, 28]`` uint8 digit, which skips decoding. Routes call :meth:`Inference.answer_each` (a
refused upload keeps its place) or :meth:`Inference.answer_all` (all or nothing): both return finished
answers, each with its audit flag drawn, counted in the metrics and queued for review when referred or audited, and a
sample offered to the shadow, if one is held (``lifecycle/shadow.py``).

The models are a :class:`service.lifecycle.held.ModelSet` that :meth:`Inference.swap` replaces whole
(``lifecycle/control.py`` decides when); each pass reads the live model once, so every answer names
the version that produced it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from model.calibration import Channel
from model.checkpoint import CheckpointError, load_checkpoint
from service.errors import ImageRejected, RejectedElement
from service.inference.audit import AuditSampler
from service.inference.batcher import MicroBatcher
from service.inference.decoding import Decoder, Upload, UploadLimits
from service.inference.predictor import Prediction, Predictor
from service.inference.preprocess import Opened, Prepared, prepare, review_png
from service.lifecycle.checks import checkpoint_digest
from service.lifecycle.held import HeldModel, ModelSet, calibrated_on, provenance
from service.lifecycle.shadow import Shadow
from service.metrics import Metrics
from service.review.queue import ReviewQueue
from service.settings import Settings

log = logging.getLogger("service")
# an upload's prediction and what it was made from, or its refusal
Outcome = tuple[Prediction, Prepared] | ImageRejected


@dataclass(frozen=True)
class Batching:
    """The micro-batcher's bounds (``batcher.py``)."""

    max_images: int
    max_wait_s: float
    max_queue: int
    threaded: bool  # the pass in the inference thread, off the event loop


@dataclass(frozen=True)
class PassOptions:
    """What a pass computes; requests with equal options share a pass."""

    samples: int | None = None  # N; None: the calibrated default
    spread: bool = False  # also how the samples disagree (each class's spread and votes)
    channel: Channel = "file"  # whose refer rule judges the answers: files posted, or drawings on the page


@dataclass(frozen=True)
class Answer:
    """A finished answer: the prediction, and what accounting added to it."""

    prediction: Prediction
    audit: bool  # marked for a human spot check
    review_id: str | None  # its review item, when queued


@dataclass
class Inference:
    models: ModelSet  # live, previous and shadow: replaced whole by swap(), never changed in place
    decoder: Decoder
    metrics: Metrics
    auditor: AuditSampler
    shadow: Shadow  # compares the shadow model, when one is held, on a sample of traffic
    batching: Batching | None = None  # None: every call runs its own pass (BNN_MICRO_BATCHING=false)
    reviews: ReviewQueue | None = None  # None: nothing is queued for review (BNN_REVIEW=false)
    batcher: MicroBatcher[Opened | Prepared, Outcome, PassOptions] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.batching is not None:
            self.batcher = MicroBatcher(self.run_pass, self.batching.max_images, self.batching.max_wait_s,
                                        self.batching.max_queue, threaded=self.batching.threaded)

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics, auditor: AuditSampler,
             reviews: ReviewQueue | None = None) -> Inference:
        """The checkpoint named by ``settings``, its refer rule, and a started micro-batcher; the
        model's facts are published as gauges. Raises CheckpointError with the file and problem."""
        path = settings.model_path.resolve()
        net, meta = load_checkpoint(path)
        digest = checkpoint_digest(path)
        predictor = Predictor.from_loaded(net, meta, path, settings.threshold, settings.default_samples,
                                          settings.expected_referral_rate, settings.precision)
        if predictor.default_samples > settings.max_samples:
            raise CheckpointError(f"{settings.model_path}: calibrated N={predictor.default_samples} exceeds "
                                  f"BNN_MAX_SAMPLES={settings.max_samples}")
        if predictor.expected_referral_rate is None:
            log.warning("expected referral rate unknown (threshold overridden?): set BNN_EXPECTED_REFERRAL_RATE "
                        "for the referral-rate alert")
        if predictor.precision.warn:
            log.warning("precision: %s", predictor.precision.note)
        models = ModelSet(HeldModel(predictor, path, digest, time.time(), provenance(meta, predictor)))
        limits = UploadLimits(settings.max_upload_bytes, settings.max_pixels, settings.max_request_decode_bytes)
        decoder = Decoder(limits, settings.decode_threads, settings.decode_timeout_s)
        shadow = Shadow(settings.shadow_fraction, metrics, reviews.attach_shadow if reviews is not None else None)
        batching = Batching(settings.batch_max_images, settings.batch_max_wait_ms / 1000.0, settings.queue_max,
                            settings.inference_thread) if settings.micro_batching else None
        inference = cls(models, decoder, metrics, auditor, shadow, batching, reviews)
        inference.publish()
        return inference

    def start(self) -> None:
        """Start the micro-batcher and the shadow's runner (on the running event loop)."""
        if self.batcher is not None:
            self.batcher.start()
        self.shadow.start()

    def publish(self) -> None:
        """The live model's facts as gauges, and a line in the log."""
        predictor = self.predictor
        self.metrics.publish_model(predictor.model_version, predictor.rule.threshold, predictor.expected_referral_rate,
                                   self.auditor.fraction,
                                   {channel: record.alpha for channel, record in predictor.calibrations.items()},
                                   precision=predictor.precision.precision, runtime=predictor.precision.runtime)
        rules = "; ".join(f"{channel}: threshold {rule.threshold:.4g} nats, familiar mass {rule.familiar_mass}"
                          for channel, rule in predictor.rules.items())
        choice = predictor.precision
        log.info("model %s live (%s; calibrated on %s), N=%d, precision %s (runtime %s; %s)", predictor.model_version,
                 rules, self.calibrated_on, predictor.default_samples, choice.precision, choice.runtime, choice.note)

    def swap(self, models: ModelSet) -> None:
        """Serve ``models`` from the next pass on. Called on the event loop: a pass that runs there
        is never interrupted, and one in the inference thread has read its model already."""
        before = self.models.live
        self.models = models
        if models.shadow is not None:
            self.metrics.version_at_zero(models.shadow.version)
        if models.live.digest != before.digest:
            if models.live.version != before.version:
                self.metrics.retire_version(before.version, before.predictor.precision.precision,
                                             before.predictor.precision.runtime)
            self.publish()

    async def close(self) -> None:
        await self.shadow.stop()
        if self.batcher is not None:
            await self.batcher.stop()
        self.decoder.close()

    @property
    def predictor(self) -> Predictor:
        return self.models.live.predictor

    @property
    def model_version(self) -> str:
        return self.predictor.model_version

    @property
    def precision(self) -> str:
        return self.predictor.precision.precision

    @property
    def runtime(self) -> str:
        return self.predictor.precision.runtime

    @property
    def calibrated_on(self) -> str:
        """What the refer rules in force were fitted on (``held.calibrated_on``)."""
        return calibrated_on(self.predictor)

    def run_pass(self, items: list[Opened | Prepared], options: PassOptions) -> list[Outcome]:
        """One pass: decode what was left to it (small images: decoded here, a pass's worth at once),
        then run all the digits through the live network at once; each result in its item's place."""
        predictor = self.models.live.predictor  # read once: a swap during the pass takes effect at the next
        ready = [prepare(item) if isinstance(item, Opened) else item for item in items]
        digits = [item.digit for item in ready if isinstance(item, Prepared)]
        answered = iter(predictor.predict(digits, options.samples, options.spread, options.channel) if digits else [])
        return [item if isinstance(item, ImageRejected) else (next(answered), item) for item in ready]

    async def classify(self, uploads: Sequence[Upload], samples: int | None, spread: bool = False,
                       channel: Channel = "file") -> list[Outcome]:
        """Uploads -> (its Prediction, what was prepared) or its ImageRejected each, in order; N =
        ``samples`` or the default; with ``spread``, each prediction also says how its samples
        disagree; judged by ``channel``'s rule."""
        admitted = await self.decoder.admit(uploads)
        items = [item for item in admitted if not isinstance(item, ImageRejected)]
        if not items:
            return [item for item in admitted if isinstance(item, ImageRejected)]
        options = PassOptions(samples, spread, channel)
        if self.batcher is not None:
            outcomes = await self.batcher.submit(items, options)
        else:
            outcomes = await run_in_threadpool(self.run_pass, items, options)
        passed = iter(outcomes)
        return [item if isinstance(item, ImageRejected) else next(passed) for item in admitted]

    async def answer_each(self, uploads: Sequence[Upload], samples: int | None, spread: bool = False,
                          channel: Channel = "file", source: str | None = None) -> list[Answer | ImageRejected]:
        """Finished answers, in order, a refused upload keeping its place as its error (counted);
        ``source`` (who sent them) bounds what one sender may queue for review."""
        results = await self.classify(uploads, samples, spread, channel)
        for result in results:
            if isinstance(result, ImageRejected):
                self.metrics.record_rejection(result.reason)
        answers = [result if isinstance(result, ImageRejected) else self._account(*result, source)
                   for result in results]
        self._offer_to_shadow([answer for answer in answers if isinstance(answer, Answer)])
        return answers

    async def answer_all(self, uploads: Sequence[Upload], samples: int | None, spread: bool = False,
                         channel: Channel = "file", source: str | None = None) -> list[Answer]:
        """Finished answers for every upload, or :class:`RejectedElement` for the first refused one
        (nothing is counted or queued then: the error handler counts the refusal)."""
        results = await self.classify(uploads, samples, spread, channel)
        for index, result in enumerate(results):
            if isinstance(result, ImageRejected):
                raise RejectedElement(index, result)
        answers = [self._account(*result, source) for result in results if not isinstance(result, ImageRejected)]
        self._offer_to_shadow(answers)
        return answers

    def _offer_to_shadow(self, answers: list[Answer]) -> None:
        """A sample of the answers (every audit) for the shadow, if one is held, to answer off the response path."""
        self.shadow.offer([(answer.prediction, answer.review_id if answer.audit else None) for answer in answers],
                          self.models.shadow)

    def _account(self, prediction: Prediction, prepared: Prepared, source: str | None) -> Answer:
        """Draw the audit flag of an answer (any answer, referred or not), count the answer, and queue
        it for review when referred or audited (no I/O here: ``service/review/queue.py``), with the
        reviewer's copy of the decoded image re-encoded (never the client's bytes)."""
        audit = self.auditor.draw()
        self.metrics.record_prediction(prediction.digit, prediction.entropy, prediction.refer_reason,
                                       prediction.samples, audit, prediction.model_version, prediction.channel)
        review_id = None
        if self.reviews is not None and (prediction.refer or audit):
            # the PNG is made only for an item the queue would take (refused, the item is counted as such)
            shown = prepared.picture if self.reviews.admits(source) else None
            picture = review_png(shown) if shown is not None else prepared.digit
            review_id = self.reviews.submit(prediction, picture, audit, prediction.model_version,
                                           self.auditor.fraction, source=source)
        return Answer(prediction, audit, review_id)
