"""A pure-ASGI guard on request bodies: a byte limit (413) and a read deadline (408).

A declared Content-Length over the limit is refused without reading the body. A chunked or
lying body is counted as it arrives; past the limit the client gets 413 and the app below sees a
disconnect (anything it then tries to send is dropped, since the answer has gone). A client that
trickles its body so slowly that the whole of it has not arrived within the deadline gets 408
the same way, so it cannot hold the request open (or its upload buffers) indefinitely.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def _send_error(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float = 30.0,
                 on_reject: Callable[[str], None] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            self._rejected("too_large")
            await _send_error(send, 413, self._too_large)
            return
        state: dict[str, Any] = {"received": 0, "rejected": False, "started": False, "complete": False}
        deadline = time.monotonic() + self.timeout_s

        async def reject(status: int, reason: str, detail: str) -> Message:
            state["rejected"] = True
            self._rejected(reason)
            if not state["started"]:
                state["started"] = True
                await _send_error(send, status, detail)
            return {"type": "http.disconnect"}

        async def guarded_receive() -> Message:
            if state["rejected"]:
                return {"type": "http.disconnect"}
            if state["complete"]:
                return await receive()  # after the body: only a disconnect can come
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return await reject(408, "body_timeout", f"request body not received within {self.timeout_s:g} s")
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    return await reject(413, "too_large", self._too_large)
                state["complete"] = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not state["rejected"]:
                raise

    @property
    def _too_large(self) -> str:
        return f"request body exceeds the limit of {self.max_bytes} bytes"

    def _rejected(self, reason: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)
