"""Several workers (BNN_WORKERS, service/workers.py): metrics add up exactly, connections reach
every worker, TCP_NODELAY, one instance per port, a bad checkpoint stops start-up once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness.inputs import ROOT, mnist_fixtures, shipped_calibration
from harness.server import children, free_port, post_image, running_service, wait_for_listening_workers
from service.workers import tcp_listener
from tests.metrics_text import parse_samples, per_worker_predictions, predictions_by_worker, total

SEVEN = mnist_fixtures()[0][0].read_bytes()
EXPECTED_REFERRAL_RATE = 1 - shipped_calibration()["validation_coverage"]


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def two_workers(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment for 2 workers x 1 thread with their metrics in a directory the test can read."""
    metrics_dir = tmp_path / "metrics"
    return {"BNN_WORKERS": "2", "BNN_THREADS": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, metrics_dir


def test_two_workers_count_exactly_whichever_answers_metrics(two_workers):
    env, metrics_dir = two_workers
    with running_service(env) as (url, process):
        wait_for_listening_workers(url, process.pid, 2)
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: post_image(url, SEVEN).status_code, range(40)))
        assert codes == [200] * 40
        served = per_worker_predictions(metrics_dir)
        assert len(served) == 2 and min(served) > 0, served  # both workers answered some
        for _ in range(10):  # fresh connections: each scrape may reach either worker
            samples = parse_samples(httpx.get(url + "/metrics", timeout=10).text)
            assert total(samples, "bnn_predictions_total") == 40
            assert total(samples, "bnn_predictions_total", referred="false", **{"class": "7"}) == 40
            assert total(samples, "bnn_request_latency_seconds_count", route="/predict") == 40
            assert total(samples, "bnn_expected_referral_rate") == pytest.approx(EXPECTED_REFERRAL_RATE)


def test_a_missing_checkpoint_stops_several_workers_at_once(tmp_path):
    env = {**os.environ, "BNN_WORKERS": "2", "BNN_MODEL_PATH": str(tmp_path / "absent.safetensors"),
           "BNN_PORT": str(free_port())}
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "absent.json: metadata file is missing" in result.stderr


def test_a_burst_of_keep_alive_connections_reaches_every_worker(two_workers):
    """16 connections opened at once, each kept alive for 3 requests. With one shared socket one
    worker's accept loop took a whole burst about half the time; with a socket per worker the
    kernel spreads them (all 16 on one worker: probability 2 / 2**16)."""
    env, metrics_dir = two_workers
    with running_service(env) as (url, process):
        wait_for_listening_workers(url, process.pid, 2)
        before = per_worker_predictions(metrics_dir)

        def keep_alive_client(_: int) -> list[int]:
            with httpx.Client(timeout=60) as client:
                return [client.post(url + "/predict", files={"file": ("d.png", SEVEN, "image/png")}).status_code
                        for _ in range(3)]

        with ThreadPoolExecutor(16) as pool:
            codes = [code for codes in pool.map(keep_alive_client, range(16)) for code in codes]
        assert codes == [200] * 48
        served = [after - earlier for after, earlier in zip(per_worker_predictions(metrics_dir), before, strict=True)]
        assert sum(served) == 48 and min(served) > 0, served


def nodelay_of_accepted_connection(listener: socket.socket) -> int:
    async def accept_one() -> int:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()

    return asyncio.run(accept_one())


def test_worker_sockets_give_accepted_connections_tcp_nodelay():
    assert nodelay_of_accepted_connection(tcp_listener("127.0.0.1", 0, reuse_port=True)) != 0
    # the way uvicorn's --workers binds (proto 0): asyncio leaves Nagle on, ~40 ms per keep-alive answer
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    assert nodelay_of_accepted_connection(plain) == 0


def test_a_second_instance_on_the_same_port_refuses_to_start(two_workers):
    env, _ = two_workers  # the same metrics directory too: the second must not wipe the first's counts
    with running_service(env) as (url, _):
        assert [post_image(url, SEVEN).status_code for _ in range(3)] == [200] * 3
        port = url.rsplit(":", 1)[1]
        second = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                env={**os.environ, **env, "BNN_PORT": port, "BNN_HOST": "127.0.0.1"})
        assert second.returncode == 1
        assert "Address already in use" in second.stderr
        assert httpx.get(url + "/readyz").status_code == 200  # the first one is untouched
        assert total(parse_samples(httpx.get(url + "/metrics").text), "bnn_predictions_total") == 3


def test_one_worker_on_a_taken_port_keeps_the_other_instances_metrics(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    theirs = metrics_dir / "counter_123.db"
    theirs.write_bytes(b"another instance's counts")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "BNN_WORKERS": "1", "BNN_PORT": str(port), "BNN_HOST": "127.0.0.1",
                                     "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    assert result.returncode == 1 and "Address already in use" in result.stderr
    assert theirs.read_bytes() == b"another instance's counts"


def test_a_killed_worker_is_replaced_and_no_count_is_lost(two_workers):
    env, metrics_dir = two_workers
    with running_service(env) as (url, process):
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _: post_image(url, SEVEN).status_code, range(20))) == [200] * 20
        workers = children(process.pid)
        assert len(workers) == 2
        served_by_killed = predictions_by_worker(metrics_dir)[workers[0]]
        assert served_by_killed > 0
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = children(process.pid)
            if len(now) == 2 and workers[0] not in now and httpx.get(url + "/readyz", timeout=5).status_code == 200:
                break
            time.sleep(0.2)
        replaced = children(process.pid)
        assert workers[0] not in replaced and workers[1] in replaced and len(replaced) == 2
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _: post_image(url, SEVEN).status_code, range(20))) == [200] * 20
        samples = parse_samples(httpx.get(url + "/metrics", timeout=10).text)
        assert total(samples, "bnn_predictions_total") == 40  # the killed worker's answers still count


def test_workers_stop_when_the_supervisor_is_killed(two_workers):
    env, _ = two_workers
    with running_service(env) as (url, process):
        workers = children(process.pid)
        assert len(workers) == 2
        process.kill()  # SIGKILL: the supervisor cannot pass anything on
        process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(running(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(running(pid) for pid in workers), "orphaned workers kept running"
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/readyz", timeout=5)
