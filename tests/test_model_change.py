"""Shipping a model without a restart: the admin routes, the candidate checks, the shadow, and
promotion and rollback on every worker or none (service/lifecycle: held.py, control.py, shadow.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
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
from service.app import create_app
from service.lifecycle import admin as admin_command
from service.lifecycle.checks import load_verified
from service.lifecycle.control import ModelControl
from service.lifecycle.held import HeldModel, ModelSet
from service.settings import Settings
from tests.metrics_text import parse_samples, value

TOKEN = "admin-token-0123456789abcdef"
REVIEWER = "review-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DIGITS = mnist_fixtures()
SHIPPED_VERSION = json.loads(SHIPPED.with_suffix(".json").read_text())["model_version"]


def admin_settings(models: Path, **overrides: object) -> Settings:
    """An app with admins whose candidates load from ``models`` (the live model stays the shipped one)."""
    return Settings(model_path=SHIPPED, models_dir=models, admin_tokens=SecretStr(f"ops:{TOKEN}"),
                    review_tokens=SecretStr(f"ana:{REVIEWER}"), api_key=SecretStr("client-key-0123456789"),
                    audit_fraction=0.0, **overrides)


def predict(client: TestClient | httpx.Client, path: Path = DIGITS[0][0]) -> dict[str, object]:
    response = client.post("/predict", content=path.read_bytes(),
                           headers={"Content-Type": "image/png", "X-API-Key": "client-key-0123456789"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models directory (BNN_MODELS_DIR) of this module's apps: the candidates below live there."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def made(models: Path) -> dict[str, Path]:
    directory = models
    return {"good": candidates.good(directory), "truncated": candidates.truncated(directory),
            "wrong architecture": candidates.wrong_architecture(directory),
            "no record for the served precision": candidates.without_record(directory, expected_precision()),
            "a NaN weight": candidates.with_nan(directory), "fixtures misread": candidates.misreading(directory)}


@pytest.fixture
def client(tmp_path: Path, models: Path):
    app = create_app(admin_settings(models, review_db=f"sqlite:///{tmp_path}/review.db"), registry=CollectorRegistry())
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
                                             ("no record for the served precision", "calibration"),
                                             ("a NaN weight", "weights"), ("fixtures misread", "fixtures")])
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
        for by_precision in meta["calibrations"]["validation"].values():  # type: ignore[index]  # every channel
            for record in by_precision.values():
                record["threshold"] = 0.0

    referring = candidates.variant(tmp_path / "refers.safetensors", "head-refers-all", edit_meta=refer_all)
    app = create_app(admin_settings(tmp_path, review=False, shadow_fraction=1.0), registry=CollectorRegistry())
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


def test_a_restarted_worker_serves_the_committed_models(tmp_path, models, made):
    settings = admin_settings(models, review=False, control_dir=tmp_path / "control")
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert client.post("/admin/models/promote", json={"path": str(made["good"])}, headers=ADMIN).status_code == 200
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert predict(client)["model_version"] == "head-candidate"
        assert client.post("/admin/models/rollback", headers=ADMIN).json()["live"] == SHIPPED_VERSION


def test_one_worker_refusing_means_no_worker_swaps(tmp_path, models, made):
    """Two workers' controls on one directory; one runs int8, and the candidate has no int8 record."""
    settings = admin_settings(models, review=False)
    no_int8 = candidates.without_record(models, "int8")
    float32 = ModelSet(load_verified(SHIPPED, "float32", settings))
    int8 = ModelSet(load_verified(SHIPPED, "int8", settings))
    served: dict[int, ModelSet] = {}

    def worker(pid: int, models: ModelSet) -> ModelControl:
        served[pid] = models
        return ModelControl(tmp_path / "control", settings, lambda: served[pid],
                            lambda new: served.__setitem__(pid, new), pid=pid)

    async def scenario() -> tuple[str, list[str]]:
        first, second = worker(os.getpid(), float32), worker(os.getppid(), int8)
        await first.start()
        await second.start()
        try:
            with pytest.raises(Exception) as refused:
                await first.change("promote", str(no_int8))
            after = [served[pid].live.version for pid in served]
            promoted = await second.change("promote", str(made["good"]))
            return f"{type(refused.value).__name__}:{refused.value}", after + [w["live"] for w in promoted["workers"]]
        finally:
            await first.stop()
            await second.stop()

    refusal, versions = asyncio.run(scenario())
    assert refusal.startswith("ModelChangeRefused") and "int8" in refusal
    assert versions == [SHIPPED_VERSION, SHIPPED_VERSION, "head-candidate", "head-candidate"]


def test_two_workers_swap_under_load_with_no_failed_request(tmp_path, models, made, capsys):
    env = {"BNN_ADMIN_TOKENS": f"ops:{TOKEN}", "BNN_REVIEW_DB": f"sqlite:///{tmp_path}/review.db",
           "BNN_MODELS_DIR": str(models),
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
            for hostile in ("/dev/zero", str(models)):  # issue 42: no answer (read without end); 422 after 6 s
                assert admin_command.main(["shadow", hostile, "--url", url, "--token", TOKEN]) == 1
            stop.set()
            for loop in loops:
                loop.result()
        assert admin_command.main(["status", "--url", url, "--token", TOKEN]) == 0
    printed = capsys.readouterr().out
    assert "refused (weights)" in printed and "workers   2 at generation 4, 4" in printed
    assert "refused (path, models_dir): /dev/zero" in printed and "refused (path, regular_file)" in printed
    assert len(answers) > 20
    assert {status for status, _ in answers} == {200}
    assert {version for _, version in answers} <= {SHIPPED_VERSION, "head-candidate"}


def test_a_shadow_from_the_environment_is_verified_and_confined_at_start(models, made):
    misreading = create_app(Settings(model_path=SHIPPED, models_dir=models, review=False,
                                     shadow_checkpoint=made["fixtures misread"]), registry=CollectorRegistry())
    with pytest.raises(Exception, match=r"BNN_SHADOW_CHECKPOINT refused \(fixtures\)"), TestClient(misreading):
        pass
    elsewhere = create_app(Settings(model_path=SHIPPED, review=False, shadow_checkpoint=made["good"]),
                           registry=CollectorRegistry())  # the default models directory: checkpoints/
    with pytest.raises(Exception, match=r"BNN_SHADOW_CHECKPOINT refused \(path\): .*outside the models directory"), \
            TestClient(elsewhere):
        pass
    settings = Settings(model_path=SHIPPED, models_dir=models, review=False, shadow_checkpoint=made["good"])
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        held: HeldModel | None = client.app.state.inference.models.shadow  # type: ignore[attr-defined]
        assert held is not None and held.version == "head-candidate"
        assert predict(client)["model_version"] == SHIPPED_VERSION


def test_the_labelled_audits_judge_both_models_on_the_same_images(tmp_path):
    """Every audit is shadowed and its shadow answer stored; labels then give both accepted errors."""
    def refer_all(meta: dict[str, object]) -> None:
        for by_precision in meta["calibrations"]["validation"].values():  # type: ignore[index]  # every channel
            for record in by_precision.values():
                record["threshold"] = 0.0

    referring = candidates.variant(tmp_path / "refers.safetensors", "head-refers-all", edit_meta=refer_all)
    settings = admin_settings(tmp_path, review_db=f"sqlite:///{tmp_path}/review.db", shadow_fraction=0.0)
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


@pytest.fixture
def hostile(tmp_path: Path, models: Path, made: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """Paths an admin call may name, each with the rule that must refuse it (issue 42: /dev/zero hung the
    worker, a NUL byte gave 500, a directory 422 after 6 s, and any file on the machine could be named)."""
    outside = candidates.good(tmp_path / "outside", "head-outside")
    (models / "link.safetensors").unlink(missing_ok=True)
    (models / "link.safetensors").symlink_to(outside)  # a symlink out of the models directory
    (models / "link.json").unlink(missing_ok=True)
    (models / "link.json").symlink_to(outside.with_suffix(".json"))
    meta_out = candidates.good(models, "head-meta-out")  # weights inside, metadata a symlink out of it
    meta_out.with_suffix(".json").unlink()
    meta_out.with_suffix(".json").symlink_to(outside.with_suffix(".json"))
    (models / "dir.safetensors").mkdir(exist_ok=True)
    (models / "dir.json").write_text("{}")
    fifo = models / "fifo.safetensors"
    if not fifo.exists():
        os.mkfifo(fifo)  # opening it to read would block until a writer came
    fifo.with_suffix(".json").write_text("{}")
    return {"/dev/zero": ("/dev/zero", "models_dir"), "a NUL byte": ("a\u0000b", "nul"),
            "/etc/passwd": ("/etc/passwd", "models_dir"),
            "dot-dot": (f"{models}/../outside/head-outside.safetensors", "models_dir"),
            "symlink out": (str(models / "link.safetensors"), "models_dir"),
            "metadata symlinked out": (str(meta_out), "models_dir"),
            "a directory": (str(models / "dir.safetensors"), "regular_file"),
            "a FIFO": (str(fifo), "regular_file"), "missing": (str(models / "absent.safetensors"), "regular_file"),
            "the root": ("/", "models_dir"), "above the root": ("/..", "models_dir"),
            "the models directory": (str(models), "regular_file"), "empty": ("", "models_dir")}


def test_every_path_outside_the_rules_is_a_422_naming_its_rule_and_nothing_changes(client, hostile, made):
    for name, (path, rule) in hostile.items():
        for route in ("/admin/models/shadow", "/admin/models/promote"):
            response = client.post(route, json={"path": path}, headers=ADMIN)
            assert response.status_code == 422, (name, response.text)
            answer = response.json()
            assert (answer["check"], answer["rule"]) == ("path", rule), name
            assert answer["detail"].startswith(f"refused (path, {rule}): "), name
    held = client.get("/admin/models", headers=ADMIN).json()
    assert held["generation"] == 0 and held["models"]["shadow"] is None  # no proposal was ever made
    assert predict(client)["model_version"] == SHIPPED_VERSION
    # and nothing is wedged: a candidate inside the directory still goes through
    response = client.post("/admin/models/shadow", json={"path": str(made["good"])}, headers=ADMIN)
    assert response.status_code == 200 and response.json()["generation"] == 1


def test_the_size_cap_is_checked_before_reading_and_the_shipped_checkpoint_fits_the_default(tmp_path, models, made):
    assert SHIPPED.stat().st_size < Settings().max_checkpoint_bytes == 64 * 1024 * 1024  # 3.4 MiB of 64
    with TestClient(create_app(admin_settings(models, review=False, max_checkpoint_bytes=1024),
                               registry=CollectorRegistry())) as small:
        response = small.post("/admin/models/shadow", json={"path": str(made["good"])}, headers=ADMIN)
        assert response.status_code == 422
        assert (response.json()["check"], response.json()["rule"]) == ("path", "size")
        assert f"{made['good'].stat().st_size} bytes, over BNN_MAX_CHECKPOINT_BYTES=1024" in response.json()["reason"]
        live = small.post("/admin/models/promote", json={"path": str(SHIPPED)}, headers=ADMIN)
        assert live.status_code == 409 and "live already" in live.json()["detail"]  # the live checkpoint has no cap


def test_the_live_checkpoint_is_exempt_from_the_directory_rule_only(client):
    """BNN_MODEL_PATH is the operator's: naming it is no path refusal (here: it is live already)."""
    response = client.post("/admin/models/promote", json={"path": str(SHIPPED)}, headers=ADMIN)
    assert response.status_code == 409 and "live already" in response.json()["detail"]


def test_admin_bodies_that_cannot_be_read_are_4xx(client):
    for body in ('{"path": ' + "9" * 5000 + "}", '{"path": "x"', '{"path": ' + "[" * 2000 + "]" * 2000 + "}"):
        response = client.post("/admin/models/shadow", content=body,
                               headers={**ADMIN, "Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (body[:30], response.text)
        assert response.json()["detail"]
    too_long = client.post("/admin/models/shadow", json={"path": "a" * 5000}, headers=ADMIN)
    assert too_long.status_code == 422 and "4096" in too_long.text


def join_abandoned_checks() -> None:
    """Wait for the check threads a test abandoned (released by then): none may run on into exit."""
    for thread in threading.enumerate():
        if thread.name == "candidate-check":
            thread.join(30)


def two_workers(tmp_path: Path, models: Path, second_pid: int) -> tuple[dict[int, ModelSet], list[ModelControl]]:
    """Two workers' controls on one directory, each serving the shipped model; each has its own settings
    object, so a patched check can tell which worker runs it."""
    served: dict[int, ModelSet] = {}
    controls = []
    for pid in (os.getpid(), second_pid):
        settings = admin_settings(models, review=False)
        served[pid] = ModelSet(load_verified(SHIPPED, "float32", settings))
        controls.append(ModelControl(tmp_path / "control", settings, lambda pid=pid: served[pid],  # type: ignore[misc]
                                     lambda new, pid=pid: served.__setitem__(pid, new), pid=pid))
    return served, controls


def test_a_check_that_crashes_or_hangs_is_a_refusal_and_the_workers_take_the_next_change(tmp_path, models, made,
                                                                                        monkeypatch):
    from service.lifecycle import control as model_control

    release = threading.Event()
    real = model_control.load_verified

    def failing(path: Path, precision: str, settings: Settings) -> HeldModel:
        if path.name == "head-crash.safetensors":
            raise RuntimeError("the loader broke")
        if path.name == "head-hang.safetensors":
            release.wait(30)  # a check that never ends (released at the test's end)
            raise RuntimeError("released")
        return real(path, precision, settings)

    monkeypatch.setattr(model_control, "load_verified", failing)
    shipped_timeout = model_control.CHECK_TIMEOUT_S
    monkeypatch.setattr(model_control, "CHECK_TIMEOUT_S", 1.0)
    crash, hang = candidates.good(models, "head-crash"), candidates.good(models, "head-hang")
    served, controls = two_workers(tmp_path, models, os.getppid())

    async def scenario() -> list[tuple[str, str]]:
        for control in controls:
            await control.start()
        outcomes = []
        try:
            for path in (crash, hang):
                with pytest.raises(model_control.ModelChangeRefused) as refused:
                    await controls[0].change("promote", str(path))
                outcomes.append((refused.value.check, refused.value.reason))
            # a real load on two busy cores can take over the 1 s that made the hang quick to see
            monkeypatch.setattr(model_control, "CHECK_TIMEOUT_S", shipped_timeout)
            promoted = await controls[1].change("promote", str(made["good"]))  # neither worker is wedged
            outcomes.append(("promoted", ",".join(worker["live"] for worker in promoted["workers"])))
        finally:
            release.set()
            for control in controls:
                await control.stop()
        return outcomes

    (crash_check, crash_reason), (hang_check, hang_reason), promoted = asyncio.run(scenario())
    join_abandoned_checks()
    assert crash_check == "crash" and "RuntimeError: the loader broke" in crash_reason
    assert hang_check == "timeout" and "over 1 s" in hang_reason
    assert promoted == ("promoted", "head-candidate,head-candidate")
    assert {models.live.version for models in served.values()} == {"head-candidate"}


def test_a_worker_dying_in_a_check_aborts_the_change_and_its_replacement_never_reruns_it(tmp_path, models, made,
                                                                                         monkeypatch):
    """The worker checking a candidate dies (as if the candidate crashed it): the change is refused
    at once, nothing is swapped, and the worker started in its place (the supervisor's restart) does
    not check the pending candidate again, so a deadly candidate cannot start a restart loop."""
    from service.background import cancel
    from service.lifecycle import control as model_control

    deadly = candidates.good(models, "head-deadly")
    checking, release = threading.Event(), threading.Event()
    checked_by: list[int] = []
    real = model_control.load_verified
    doomed = subprocess.Popen(["sleep", "60"])  # the second worker's process, killed mid-check
    replacement = subprocess.Popen(["sleep", "60"])
    served, controls = two_workers(tmp_path, models, doomed.pid)
    pid_of = {id(control.settings): control.pid for control in controls}

    def deadly_check(path: Path, precision: str, settings: Settings) -> HeldModel:
        if path == deadly:
            checked_by.append(pid_of.get(id(settings), -1))
            if pid_of.get(id(settings)) == doomed.pid:
                checking.set()
                release.wait(30)
        return real(path, precision, settings)

    monkeypatch.setattr(model_control, "load_verified", deadly_check)

    async def scenario() -> tuple[str, str, list[str]]:
        first, second = controls
        for control in controls:
            await control.start()
        change = asyncio.get_running_loop().create_task(first.change("promote", str(deadly)))
        await asyncio.to_thread(checking.wait, 30)
        settings = admin_settings(models, review=False)
        pid_of[id(settings)] = replacement.pid
        served[replacement.pid] = served[first.pid]
        third = ModelControl(tmp_path / "control", settings, lambda: served[replacement.pid],
                             lambda new: served.__setitem__(replacement.pid, new), pid=replacement.pid)
        await third.start()  # the replacement, while the proposal is pending
        await cancel(second._task)  # the doomed worker dies mid-check: its poll stops, its process ends
        doomed.kill()
        doomed.wait()
        try:
            with pytest.raises(model_control.ModelChangeRefused) as refused:
                await change
            promoted = await third.change("promote", str(made["good"]))  # the survivors still change together
            return refused.value.check, refused.value.reason, [w["live"] for w in promoted["workers"]]
        finally:
            release.set()
            for control in (first, third):
                await control.stop()

    try:
        check, reason, live = asyncio.run(scenario())
    finally:
        join_abandoned_checks()
        replacement.kill()
        replacement.wait()
    assert check == "crash" and f"[{doomed.pid}] stopped while checking the candidate" in reason
    assert sorted(set(checked_by)) == sorted({os.getpid(), doomed.pid})  # never the replacement
    assert live == ["head-candidate", "head-candidate"]
    assert served[replacement.pid].live.version == "head-candidate"
