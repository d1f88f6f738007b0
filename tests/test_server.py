"""Faults against the real server process: slow clients, SIGTERM with requests in flight, API key;
and the connection guards' log, which a flood must not turn into one line per connection."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from harness.inputs import mnist_fixtures
from harness.server import post_image, running_service
from service.edge.server import Throttled

PNG = mnist_fixtures()[0][0].read_bytes()


def test_a_trickling_client_gets_408_and_does_not_block_others():
    with running_service({"BNN_BODY_TIMEOUT_S": "1.5"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 100000\r\n\r\n--b\r\n")
        started = time.monotonic()
        assert post_image(url, PNG).status_code == 200  # others are served meanwhile
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


def slow_multipart(seconds: float, on_first_piece: Callable[[], object] | None = None):
    """A multipart body with the digit, sent in pieces over ``seconds`` (the client's own pace);
    ``on_first_piece`` is called once the first piece is on its way."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n--b--\r\n")
    pieces = 10
    step = len(body) // pieces + 1
    for i in range(pieces):
        time.sleep(seconds / pieces)
        yield body[i * step : (i + 1) * step]
        if i == 0 and on_first_piece is not None:
            on_first_piece()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_in_flight_requests_finish_then_exits(workers):
    with running_service({"BNN_WORKERS": workers, "BNN_THREADS": "1"}) as (url, process):
        results: list[tuple[int, float]] = []
        under_way = threading.Semaphore(0)

        def client() -> None:
            response = httpx.post(url + "/predict", content=slow_multipart(1.0, under_way.release), timeout=60,
                                  headers={"content-type": "multipart/form-data; boundary=b"})
            results.append((response.status_code, time.monotonic()))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        for _ in threads:  # every upload is under way
            assert under_way.acquire(timeout=30)
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
            post_image(url, PNG)


def test_api_key_is_required_when_configured():
    with running_service({"BNN_API_KEY": "s3cret-0123456789abcdef"}) as (url, _):
        assert post_image(url, PNG).status_code == 401
        assert post_image(url, PNG).json() == {"detail": "missing or wrong X-API-Key header"}
        wrong = httpx.post(url + "/predict", files={"file": ("d.png", PNG)},
                           headers={"X-API-Key": "s3creT-0123456789abcdef"})
        assert wrong.status_code == 401
        right = httpx.post(url + "/predict", files={"file": ("d.png", PNG)},
                           headers={"X-API-Key": "s3cret-0123456789abcdef"})
        assert right.status_code == 200 and right.json()["class"] == 7
        assert httpx.get(url + "/readyz").status_code == 200  # probes stay open


def test_a_repeated_event_is_logged_once_per_interval_with_its_count(caplog):
    """2,300 refused connections wrote 2,300 warnings; now one line per 10 s says how many."""
    refused = Throttled(logging.WARNING, "connections refused: %d open")
    with caplog.at_level(logging.INFO, logger="service"):
        for _ in range(2300):
            refused(1024)
        assert caplog.messages == ["connections refused: 1024 open (1 since the last such line)"]
        refused.last -= refused.every_s  # the interval has passed
        refused(1025)
    assert caplog.messages[1:] == ["connections refused: 1025 open (2300 since the last such line)"]
