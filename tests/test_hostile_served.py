"""Round two of the hostile catalogue against the real service (``python -m service``, its defaults,
only documented variables set), on SQLite and on a real PostgreSQL: decoding bounded per request,
an announced oversized body refused before it is read, and the review store keeping the decoded
image re-encoded, never the bytes a client appended to it. ``python -m bench.hostile`` times the
same requests and prints the before/after table."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from harness.images import gif_declaring
from harness.inputs import noise_png
from harness.server import running_service, wait_for
from tests.review_client import TOKEN, TOKENS, bearer

MIB = 1024 * 1024
BUDGET = 512 * MIB  # BNN_MAX_REQUEST_DECODE_BYTES's default


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        database = f"sqlite:///{tmp_path_factory.mktemp('store')}/review.db"
    else:
        database = request.getfixturevalue("postgres").create_database("hostile_served")
    with running_service({"BNN_REVIEW_TOKENS": TOKENS, "BNN_REVIEW_DB": database}) as (url, _):
        yield url


def test_a_batch_of_canvas_declaring_gifs_is_decoded_within_the_request_budget(service):
    """32 GIFs of 43 bytes each declaring a 6324 x 6324 screen (360 MB each to decode): the first is
    decoded (blank: 422), the other 31 refused undecoded with the budget named, and the worker goes
    on answering /healthz. (That the event loop runs while the pool decodes: test_decoding.py;
    how long the batch and the probes take: python -m bench.hostile.)"""
    files = [("files", (f"g{index}.gif", gif_declaring(6324, 6324), "image/gif")) for index in range(32)]
    answer: dict[str, httpx.Response] = {}
    posting = threading.Thread(target=lambda: answer.update(batch=httpx.post(service + "/predict/batch", files=files,
                                                                            timeout=60)))
    posting.start()
    health = [httpx.get(service + "/healthz", timeout=30).status_code for _ in range(3)]
    posting.join()
    items = answer["batch"].json()
    assert answer["batch"].status_code == 200 and health == [200, 200, 200]
    assert [item["status"] for item in items] == [422] + [413] * 31
    assert items[0]["reason"] == "no_ink"
    assert items[1]["detail"] == (f"decoding this request's images would take more than {BUDGET} bytes; this image "
                                  f"alone {6324 * 6324 * 9} (width x height x bytes per pixel): send fewer or smaller "
                                  "images")


def test_an_announced_oversized_raw_body_gets_its_413_before_it_is_sent(service):
    """Content-Length 20 MiB on a raw /predict (the file limit is 8 MiB), 64 KiB sent: the 413 is
    already there to read, with the rest never sent."""
    host, port = service.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
                     f"Content-Length: {20 * MIB}\r\n\r\n".encode() + b"\x00" * 65536)
        answer = sock.makefile("rb")
        status_line = answer.readline().decode().strip()
        headers = dict(line.decode().strip().lower().split(": ", 1) for line in iter(answer.readline, b"\r\n"))
        body = answer.read(int(headers["content-length"]))
    assert status_line == "HTTP/1.1 413 Request Entity Too Large"
    assert json.loads(body) == {
        "detail": f"request body exceeds the limit of {8 * MIB} bytes (the file exceeds the limit of {8 * MIB} bytes)"}


def test_the_store_keeps_the_decoded_image_not_the_bytes_appended_to_it(service):
    """A 64 x 64 noise PNG followed by 2 MB of random bytes: referred and queued; what a reviewer gets
    back is the image, re-encoded as a PNG of a few KB, pixel for pixel the one sent."""
    png = noise_png(7)
    answer = httpx.post(service + "/predict", files={"file": ("n.png", png + np.random.default_rng(2).bytes(2_000_000),
                                                              "image/png")}, timeout=60).json()
    assert answer["refer"] is True and answer["review_id"] is not None
    url = f"{service}/review/items/{answer['review_id']}/file"
    with httpx.Client(timeout=10) as client:  # the write-behind stores it within a few of its rounds
        stored = wait_for(lambda: (response := client.get(url, headers=bearer(TOKEN))).status_code == 200 and response,
                          what="the item in the store")
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/png"
    assert len(stored.content) < 10_000
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored.content))),
                          np.asarray(Image.open(io.BytesIO(png))))


@pytest.mark.parametrize("item", ["%00", "a%00b", "x" * 200, "%E2%80%AE", "0" * 31])
def test_an_id_the_queue_never_made_is_a_404_that_never_reaches_the_store(service, item):
    """A NUL byte in an item id made PostgreSQL's driver fail: a 503 whose detail quoted the SQL."""
    for route in ("", "/file", "/input.png"):
        response = httpx.get(f"{service}/review/items/{item}{route}", headers=bearer(TOKEN), timeout=10)
        assert response.status_code == 404, response.text
        assert response.json()["detail"].startswith("no review item ") and "SELECT" not in response.text
    labelled = httpx.post(f"{service}/review/items/{item}/label", json={"label": 3}, headers=bearer(TOKEN), timeout=10)
    assert labelled.status_code == 404
