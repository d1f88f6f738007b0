"""A real Prometheus on the repo's configuration and rules, scraping the real service with 2 workers.

Sends a known mix of digits, non-digits and blanks, then asks Prometheus (HTTP API) what it saw:
exact counts across both workers, the referral rate computed from the counters and by the
recording rule equal to the fraction of ``refer: true`` answers, and every dashboard query
evaluates.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from harness import candidates
from harness.images import encode
from harness.inputs import mnist_fixtures, shipped_calibration
from harness.server import post_image, running_service, wait_for, wait_for_listening_workers
from tests.metrics_text import per_worker_predictions
from tests.prometheus_server import DASHBOARD, PrometheusAPI, binary, repo_config_for, running_prometheus

REFERRAL_RATE = 'sum(rate(bnn_predictions_total{referred="true"}[5m])) / sum(rate(bnn_predictions_total[5m]))'


def uploads() -> list[tuple[str, bytes, int | None]]:
    """(kind, bytes, samples): 20 real digits, 12 noise images, 3 blanks; some at other N."""
    rng = np.random.default_rng(11)
    items: list[tuple[str, bytes, int | None]] = [
        ("digit", path.read_bytes(), None if i % 4 else 30) for i, (path, _) in enumerate(mnist_fixtures())]
    for _ in range(12):
        size = int(rng.integers(40, 120))
        items.append(("noise", encode(Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8))), None))
    items += [("blank", encode(Image.new("L", (50, 50), 255)), None)] * 3
    return items


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_prometheus_sees_exact_counts_and_the_referral_rate_of_the_answers(tmp_path):
    binary("prometheus")
    metrics_dir = tmp_path / "metrics"
    # a shadow on every answer: its panels need data too (the same weights under another version)
    env = {"BNN_WORKERS": "2", "BNN_THREADS": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "BNN_SHADOW_CHECKPOINT": str(candidates.good(tmp_path)), "BNN_MODELS_DIR": str(tmp_path),
           "BNN_SHADOW_FRACTION": "1.0"}
    with running_service(env) as (url, process):
        wait_for_listening_workers(url, process.pid, 2)
        target = url.removeprefix("http://")
        with running_prometheus(repo_config_for(target)) as prometheus:
            # the first scrape sees every series at 0, so rate() covers all that follows
            wait_for(lambda: prometheus.scalar("sum(bnn_predictions_total)") == 0, timeout_s=30, what="a first scrape",
                     interval_s=0.25)

            items = uploads()
            with ThreadPoolExecutor(4) as pool:  # separate connections: both workers take requests
                responses = list(pool.map(lambda item: post_image(url, item[1], samples=item[2]), items))
            answers = [r.json() for r in responses if r.status_code == 200]
            statuses = sorted({r.status_code for r in responses})
            assert statuses == [200, 422], statuses
            referred = sum(answer["refer"] for answer in answers)
            assert 0 < referred < len(answers), "the mix must hold both accepted and referred answers"
            fraction = referred / len(answers)
            answered = time.time()

            # a scrape that began before the last answer can hold every prediction but not the last blank's
            # rejection (the blanks come last): wait for a scrape that began after every answer
            wait_for(lambda: (prometheus.scalar("min(timestamp(bnn_rejected_requests_total))") or 0) > answered,
                     timeout_s=30, what="a scrape after the last answer", interval_s=0.25)
            assert prometheus.scalar("sum(bnn_predictions_total)") == len(answers)
            # the rule is evaluated every second: wait for an evaluation on the final counts (the ratio is
            # exact only once every answer has been scraped; earlier ones differ from it)
            wait_for(lambda: prometheus.scalar("job:bnn_referral_rate:ratio_rate5m")
                     == pytest.approx(fraction, rel=1e-9),
                     timeout_s=15, what="the recording rule to evaluate on the final counts", interval_s=0.25)
            now = time.time()
            assert prometheus.scalar(REFERRAL_RATE, now) == pytest.approx(fraction, rel=1e-9)
            assert prometheus.scalar("job:bnn_referral_rate:ratio_rate5m", now) == pytest.approx(fraction, rel=1e-9)
            assert prometheus.scalar('sum(bnn_predictions_total{referred="true"})', now) == referred
            assert prometheus.scalar('sum(bnn_rejected_requests_total{reason="no_ink"})', now) == 3
            calibration = shipped_calibration()
            assert prometheus.scalar("job:bnn_expected_referral_rate:max", now) == pytest.approx(
                1 - calibration["validation_coverage"])
            sampled = sum(answer["samples"] for answer in answers)
            assert prometheus.scalar("sum(bnn_samples_per_image_sum)", now) == sampled
            for digit in range(10):
                in_answers = sum(answer["class"] == digit for answer in answers)
                assert prometheus.scalar(f'sum(bnn_predictions_total{{class="{digit}"}})', now) == in_answers

            wait_for(lambda: prometheus.scalar("sum(bnn_shadow_compared_total)") == len(answers), timeout_s=30,
                     what="the shadow's comparisons to be scraped", interval_s=0.25)
            # (the same weights disagree now and then: two Monte Carlo draws of a near-uniform answer)
            assert prometheus.scalar('sum(bnn_shadow_compared_total{class_agree="true"})') >= sum(
                not answer["refer"] for answer in answers)
            assert_dashboard_queries_evaluate(prometheus)
        served = per_worker_predictions(metrics_dir)
        assert len(served) == 2 and sum(served) == len(answers) and min(served) > 0, served


def empty_dashboard_queries(prometheus: PrometheusAPI) -> list[tuple[str, str]]:
    """The dashboard's queries that give no data now; Grafana's $__rate_interval becomes 1m
    (4 scrape intervals of 1 s would be Grafana's own choice)."""
    return [(title, expr) for title, expr in dashboard_queries()
            if not prometheus.query(re.sub(r"\$__rate_interval", "1m", expr), time.time())]


def assert_dashboard_queries_evaluate(prometheus: PrometheusAPI) -> None:
    """Every query of the Grafana dashboard parses and evaluates against the live data.

    A labelled series (the shadow's) first appears in the scrape after its first increment, and
    rate() needs two samples of it: the queries are polled until a later scrape has given them data.
    """
    try:
        wait_for(lambda: not empty_dashboard_queries(prometheus), timeout_s=20,
                 what="every dashboard query to give data", interval_s=0.25)
    except TimeoutError:
        empty = empty_dashboard_queries(prometheus)
        assert not empty, empty  # this traffic gives every panel data
