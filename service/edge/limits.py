"""A pure-ASGI guard on request bodies: a byte limit per route (413) and a read deadline (408),
and the lingering refusal they (and the connection bound, ``server.py``) answer with.

Each route has its own limit (:class:`BodyLimits`): a raw ``/predict`` body is one file, so the
file limit; a multipart ``/predict`` that plus its form's framing; ``/predict/batch`` and the OIP
infer routes the request limit; the review and admin JSON bodies, and anything else, 64 KiB.
A declared Content-Length over the route's limit is refused at once, without reading the body
(a raw ``/predict`` announcing 20 MiB with an 8 MiB file limit gets its 413 before the client
has sent more than its first packets). A chunked or
lying body is counted as it arrives; past the limit the client gets 413 and the app below sees a
disconnect (anything it then tries to send is dropped, since the answer has gone). A client that
trickles its body so slowly that the whole of it has not arrived within the deadline gets 408
the same way, so it cannot hold the request open (or its upload buffers) indefinitely.

**Lingering refusal** (what nginx's lingering close does): a refusal is written in full, then
the rest of the request body is read and discarded, for at most ``LINGER_S`` and
``LINGER_BYTES``, before the connection is closed. Closing at once with unread bytes in the
socket makes the kernel send a reset, and a client that writes its whole body before it reads
(Python's urllib, requests, httpx) then sees "connection reset by peer" instead of the 413 and
its detail. A client that sent ``Expect: 100-continue`` has sent no body: it is not drained (a
read would invite the body with "100 Continue").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.schemas import error_body

LINGER_S = 5.0  # longest time spent reading a refused body
LINGER_BYTES = 256 * 1024 * 1024  # most bytes of a refused body read before closing anyway
API_BODY_BYTES = 64 * 1024  # a review label, an admin command: JSON of a few hundred bytes
FORM_FRAMING_BYTES = 64 * 1024  # a multipart form's boundaries, headers and small fields around one file
IMAGE_ROUTES = ("/predict/batch", "/v2/")  # several images in one body: the request limit


def is_raw_image(content_type: str) -> bool:
    """Whether a ``/predict`` body of this Content-Type is the image itself (any ``image/*``, or
    ``application/octet-stream``), not a multipart form: its route and its body limit both ask."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("image/") or media == "application/octet-stream"


@dataclass(frozen=True)
class BodyLimits:
    """The largest body each route takes, in bytes, and what its refusal says."""

    request: int  # /predict/batch, the OIP infer routes: several images
    upload: int  # one image file: a raw /predict body is exactly one
    api: int = API_BODY_BYTES  # every other route: JSON commands, or no body at all

    def of(self, scope: Scope) -> tuple[int, str]:
        """(limit, detail of its refusal) for the request ``scope``."""
        path: str = scope.get("path", "")
        if path.startswith(IMAGE_ROUTES):
            return self.request, f"request body exceeds the limit of {self.request} bytes"
        if path == "/predict":
            content_type = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
            framing = 0 if is_raw_image(content_type) else FORM_FRAMING_BYTES
            limit = self.upload + framing
            return limit, (f"request body exceeds the limit of {limit} bytes (the file exceeds the limit of "
                           f"{self.upload} bytes)")
        return self.api, f"request body exceeds the limit of {self.api} bytes"


def _expects_continue(scope: Scope) -> bool:
    return any(name == b"expect" and value.lower() == b"100-continue" for name, value in scope.get("headers") or [])


async def drain(receive: Receive, max_s: float = LINGER_S, max_bytes: int = LINGER_BYTES) -> int:
    """Read and discard the request body until it ends, the client leaves, or a bound is hit;
    returns the bytes read."""
    deadline, read = time.monotonic() + max_s, 0
    while read <= max_bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except TimeoutError:
            break
        if message["type"] != "http.request":
            break
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return read


async def send_refusal(scope: Scope, receive: Receive, send: Send, status: int, detail: str,
                       retry_after_s: int | None = None, body_pending: bool = True) -> None:
    """Answer ``status`` with ``{"detail": ...}`` (``{"error": ...}`` on /v2) and ``Connection: close``;
    then, when the client may still be sending its body, drain it (bounded) before the response
    completes and the server closes the connection."""
    body = json.dumps(error_body(scope.get("path", ""), detail)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    linger = body_pending and not _expects_continue(scope)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": linger})  # all of it: the client has it now
    if linger:
        await drain(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})  # the server closes now


class GuardedBody:
    """One request's body under its limit and deadline: ``receive`` counts what arrives and turns an
    excess or a stall into a disconnect for the app below; the refusal is answered once the app returns."""

    def __init__(self, receive: Receive, send: Send, max_bytes: int, too_large: str, timeout_s: float,
                 on_reject: Callable[[str], None]):
        self._receive, self._send = receive, send
        self.max_bytes, self.too_large, self.timeout_s = max_bytes, too_large, timeout_s
        self.on_reject = on_reject
        self.deadline = time.monotonic() + timeout_s
        self.received = 0
        self.rejected = self.started = self.complete = False
        self.refusal: tuple[int, str] | None = None  # (status, detail) to answer with

    def reject(self, status: int, reason: str, detail: str) -> Message:
        self.rejected = True
        self.on_reject(reason)
        if not self.started:  # answered once the app below has returned
            self.refusal = (status, detail)
        return {"type": "http.disconnect"}

    async def receive(self) -> Message:
        if self.rejected:
            return {"type": "http.disconnect"}
        if self.complete:
            return await self._receive()  # after the body: only a disconnect can come
        try:
            # a deadline on the running task: wait_for would wrap every receive in a new task
            async with asyncio.timeout(max(0.0, self.deadline - time.monotonic())):
                message = await self._receive()
        except TimeoutError:
            return self.reject(408, "body_timeout", f"request body not received within {self.timeout_s:g} s")
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                return self.reject(413, "too_large", self.too_large)
            self.complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.rejected:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits, timeout_s: float = 30.0,
                 on_reject: Callable[[str], None] | None = None):
        self.app = app
        self.limits = limits
        self.timeout_s = timeout_s
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, too_large = self.limits.of(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            self._rejected("too_large")
            await send_refusal(scope, receive, send, 413, too_large)
            return
        body = GuardedBody(receive, send, max_bytes, too_large, self.timeout_s, self._rejected)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.rejected:
                raise
        if body.refusal is not None:
            status, detail = body.refusal
            # a timed-out body will not come: no point lingering for it
            await send_refusal(scope, receive, send, status, detail, body_pending=status == 413)

    def _rejected(self, reason: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)
