"""Prometheus metrics on an injected registry, so every app (and test) has its own.

The referral rate is
``rate(bnn_predictions_total{referred="true"}[5m]) / rate(bnn_predictions_total[5m])``.
One worker per process and per container (see README): counts are exact without
prometheus-client's multiprocess mode.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ENTROPY_BUCKETS = (1e-5, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 2.31)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.predictions = Counter("bnn_predictions", "Answered images, by refer decision and class",
                                   ["referred", "class"], registry=registry)
        self.entropy = Histogram("bnn_prediction_entropy_nats", "Predictive entropy of answered images (nats)",
                                 buckets=ENTROPY_BUCKETS, registry=registry)
        self.latency = Histogram("bnn_request_latency_seconds", "Request latency by route (seconds)", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.rejected = Counter("bnn_rejected_requests", "Rejected images or requests, by reason", ["reason"],
                                registry=registry)
        self.threshold = Gauge("bnn_referral_threshold_nats", "Entropy threshold in force", registry=registry)
        self.model_info = Gauge("bnn_model_info", "Loaded model (value 1)", ["model_version"], registry=registry)

    def record_prediction(self, digit: int, entropy: float, refer: bool) -> None:
        self.predictions.labels(referred="true" if refer else "false", **{"class": str(digit)}).inc()
        self.entropy.observe(entropy)

    def record_rejection(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()
