"""Every route of the app (predict, batch, v2, review, admin, pages, probes, metrics, static files),
driven with generated bodies, headers, query and path values (hypothesis; ``harness/route_fuzzing.py``):
never a 5xx, each answer within ``REQUEST_BUDGET_S`` and ``MEMORY_BUDGET_BYTES``.

A short run here (``EXAMPLES`` per route, about 20 s on two shared cores). The long run is a command:

    python -m tools.fuzz --routes --examples 2000
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from harness import candidates
from harness.inputs import mnist_fixtures
from harness.route_fuzzing import (
    API_KEY,
    REVIEWER_TOKEN,
    Known,
    check,
    fuzz_settings,
    requests_for,
    route_table,
    send,
)
from harness.server import wait_for
from service.app import create_app

EXAMPLES = 40
ROUTES = route_table(create_app(fuzz_settings(Path("/nonexistent")), registry=CollectorRegistry()))


@dataclass
class Fuzzed:
    client: TestClient
    known: Known


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """One app for every route, with a few review items and a good candidate to name."""
    directory = tmp_path_factory.mktemp("fuzz")
    good = candidates.good(directory / "models")
    app = create_app(fuzz_settings(directory), registry=CollectorRegistry())
    with TestClient(app, raise_server_exceptions=False) as client:
        reviewer = {"Authorization": f"Bearer {REVIEWER_TOKEN}"}
        wait_for(lambda: client.get("/review/stats", headers=reviewer).status_code == 200, 30, "the review store")
        answers = [client.post("/predict", content=path.read_bytes(),
                               headers={"Content-Type": "image/png", "X-API-Key": API_KEY}).json()
                   for path, _ in mnist_fixtures()[:3]]
        known = Known(answers[0]["model_version"], tuple(str(answer["review_id"]) for answer in answers),
                      (str(good), str(directory / "models")))
        yield Fuzzed(client, known)


def test_the_fuzz_covers_every_kind_of_route():
    templates = {template for _, template in ROUTES}
    assert {"/predict", "/predict/batch", "/v2/models/{model_name}/infer", "/review/items/{item_id}/label",
            "/review/export", "/admin/models/shadow", "/admin/models/promote", "/healthz", "/readyz", "/metrics",
            "/", "/docs", "/openapi.json", "/static/{path}"} <= templates
    assert ("DELETE", "/admin/models/shadow") in ROUTES and len(ROUTES) >= 34


@pytest.mark.parametrize(("method", "template"), ROUTES, ids=[f"{method} {path}" for method, path in ROUTES])
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_no_generated_request_gets_a_5xx_or_exceeds_its_budget(fuzzed: Fuzzed, method: str, template: str,
                                                                data: st.DataObject) -> None:
    request = data.draw(requests_for(method, template, fuzzed.known), label="request")
    check(request, send(fuzzed.client, request))
