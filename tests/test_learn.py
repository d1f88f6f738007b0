"""``python -m model.learn``: its bad input, and its shadow and promotion stages against a real two-worker
service (the whole loop on tiny data: ``test_fine_tune.py``'s flywheel test)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import candidates
from harness.inputs import SHIPPED, mnist_fixtures
from harness.server import running_service
from model import learn

ADMIN, REVIEWER = "learn-admin-token-0123456789", "learn-review-token-0123456789"
SHIPPED_VERSION = json.loads(SHIPPED.with_suffix(".json").read_text())["model_version"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def served(models: Path) -> Iterator[str]:
    env = {"BNN_MODELS_DIR": str(models), "BNN_ADMIN_TOKENS": f"owner:{ADMIN}", "BNN_REVIEW_TOKENS": f"r:{REVIEWER}",
           "BNN_REVIEW_DB": f"sqlite:///{models}/review.db", "BNN_WORKERS": "2", "BNN_SHADOW_FRACTION": "1"}
    with running_service(env, ready_timeout=120) as (url, _):
        yield url


class Traffic(threading.Thread):
    """Digits posted until stopped: what the shadow is compared on."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stopping, self.failed = url, threading.Event(), 0

    def run(self) -> None:
        digits = [path.read_bytes() for path, _ in mnist_fixtures()]
        with httpx.Client(base_url=self.url, timeout=30) as client:
            sent = 0
            while not self.stopping.is_set():
                response = client.post("/predict", content=digits[sent % len(digits)],
                                       headers={"Content-Type": "image/png"})
                self.failed += response.status_code != 200
                sent += 1


def test_without_tokens_or_with_a_wrong_one_it_stops_with_2_and_changes_nothing(served, capsys, monkeypatch):
    for name in ("BNN_URL", "BNN_REVIEW_TOKEN", "BNN_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as usage:
        learn.main(["--service", served, "--review-token", REVIEWER])
    assert usage.value.code == learn.BAD_INPUT
    assert learn.main(["--service", served, "--review-token", REVIEWER, "--admin-token", "not-an-admin"]) == 2
    assert "admin token was refused" in capsys.readouterr().err
    status, models = learn.Service(served, REVIEWER, ADMIN).admin("GET", "/models")
    assert status == 200 and models["models"]["live"]["model_version"] == SHIPPED_VERSION


def test_a_shadow_that_refers_what_the_live_model_reads_is_dropped_and_a_good_one_is_promoted_on_every_worker(
        served, models):
    service = learn.Service(served, REVIEWER, ADMIN)

    def refer_all(meta: dict[str, object]) -> None:
        for by_precision in meta["calibrations"]["validation"].values():  # type: ignore[index]  # every channel
            for record in by_precision.values():
                record["threshold"] = 0.0

    referring = candidates.variant(models / "refers.safetensors", "head-refers-all", edit_meta=refer_all)
    good = candidates.good(models)
    traffic = Traffic(served)
    traffic.start()
    try:
        refused = learn.Run()
        assert not learn.shadow(service, referring, 20, 60.0, 0.99, refused)
        assert refused.facts["shadow"]["compared"] >= 20 and refused.facts["shadow"]["shadow_referred"] == 1.0
        assert any("the candidate referred 100.00% of live traffic" in reason for reason in refused.reasons)
        assert service.admin("GET", "/models")[1]["models"]["shadow"] is None  # dropped again

        kept = learn.Run()
        assert learn.shadow(service, good, 20, 60.0, 0.99, kept), kept.reasons
        assert kept.facts["shadow"]["class_agreement_live_accepted"] == 1.0  # the same weights
        assert learn.promote(service, good, kept), kept.reasons
    finally:
        traffic.stopping.set()
        traffic.join()
    assert kept.facts["promoted"] == {"model_version": "head-candidate", "workers": ["head-candidate"]}
    workers = service.admin("GET", "/models")[1]["workers"]
    assert len(workers) == 2 and {worker["live"] for worker in workers} == {"head-candidate"}
    assert traffic.failed == 0
    learn.write_report(models, kept)
    report = json.loads((models / "learn-report.json").read_text())
    assert report["promoted"]["model_version"] == "head-candidate" and report["reasons"] == []


def test_a_stage_that_fails_stops_the_loop_with_1_its_log_named_and_the_live_model_untouched(served, models, tmp_path,
                                                                                             monkeypatch):
    def failing_fine_tune(command: list[str], log: Path) -> int:
        log.write_text("the fine-tune crashed\n")
        return 1

    monkeypatch.setattr(learn, "run_step", failing_fine_tune)
    before = learn.Service(served, REVIEWER, ADMIN).admin("GET", "/models")[1]["models"]["live"]["model_version"]
    out = tmp_path / "candidate"
    assert learn.main(["--service", served, "--review-token", REVIEWER, "--admin-token", ADMIN,
                       "--out", str(out)]) == learn.FAILED
    report = json.loads((out / "learn-report.json").read_text())
    assert list(report["seconds"]) == ["inspect", "export", "fine-tune"]
    assert report["reasons"] == [f"StageFailed: the fine-tune failed: {out / 'fine-tune.log'}"]
    assert (out / "review-labels.ndjson").exists() and (out / "learn-report.md").read_text().startswith(
        "# model.learn: stopped: a stage failed")
    after = learn.Service(served, REVIEWER, ADMIN).admin("GET", "/models")[1]["models"]
    assert after["live"]["model_version"] == before and after["shadow"] is None


def test_where_the_api_reaches_one_pod_of_several_a_candidate_the_rule_takes_is_left_for_the_canary(
        models, tmp_path, monkeypatch):
    """BNN_ONE_OF_SEVERAL_PODS (on by default in a Kubernetes pod): GET /admin/models says so, and once the rule
    says promote the command stops with 4 and the rollout step, neither shadowing nor promoting the one pod."""
    env = {"BNN_MODELS_DIR": str(models), "BNN_ADMIN_TOKENS": f"owner:{ADMIN}", "BNN_REVIEW_TOKENS": f"r:{REVIEWER}",
           "BNN_REVIEW_DB": f"sqlite:///{tmp_path}/review.db", "BNN_WORKERS": "1", "BNN_ONE_OF_SEVERAL_PODS": "true"}
    out = tmp_path / "candidate"

    def the_rule_says_promote(service, args, run, live, where):  # the stages before it are the flywheel test's
        candidates.variant(where / "bnn.safetensors", "head-ruled-in")
        return None

    monkeypatch.setattr(learn, "make_candidate", the_rule_says_promote)
    with running_service(env, ready_timeout=120) as (url, _):
        service = learn.Service(url, REVIEWER, ADMIN)
        assert service.admin("GET", "/models")[1]["pod"]["one_of_several"] is True
        assert learn.main(["--service", url, "--review-token", REVIEWER, "--admin-token", ADMIN,
                           "--out", str(out)]) == learn.CLUSTER
        after = service.admin("GET", "/models")[1]["models"]
    assert after["live"]["model_version"] == SHIPPED_VERSION and after["shadow"] is None
    report = json.loads((out / "learn-report.json").read_text())
    assert report["outcome"] == "the rule promotes the candidate, but this admin API reaches one pod of several"
    step = report["reasons"][0]
    assert "shadow" not in report["seconds"] and "kubectl apply -k deploy/kubernetes/kserve/canary" in step
    assert f"copy bnn.int8.onnx, bnn.json, bnn.safetensors from {out}" in step
