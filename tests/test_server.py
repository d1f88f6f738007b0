"""Faults against the real server process: slow clients, SIGTERM with requests in flight, API key."""

from __future__ import annotations

import signal
import socket
import threading
import time

import httpx
import pytest

from harness.inputs import mnist_fixtures
from harness.server import running_service

PNG = mnist_fixtures()[0][0].read_bytes()


def post_digit(url: str, **params) -> httpx.Response:
    return httpx.post(url + "/predict", files={"file": ("d.png", PNG, "image/png")}, params=params, timeout=60)


def test_a_trickling_client_gets_408_and_does_not_block_others():
    with running_service({"BNN_BODY_TIMEOUT_S": "1.5"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 100000\r\n\r\n--b\r\n")
        started = time.monotonic()
        assert post_digit(url).status_code == 200  # others are served meanwhile
        slow.settimeout(10)
        answer = b""
        while b"\r\n\r\n" not in answer or b"}" not in answer:
            chunk = slow.recv(4096)
            if not chunk:
                break
            answer += chunk
        slow.close()
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"request body not received within 1.5 s" in answer
        assert 1.0 < time.monotonic() - started < 8.0
        metrics = httpx.get(url + "/metrics").text
        assert 'bnn_rejected_requests_total{reason="body_timeout"} 1.0' in metrics


def slow_multipart(seconds: float):
    """A multipart body with the digit, sent in pieces over ``seconds``."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n--b--\r\n")
    pieces = 10
    step = len(body) // pieces + 1
    for i in range(pieces):
        time.sleep(seconds / pieces)
        yield body[i * step : (i + 1) * step]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_in_flight_requests_finish_then_exits(workers):
    with running_service({"BNN_WORKERS": workers, "BNN_THREADS": "1"}) as (url, process):
        results: list[tuple[int, float]] = []

        def client() -> None:
            response = httpx.post(url + "/predict", content=slow_multipart(1.0), timeout=60,
                                  headers={"content-type": "multipart/form-data; boundary=b"})
            results.append((response.status_code, time.monotonic()))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # uploads are under way
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        assert [status for status, _ in results] == [200] * 4
        assert all(finished > signalled + 0.3 for _, finished in results)  # they really were in flight
        # uvicorn finishes in-flight work, runs the lifespan shutdown, then re-raises the signal;
        # with several workers the supervisor passes SIGTERM on, waits for them, and exits 0
        assert process.wait(30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            post_digit(url)


def test_api_key_is_required_when_configured():
    with running_service({"BNN_API_KEY": "s3cret"}) as (url, _):
        assert post_digit(url).status_code == 401
        assert post_digit(url).json() == {"detail": "missing or wrong X-API-Key header"}
        wrong = httpx.post(url + "/predict", files={"file": ("d.png", PNG)}, headers={"X-API-Key": "s3creT"})
        assert wrong.status_code == 401
        right = httpx.post(url + "/predict", files={"file": ("d.png", PNG)}, headers={"X-API-Key": "s3cret"})
        assert right.status_code == 200 and right.json()["class"] == 7
        assert httpx.get(url + "/readyz").status_code == 200  # probes stay open
