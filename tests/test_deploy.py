"""docker-compose.yml and the Grafana provisioning: what can be checked without a Docker engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from harness.inputs import ROOT
from tests.prometheus_server import DASHBOARD, REQUIRED

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def host_paths(service: str) -> list[str]:
    return [volume.split(":")[0] for volume in COMPOSE["services"][service].get("volumes", [])
            if volume.startswith("./")]


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
    mounts = dict(volume.split(":")[:2] for volume in COMPOSE["services"]["grafana"]["volumes"]
                  if volume.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel["targets"]}
    assert uids == {datasource["uid"]}
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Referral rate of files: live vs expected", "Requests by outcome", "Answered images by class",
            "Entropy distribution", "Latency percentiles", "Rejections by reason", "Samples per image"} <= titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def docker_compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` of the file with only ``env`` (and PATH) set, as a user who set nothing else."""
    tool = shutil.which("docker-compose")
    if tool is None:
        if REQUIRED:
            pytest.fail("docker-compose not found but BNN_REQUIRE_PROMETHEUS=1 (apt-get install docker-compose)")
        pytest.skip("docker-compose (Debian package) not installed")
    return subprocess.run([tool, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ.get("PATH", ""), **env})


def test_docker_compose_config_accepts_the_file():
    result = docker_compose_config(GRAFANA_ADMIN_PASSWORD="chosen-password")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    # unset BNN_API_KEY stays unset (no key required): compose passes no BNN_API_KEY at all, not ""
    assert "BNN_API_KEY" not in resolved["bnn"].get("environment", {})
    assert resolved["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "chosen-password"
    assert resolved["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_every_published_port_names_its_address_defaulting_to_loopback():
    """Without docker-compose too: a port with no address would be published on every interface."""
    ports = {name: service.get("ports", []) for name, service in COMPOSE["services"].items()}
    assert ports == {"bnn": ["${BNN_PUBLISH_ADDRESS:-127.0.0.1}:${BNN_HOST_PORT:-8000}:8000"],
                     "prometheus": ["${MONITORING_PUBLISH_ADDRESS:-127.0.0.1}:${PROMETHEUS_HOST_PORT:-9090}:9090"],
                     "grafana": ["${MONITORING_PUBLISH_ADDRESS:-127.0.0.1}:${GRAFANA_HOST_PORT:-3000}:3000"]}


def test_compose_publishes_on_loopback_unless_told_otherwise():
    """By default every port is published on 127.0.0.1 only (Prometheus has no authentication);
    BNN_PUBLISH_ADDRESS and MONITORING_PUBLISH_ADDRESS open them, each on its own."""
    def published(**env: str) -> dict[str, list[str]]:
        result = docker_compose_config(GRAFANA_ADMIN_PASSWORD="chosen-password", **env)
        assert result.returncode == 0, result.stderr
        return {name: service["ports"] for name, service in yaml.safe_load(result.stdout)["services"].items()}

    assert published() == {"bnn": ["127.0.0.1:8000:8000/tcp"], "prometheus": ["127.0.0.1:9090:9090/tcp"],
                           "grafana": ["127.0.0.1:3000:3000/tcp"]}
    assert published(BNN_PUBLISH_ADDRESS="0.0.0.0", BNN_HOST_PORT="8080") == {
        "bnn": ["0.0.0.0:8080:8000/tcp"], "prometheus": ["127.0.0.1:9090:9090/tcp"],
        "grafana": ["127.0.0.1:3000:3000/tcp"]}
    assert published(MONITORING_PUBLISH_ADDRESS="192.0.2.7")["grafana"] == ["192.0.2.7:3000:3000/tcp"]


@pytest.mark.parametrize("password", [None, ""])
def test_compose_refuses_to_start_grafana_without_a_chosen_password(password):
    result = docker_compose_config(**({} if password is None else {"GRAFANA_ADMIN_PASSWORD": password}))
    assert result.returncode != 0
    assert "set GRAFANA_ADMIN_PASSWORD to the Grafana admin password you choose" in result.stderr
