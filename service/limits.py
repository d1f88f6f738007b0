"""A pure-ASGI request-body limit: 413 before the body is parsed, with or without Content-Length.

A declared Content-Length over the limit is refused without reading the body. A chunked or
lying body is counted as it arrives; past the limit the client gets 413 and the app below sees a
disconnect (anything it then tries to send is dropped, since the answer has gone).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body exceeds the limit of {limit} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, on_reject: Callable[[str], None] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            self._rejected()
            await _send_413(send, self.max_bytes)
            return
        state: dict[str, Any] = {"received": 0, "rejected": False, "started": False}

        async def guarded_receive() -> Message:
            if state["rejected"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["rejected"] = True
                    self._rejected()
                    if not state["started"]:
                        state["started"] = True
                        await _send_413(send, self.max_bytes)
                    return {"type": "http.disconnect"}
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

    def _rejected(self) -> None:
        if self.on_reject is not None:
            self.on_reject("too_large")
