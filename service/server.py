"""The HTTP server around the app: uvicorn with its httptools parser and uvloop, plus two guards
at the connection level that uvicorn lacks (the body's limits are the app's: ``limits.py``).

* **Header deadline**: from a request's first byte (or from the connection's opening), its
  header lines must arrive within ``BNN_HEADER_TIMEOUT_S``; a client that trickles them gets
  408 and the connection is closed (uvicorn's keep-alive timeout only covers idle connections
  between requests, and nothing covers a connection that never completes its headers).
* **Connection bound**: a worker with ``BNN_MAX_CONNECTIONS`` open connections answers every
  request on a further connection with 503 + Retry-After and closes it, reading the request's
  body first (bounded, as for a 413) so a client that sends before it reads sees the answer.
  uvicorn's own ``limit_concurrency`` is not used: it refuses requests on *every* connection,
  old ones included, once the count is reached.

``server_config`` is the one place both ``python -m service`` paths (one process, or workers)
build uvicorn's configuration.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.limits import send_refusal
from service.settings import Settings

log = logging.getLogger("service")
GRACEFUL_SHUTDOWN_S = 20  # uvicorn's time for in-flight requests after SIGTERM (every serving process)
OVERLOADED_RETRY_AFTER_S = 1
HEADER_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                           b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


async def refuse_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """The app a connection over the bound is given instead of ours."""
    if scope["type"] == "http":
        await send_refusal(scope, receive, send, 503, "too many open connections to this worker; retry shortly",
                           retry_after_s=OVERLOADED_RETRY_AFTER_S)


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the header deadline and the connection bound."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            over = len(self.connections) >= max_connections
            super().connection_made(transport)
            if over:
                log.warning("connection refused: %d connections open (BNN_MAX_CONNECTIONS)", len(self.connections) - 1)
                self.app = refuse_connection
            self._arm_header_deadline()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_header_deadline()

        def on_headers_complete(self) -> None:
            self._disarm_header_deadline()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_deadline()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._header_deadline_passed)

        def _disarm_header_deadline(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_deadline_passed(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return  # a request is being answered: its headers came in time
            body = b'{"detail": "request headers not received within %g s"}' % header_timeout_s
            self.transport.write(HEADER_TIMEOUT_RESPONSE % (len(body), body))
            self.transport.close()

    return GuardedHttpToolsProtocol


def server_config(app: ASGIApp, settings: Settings, **overrides: object) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: uvloop, httptools with the guards, no access log unless
    BNN_ACCESS_LOG, graceful shutdown."""
    options: dict[str, object] = {
        "lifespan": "on", "loop": "uvloop", "http": guarded_protocol(settings.header_timeout_s, settings.max_connections),
        "access_log": settings.access_log, "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S, "log_level": "info",
        **overrides,
    }
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]
