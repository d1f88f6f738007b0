"""Several uvicorn workers (BNN_WORKERS): metrics add up exactly, a bad checkpoint stops start-up once."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import ROOT, mnist_fixtures
from tests.metrics_text import parse_samples, total
from tests.server import running_service
from tests.test_prometheus import per_worker_predictions, post


def test_two_workers_count_exactly_whichever_answers_metrics(tmp_path):
    metrics_dir = tmp_path / "metrics"
    seven = mnist_fixtures()[0][0].read_bytes()
    env = {"BNN_WORKERS": "2", "BNN_THREADS": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with running_service(env) as (url, _):
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: post(url, ("digit", seven, None)).status_code, range(40)))
        assert codes == [200] * 40
        served = per_worker_predictions(metrics_dir)
        assert len(served) == 2 and min(served) > 0, served  # both workers answered some
        for _ in range(10):  # fresh connections: each scrape may reach either worker
            samples = parse_samples(httpx.get(url + "/metrics", timeout=10).text)
            assert total(samples, "bnn_predictions_total") == 40
            assert total(samples, "bnn_predictions_total", referred="false", **{"class": "7"}) == 40
            assert total(samples, "bnn_request_latency_seconds_count", route="/predict") == 40
            assert total(samples, "bnn_expected_referral_rate") == pytest.approx(0.0027)


def test_a_missing_checkpoint_stops_several_workers_at_once(tmp_path):
    env = {**os.environ, "BNN_WORKERS": "2", "BNN_MODEL_PATH": str(tmp_path / "absent.safetensors")}
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "absent.json: metadata file is missing" in result.stderr
