"""Write prometheusrule.yaml (a Prometheus Operator PrometheusRule) from deploy/prometheus/rules.yml,
the one source of the recording and alert rules: ``python deploy/kubernetes/sync_rules.py``.
``tests/test_kubernetes.py`` fails when the two drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent / "prometheus" / "rules.yml"
TARGET = HERE / "prometheusrule.yaml"
HEADER = ("# Generated from deploy/prometheus/rules.yml by deploy/kubernetes/sync_rules.py: edit that file,\n"
          "# then run this script (tests/test_kubernetes.py fails when they drift).\n")


def prometheus_rule() -> dict[str, Any]:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "bnn-digits"}, "spec": {"groups": groups}}


def render() -> str:
    return HEADER + yaml.safe_dump(prometheus_rule(), sort_keys=False, width=120)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
