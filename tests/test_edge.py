"""The HTTP edge against the real server, with clients that behave like urllib (they write the
whole request before reading): a refused body still gets its answer, trickled headers get 408,
and connections over the per-worker bound get 503 + Retry-After while the others are served."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from email.message import Message

import pytest

from harness.inputs import mnist_fixtures
from harness.server import running_service

PNG = mnist_fixtures()[0][0].read_bytes()
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def service():
    env = {"BNN_WORKERS": "1", "BNN_MAX_REQUEST_BYTES": str(LIMIT), "BNN_MAX_UPLOAD_BYTES": str(LIMIT),
           "BNN_HEADER_TIMEOUT_S": "1"}
    with running_service(env) as (url, _):
        yield url


def urllib_post(url: str, body: bytes, content_type: str = "image/png") -> tuple[int, Message, dict]:
    """urllib's POST: it writes the whole body, then reads; (status, headers, JSON body)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


@pytest.mark.parametrize("size", [2 * LIMIT, 12 * LIMIT])
def test_an_oversized_body_sent_whole_gets_its_413(service, size):
    status, headers, body = urllib_post(service + "/predict", b"\x89PNG" + b"\x00" * size)
    assert status == 413
    assert body == {"detail": f"request body exceeds the limit of {LIMIT} bytes (the file exceeds the limit of {LIMIT} "
                              "bytes)"}
    assert headers["Connection"] == "close"


def test_an_oversized_chunked_body_gets_its_413(service):
    """No Content-Length: the body is counted as it arrives, refused past the limit, and drained."""
    port = int(service.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    chunks = (b"\x00" * 65536 for _ in range(3 * LIMIT // 65536))
    connection.request("POST", "/predict", body=chunks, headers={"Content-Type": "application/octet-stream"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"detail": f"request body exceeds the limit of {LIMIT} bytes (the file "
                                                     f"exceeds the limit of {LIMIT} bytes)"}
    connection.close()


def test_the_service_still_answers_after_refusals(service):
    status, _, body = urllib_post(service + "/predict", PNG)
    assert status == 200 and body["class"] == mnist_fixtures()[0][1]


def read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return answer


def test_trickled_header_lines_get_408_and_the_connection_closed(service):
    port = int(service.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        for line in (b"X-A: 1\r\n", b"X-B: 2\r\n", b"X-C: 3\r\n"):  # one line every 0.4 s: never complete in 1 s
            time.sleep(0.4)
            try:
                sock.sendall(line)
            except OSError:
                break
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert answer.endswith(b'{"detail": "request headers not received within 1 s"}')
    assert 0.9 < time.monotonic() - started < 5.0


def test_a_silent_connection_is_closed_after_the_header_deadline(service):
    port = int(service.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        assert read_answer(sock).startswith(b"HTTP/1.1 408")
    assert 0.9 < time.monotonic() - started < 5.0


def test_headers_in_time_then_a_slow_body_are_not_cut_by_the_header_deadline(service):
    port = int(service.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(PNG))
        time.sleep(1.5)  # past the header deadline, well within the body's
        sock.sendall(PNG)
        sock.settimeout(10)
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200")


def test_connections_over_the_bound_get_503_and_the_others_are_served():
    with running_service({"BNN_WORKERS": "1", "BNN_MAX_CONNECTIONS": "2"}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        held = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(2)]
        try:
            for connection in held:  # two keep-alive connections, open
                connection.request("GET", "/healthz")
                assert connection.getresponse().read()
            status, headers, body = urllib_post(url + "/predict", PNG)  # a third
            assert status == 503 and headers["Retry-After"] == "1" and headers["Connection"] == "close"
            assert body == {"detail": "too many open connections to this worker; retry shortly"}
            for connection in held:  # the open ones are still served
                connection.request("POST", "/predict", body=PNG, headers={"Content-Type": "image/png"})
                assert connection.getresponse().status == 200
        finally:
            for connection in held:
                connection.close()
        deadline = time.monotonic() + 5
        while (status := urllib_post(url + "/predict", PNG)[0]) != 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server notices the closes
        assert status == 200
