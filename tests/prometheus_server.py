"""A real Prometheus (Debian's ``prometheus`` package) for integration tests, and promtool.

The tests that need them are skipped where the binaries are missing, unless
``BNN_REQUIRE_PROMETHEUS=1`` (``.ci/run`` sets it after installing the package): then a missing
binary fails them instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.server import ROOT, free_port, running_process

DEPLOY = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "bnn.json"
REQUIRED = os.environ.get("BNN_REQUIRE_PROMETHEUS") == "1"


def binary(name: str) -> str:
    """Path to ``name``; skips the test where it is missing, fails it where CI requires it."""
    path = shutil.which(name)
    if path is None:
        if REQUIRED:
            pytest.fail(f"{name} not found but BNN_REQUIRE_PROMETHEUS=1 (apt-get install prometheus)")
        pytest.skip(f"{name} not installed (Debian package prometheus)")
    return path


def repo_config_for(target: str, interval: str = "1s") -> dict[str, Any]:
    """The repo's prometheus.yml with the scrape target replaced, faster intervals, absolute rule paths."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    return config


class PrometheusAPI:
    def __init__(self, url: str):
        self.url = url

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; raises on an error status (bad expression)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as reply:
            body = json.loads(reply.read())
        if body["status"] != "success":
            raise RuntimeError(f"{expr}: {body}")
        return list(body["data"]["result"])

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        """The one value ``expr`` returns, or None when it returns nothing."""
        result = self.query(expr, at)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])


@contextmanager
def running_prometheus(config: dict[str, Any], ready_timeout: float = 30.0) -> Iterator[PrometheusAPI]:
    executable = binary("prometheus")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bnn-prometheus-") as workdir:
        config_path = Path(workdir) / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        command = [executable, f"--config.file={config_path}", f"--storage.tsdb.path={workdir}/data",
                   f"--web.listen-address=127.0.0.1:{port}"]
        with running_process(command, url + "/-/ready", "prometheus", ready_timeout=ready_timeout, stop_timeout=15):
            yield PrometheusAPI(url)
