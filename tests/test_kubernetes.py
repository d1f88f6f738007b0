"""deploy/kubernetes, checked offline (no cluster here): every built-in manifest validates strictly
against the Kubernetes 1.37 schemas (kubernetes-validate); the custom resources (Prometheus
Operator, KServe) have no schema offline, so their facts are checked one by one; and the facts
that matter hold: probe paths are routes of the app, ports and selectors match, the grace period
covers the server's graceful shutdown, the pod runs as the image's non-root user on a read-only
root, and the PrometheusRule is deploy/prometheus/rules.yml (one source of truth)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from harness.inputs import ROOT, SHIPPED
from service.app import create_app
from service.edge.server import GRACEFUL_SHUTDOWN_S
from service.settings import Settings
from service.workers import KILL_AFTER_S

KUBE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37.0"
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule"),
                ("serving.kserve.io/v1beta1", "InferenceService")}


def documents(directory: Path) -> dict[str, dict[str, Any]]:
    """The resources a kustomization lists, by kind."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    found = {}
    for name in kustomization["resources"]:
        document = yaml.safe_load((directory / name).read_text())
        found[document["kind"]] = document
    return found


BASE = documents(KUBE)
KSERVE = documents(KUBE / "kserve")
DEPLOYMENT = BASE["Deployment"]
POD = DEPLOYMENT["spec"]["template"]
(CONTAINER,) = POD["spec"]["containers"]
ISVC = KSERVE["InferenceService"]
(ISVC_CONTAINER,) = ISVC["spec"]["predictor"]["containers"]


def get_routes() -> set[str]:
    """The app's GET route templates (from its schema: FastAPI adds routers' routes lazily)."""
    app = create_app(Settings(model_path=SHIPPED), registry=CollectorRegistry())
    return {path for path, operations in app.openapi()["paths"].items() if "get" in operations}


def test_every_manifest_file_is_in_a_kustomization():
    for directory in (KUBE, KUBE / "kserve"):
        listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
        on_disk = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == on_disk, directory


@pytest.mark.parametrize("document", [*BASE.values(), *KSERVE.values()], ids=lambda d: d["kind"])
def test_built_in_resources_validate_strictly_and_custom_ones_are_known(document):
    if (document["apiVersion"], document["kind"]) in CUSTOM_KINDS:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # no schema offline: checked below
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        return
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)  # raises on any error


def test_a_strict_validation_catches_a_typo():
    """The check above can fail: an unknown field in a pod spec is an error."""
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": 80}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("container", [CONTAINER, ISVC_CONTAINER], ids=["deployment", "kserve"])
def test_probes_hit_routes_of_the_app_on_the_served_port(container):
    routes = get_routes()
    env = {item["name"]: item.get("value") for item in container["env"]}
    (port,) = container["ports"]
    assert int(env["BNN_PORT"]) == port["containerPort"] and env["BNN_HOST"] == "0.0.0.0"
    assert int(env["BNN_WORKERS"]) * int(env["BNN_THREADS"]) == int(container["resources"]["requests"]["cpu"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        path = get["path"]
        template = re.sub(r"/models/bnn-digits", "/models/{model_name}", path)
        assert template in routes, f"{probe} {path} is not a GET route of the app"
        assert get["port"] in (port["containerPort"], port.get("name"))


def test_the_liveness_probe_cannot_fail_while_the_model_loads_but_readiness_does():
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] == "/healthz"  # 200 while the process lives
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == "/readyz"  # 503 until the model is loaded
    startup = CONTAINER["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


@pytest.mark.parametrize("spec", [POD["spec"], ISVC["spec"]["predictor"]], ids=["deployment", "kserve"])
def test_the_grace_period_covers_drain_and_graceful_shutdown(spec):
    (container,) = spec["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + KILL_AFTER_S
    assert KILL_AFTER_S > GRACEFUL_SHUTDOWN_S


def test_rolling_updates_never_drop_below_the_current_capacity():
    strategy = DEPLOYMENT["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert BASE["PodDisruptionBudget"]["spec"]["minAvailable"] < BASE["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


def dockerfile_uid() -> int:
    match = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert match is not None
    return int(match.group(1))


@pytest.mark.parametrize("spec", [POD["spec"], ISVC["spec"]["predictor"]], ids=["deployment", "kserve"])
def test_the_pod_runs_locked_down(spec):
    (container,) = spec["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == dockerfile_uid()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/") and "/tmp" in mounts  # writable for metrics
    # several pods share one review queue: PostgreSQL and the tokens from a Secret, never a pod's own SQLite
    secrets = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"] if "valueFrom" in item}
    assert secrets == {"BNN_REVIEW_DB": {"name": "bnn-review", "key": "database-url"},
                       "BNN_REVIEW_TOKENS": {"name": "bnn-review", "key": "tokens"}}


def dockerfile_env() -> dict[str, str]:
    """The BNN_ variables the image sets (its ENV lines)."""
    return dict(re.findall(r"\b(BNN_[A-Z_]+)=(\S+)", (ROOT / "Dockerfile").read_text()))


def canary_container() -> dict[str, Any]:
    directory = KUBE / "kserve" / "canary"
    (patch,) = yaml.safe_load((directory / "kustomization.yaml").read_text())["patches"]
    (container,) = json_patched(ISVC, yaml.safe_load((directory / patch["path"]).read_text()))["spec"]["predictor"][
        "containers"]
    return container  # type: ignore[no-any-return]


@pytest.mark.parametrize("container", [None, CONTAINER, ISVC_CONTAINER, "canary"],
                         ids=["image", "deployment", "kserve", "kserve canary"])
def test_the_served_checkpoint_lies_in_the_models_directory_candidates_load_from(container):
    """Image, manifests and the shipped layout agree: BNN_MODELS_DIR holds BNN_MODEL_PATH, and the
    image copies the shipped checkpoint there (so a rollback to it, or a promotion of a candidate
    beside it, passes the admin API's directory rule)."""
    env = dockerfile_env()
    assert env["BNN_MODELS_DIR"] == "/app/checkpoints"
    assert re.search(r"^COPY .*checkpoints/bnn\.safetensors .*checkpoints/$", (ROOT / "Dockerfile").read_text(), re.M)
    if container is not None:
        found = canary_container() if container == "canary" else container
        env |= {item["name"]: item["value"] for item in found["env"] if "value" in item}
    model, models_dir = PurePosixPath(env["BNN_MODEL_PATH"]), PurePosixPath(env["BNN_MODELS_DIR"])
    assert model.parent == models_dir, (model, models_dir)
    assert Settings().models_dir == Path("checkpoints") == SHIPPED.parent.relative_to(ROOT)  # make serve's layout


def test_selectors_pick_the_pods():
    labels = POD["metadata"]["labels"]
    for selector in (DEPLOYMENT["spec"]["selector"]["matchLabels"], BASE["Service"]["spec"]["selector"],
                     BASE["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     BASE["PodMonitor"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    port_names = {port["name"] for port in CONTAINER["ports"]}
    assert BASE["Service"]["spec"]["ports"][0]["targetPort"] in port_names
    (endpoint,) = BASE["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    target = BASE["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENT["metadata"]["name"])


def test_both_deployments_run_the_same_image():
    def image(directory: Path, name: str) -> str:
        (override,) = yaml.safe_load((directory / "kustomization.yaml").read_text())["images"]
        assert override["name"] == name
        return f"{name}:{override['newTag']}"

    assert image(KUBE, CONTAINER["image"]) == image(KUBE / "kserve", ISVC_CONTAINER["image"])


def test_the_prometheus_rule_is_rules_yml():
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    rule = BASE["PrometheusRule"]
    assert rule["spec"]["groups"] == rules["groups"]
    spec = importlib.util.spec_from_file_location("sync_rules", KUBE / "sync_rules.py")
    assert spec is not None and spec.loader is not None
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    assert (KUBE / "prometheusrule.yaml").read_text() == sync.render(), "run: python deploy/kubernetes/sync_rules.py"
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]
    assert alerts and all(r["labels"]["severity"] for r in alerts)


def test_kserve_runs_the_v2_protocol_of_this_model():
    assert (ISVC["apiVersion"], ISVC["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert ISVC_CONTAINER["readinessProbe"]["httpGet"]["path"] == "/v2/models/bnn-digits/ready"
    predictor = ISVC["spec"]["predictor"]
    assert predictor["minReplicas"] >= 2 and predictor["scaleMetric"] == "cpu"


def json_patched(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add`` and ``replace`` (what the canary overlay uses) on a copy of ``document``."""
    patched = yaml.safe_load(yaml.safe_dump(document))
    for operation in operations:
        assert operation["op"] in ("add", "replace"), operation
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node.append(operation["value"]) if last == "-" else node.insert(int(last), operation["value"])
        else:
            assert operation["op"] == "add" or last in node, operation["path"]
            node[last] = operation["value"]
    return patched


def test_the_canary_overlay_sends_a_share_of_traffic_to_a_candidate_from_a_model_volume():
    directory = KUBE / "kserve" / "canary"
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [".."]
    (patch,) = kustomization["patches"]
    assert (patch["target"]["kind"], patch["target"]["name"]) == ("InferenceService", ISVC["metadata"]["name"])
    canary = json_patched(ISVC, yaml.safe_load((directory / patch["path"]).read_text()))
    assert canary["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"  # KServe's canaries
    assert 0 < canary["spec"]["predictor"]["canaryTrafficPercent"] < 100
    (container,) = canary["spec"]["predictor"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["BNN_MODEL_PATH"].startswith("/mnt/models/") and env["STORAGE_URI"]
    assert len(container["env"]) == len(ISVC_CONTAINER["env"]) + 3  # nothing of the base lost
    fields = {f"BNN_{name.upper()}" for name in Settings.model_fields}
    assert {name for name in env if name.startswith("BNN_")} <= fields
