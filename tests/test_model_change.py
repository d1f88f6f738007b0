"""Shipping a model without a restart: the admin routes, the candidate checks, the shadow, and
promotion and rollback on every worker or none (service/models.py, model_control.py, shadow.py)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from harness import candidates
from harness.inputs import SHIPPED, expected_precision, mnist_fixtures
from harness.server import post_image, running_service, wait_for
from service import admin as admin_command
from service.app import create_app
from service.model_control import ModelControl
from service.models import HeldModel, ModelSet, load_verified
from service.settings import Settings
from tests.metrics_text import parse_samples, value

TOKEN = "admin-token-0123456789abcdef"
REVIEWER = "review-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DIGITS = mnist_fixtures()
SHIPPED_VERSION = json.loads(SHIPPED.with_suffix(".json").read_text())["model_version"]


def admin_settings(**overrides: object) -> Settings:
    return Settings(model_path=SHIPPED, admin_tokens=SecretStr(f"ops:{TOKEN}"), review_tokens=SecretStr(
        f"ana:{REVIEWER}"), api_key=SecretStr("client-key-0123456789"), audit_fraction=0.0, **overrides)


def predict(client: TestClient | httpx.Client, path: Path = DIGITS[0][0]) -> dict[str, object]:
    response = client.post("/predict", content=path.read_bytes(),
                           headers={"Content-Type": "image/png", "X-API-Key": "client-key-0123456789"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("candidates")
    return {"good": candidates.good(directory), "truncated": candidates.truncated(directory),
            "wrong architecture": candidates.wrong_architecture(directory),
            "no record for the served precision": candidates.without_record(directory, expected_precision()),
            "a NaN weight": candidates.with_nan(directory), "fixtures misread": candidates.misreading(directory)}


@pytest.fixture
def client(tmp_path: Path):
    app = create_app(admin_settings(review_db=f"sqlite:///{tmp_path}/review.db"), registry=CollectorRegistry())
    with TestClient(app) as test_client:
        yield test_client


def test_without_admin_tokens_the_admin_routes_do_not_exist():
    with TestClient(create_app(Settings(model_path=SHIPPED, review=False), registry=CollectorRegistry())) as client:
        for method, path in (("GET", "/admin/models"), ("POST", "/admin/models/promote"),
                             ("POST", "/admin/models/rollback"), ("POST", "/admin/models/shadow")):
            assert client.request(method, path, headers=ADMIN).status_code == 404


def test_only_an_admin_token_grants_the_admin_routes(client):
    assert client.get("/admin/models").status_code == 401
    for credentials in ({"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Bearer {REVIEWER}"},
                        {"X-API-Key": "client-key-0123456789"},
                        {"Authorization": "Bearer client-key-0123456789"}):
        response = client.post("/admin/models/rollback", headers=credentials)
        assert response.status_code == 401, credentials
        assert "admin token" in response.json()["detail"]
    assert client.get("/review/stats", headers=ADMIN).status_code == 401  # nor does an admin token grant review
    answer = client.get("/admin/models", headers=ADMIN).json()
    assert answer["models"]["live"]["model_version"] == SHIPPED_VERSION
    assert answer["models"]["live"]["calibration"]["source"] == "validation mix"
    assert [worker["live"] for worker in answer["workers"]] == [SHIPPED_VERSION]


def test_an_empty_admin_tokens_variable_means_no_admins(monkeypatch):
    monkeypatch.setenv("BNN_ADMIN_TOKENS", "")  # what docker-compose passes when it is unset
    assert Settings().admin_tokens is None


def test_an_admin_token_that_is_also_a_reviewers_is_refused():
    with pytest.raises(ValidationError, match="also a reviewer's"):
        Settings(admin_tokens=SecretStr(f"ops:{TOKEN}"), review_tokens=SecretStr(f"ana:{TOKEN}"))


@pytest.mark.parametrize(("kind", "check"), [("truncated", "file"), ("wrong architecture", "architecture"),
                                             ("no record for the served precision", "calibration"), ("a NaN weight", "weights"),
                                             ("fixtures misread", "fixtures")])
def test_each_broken_candidate_is_refused_with_its_reason_and_the_live_model_stays(client, made, kind, check):
    response = client.post("/admin/models/promote", json={"path": str(made[kind])}, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["check"] == check
    assert predict(client)["model_version"] == SHIPPED_VERSION
    assert client.get("/admin/models", headers=ADMIN).json()["models"]["previous"] is None


def test_promote_then_rollback_and_the_answers_and_metrics_name_each_version(client, made):
    assert client.post("/admin/models/rollback", headers=ADMIN).status_code == 409  # nothing before
    assert client.post("/admin/models/promote", headers=ADMIN).status_code == 409  # no shadow, no path
    again = client.post("/admin/models/promote", json={"path": str(SHIPPED)}, headers=ADMIN)
    assert again.status_code == 409 and "live already" in again.json()["detail"]
    promoted = client.post("/admin/models/promote", json={"path": str(made["good"])}, headers=ADMIN)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["live"] == "head-candidate"
    assert predict(client)["model_version"] == "head-candidate"
    samples = parse_samples(client.get("/metrics").text)
    assert value(samples, "bnn_predictions_total", model_version="head-candidate") == 1
    assert value(samples, "bnn_model_info", model_version=SHIPPED_VERSION) == 0
    assert value(samples, "bnn_model_info", model_version="head-candidate") == 1
    models = client.get("/admin/models", headers=ADMIN).json()["models"]
    assert models["previous"]["model_version"] == SHIPPED_VERSION  # kept loaded for a rollback
    rolled = client.post("/admin/models/rollback", headers=ADMIN)
    assert rolled.status_code == 200 and rolled.json()["live"] == SHIPPED_VERSION
    assert predict(client)["model_version"] == SHIPPED_VERSION
    samples = parse_samples(client.get("/metrics").text)
    assert value(samples, "bnn_predictions_total", model_version=SHIPPED_VERSION) == 1
    assert value(samples, "bnn_predictions_total", model_version="head-candidate") == 1


def test_shadow_answers_never_reach_the_client(tmp_path, made):
    """A shadow that refers everything (threshold 0), on every answer: clients still get the live answers."""
    def refer_all(meta: dict[str, object]) -> None:
        for key in ("calibrations", "drawn_calibrations"):  # every channel
            for record in meta[key].values():  # type: ignore[attr-defined]
                record["threshold"] = 0.0

    referring = candidates.variant(tmp_path / "refers.safetensors", "head-refers-all", edit_meta=refer_all)
    app = create_app(admin_settings(review=False, shadow_fraction=1.0), registry=CollectorRegistry())
    with TestClient(app) as client:
        assert client.post("/admin/models/shadow", json={"path": str(referring)}, headers=ADMIN).status_code == 200
        answers = [predict(client, path) for path, _ in DIGITS]
        assert {a["model_version"] for a in answers} == {SHIPPED_VERSION}
        assert sum(bool(a["refer"]) for a in answers) < len(answers) / 2
        shadow = client.app.state.inference.shadow  # type: ignore[attr-defined]
        wait_for(lambda: shadow.tallies["compared"] == len(answers), 10, "the shadow's passes")
        assert shadow.tallies["shadow_accepted"] == 0  # the shadow referred every one of them
        assert shadow.tallies["refer_agree"] == sum(bool(a["refer"]) for a in answers)
        samples = parse_samples(client.get("/metrics").text)
        assert value(samples, "bnn_shadow_compared_total", shadow_version="head-refers-all") == len(answers)
        assert value(samples, "bnn_predictions_total", model_version="head-refers-all") == 0
        # promoting the shadow makes its answers the client's
        assert client.post("/admin/models/promote", headers=ADMIN).json()["live"] == "head-refers-all"
        assert predict(client)["refer"] is True


def test_a_restarted_worker_serves_the_committed_models(tmp_path, made):
    settings = admin_settings(review=False, control_dir=tmp_path / "control")
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert client.post("/admin/models/promote", json={"path": str(made["good"])}, headers=ADMIN).status_code == 200
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert predict(client)["model_version"] == "head-candidate"
        assert client.post("/admin/models/rollback", headers=ADMIN).json()["live"] == SHIPPED_VERSION


def test_one_worker_refusing_means_no_worker_swaps(tmp_path, made):
    """Two workers' controls on one directory; one runs bfloat16, and the candidate has no bfloat16 record."""
    settings = admin_settings(review=False)
    no_bf16 = candidates.without_record(tmp_path, "bfloat16")
    float32 = ModelSet(load_verified(SHIPPED, "float32", settings))
    bfloat16 = ModelSet(load_verified(SHIPPED, "bfloat16", settings))
    served: dict[int, ModelSet] = {}

    def worker(pid: int, models: ModelSet) -> ModelControl:
        served[pid] = models
        return ModelControl(tmp_path / "control", settings, lambda: served[pid],
                            lambda new: served.__setitem__(pid, new), pid=pid)

    async def scenario() -> tuple[str, list[str]]:
        first, second = worker(os.getpid(), float32), worker(os.getppid(), bfloat16)
        await first.start()
        await second.start()
        try:
            with pytest.raises(Exception) as refused:
                await first.change("promote", str(no_bf16))
            after = [served[pid].live.version for pid in served]
            promoted = await second.change("promote", str(made["good"]))
            return f"{type(refused.value).__name__}:{refused.value}", after + [w["live"] for w in promoted["workers"]]
        finally:
            await first.stop()
            await second.stop()

    refusal, versions = asyncio.run(scenario())
    assert refusal.startswith("ModelChangeRefused") and "bfloat16" in refusal
    assert versions == [SHIPPED_VERSION, SHIPPED_VERSION, "head-candidate", "head-candidate"]


def test_two_workers_swap_under_load_with_no_failed_request(tmp_path, made, capsys):
    env = {"BNN_ADMIN_TOKENS": f"ops:{TOKEN}", "BNN_REVIEW_DB": f"sqlite:///{tmp_path}/review.db",
           "BNN_WORKERS": "2"}
    with running_service(env) as (url, _):
        def workers() -> list[dict[str, object]]:
            return admin_command.call(url, TOKEN, "GET", "/admin/models")[1]["workers"]

        wait_for(lambda: len(workers()) == 2, 60, "both workers registered")
        stop = threading.Event()
        answers: list[tuple[int, str | None]] = []

        def client_loop() -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                while not stop.is_set():
                    response = post_image(http, DIGITS[1][0].read_bytes())
                    answers.append((response.status_code, response.json().get("model_version")))

        with ThreadPoolExecutor(4) as pool:
            loops = [pool.submit(client_loop) for _ in range(4)]
            for index in range(4):
                action = ["promote", str(made["good"])] if index % 2 == 0 else ["rollback"]
                assert admin_command.main([*action, "--url", url, "--token", TOKEN]) == 0
                live = "head-candidate" if index % 2 == 0 else SHIPPED_VERSION
                assert [worker["live"] for worker in workers()] == [live, live]
            assert admin_command.main(["promote", str(made["a NaN weight"]), "--url", url, "--token", TOKEN]) == 1
            stop.set()
            for loop in loops:
                loop.result()
        assert admin_command.main(["status", "--url", url, "--token", TOKEN]) == 0
    printed = capsys.readouterr().out
    assert "refused (weights)" in printed and "workers   2 at generation 4, 4" in printed
    assert len(answers) > 20
    assert {status for status, _ in answers} == {200}
    assert {version for _, version in answers} <= {SHIPPED_VERSION, "head-candidate"}


def test_a_shadow_from_the_environment_is_verified_at_start(made):
    misreading = create_app(Settings(model_path=SHIPPED, review=False, shadow_checkpoint=made["fixtures misread"]),
                            registry=CollectorRegistry())
    with pytest.raises(Exception, match=r"BNN_SHADOW_CHECKPOINT refused \(fixtures\)"), TestClient(misreading):
        pass
    settings = Settings(model_path=SHIPPED, review=False, shadow_checkpoint=made["good"])
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        held: HeldModel | None = client.app.state.inference.models.shadow  # type: ignore[attr-defined]
        assert held is not None and held.version == "head-candidate"
        assert predict(client)["model_version"] == SHIPPED_VERSION


def test_the_labelled_audits_judge_both_models_on_the_same_images(tmp_path):
    """Every audit is shadowed and its shadow answer stored; labels then give both accepted errors."""
    def refer_all(meta: dict[str, object]) -> None:
        for key in ("calibrations", "drawn_calibrations"):  # every channel
            for record in meta[key].values():  # type: ignore[attr-defined]
                record["threshold"] = 0.0

    referring = candidates.variant(tmp_path / "refers.safetensors", "head-refers-all", edit_meta=refer_all)
    settings = admin_settings(review_db=f"sqlite:///{tmp_path}/review.db", shadow_fraction=0.0)
    app = create_app(settings.model_copy(update={"audit_fraction": 1.0}), registry=CollectorRegistry())
    reviewer = {"Authorization": f"Bearer {REVIEWER}"}
    with TestClient(app) as client:
        assert client.post("/admin/models/shadow", json={"path": str(referring)}, headers=ADMIN).status_code == 200
        answers = [predict(client, path) for path, _ in DIGITS[:10]]
        assert all(answer["audit"] for answer in answers)
        on_audits = lambda: client.get("/admin/models", headers=ADMIN).json()["shadow_on_audits"]  # noqa: E731
        wrong_label = {answers[0]["review_id"]: str((int(answers[0]["class"]) + 1) % 10)}  # one answer called wrong
        wait_for(lambda: (r := client.get("/review/stats", headers=reviewer)).status_code == 200
                 and r.json()["stored_items"] == 10, 10, "ten stored items")
        labelled = 0
        while (item := client.get("/review/items/next", headers=reviewer)).status_code == 200:
            body = item.json()
            label = wrong_label.get(body["id"], str(body["answer"]["class"]))
            assert client.post(f"/review/items/{body['id']}/label", json={"label": label},
                               headers=reviewer).status_code == 200
            labelled += 1
        assert labelled == 10
        found = wait_for(lambda: (o := on_audits()) and o["labelled_audits"] == 10 and o, 10, "the shadow's answers")
        accepted = sum(not answer["refer"] for answer in answers)
        assert found["live"]["audited"] == accepted and found["live"]["wrong"] == (not answers[0]["refer"])
        assert found["shadow"]["audited"] == 0  # it referred every one: nothing it accepted was wrong
        export = client.get("/review/export", headers=reviewer).text.splitlines()
        assert {json.loads(line)["shadow"]["model_version"] for line in export} == {"head-refers-all"}
