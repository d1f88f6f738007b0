"""What /metrics tells Prometheus: expected referral rate, audits, samples, series present from the start."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import CollectorRegistry

from harness.images import encode
from harness.inputs import SHIPPED, expected_precision, mnist_fixtures, shipped_calibration
from harness.server import post_image
from model.precision import KINDS
from service.app import create_app
from service.inference.audit import AuditSampler
from service.metrics import REJECTION_REASONS
from service.settings import Settings
from tests.metrics_text import parse_samples, total, value

SEVEN = mnist_fixtures()[0][0].read_bytes()
NOISE = encode(Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8)))
CALIBRATION = shipped_calibration()


def scrape(client: TestClient):
    return parse_samples(client.get("/metrics").text)


@pytest.fixture
def app_with(request):
    clients = []

    def build(auditor: AuditSampler | None = None, **settings) -> TestClient:
        app = create_app(Settings(model_path=SHIPPED, **settings), registry=CollectorRegistry(), auditor=auditor)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


def test_series_exist_at_zero_before_any_request(app_with):
    samples = scrape(app_with())
    for referred in ("true", "false"):
        for digit in range(10):
            assert value(samples, "bnn_predictions_total", referred=referred, **{"class": str(digit)}) == 0
    for reason in REJECTION_REASONS:
        assert value(samples, "bnn_rejected_requests_total", reason=reason) == 0
    assert value(samples, "bnn_audits_total", **{"class": "3"}) == 0
    assert value(samples, "bnn_audit_fraction") == 0.02  # the default
    for reason in ("uncertain", "unfamiliar"):
        assert value(samples, "bnn_referrals_total", reason=reason) == 0
    for route in ("/predict", "/predict/batch", "/healthz", "/readyz", "/metrics"):
        assert value(samples, "bnn_request_latency_seconds_count", route=route) == 0


def test_every_route_is_timed_by_its_template_and_unknown_paths_are_not(app_with):
    client = app_with()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/path").status_code == 404
    samples = scrape(client)  # the scrape itself is timed after its body is built
    assert value(samples, "bnn_request_latency_seconds_count", route="/healthz") == 3
    assert total(samples, "bnn_request_latency_seconds_count", route="/no/such/path") == 0


def test_expected_referral_rate_is_the_calibration_splits(app_with):
    samples = scrape(app_with())
    expected = 1 - CALIBRATION["validation_coverage"]
    assert value(samples, "bnn_expected_referral_rate") == pytest.approx(expected, abs=1e-12)
    assert 0 < expected < 0.05  # the shipped rule refers about 3 % of validation digit uploads
    assert value(samples, "bnn_referral_threshold_nats") == pytest.approx(CALIBRATION["threshold"])
    version = json.loads(SHIPPED.with_suffix(".json").read_text())["model_version"]
    assert value(samples, "bnn_model_info", model_version=version, precision=expected_precision(),
                 runtime=KINDS[expected_precision()].runtime) == 1


def test_an_overridden_threshold_has_no_expected_rate_unless_given(app_with):
    assert math.isnan(value(scrape(app_with(threshold=0.5)), "bnn_expected_referral_rate"))
    samples = scrape(app_with(threshold=0.5, expected_referral_rate=0.02))
    assert value(samples, "bnn_expected_referral_rate") == 0.02


def test_audit_marks_accepted_and_referred_answers_and_counts_them(app_with):
    client = app_with(audit_fraction=1.0)
    accepted = post_image(client, SEVEN).json()
    referred = post_image(client, NOISE).json()
    assert accepted["refer"] is False and accepted["audit"] is True
    assert referred["refer"] is True and referred["audit"] is True
    samples = scrape(client)
    assert value(samples, "bnn_audits_total", **{"class": "7"}) == 1
    assert total(samples, "bnn_audits_total") == 2
    assert value(samples, "bnn_audit_fraction") == 1.0


def test_audit_off_at_fraction_zero(app_with):
    client = app_with(audit_fraction=0.0)
    assert post_image(client, SEVEN).json()["audit"] is False
    assert total(scrape(client), "bnn_audits_total") == 0


def test_audit_fraction_in_a_batch(app_with):
    client = app_with(auditor=AuditSampler(0.5, random.Random(1)), audit_fraction=0.5)
    files = [("files", (f"{i}.png", SEVEN, "image/png")) for i in range(32)]
    answers = client.post("/predict/batch", files=files).json()
    marked = sum(answer["audit"] for answer in answers)
    assert 0 < marked < 32  # seeded: a real mix, not all or nothing
    assert value(scrape(client), "bnn_audits_total", **{"class": "7"}) == marked


def test_samples_per_image_histogram(app_with):
    client = app_with()
    post_image(client, SEVEN, samples=10)
    post_image(client, SEVEN)  # the calibration's N
    samples = scrape(client)
    assert value(samples, "bnn_samples_per_image_count") == 2
    assert value(samples, "bnn_samples_per_image_sum") == 10 + CALIBRATION["samples"]
    assert value(samples, "bnn_samples_per_image_bucket", le="10.0") == 1


def test_an_unexpected_exception_is_a_500_in_the_routes_shape_logged_and_counted(monkeypatch, caplog):
    """A bug anywhere (here: forced in a /v2 route and in /predict) answers 500 in the route's error
    shape, is counted by route template in bnn_http_errors_total (alert BnnServerErrors) and logged."""
    from service.routes import v2

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("forced for the test")

    app = create_app(Settings(model_path=SHIPPED, review=False), registry=CollectorRegistry())
    with TestClient(app, raise_server_exceptions=False) as client:
        before = scrape(client)
        for route in ("/predict", "/v2/models/{model_name}/infer", "/healthz"):
            assert value(before, "bnn_http_errors_total", route=route, status="500") == 0  # at 0 from the start
        monkeypatch.setattr(v2, "parse_infer_request", broken)
        body = {"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}]}
        with caplog.at_level("ERROR", logger="service"):
            for _ in range(2):
                response = client.post("/v2/models/bnn-digits/infer", json=body)
                assert response.status_code == 500
                assert response.json() == {"error": "internal error (logged and counted); please report it"}
            monkeypatch.setattr(client.app.state.inference, "answer_all", broken)
            response = post_image(client, SEVEN)
            assert response.status_code == 500 and set(response.json()) == {"detail"}
        samples = scrape(client)
        assert value(samples, "bnn_http_errors_total", route="/v2/models/{model_name}/infer", status="500") == 2
        assert value(samples, "bnn_http_errors_total", route="/predict", status="500") == 1
        assert total(samples, "bnn_http_errors_total") == 3
        logged = [record.getMessage() for record in caplog.records if record.name == "service"]
        assert logged.count("500 on POST /v2/models/{model_name}/infer: RuntimeError: forced for the test") == 2
        assert "500 on POST /predict: RuntimeError: forced for the test" in logged
