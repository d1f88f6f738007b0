"""The review API in process, on SQLite: the contract (next, label, skip, images, stats, export),
access (reviewer tokens, never the client API key), review_id in the answers (REST and OIP), the
live accepted-error gauges against a hand count, a store that is down at start, a full buffer."""

from __future__ import annotations

import base64
import io
import json
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from harness.inputs import digit_pngs, noise_png
from harness.server import wait_for
from model.reviewed import parse_export
from service.app import create_app
from service.deps import LAST_SECOND, since_seconds
from service.settings import Settings
from tests.metrics_text import parse_samples, value
from tests.review_client import OTHER_TOKEN, TOKEN, TOKENS, bearer


def review_settings(tmp_path: Path, **overrides: object) -> Settings:
    """No audit draw unless a test asks for one: at the default 2 % a referred answer is now and then
    queued as an audit instead, and a count of referred items would fail about one run in thirteen."""
    values: dict[str, object] = {"review_db": f"sqlite:///{tmp_path}/review.db", "review_tokens": SecretStr(TOKENS),
                                 "audit_fraction": 0.0, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(review_settings(tmp_path, audit_fraction=1.0))) as test_client:
        yield test_client


def predict(client: TestClient, data: bytes, **headers: str) -> dict:
    response = client.post("/predict", content=data, headers={"content-type": "image/png", **headers})
    assert response.status_code == 200, response.text
    return response.json()


def stored(client: TestClient, count: int) -> dict:
    """The stats once ``count`` items are in the store (the store is prepared, and written, in the background)."""
    def check() -> dict | None:
        response = client.get("/review/stats", headers=bearer())
        return response.json() if response.status_code == 200 and response.json()["stored_items"] >= count else None

    return wait_for(check, what=f"{count} stored items")


def metric(client: TestClient, name: str, **labels: str) -> float:
    return value(parse_samples(client.get("/metrics").text), name, **labels)


def test_every_answer_may_be_audited_and_a_referred_audit_is_marked_as_both(client: TestClient) -> None:
    """At fraction 1 every answer is an audit: the referred ones too, queued once, as audits marked
    referred, each with the fraction it was drawn with, and claimed oldest first."""
    noise = [predict(client, noise_png(seed)) for seed in range(3)]
    digits = [predict(client, data) for data, _ in digit_pngs()[:2]]
    assert all(answer["refer"] and answer["audit"] and answer["review_id"] for answer in noise)
    assert all(not answer["refer"] and answer["audit"] and answer["review_id"] for answer in digits)
    stats = stored(client, 5)
    assert stats["waiting"] == {"referred": 0, "audit": 5}
    claimed = []
    while (response := client.get("/review/items/next", headers=bearer())).status_code == 200:
        claimed.append(response.json())
    assert response.status_code == 204 and response.content == b""
    assert [item["id"] for item in claimed] == [a["review_id"] for a in noise + digits]  # oldest first
    assert [(item["reason"], item["refer"], item["audit_fraction"]) for item in claimed] == \
        [("audit", True, 1.0)] * 3 + [("audit", False, 1.0)] * 2
    item = claimed[0]
    assert item["claimed_by"] == "ana" and item["lease_expires"] is not None
    assert item["answer"] == noise[0]  # the full answer as the client got it


def test_referred_answers_not_audited_are_claimed_most_doubtful_first(tmp_path: Path) -> None:
    with TestClient(create_app(review_settings(tmp_path))) as client:
        noise = [predict(client, noise_png(seed)) for seed in range(3)]
        digit = predict(client, digit_pngs()[0][0])
        assert digit["review_id"] is None and not digit["audit"]  # accepted, not drawn: not queued
        assert stored(client, 3)["waiting"] == {"referred": 3, "audit": 0}
        claimed = [client.get("/review/items/next", headers=bearer()).json() for _ in noise]
    assert [(item["reason"], item["refer"], item["audit_fraction"]) for item in claimed] \
        == [("referred", True, None)] * 3
    assert [item["answer"]["entropy"] for item in claimed] == sorted((a["entropy"] for a in noise), reverse=True)


def test_label_conflicts_unknown_items_and_bad_labels(client: TestClient) -> None:
    predict(client, noise_png(1))
    stored(client, 1)
    item = client.get("/review/items/next", headers=bearer()).json()
    url = f"/review/items/{item['id']}/label"
    held = client.post(url, json={"label": 4}, headers=bearer(OTHER_TOKEN))
    assert held.status_code == 409 and "claimed by ana" in held.json()["detail"]
    for bad in (10, -1, "seven", True, None, 3.5):
        assert client.post(url, json={"label": bad}, headers=bearer()).status_code == 422, bad
    done = client.post(url, json={"label": "not_a_digit"}, headers=bearer())
    assert done.status_code == 200 and done.json()["label"] == "not_a_digit" and done.json()["labelled_by"] == "ana"
    again = client.post(url, json={"label": 3}, headers=bearer(OTHER_TOKEN))
    assert again.status_code == 409 and again.json()["detail"] == "already labelled 'not_a_digit' by ana"
    assert client.post("/review/items/feed/label", json={"label": 3}, headers=bearer()).status_code == 404
    assert client.get("/review/items/feed", headers=bearer()).status_code == 404


def test_images_as_uploaded_and_as_seen(client: TestClient) -> None:
    data = noise_png(2)
    answer = predict(client, data)
    stored(client, 1)
    item = client.get(f"/review/items/{answer['review_id']}", headers=bearer()).json()
    file = client.get(item["links"]["file"], headers=bearer())
    # the service's re-encoding of the decoded upload (never the client's bytes): the same pixels
    assert file.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(file.content)).convert("RGBA")),
                          np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")))
    assert file.headers["x-content-type-options"] == "nosniff"
    seen = client.get(item["links"]["input"], headers=bearer())
    assert seen.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(seen.content)).size == (28, 28)


def test_an_array_sent_through_oip_has_no_file_and_a_review_id(client: TestClient) -> None:
    body = {"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28],
                        "data": np.random.default_rng(0).integers(0, 256, 784).tolist()}]}
    response = client.post("/v2/models/bnn-digits/infer", json=body)
    outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
    review_id = outputs["review_id"][0]
    assert outputs["refer"] == [True] and len(review_id) == 32
    stored(client, 1)
    item = client.get(f"/review/items/{review_id}", headers=bearer()).json()
    assert item["links"]["file"] is None
    assert client.get(f"/review/items/{review_id}/file", headers=bearer()).status_code == 404


def test_access_needs_a_reviewer_token_and_nothing_else_grants_it(tmp_path: Path) -> None:
    settings = review_settings(tmp_path, api_key=SecretStr("client-key-0123456789"))
    with TestClient(create_app(settings)) as client:
        routes = ["/review/items/next", "/review/stats", "/review/export", "/review/items/x", "/review/items/x/file",
                  "/review/items/x/input.png"]
        for route in routes:
            for headers in ({}, {"X-API-Key": "client-key-0123456789"},
                            {"Authorization": "Bearer client-key-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": "Bearer wrong-token-0123456789"}):
                response = client.get(route, headers=headers)
                assert response.status_code == 401, (route, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        # a review token is not a client key
        refused = client.post("/predict", content=noise_png(0), headers={"content-type": "image/png", **bearer()})
        assert refused.status_code == 401
        assert client.get("/review").status_code == 200  # the page itself holds nothing: it asks for the token


@pytest.fixture
def gauged(tmp_path: Path) -> Iterator[TestClient]:
    """Every answer audited, and the gauges read from the store every 50 ms (15 s by default)."""
    with TestClient(create_app(review_settings(tmp_path, audit_fraction=1.0, review_stats_interval_s=0.05))) as client:
        yield client


def test_stats_and_gauges_follow_the_labels_against_a_hand_count(gauged: TestClient) -> None:
    client = gauged
    digits = digit_pngs()[:4]
    answers = [predict(client, data) for data, _ in digits]  # every answer is audited (fraction 1)
    referred = [predict(client, noise_png(seed)) for seed in range(2)]  # audits too, but referred: not in the error
    drawing = client.post("/predict?channel=drawn", content=digits[0][0], headers={"content-type": "image/png"}).json()
    assert drawing["channel"] == "drawn" and not drawing["refer"]  # an accepted drawing: another promise
    stored(client, 7)
    item = client.get(f"/review/items/{drawing['review_id']}", headers=bearer()).json()
    assert item["answer"]["channel"] == "drawn"
    assert client.post(f"/review/items/{drawing['review_id']}/label", json={"label": "not_a_digit"},
                       headers=bearer(OTHER_TOKEN)).status_code == 200
    truth = [label for _, label in digits]
    assert [a["class"] for a in answers] == truth
    # reviewers: two right, one wrong digit, one 'not a digit' (also wrong), the noise not a digit and unreadable
    labels = [truth[0], truth[1], (truth[2] + 1) % 10, "not_a_digit"]
    for answer, label in zip(answers, labels, strict=True):
        assert client.post(f"/review/items/{answer['review_id']}/label", json={"label": label},
                           headers=bearer()).status_code == 200
    client.post(f"/review/items/{referred[0]['review_id']}/label", json={"label": "not_a_digit"}, headers=bearer())
    client.post(f"/review/items/{referred[1]['review_id']}/label", json={"label": "unreadable"},
                headers=bearer(OTHER_TOKEN))
    stats = client.get("/review/stats", headers=bearer()).json()
    error = stats["accepted_error"]
    assert (error["audited"], error["wrong"], error["ratio"], error["drawn"]) == (4, 2, 0.5, 1)  # files only
    from scipy.stats import beta
    lower, upper = beta.ppf(0.025, 2, 3), beta.ppf(0.975, 3, 2)
    assert error["lower"] == pytest.approx(lower, abs=1e-9) and error["upper"] == pytest.approx(upper, abs=1e-9)
    assert error["target"] == 0.002
    assert stats["referrals"]["unfamiliar"] == {"right": 0, "wrong": 0, "not_a_digit": 1, "unreadable": 1}
    assert stats["done_today"] == {"ana": 5, "ben": 2}
    assert stats["agreement"] == pytest.approx(2 / 6)
    # the gauges follow in the background: once they count every label, each value is from after the last one
    wait_for(lambda: metric(client, "bnn_audited_accepted_labels") == 4
             and metric(client, "bnn_drawn_audited_accepted_labels") == 1, what="the gauges refreshed")
    assert metric(client, "bnn_audited_accepted_error_ratio") == 0.5
    assert metric(client, "bnn_audited_accepted_error_ratio_lower") == pytest.approx(lower, abs=1e-9)
    assert metric(client, "bnn_audited_accepted_error_ratio_upper") == pytest.approx(upper, abs=1e-9)
    assert metric(client, "bnn_audited_accepted_labels") == 4
    assert metric(client, "bnn_accepted_error_target") == 0.002
    # the drawing labelled not_a_digit was accepted: the drawn channel's own estimate, 1 wrong of 1, against 0.4 %
    drawn = stats["drawn_accepted_error"]
    assert (drawn["audited"], drawn["wrong"], drawn["ratio"], drawn["drawn"], drawn["target"]) == (1, 1, 1.0, 0, 0.004)
    assert drawn["lower"] == pytest.approx(0.025, abs=1e-9) and drawn["upper"] == 1.0  # Clopper-Pearson at 1 of 1
    assert metric(client, "bnn_drawn_audited_accepted_error_ratio") == 1.0
    assert metric(client, "bnn_drawn_audited_accepted_error_ratio_lower") == pytest.approx(0.025, abs=1e-9)
    assert metric(client, "bnn_drawn_audited_accepted_labels") == 1
    assert metric(client, "bnn_drawn_accepted_error_target") == 0.004
    assert metric(client, "bnn_review_labels_total", reason="audit", outcome="wrong") == 1
    assert metric(client, "bnn_review_labels_total", reason="audit", outcome="not_a_digit") == 3  # referred, drawn
    assert metric(client, "bnn_review_enqueued_total", reason="audit") == 7
    assert metric(client, "bnn_review_waiting", reason="referred") == 0


def test_a_scrape_of_metrics_never_queries_the_store(tmp_path: Path) -> None:
    """Before: every scrape of the open /metrics ran the stats aggregate (on SQLite under the write lock): 20
    scrapes, 20 aggregates. Now the gauges are read every BNN_REVIEW_STATS_INTERVAL_S (15 s) in the
    background: after a read, 20 scrapes run no aggregate (the writer's own statements may run meanwhile)."""
    from sqlalchemy import event

    app = create_app(review_settings(tmp_path))
    statements: list[str] = []
    with TestClient(app) as client:
        event.listen(app.state.reviews.store.engine.sync_engine, "before_cursor_execute",
                     lambda *args: statements.append(args[2]))
        predict(client, noise_png(0))
        wait_for(lambda: metric(client, "bnn_review_enqueued_total", reason="referred") == 1, what="the item written")
        assert metric(client, "bnn_review_waiting", reason="referred") == 0  # read at start: not yet refreshed
        client.portal.call(app.state.reviews.publish_stats)  # what the background task runs every 15 s
        before = len(statements)
        for _ in range(20):
            assert metric(client, "bnn_review_waiting", reason="referred") == 1
        assert [statement for statement in statements[before:] if "GROUP BY" in statement] == []
        assert any("GROUP BY" in statement for statement in statements[:before])  # the listener sees a read


def test_export_is_ndjson_of_the_labelled_items_since(client: TestClient) -> None:
    answers = [predict(client, noise_png(seed)) for seed in range(3)]
    drawing = client.post("/predict?channel=drawn", content=noise_png(9), headers={"content-type": "image/png"}).json()
    stored(client, 4)
    for answer in [*answers[:2], drawing]:
        client.post(f"/review/items/{answer['review_id']}/label", json={"label": "unreadable"}, headers=bearer())
    response = client.get("/review/export", headers=bearer())
    assert response.headers["content-type"] == "application/x-ndjson"
    records = [json.loads(line) for line in response.text.splitlines()]
    assert sorted(r["id"] for r in records) == sorted(a["review_id"] for a in [*answers[:2], drawing])
    # each record names its channel: what model.calibrate --reviewed fits each channel's rule on
    assert {r["id"]: r["channel"] for r in records} == {**{a["review_id"]: "file" for a in answers[:2]},
                                                       drawing["review_id"]: "drawn"}
    assert parse_export(response.content, "export").channels.count("drawn") == 1
    assert len(base64.b64decode(records[0]["input"])) == 784 and base64.b64decode(records[0]["file"])[:4] == b"\x89PNG"
    later = client.get("/review/export", params={"since": records[-1]["labelled_at"] + 1}, headers=bearer())
    assert later.status_code == 200 and later.text == ""
    assert client.get("/review/export", params={"since": "yesterday"}, headers=bearer()).status_code == 422
    year_one = client.get("/review/export", params={"since": "0001-01-01T00:00:00"}, headers=bearer())
    assert year_one.status_code == 422 and year_one.json()["detail"].startswith("query.since: the date is out of range")
    first = records[0]["labelled_at"]
    as_iso = datetime.fromtimestamp(math.floor(first), UTC).replace(tzinfo=None).isoformat()  # read as UTC
    exports = [client.get("/review/export", params={"since": since}, headers=bearer())
               for since in (first, as_iso, "1970-01-01T00:00:00", 253_402_300_799)]
    assert [(export.status_code, len(export.text.splitlines())) for export in exports] == [(200, 3)] * 3 + [(200, 0)]
    # Unix seconds stay seconds however large (never read as milliseconds: the year 10000 is not 1978)
    for since, reason in [("253402300800", "out of range"), ("1e12", "out of range"), ("-1", "out of range"),
                          ("nan", "ISO 8601 date or Unix seconds"), ("inf", "ISO 8601 date or Unix seconds")]:
        refused = client.get("/review/export", params={"since": since}, headers=bearer())
        assert refused.status_code == 422 and reason in refused.json()["detail"], since


def test_a_store_down_at_start_never_fails_a_prediction(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the store's directory should be")
    settings = review_settings(tmp_path, review_db=f"sqlite:///{tmp_path}/not-a-dir/sub/review.db", review_buffer=2,
                               review_source_share=1.0)  # one client: the whole buffer is its share
    with TestClient(create_app(settings)) as client:
        answers = [predict(client, noise_png(seed)) for seed in range(3)]
        assert [answer["refer"] for answer in answers] == [True] * 3
        assert [bool(answer["review_id"]) for answer in answers] == [True, True, False]  # the buffer holds 2
        down = client.get("/review/items/next", headers=bearer())
        assert down.status_code == 503 and "review store unavailable" in down.json()["detail"]
        assert metric(client, "bnn_review_enqueue_failures_total") == 1
        assert metric(client, "bnn_review_store_up") == 0


def test_the_review_queue_can_be_turned_off(tmp_path: Path) -> None:
    with TestClient(create_app(review_settings(tmp_path, review=False))) as client:
        answer = predict(client, noise_png(0))
        assert answer["refer"] and answer["review_id"] is None
        off = client.get("/review/stats", headers=bearer())
        assert off.status_code == 503 and "BNN_REVIEW=false" in off.json()["detail"]


def test_the_queue_at_its_cap_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    app = create_app(review_settings(tmp_path, review_max_items=2, review_source_share=1.0))  # one client: no share
    with TestClient(app) as client:
        answers = [predict(client, noise_png(seed)) for seed in range(4)]
        wait_for(lambda: metric(client, "bnn_review_enqueued_total", reason="referred") == 4, what="4 items written")
        client.portal.call(app.state.reviews.enforce_retention)  # what the writer task runs every minute
        stats = client.get("/review/stats", headers=bearer()).json()
        assert stats["stored_items"] == 2
        assert metric(client, "bnn_review_dropped_total", cause="rows") == 2
        for gone in answers[:2]:
            assert client.get(f"/review/items/{gone['review_id']}", headers=bearer()).status_code == 404
        for kept in answers[2:]:
            assert client.get(f"/review/items/{kept['review_id']}", headers=bearer()).status_code == 200


@pytest.mark.parametrize(("key", "value", "message"), [
    ("review_tokens", "ana", "entry 1: expected name:token"),
    ("review_tokens", "ana:short", "at least 16 characters"),
    ("review_tokens", f"ana:{TOKEN},ana:{OTHER_TOKEN}", "appears twice"),
    ("review_db", "mysql://localhost/reviews", "'mysql' is not supported"),
])
def test_review_settings_are_checked_at_start(key: str, value: str, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        Settings(**{key: value})  # type: ignore[arg-type]


def test_an_empty_token_setting_means_unset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: the generated token was logged at WARNING with the page's address (into container logs).
    Now it is written beside the store, readable by its owner alone; the log names the file and 4 characters."""
    settings = Settings(review_tokens="", review_db=f"sqlite:///{tmp_path}/r.db")  # type: ignore[arg-type]
    assert settings.review_tokens is None
    with caplog.at_level("WARNING", logger="service"):
        app = create_app(settings)
    (name, token), = app.state.reviewers.tokens
    assert name == "reviewer" and len(token) >= 16
    assert token not in caplog.text and token[4:12] not in caplog.text
    path = tmp_path / "review-token"
    assert path.read_text() == token + "\n" and path.stat().st_mode & 0o777 == 0o600
    assert "http://127.0.0.1:8000/review (reviewer 'reviewer'" in caplog.text
    assert f"{token[:4]}..., is in {path}" in caplog.text


def test_the_address_with_the_token_goes_to_a_terminal_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from service.review.access import Reviewers, show_review_address

    reviewers = Reviewers.generated()
    token = reviewers.tokens[0][1]
    (tmp_path / "review-token").write_text("an earlier start's token\n")
    (tmp_path / "review-token").chmod(0o644)
    with caplog.at_level("WARNING", logger="service"):
        show_review_address("0.0.0.0", 8123, reviewers, tmp_path, terminal=False)
        assert capsys.readouterr().err == ""
        show_review_address("0.0.0.0", 8123, reviewers, tmp_path, terminal=True)
        assert capsys.readouterr().err == f"review page: http://127.0.0.1:8123/review#token={token}\n"
    assert token not in caplog.text
    assert (tmp_path / "review-token").read_text() == token + "\n"
    assert (tmp_path / "review-token").stat().st_mode & 0o777 == 0o600  # an old file's wider mode is narrowed
    (tmp_path / "blocked").write_text("a file where the directory should be")
    elsewhere = show_review_address("127.0.0.1", 8123, reviewers, tmp_path / "blocked", terminal=False)
    assert elsewhere.read_text() == token + "\n" and elsewhere.stat().st_mode & 0o777 == 0o600
    elsewhere.unlink()


def test_a_reviewer_who_vanishes_gives_the_item_back_when_the_lease_ends(tmp_path: Path) -> None:
    with TestClient(create_app(review_settings(tmp_path, review_lease_s=1.0))) as client:
        answer = predict(client, noise_png(5))
        stored(client, 1)
        held = client.get("/review/items/next", headers=bearer())  # ana claims it, then closes the tab
        assert held.json()["id"] == answer["review_id"]
        assert client.get("/review/items/next", headers=bearer(OTHER_TOKEN)).status_code == 204  # held: not ben's
        back = wait_for(lambda: (r := client.get("/review/items/next", headers=bearer(OTHER_TOKEN))).status_code == 200
                        and r.json(), timeout_s=10, what="the lease to end")
        assert back["id"] == answer["review_id"] and back["claimed_by"] == "ben"
        assert client.post(f"/review/items/{back['id']}/label", json={"label": "not_a_digit"},
                           headers=bearer(OTHER_TOKEN)).status_code == 200


def label_two_then_lower_the_row_cap(app: FastAPI, client: TestClient) -> list[dict]:
    """Three referred items, the oldest two labelled, then a row cap of 1: retention drops the unlabelled one
    first, then the older label (the labelled alone exceed the cap), and that one only into the export. The
    cap is lowered only after the labels, so no pass drops anything first."""
    answers = [predict(client, noise_png(seed)) for seed in range(3)]
    stored(client, 3)
    for answer in answers[:2]:
        labelled = client.post(f"/review/items/{answer['review_id']}/label", json={"label": "unreadable"},
                               headers=bearer())
        assert labelled.status_code == 200
    app.state.reviews.retention = replace(app.state.reviews.retention, max_items=1)
    return answers


@pytest.mark.parametrize("export_dir", ["set", "default"])
def test_retention_exports_the_labelled_items_it_drops(tmp_path: Path, store_url: str, export_dir: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: with BNN_REVIEW_EXPORT_DIR unset (the default) a label dropped by retention was gone. Now it
    goes to review-export beside the SQLite store (data/review-export for PostgreSQL) unless the setting
    names another directory."""
    model = Settings().model_path.resolve()
    monkeypatch.chdir(tmp_path)  # PostgreSQL's default export directory is data/review-export, here
    overrides: dict[str, object] = {"review_export_dir": tmp_path / "exports"} if export_dir == "set" else {}
    overrides["model_path"] = model
    settings = review_settings(tmp_path, review_db=store_url, review_retention_interval_s=0.05, **overrides)
    expected = tmp_path / "exports" if export_dir == "set" else (
        tmp_path / "review-export" if store_url.startswith("sqlite") else tmp_path / "data" / "review-export")
    app = create_app(settings)
    with TestClient(app) as client:
        assert app.state.reviews.export_dir.resolve() == expected
        answers = label_two_then_lower_the_row_cap(app, client)
        wait_for(lambda: metric(client, "bnn_review_dropped_total", cause="rows") == 2, what="two items dropped")
        stats = client.get("/review/stats", headers=bearer()).json()
        assert stats["stored_items"] == 1 and stats["labelled"]["referred"] == {"unreadable": 1}
        assert metric(client, "bnn_review_store_errors_total", operation="export") == 0
        kept = [json.loads(line) for line in client.get("/review/export", headers=bearer()).text.splitlines()]
    records = [json.loads(line) for path in expected.glob("review-*.ndjson") for line in path.read_text().splitlines()]
    assert [record["id"] for record in records] == [answers[0]["review_id"]]  # the unlabelled one is not exported
    assert [record["id"] for record in kept] == [answers[1]["review_id"]]  # every label: in the store or the file
    assert all(record["label"] == "unreadable" and len(base64.b64decode(record["input"])) == 784
               for record in records)


def test_a_failing_export_is_counted_and_leaves_the_queue_available(tmp_path: Path, store_url: str) -> None:
    """The export directory is a file: every pass that must export a label fails (counted under "export",
    the labels kept, retried each interval) while the unlabelled item is still dropped, stats and new items
    go on, and bnn_review_store_up stays 1."""
    (tmp_path / "exports").write_text("a file where the export directory should be")
    settings = review_settings(tmp_path, review_db=store_url, review_export_dir=tmp_path / "exports" / "sub",
                               review_retention_interval_s=0.05)
    app = create_app(settings)
    with TestClient(app) as client:
        assert metric(client, "bnn_review_store_errors_total", operation="export") == 0
        label_two_then_lower_the_row_cap(app, client)
        wait_for(lambda: metric(client, "bnn_review_store_errors_total", operation="export") >= 2,
                 what="two failed export passes")
        stats = client.get("/review/stats", headers=bearer()).json()
        assert stats["stored_items"] == 2 and stats["labelled"]["referred"] == {"unreadable": 2}  # none unexported
        assert metric(client, "bnn_review_dropped_total", cause="rows") == 1  # the unlabelled one went regardless
        predict(client, noise_png(9))
        wait_for(lambda: metric(client, "bnn_review_enqueued_total", reason="referred") == 4, what="a new item written")
        assert metric(client, "bnn_review_store_up") == 1
        assert metric(client, "bnn_review_store_errors_total", operation="write") == 0
        assert client.get("/review/stats", headers=bearer()).json()["labelled"]["referred"] == {"unreadable": 2}


def test_an_export_whose_store_fails_mid_stream_is_visibly_broken(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the store failing after the first page ended the export early with a clean 200, so a client
    took part of the labels for all of them. Now the body ends with a line {"error": ...} and the transfer is
    aborted (the server drops the connection without the final chunk), and the failure is counted."""
    from service.routes import review as review_routes

    monkeypatch.setattr(review_routes, "EXPORT_PAGE", 2)
    app = create_app(review_settings(tmp_path))
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = [predict(client, noise_png(seed)) for seed in range(3)]
        stored(client, 3)
        for answer in answers:
            client.post(f"/review/items/{answer['review_id']}/label", json={"label": 1}, headers=bearer())
        store = app.state.reviews.store
        pages = store.export_page

        async def second_page_fails(since: float, after: object, limit: int) -> list[dict]:
            if after is not None:
                raise OSError("the store went away")
            return await pages(since, after, limit)

        monkeypatch.setattr(store, "export_page", second_page_fails)
        with client.stream("GET", "/review/export", headers=bearer()) as response:  # in process: the body as sent
            assert response.status_code == 200
            lines = list(response.iter_lines())
        assert metric(client, "bnn_review_export_aborted_total") == 1
        # the transfer's abort on a real server and a real store: test_review_service.py
    assert [json.loads(line)["id"] for line in lines[:2]] == [answer["review_id"] for answer in answers[:2]]
    assert json.loads(lines[2]) == {"error": "the review store failed after 2 items (OSError); this export is "
                                             "incomplete", "items": 2}


def test_since_is_seconds_or_a_date_in_utc_whatever_the_servers_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "XYZ+5")  # POSIX: five hours west of UTC, no tz database needed
    time.tzset()
    try:
        assert since_seconds("1970-01-02") == since_seconds("86400") == since_seconds("8.64e4") == 86_400.0
        assert since_seconds("9999-12-31T23:59:59") == LAST_SECOND
        assert since_seconds("1970-01-01T01:00:00+01:00") == 0.0
        for text, reason in [("1969-12-31T23:00:00", "out of range"), ("1970-01-01T00:00:00+01:00", "out of range"),
                             ("1_000", "ISO 8601"), (" 12", "ISO 8601"), ("0x10", "ISO 8601")]:
            with pytest.raises(ValueError, match=reason):
                since_seconds(text)
    finally:
        monkeypatch.undo()
        time.tzset()
