"""Prometheus metrics on an injected registry, so every app (and test) has its own.

The referral rate is
``sum(rate(bnn_predictions_total{referred="true"}[5m])) / sum(rate(bnn_predictions_total[5m]))``;
``deploy/prometheus/rules.yml`` records it (5 m and 1 h), and the file channel's alone (what
clients post; ``channel="file"``), and alerts when the file channel's leaves the band around
``bnn_expected_referral_rate`` (the page's drawings are referred more often, under their own rule).

Several workers: ``python -m service`` with ``BNN_WORKERS`` > 1 sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start; every worker then writes its values to files there and ``/metrics``
(answered by whichever worker) adds them up, so counts are exact whichever worker served a
request. Gauges state how to combine workers (all workers load the same checkpoint: ``max``).
Every label value a query may divide by is created at start at 0, so a rate over a window is
defined from the first scrape on (an absent series would make the first requests invisible to
``rate``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from model.calibration import CHANNELS, Channel
from model.refer_rule import REFER_REASONS
from service.review.live import OUTCOMES, AcceptedError
from service.review.live import REASONS as REVIEW_REASONS
from service.review.retention_policy import CAUSES as RETENTION_CAUSES
from service.settings import METRICS_DIR_ENV

ENTROPY_BUCKETS = (1e-5, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.31)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SAMPLES_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 100_000)
CLASSES = tuple(str(digit) for digit in range(10))
REJECTION_REASONS = ("undecodable", "unsupported_format", "too_large", "no_ink", "invalid_request", "too_many_files",
                     "unauthorized", "overloaded", "body_timeout", "decode_timeout", "decoder_busy")


# each channel's metric names begin with its prefix: the file channel keeps the names it had before channels
# (deploy/prometheus/rules.yml and the Grafana dashboard use them); another channel adds its name
CHANNEL_PREFIXES: dict[Channel, str] = {"file": "bnn_", "drawn": "bnn_drawn_"}
CHANNEL_WHAT: dict[Channel, str] = {"file": "files a client posts", "drawn": "drawings on the page's pad"}


@dataclass(frozen=True)
class ChannelAudits:
    """One channel's live accepted error from its audit labels, as gauges (read from the review store every
    BNN_REVIEW_STATS_INTERVAL_S; the last worker to read it is right: ``mostrecent``)."""

    labels: Gauge
    wrong: Gauge
    ratio: Gauge
    lower: Gauge
    upper: Gauge

    @classmethod
    def build(cls, channel: Channel, registry: CollectorRegistry) -> ChannelAudits:
        def gauge(name: str, description: str) -> Gauge:
            return Gauge(f"{CHANNEL_PREFIXES[channel]}{name}", f"{description} (the {channel} channel: "
                         f"{CHANNEL_WHAT[channel]})", registry=registry, multiprocess_mode="mostrecent")

        return cls(gauge("audited_accepted_labels", "Labelled audits that count toward the live accepted error "
                         "(unreadable left out)"),
                   gauge("audited_accepted_wrong", "Labelled audits whose answer was wrong"),
                   gauge("audited_accepted_error_ratio", "Live error of accepted answers from the audit labels: "
                         "wrong / labelled, each weighted by 1 / its draw fraction (NaN before the first)"),
                   gauge("audited_accepted_error_ratio_lower", "Clopper-Pearson 95 % lower bound of the live "
                         "accepted error"),
                   gauge("audited_accepted_error_ratio_upper", "Clopper-Pearson 95 % upper bound of the live "
                         "accepted error"))

    def set(self, error: AcceptedError) -> None:
        self.labels.set(error.audited)
        self.wrong.set(error.wrong)
        self.ratio.set(float("nan") if error.ratio is None else error.ratio)
        self.lower.set(error.lower)
        self.upper.set(error.upper)


def multiprocess_dir() -> str | None:
    """The directory shared by several workers' metric files, when running several."""
    return os.environ.get(METRICS_DIR_ENV) or None


class Metrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self._answers(registry)
        self._model(registry)
        self._review(registry)
        self._shadow(registry)
        self._label_values_at_zero()

    def _answers(self, registry: CollectorRegistry) -> None:
        """What the service answered and refused, and how long it took."""
        self.predictions = Counter("bnn_predictions", "Answered images, by refer decision, class, the model "
                                   "version that answered and channel (file: posted; drawn: the page's pad, judged "
                                   "by its own calibrated rule)", ["referred", "class", "model_version", "channel"],
                                   registry=registry)
        self.referrals = Counter("bnn_referrals", "Referred images, by reason (uncertain: entropy over its threshold; "
                                 "unfamiliar: probably not a digit) and model version", ["reason", "model_version"],
                                 registry=registry)
        self.audits = Counter("bnn_audits", "Answers (accepted or referred) marked audit=true for a human spot "
                              "check, by class", ["class"], registry=registry)
        self.entropy = Histogram("bnn_prediction_entropy_nats", "Predictive entropy of answered images (nats)",
                                 buckets=ENTROPY_BUCKETS, registry=registry)
        self.samples = Histogram("bnn_samples_per_image", "Posterior samples N used per answered image",
                                 buckets=SAMPLES_BUCKETS, registry=registry)
        self.latency = Histogram("bnn_request_latency_seconds", "Request latency by route (seconds)", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.rejected = Counter("bnn_rejected_requests", "Rejected images or requests, by reason", ["reason"],
                                registry=registry)
        self.http_errors = Counter("bnn_http_errors", "Requests that failed inside the service (an unexpected "
                                   "exception: a bug), by route template (unmatched: no route) and status",
                                   ["route", "status"], registry=registry)

    def _model(self, registry: CollectorRegistry) -> None:
        """The loaded model and its refer rule (every worker loads the same: ``max``)."""
        self.threshold = Gauge("bnn_referral_threshold_nats", "Entropy threshold in force for the file channel (what "
                               "clients post; the page's drawings have their own)", registry=registry,
                               multiprocess_mode="max")
        self.expected_referral_rate = Gauge(
            "bnn_expected_referral_rate",
            "Referral rate the file channel's threshold gave on its calibration split: what the referral band "
            "compares the file channel's live rate with (NaN if unknown, e.g. BNN_THRESHOLD overrides it without "
            "BNN_EXPECTED_REFERRAL_RATE)", registry=registry, multiprocess_mode="max")
        self.audit_fraction = Gauge("bnn_audit_fraction", "Configured fraction of answers marked audit",
                                    registry=registry, multiprocess_mode="max")
        self.model_info = Gauge("bnn_model_info", "Live model (value 1; 0 once another is promoted), the precision "
                                "its conv trunk runs in and the runtime", ["model_version", "precision", "runtime"],
                                registry=registry, multiprocess_mode="max")
        self.accepted_error_targets = {channel: Gauge(
            f"{CHANNEL_PREFIXES[channel]}accepted_error_target", f"The {channel} channel's calibrated promise "
            f"({CHANNEL_WHAT[channel]}): accepted answers wrong at most this often (alpha; NaN if the checkpoint "
            "states none)", registry=registry, multiprocess_mode="max") for channel in CHANNELS}

    def _review(self, registry: CollectorRegistry) -> None:
        """The review queue (service/review/): counted where it happens, its state read from the store every
        BNN_REVIEW_STATS_INTERVAL_S, and each channel's live accepted error from its audit labels."""
        self._review_writes(registry)
        self.review_labels = Counter("bnn_review_labels", "Labels given by reviewers, by item reason and what the "
                                     "label says of the answer (right, wrong, not_a_digit, unreadable)",
                                     ["reason", "outcome"], registry=registry)
        self.review_waiting = Gauge("bnn_review_waiting", "Review items waiting for a reviewer, by reason",
                                    ["reason"], registry=registry, multiprocess_mode="mostrecent")
        self.review_claimed = Gauge("bnn_review_claimed", "Review items held by a reviewer (lease running)",
                                    registry=registry, multiprocess_mode="mostrecent")
        self.audited = {channel: ChannelAudits.build(channel, registry) for channel in CHANNELS}

    def _review_writes(self, registry: CollectorRegistry) -> None:
        """How the answers reach the review store, and what it refuses or drops."""
        self.review_enqueued = Counter("bnn_review_enqueued", "Answers written to the review queue, by reason",
                                       ["reason"], registry=registry)
        self.review_enqueue_failures = Counter(
            "bnn_review_enqueue_failures", "Referred or audited answers that never reached the review queue (buffer "
            "full while the store was down or slow, or lost at shutdown)", registry=registry)
        self.review_store_errors = Counter("bnn_review_store_errors", "Failed attempts of the review queue's "
                                           "writer, by operation (migrate, write, retention, export; all retried)",
                                           ["operation"], registry=registry)
        self.review_retention_passes = Counter("bnn_review_retention_passes", "Retention passes that completed (each "
                                               "worker runs one every BNN_REVIEW_RETENTION_INTERVAL_S)",
                                               registry=registry)
        self.review_dropped = Counter("bnn_review_dropped", "Review items dropped by retention, by cause (age, source: "
                                      "beyond its source's share, rows, bytes)", ["cause"], registry=registry)
        self.review_refused = Counter("bnn_review_refused", "Review items refused on purpose, by reason "
                                      "(file_too_large: the image left out, the item kept; source_share: one source "
                                      "held its share of the buffer, not queued; invalid or store_refused: a row the "
                                      "store would not take, dropped)", ["reason"], registry=registry)
        self.review_export_aborted = Counter("bnn_review_export_aborted", "GET /review/export responses aborted "
                                             "because the store failed mid-stream", registry=registry)
        self.review_store_up = Gauge("bnn_review_store_up", "1 when the review store takes writes (every worker: "
                                     "min)", registry=registry, multiprocess_mode="min")

    def _shadow(self, registry: CollectorRegistry) -> None:
        """The shadow (``service/lifecycle/shadow.py``): the candidate's answers to a sample of live
        traffic, compared."""
        self.shadow_compared = Counter(
            "bnn_shadow_compared", "Live answers the shadow also answered, by version pair and whether the class "
            "and the refer decision agree", ["live_version", "shadow_version", "class_agree", "refer_agree"],
            registry=registry)
        self.shadow_reasons = Counter(
            "bnn_shadow_reasons", "On the shadowed images: each model's decision (accepted, uncertain, unfamiliar)",
            ["role", "model_version", "reason"], registry=registry)
        self.shadow_dropped = Counter("bnn_shadow_dropped", "Images drawn for the shadow but dropped: the worker's "
                                      "shadow backlog was full", registry=registry)

    def _label_values_at_zero(self) -> None:
        """Every label value a query divides by exists from the start (see the module docstring)."""
        for reason in REVIEW_REASONS:
            self.review_enqueued.labels(reason=reason)
            self.review_waiting.labels(reason=reason)
            for result in OUTCOMES:
                self.review_labels.labels(reason=reason, outcome=result)
        for cause in RETENTION_CAUSES:
            self.review_dropped.labels(cause=cause)
        for refusal in ("file_too_large", "source_share", "invalid", "store_refused"):
            self.review_refused.labels(reason=refusal)
        for digit in CLASSES:
            self.audits.labels(**{"class": digit})
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason=reason)

    def version_at_zero(self, model_version: str) -> None:
        """A version's answer series, at 0 from the moment it is loaded (live or shadow)."""
        for referred in ("true", "false"):
            for digit in CLASSES:
                for channel in CHANNELS:
                    self.predictions.labels(referred=referred, model_version=model_version, channel=channel,
                                            **{"class": digit})
        for refer_reason in REFER_REASONS:
            self.referrals.labels(reason=refer_reason, model_version=model_version)

    def record_prediction(self, digit: int, entropy: float, refer_reason: str | None, samples: int, audit: bool,
                          model_version: str, channel: str = "file") -> None:
        self.predictions.labels(referred="true" if refer_reason else "false", model_version=model_version,
                                channel=channel, **{"class": str(digit)}).inc()
        if refer_reason:
            self.referrals.labels(reason=refer_reason, model_version=model_version).inc()
        self.entropy.observe(entropy)
        self.samples.observe(samples)
        if audit:
            self.audits.labels(**{"class": str(digit)}).inc()

    def time_routes(self, templates: list[str]) -> None:
        """Create each route's latency and error series at 0, so a rate over them is defined from the start."""
        for template in templates:
            self.latency.labels(route=template)
            self.http_errors.labels(route=template, status="500")

    def observe_latency(self, template: str, seconds: float) -> None:
        self.latency.labels(route=template).observe(seconds)

    def publish_model(self, model_version: str, threshold: float, expected_referral_rate: float | None,
                      audit_fraction: float, accepted_error_targets: Mapping[Channel, float | None] | None = None,
                      precision: str = "float32", runtime: str = "pytorch") -> None:
        """The loaded model's facts, as gauges (an unknown expected rate, or a channel's unknown target, is NaN)."""
        targets = accepted_error_targets or {}
        for channel, gauge in self.accepted_error_targets.items():
            target = targets.get(channel)
            gauge.set(float("nan") if target is None else target)
        self.threshold.set(threshold)
        self.expected_referral_rate.set(float("nan") if expected_referral_rate is None else expected_referral_rate)
        self.audit_fraction.set(audit_fraction)
        self.model_info.labels(model_version=model_version, precision=precision, runtime=runtime).set(1)
        self.version_at_zero(model_version)

    def publish_accepted_errors(self, errors: Mapping[Channel, AcceptedError]) -> None:
        """Each channel's live accepted error, as its gauges."""
        for channel, error in errors.items():
            self.audited[channel].set(error)

    def record_shadow(self, live_version: str, shadow_version: str, class_agree: bool, refer_agree: bool,
                      live_reason: str, shadow_reason: str) -> None:
        self.shadow_compared.labels(live_version=live_version, shadow_version=shadow_version,
                                    class_agree=str(class_agree).lower(), refer_agree=str(refer_agree).lower()).inc()
        self.shadow_reasons.labels(role="live", model_version=live_version, reason=live_reason).inc()
        self.shadow_reasons.labels(role="shadow", model_version=shadow_version, reason=shadow_reason).inc()

    def retire_version(self, model_version: str, precision: str, runtime: str) -> None:
        """A version no longer live: its info gauge to 0 (its counters stay, for rates over past windows)."""
        self.model_info.labels(model_version=model_version, precision=precision, runtime=runtime).set(0)

    def record_rejection(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()

    def record_http_error(self, template: str, status: int = 500) -> None:
        self.http_errors.labels(route=template, status=str(status)).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type: this process's registry, or every worker's files
        added up when several workers share a multiprocess directory."""
        if multiprocess_dir() is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        combined = CollectorRegistry()
        MultiProcessCollector(combined)
        return generate_latest(combined), CONTENT_TYPE_LATEST
