"""The image built, run and composed, as ``docker compose up`` runs it, with Debian's podman.

Built once per run (``tests/podman.py``: base images from Debian packages, the machine's pip
configuration mounted into the build). Then, in a container run as compose runs it (read-only
root, ``/tmp`` on tmpfs, the review volume on ``/data``, two workers): the user, the read-only
root, the time to ready, ``/predict`` on a fixture digit against the same answer in process,
``podman healthcheck run``, and SIGTERM with a request in flight (its answer arrives, exit 0
within the grace period); the healthcheck on a non-default ``BNN_PORT``; and ``podman-compose``
with the stand-in images: Prometheus scrapes the service (target up), loads the rules, counts
the referrals; then down, nothing left.

``.ci/run`` installs podman and sets ``BNN_REQUIRE_PODMAN=1`` (missing tools fail, never skip).
Locally: ``BNN_REQUIRE_PODMAN=1 .venv/bin/python -m pytest tests/test_container.py -v``.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from harness.inputs import SHIPPED, mnist_fixtures, noise_png
from harness.server import ROOT, free_port, wait_for
from service.inference.predictor import Predictor
from service.inference.preprocess import preprocess
from tests.podman import IMAGE, base_images, build_image, containers_conf, environment, require_tools, run

GRACE_S = 25  # docker-compose.yml's stop_grace_period
BUILT: dict[str, float] = {}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require_tools()
    return environment(containers_conf(tmp_path_factory.mktemp("podman")))


@pytest.fixture(scope="module")
def image(engine: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    start = time.monotonic()
    base_images(engine)
    BUILT["bases_s"] = time.monotonic() - start
    build_image(engine, tmp_path_factory.mktemp("build"))
    BUILT["build_s"] = time.monotonic() - start - BUILT["bases_s"]
    size = int(run(["podman", "image", "inspect", IMAGE, "--format", "{{.Size}}"], engine).stdout.strip())
    print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB; base images {BUILT['bases_s']:.0f} s, build {BUILT['build_s']:.0f} s")
    return IMAGE


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class Container:
    def __init__(self, engine: dict[str, str], name: str):
        self.engine, self.name = engine, name

    def exec(self, *command: str, check: bool = True) -> str:
        result = run(["podman", "exec", self.name, *command], self.engine, check=check)
        return result.stdout + result.stderr


@contextmanager
def running(engine: dict[str, str], image: str, *options: str) -> Iterator[Container]:
    name = f"bnn-check-{free_port()}"
    run(["podman", "run", "-d", "--name", name, *options, image], engine)
    try:
        yield Container(engine, name)
    finally:
        run(["podman", "rm", "-f", "-t", "0", name], engine, check=False)
        for volume in options:
            if volume.endswith(":/data"):
                run(["podman", "volume", "rm", "-f", volume.split(":")[0]], engine, check=False)


def in_process_answer(data: bytes) -> tuple[int, bool]:
    prediction = Predictor.from_checkpoint(SHIPPED).predict([preprocess(data, 40_000_000)])[0]
    return prediction.digit, prediction.refer


def request_in_flight(port: int, body: bytes) -> socket.socket:
    """A /predict request whose app is running (the server asked for the body with 100 Continue),
    its body not sent yet."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nExpect: 100-continue\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body))
    interim = connection.recv(1024)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    return connection


def read_response(connection: socket.socket) -> tuple[bytes, bytes]:
    """The status line and the body (by Content-Length) of one HTTP/1.1 answer."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed after {received!r}"
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head.split(b"\r\n", 1)[0], body


def test_the_image_runs_as_compose_runs_it(engine: dict[str, str], image: str) -> None:
    port = free_port()
    start = time.monotonic()
    with running(engine, image, "--read-only", "--tmpfs", "/tmp", "-v", f"bnn-check-{port}-data:/data",
                 "-e", "BNN_WORKERS=2", "-p", f"127.0.0.1:{port}:8000") as container:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: ready(url), timeout_s=90, what="/readyz in the container")
        print(f"\nstart to ready: {time.monotonic() - start:.1f} s")
        assert container.exec("id", "-u").strip() == "10001"
        assert "Read-only file system" in container.exec("touch", "/app/written", check=False)
        path, label = mnist_fixtures()[0]
        data = path.read_bytes()
        answer = httpx.post(url + "/predict", content=data, headers={"content-type": "image/png"}, timeout=30).json()
        assert (answer["class"], answer["refer"]) == in_process_answer(data) == (label, False)
        referred = httpx.post(url + "/predict", content=noise_png(0), headers={"content-type": "image/png"}).json()
        assert referred["refer"] and referred["review_id"]
        wait_for(lambda: "review.db" in container.exec("ls", "/data"), what="the review store on the volume")
        assert run(["podman", "healthcheck", "run", container.name], engine).returncode == 0

        connection = request_in_flight(port, data)
        stopped = time.monotonic()
        run(["podman", "kill", "--signal", "TERM", container.name], engine)
        connection.sendall(data)
        status, body = read_response(connection)
        connection.close()
        assert status.startswith(b"HTTP/1.1 200"), status
        assert json.loads(body)["class"] == label
        exit_code = run(["podman", "wait", container.name], engine, timeout=GRACE_S + 10).stdout.strip()
        assert exit_code == "0" and time.monotonic() - stopped < GRACE_S
        print(f"SIGTERM with a request in flight: answered 200, exit 0 after {time.monotonic() - stopped:.1f} s")


def test_the_healthcheck_follows_bnn_port(engine: dict[str, str], image: str) -> None:
    port = free_port()
    with running(engine, image, "--read-only", "--tmpfs", "/tmp", "-e", f"BNN_PORT={port}",
                 "-e", "BNN_WORKERS=1", "--network", "host") as container:
        wait_for(lambda: ready(f"http://127.0.0.1:{port}"), timeout_s=90, what="/readyz on the non-default port")
        result = run(["podman", "healthcheck", "run", container.name], engine, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def prometheus_api(url: str, path: str) -> dict:
    return httpx.get(url + path, timeout=10).json()["data"]


def test_compose_brings_up_the_service_and_prometheus(engine: dict[str, str], image: str) -> None:
    bnn_port, prometheus_port = free_port(), free_port()
    project = f"bnncheck{bnn_port}"
    # GRAFANA_ADMIN_PASSWORD: compose refuses the whole file without one, though Grafana is not started here
    env = {**engine, "BNN_HOST_PORT": str(bnn_port), "PROMETHEUS_HOST_PORT": str(prometheus_port),
           "COMPOSE_PROJECT_NAME": project, "GRAFANA_ADMIN_PASSWORD": "compose-check-password"}
    compose = ["podman-compose", "-p", project, "-f", "docker-compose.yml", "-f", "deploy/container/compose.podman.yml"]
    try:
        run([*compose, "up", "-d", "bnn", "prometheus"], env, timeout=300)
        url, prometheus = f"http://127.0.0.1:{bnn_port}", f"http://127.0.0.1:{prometheus_port}"
        wait_for(lambda: ready(url), timeout_s=90, what="the service in compose")
        answers = [httpx.post(url + "/predict", content=data, headers={"content-type": "image/png"}).json()
                   for data in [noise_png(seed) for seed in range(3)]
                   + [p.read_bytes() for p, _ in mnist_fixtures()[:5]]]
        referred = sum(answer["refer"] for answer in answers)

        def scraped() -> bool:
            try:
                targets = prometheus_api(prometheus, "/api/v1/targets")["activeTargets"]
                result = prometheus_api(prometheus, "/api/v1/query?query=sum(bnn_predictions_total)")["result"]
            except (httpx.HTTPError, KeyError, ValueError):
                return False
            return any(t["health"] == "up" for t in targets) and bool(result) and float(result[0]["value"][1]) == 8

        wait_for(scraped, timeout_s=90, what="Prometheus to scrape the service (target up, 8 answers)")
        groups = {group["name"] for group in prometheus_api(prometheus, "/api/v1/rules")["groups"]}
        assert {"bnn-recording", "bnn-alerts"} <= groups
        counted = prometheus_api(prometheus, '/api/v1/query?query=sum(bnn_predictions_total{referred="true"})')
        assert float(counted["result"][0]["value"][1]) == referred == 3
    finally:
        run([*compose, "down", "-v"], env, timeout=120, check=False)
        left = run(["podman", "ps", "-a", "--filter", f"label=io.podman.compose.project={project}", "-q"], engine)
        assert left.stdout.strip() == "", "containers left running after compose down"


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    """Everything is ignored but the COPY sources: tests, reports, caches and the venv stay out."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line.removeprefix("!").rstrip("/") for line in lines if line.startswith("!")}
    copies = re.findall(r"^COPY (?:--chown=\S+ )?(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    sources = {source.rstrip("/") for line in copies if "--from=" not in line for source in line.split()}
    assert sources == allowed
