"""Schemathesis against the running service's own OpenAPI schema: no 5xx, and every response's
status, content type, headers and body match what the schema documents.

Two of schemathesis' checks are left out, on purpose: `positive_data_acceptance` (an empty or
non-image file is schema-valid, since OpenAPI cannot say "a decodable digit image", and we
rightly answer 400) and `negative_data_rejection` (we ignore unknown query parameters and form
fields, as FastAPI does, rather than reject them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from harness.inputs import SHIPPED
from harness.server import running_service
from service.app import create_app
from service.settings import Settings
from tests.review_client import TOKEN, TOKENS

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_api_conforms_to_its_schema(tmp_path):
    """With a reviewer's token on every request, so that the review routes are fuzzed past their 401
    (the prediction routes ignore it), on a review store of its own."""
    env = {"BNN_REVIEW_TOKENS": TOKENS, "BNN_REVIEW_DB": f"sqlite:///{tmp_path}/review.db", "BNN_AUDIT_FRACTION": "0.5"}
    with running_service(env) as (url, process):
        result = subprocess.run(
            [str(SCHEMATHESIS), "run", url + "/openapi.json", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance,negative_data_rejection",
             "-H", f"Authorization: Bearer {TOKEN}",
             "--max-examples", "100", "--seed", "1", "--no-color"],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert result.returncode == 0, result.stdout[-4000:]
        assert " passed" in result.stdout and "failure" not in result.stdout.split("SUMMARY")[-1]
        assert process.poll() is None  # still alive


def test_schema_builds_without_a_loaded_model():
    app = create_app(Settings(model_path=SHIPPED), registry=CollectorRegistry())
    v2 = {"/v2", "/v2/health/live", "/v2/health/ready"} | {
        prefix + suffix for prefix in ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}")
        for suffix in ("", "/ready", "/infer")}
    review = {"/review/items/next", "/review/items/{item_id}", "/review/items/{item_id}/label",
              "/review/items/{item_id}/skip", "/review/items/{item_id}/file", "/review/items/{item_id}/input.png",
              "/review/stats", "/review/export"}
    assert set(app.openapi()["paths"]) == {"/healthz", "/readyz", "/predict", "/predict/batch"} | v2 | review


def test_the_schema_states_the_configured_samples_limit():
    app = create_app(Settings(model_path=SHIPPED, max_samples=321), registry=CollectorRegistry())
    for path in ("/predict", "/predict/batch"):
        (samples,) = [p for p in app.openapi()["paths"][path]["post"]["parameters"] if p["name"] == "samples"]
        integer = next(b for b in samples["schema"]["anyOf"] if b.get("type") == "integer")
        assert (integer["minimum"], integer["maximum"]) == (1, 321)
    assert app.openapi() is app.openapi()  # built once
