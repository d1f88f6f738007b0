"""The review queue in the real service (``python -m service``, two workers, as ``make serve``
runs it) on a real PostgreSQL and on SQLite: two reviewers at once get every item exactly once;
the store going down mid-run (predictions stay 200, the review API says 503, buffered items
arrive when it is back); a restart keeps the queue and the labels."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness.inputs import noise_png
from harness.postgres import PostgresServer
from harness.server import running_service, wait_for
from service.review.queue import RETRY_MAX_S
from tests.metrics_text import parse_samples, total
from tests.review_client import OTHER_TOKEN, TOKEN, TOKENS, bearer

# the variables that only tell the tests to fail rather than skip (.ci/run); the service reads none of them
REQUIRE_FLAGS = {"BNN_REQUIRE_PROMETHEUS", "BNN_REQUIRE_CHROMIUM", "BNN_REQUIRE_POSTGRES", "BNN_REQUIRE_PODMAN"}


def service_env(url: str) -> dict[str, str]:
    """No audit draw: a referred answer drawn as an audit (2 % by default) is filed under "audit", which
    a count of referred labels would miss. The shipped defaults have a test of their own below."""
    return {"BNN_REVIEW_DB": url, "BNN_REVIEW_TOKENS": TOKENS, "BNN_WORKERS": "2", "BNN_AUDIT_FRACTION": "0"}


def predict_many(url: str, count: int, seed: int = 0) -> list[dict]:
    """Referred answers from both workers: concurrent requests on separate connections."""
    def one(k: int) -> dict:
        response = httpx.post(url + "/predict", content=noise_png(seed + k), headers={"content-type": "image/png"},
                              timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def stats(url: str) -> dict | None:
    response = httpx.get(url + "/review/stats", headers=bearer(), timeout=10)
    return response.json() if response.status_code == 200 else None


def stored(url: str, count: int) -> dict:
    """The store's stats once it holds ``count`` items. A worker's writer that found the store
    down (at start or mid-run) retries with backoff up to RETRY_MAX_S (10 s), so this waits for
    several retries, not one."""
    return wait_for(lambda: (s := stats(url)) is not None and s["stored_items"] >= count and s,
                    timeout_s=4 * RETRY_MAX_S + 5, what=f"{count} stored items")


def drain_with_two_reviewers(url: str) -> tuple[list[str], list[str]]:
    def drain(token: str) -> list[str]:
        got = []
        with httpx.Client(base_url=url, headers=bearer(token), timeout=10) as client:
            while (response := client.get("/review/items/next")).status_code == 200:
                got.append(response.json()["id"])
            assert response.status_code == 204, response.text
        return got

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(drain, [TOKEN, OTHER_TOKEN, TOKEN, OTHER_TOKEN]))
    return results[0] + results[2], results[1] + results[3]


def check_two_reviewers(url: str, count: int) -> None:
    answers = predict_many(url, count)
    ids = sorted(answer["review_id"] for answer in answers)
    assert all(ids) and len(set(ids)) == count
    stored(url, count)
    ana, ben = drain_with_two_reviewers(url)
    assert sorted(ana + ben) == ids  # none given twice, none lost
    assert ana and ben


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    return postgres.create_database("service")


def test_two_workers_and_two_reviewers_on_postgresql(postgres_url: str) -> None:
    with running_service(service_env(postgres_url)) as (url, _):
        check_two_reviewers(url, 40)


def test_two_workers_and_two_reviewers_on_sqlite(tmp_path: Path) -> None:
    with running_service(service_env(f"sqlite:///{tmp_path}/review.db")) as (url, _):
        check_two_reviewers(url, 40)


def test_postgresql_down_mid_run_then_back(tmp_path: Path) -> None:
    from harness.postgres import postgres_server

    with postgres_server() as server:
        database = server.create_database("outage")
        with running_service(service_env(database)) as (url, _):
            before = predict_many(url, 4)
            stored(url, 4)
            server.stop()
            during = predict_many(url, 6, seed=100)  # the store is down: answers are still 200 with an id
            assert all(answer["refer"] and answer["review_id"] for answer in during)
            # probed on /review/stats: a probe on /review/items/next would claim items whenever it got through
            down = wait_for(lambda: (r := httpx.get(url + "/review/stats", headers=bearer())).status_code == 503
                            and r, what="503 from the review API")
            assert "review store unavailable" in down.json()["detail"]
            server.start()
            after = stored(url, 10)  # the buffered items were written once the store came back
            assert after["waiting"] == {"referred": 10, "audit": 0}
            ana, ben = drain_with_two_reviewers(url)
            assert sorted(ana + ben) == sorted(a["review_id"] for a in before + during)
            metrics = httpx.get(url + "/metrics").text
            assert "bnn_review_enqueue_failures_total 0.0" in metrics


def test_a_restart_keeps_the_queue_and_the_labels(tmp_path: Path) -> None:
    env = service_env(f"sqlite:///{tmp_path}/review.db")
    with running_service(env) as (url, _):
        answers = predict_many(url, 3)
        stored(url, 3)
        first = answers[0]["review_id"]
        assert httpx.post(f"{url}/review/items/{first}/label", json={"label": 4}, headers=bearer()).status_code == 200
    with running_service(env) as (url, _):
        kept = wait_for(lambda: stats(url), what="the store after the restart")
        assert kept["stored_items"] == 3 and kept["labelled"]["referred"] == {"4": 1}
        item = httpx.get(f"{url}/review/items/{first}", headers=bearer()).json()
        assert item["label"] == "4" and item["labelled_by"] == "ana"


def test_postgresql_with_the_shipped_defaults_through_retention_passes_and_a_restart(postgres_url: str) -> None:
    """Only what the README says to set (the store and the reviewers) plus a shorter retention interval, so
    that several passes run within the test: every other setting is its default (2 GiB byte cap, 100,000
    rows, 30 days, a 300 s lease, a 10,000-answer buffer, two workers, no export). Stats answer 200 at
    every poll through three intervals and six passes, none of them failing; a referred upload becomes
    claimable (how soon: docs/review.md, measured once); two reviewers drain the queue; a restart keeps labels and
    waiting items."""
    env = {"BNN_REVIEW_DB": postgres_url, "BNN_REVIEW_TOKENS": TOKENS, "BNN_REVIEW_RETENTION_INTERVAL_S": "0.5"}
    assert not {key for key in os.environ if key.startswith("BNN_")} - {"BNN_REVIEW_DB", *REQUIRE_FLAGS}
    with running_service(env) as (url, _):
        # from this worker's first answer on (the schema is made in the background after start): every poll 200
        wait_for(lambda: httpx.get(url + "/review/stats", headers=bearer(), timeout=10).status_code == 200,
                 what="the review store ready")
        statuses: list[int] = []
        started = time.monotonic()

        def polled_through_passes() -> bool:
            """Stats polled (each answer kept) for at least three retention intervals, in which the two
            workers completed at least six passes."""
            statuses.append(httpx.get(url + "/review/stats", headers=bearer(), timeout=10).status_code)
            passes = total(parse_samples(httpx.get(url + "/metrics", timeout=10).text),
                           "bnn_review_retention_passes_total")
            return passes >= 6 and time.monotonic() - started >= 1.5

        wait_for(polled_through_passes, timeout_s=30, what="three retention intervals and six passes", interval_s=0.1)
        polled_s = time.monotonic() - started
        answer = predict_many(url, 1)[0]
        first = wait_for(lambda: (r := httpx.get(url + "/review/items/next", headers=bearer())).status_code == 200
                         and r.json(), timeout_s=4 * RETRY_MAX_S + 5, what="the referred upload claimable")
        answers = [answer, *predict_many(url, 5, seed=10)]
        stored(url, 6)
        statuses.append(httpx.get(url + "/review/stats", headers=bearer(), timeout=10).status_code)
        samples = parse_samples(httpx.get(url + "/metrics", timeout=10).text)
        labelled = httpx.post(f"{url}/review/items/{first['id']}/label", json={"label": 7}, headers=bearer())
        assert labelled.status_code == 200
    assert first["id"] == answer["review_id"]  # how soon: docs/review.md (no timed assertion)
    # polled across three intervals (a poll about every 0.25 s when the machine is idle, fewer when loaded)
    assert set(statuses) == {200} and polled_s >= 1.5 and len(statuses) >= 3
    for operation in ("migrate", "write", "retention", "export"):
        assert total(samples, "bnn_review_store_errors_total", operation=operation) == 0, operation
    with running_service(env) as (url, _):
        kept = wait_for(lambda: stats(url), what="the store after the restart")
        # a referred upload may also be drawn as an audit (2 % by default): counted under either reason
        assert kept["stored_items"] == 6 and [pair for by_label in kept["labelled"].values()
                                              for pair in by_label.items()] == [("7", 1)]
        assert sum(kept["waiting"].values()) == 5
        ana, ben = drain_with_two_reviewers(url)
        assert sorted(ana + ben) == sorted(a["review_id"] for a in answers[1:])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_flood_of_padded_uploads_never_loses_a_label(backend: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    """The issue's flood, scaled to the smallest byte cap (1 MiB): a reviewer labels one item, then 56
    uploads of a 384 x 384 noise PNG followed by 1 MB of random bytes (8 MB of images: 8 times the cap)
    from the same client, with only documented variables set (no export directory). Before: the next
    pass dropped the labelled item (the oldest) and its label was gone from /review/export. Now the
    store keeps what it took re-encoded (a PNG of the noise, never the bytes after it), the byte cap
    drops the oldest unlabelled items (one client alone: no share of its own to trim), the label
    stays, and predictions answer throughout."""
    url_of_store = (f"sqlite:///{tmp_path}/review.db" if backend == "sqlite"
                    else request.getfixturevalue("postgres").create_database("flood"))
    env = {"BNN_REVIEW_DB": url_of_store, "BNN_REVIEW_TOKENS": TOKENS, "BNN_REVIEW_MAX_BYTES": str(2**20),
           "BNN_REVIEW_RETENTION_INTERVAL_S": "0.5",
           "BNN_AUDIT_FRACTION": "0"}  # a labelled item drawn as an audit (2 %) is counted under "audit"
    with running_service(env) as (url, _):
        first = predict_many(url, 1)[0]
        stored(url, 1)
        labelled = httpx.post(f"{url}/review/items/{first['review_id']}/label", json={"label": 7}, headers=bearer())
        assert labelled.status_code == 200

        def padded(seed: int) -> dict:
            body = noise_png(seed, 384) + np.random.default_rng(seed).bytes(1_000_000)
            response = httpx.post(url + "/predict", content=body, headers={"content-type": "image/png"}, timeout=30)
            assert response.status_code == 200, response.text
            return response.json()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            flood = list(pool.map(padded, range(1000, 1056)))
        queued = sum(bool(answer["review_id"]) for answer in flood)
        assert queued == 56  # every flood answer was queued (the client's buffer share is 25.6 MiB)

        def within_the_cap() -> dict | None:
            now = stats(url)
            dropped = total(parse_samples(httpx.get(url + "/metrics", timeout=10).text), "bnn_review_dropped_total")
            settled = now is not None and now["stored_items"] - 1 + dropped == queued
            return now if settled and now["stored_bytes"] <= 2**20 else None

        after = wait_for(within_the_cap, timeout_s=30, what="the flood trimmed to the byte cap by retention")
        samples = parse_samples(httpx.get(url + "/metrics", timeout=10).text)
        export = httpx.get(url + "/review/export", headers=bearer(), timeout=30)
    assert total(samples, "bnn_review_dropped_total", cause="source") == 0  # one client: the caps alone decide
    assert total(samples, "bnn_review_dropped_total") >= queued - 8  # a PNG of 384 x 384 noise is about 150 KB
    assert after["labelled"]["referred"] == {"7": 1}
    records = [json.loads(line) for line in export.text.splitlines()]
    assert [(record["id"], record["label"]) for record in records] == [(first["review_id"], "7")]


def labelled_items(url: str, count: int, file_bytes: int) -> None:
    """``count`` labelled items written straight to the store at ``url`` (a real one), each with a file."""
    import asyncio

    from sqlalchemy import update

    from service.review.rows import NewItem
    from service.review.schema import items
    from service.review.store import ReviewStore

    now = time.time()  # within the retention's 30 days: the service's first pass must keep them

    async def write() -> None:
        store = ReviewStore.open(url)
        try:
            await store.migrate()
            for start in range(0, count, 500):
                await store.add([NewItem(id=f"{k:032x}", created=now - count + k, reason="referred",
                                         refer_reason="unfamiliar",
                                         predicted=3, entropy=2.0, answer={"class": 3}, model_version="test",
                                         file=bytes(file_bytes), input=bytes(784), refer=True, audit_fraction=None)
                                 for k in range(start, min(start + 500, count))])
            async with store.engine.begin() as connection:
                await connection.execute(update(items).values(label="3", labelled_by="ana",
                                                              labelled_at=items.c.created))
        finally:
            await store.close()

    asyncio.run(write())


def test_an_export_cut_by_the_store_is_a_broken_transfer_not_a_clean_200() -> None:
    """3,000 labelled items (80 MB of NDJSON: more than the sockets buffer, so the export is mid-stream
    when the store goes); PostgreSQL is stopped after the first line. Before: the response ended there
    with a clean 200 and a complete chunked body. Now the body's last line is {"error": ...} and the
    client's read fails (no final chunk), and the failure is counted."""
    from harness.postgres import postgres_server

    with postgres_server() as server:
        database = server.create_database("export_cut")
        labelled_items(database, 3000, 20_000)
        with running_service(service_env(database)) as (url, _):
            wait_for(lambda: stats(url), what="the review store ready")
            lines: list[str] = []
            with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
                    "GET", url + "/review/export", headers=bearer(), timeout=30) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if not lines:
                        server.stop()
                    lines.append(line)
            server.start()
            samples = parse_samples(httpx.get(url + "/metrics", timeout=10).text)
    assert 0 < len(lines) - 1 < 3000
    assert all(json.loads(line)["label"] == "3" for line in lines[:-1])
    error = json.loads(lines[-1])
    assert error["items"] == len(lines) - 1 and "this export is incomplete" in error["error"]
    assert total(samples, "bnn_review_export_aborted_total") == 1
    assert total(samples, "bnn_http_errors_total") == 0  # a store's failure, not a bug: BnnServerErrors stays quiet


def test_the_generated_token_is_in_a_file_and_never_in_the_output(tmp_path: Path) -> None:
    """``python -m service`` with nothing set but its store: before, the generated reviewer token was logged at
    WARNING with the page's address (so in every container log). Now it is in review-token beside the store,
    mode 0600, and grants review; the output (not a terminal) names the file and 4 characters, no more."""
    import subprocess
    import sys

    from harness.server import ROOT, free_port

    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "BNN_REVIEW_TOKENS"}
    env.update(BNN_REVIEW_DB=f"sqlite:///{tmp_path}/review.db", BNN_PORT=str(port), BNN_HOST="127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "output.log").open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            def ready() -> bool:
                assert process.poll() is None, (tmp_path / "output.log").read_text()[-3000:]
                try:
                    return httpx.get(url + "/readyz", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(ready, timeout_s=60, what="the service ready", interval_s=0.1)
            path = tmp_path / "review-token"
            token = path.read_text().strip()
            review = wait_for(lambda: (r := httpx.get(url + "/review/stats", headers=bearer(token))).status_code == 200
                              and r, what="review with the file's token")
            assert review.json()["reviewer"] == "reviewer"
        finally:
            process.terminate()
            process.wait(30)
    logged = (tmp_path / "output.log").read_text()
    assert len(token) >= 16 and path.stat().st_mode & 0o777 == 0o600
    assert token not in logged and token[4:] not in logged
    assert f"its token, {token[:4]}..., is in {path}" in logged
