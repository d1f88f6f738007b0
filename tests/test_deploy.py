"""docker-compose.yml and the Grafana provisioning: what can be checked without a Docker engine."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from harness.inputs import ROOT
from tests.prometheus_server import DASHBOARD, REQUIRED

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def host_paths(service: str) -> list[str]:
    return [volume.split(":")[0] for volume in COMPOSE["services"][service].get("volumes", []) if volume.startswith("./")]


def test_compose_runs_the_service_prometheus_and_grafana_from_repo_files():
    assert set(COMPOSE["services"]) == {"bnn", "prometheus", "grafana"}
    for service in ("prometheus", "grafana"):
        for path in host_paths(service):
            assert (ROOT / path).exists(), path
    assert "./deploy/prometheus" in host_paths("prometheus")
    assert {"./deploy/grafana/provisioning", "./deploy/grafana/dashboards"} <= set(host_paths("grafana"))


def test_grafana_provisioning_points_at_the_dashboard_and_its_datasource():
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    (datasource,) = datasources
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    provider = yaml.safe_load((provisioning / "dashboards" / "bnn.yml").read_text())["providers"][0]
    mounts = dict(volume.split(":")[:2] for volume in COMPOSE["services"]["grafana"]["volumes"] if volume.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel["targets"]}
    assert uids == {datasource["uid"]}
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Referral rate of files: live vs expected", "Requests by outcome", "Answered images by class", "Entropy distribution",
            "Latency percentiles", "Rejections by reason", "Samples per image"} <= titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_docker_compose_config_accepts_the_file():
    tool = shutil.which("docker-compose")
    if tool is None:
        if REQUIRED:
            pytest.fail("docker-compose not found but BNN_REQUIRE_PROMETHEUS=1 (apt-get install docker-compose)")
        pytest.skip("docker-compose (Debian package) not installed")
    result = subprocess.run([tool, "config", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
