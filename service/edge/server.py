"""The HTTP server around the app: uvicorn with its httptools parser and uvloop, plus guards at
the connection level that uvicorn lacks (the body's limits are the app's: ``limits.py``).

* **Header deadline**: from a request's first byte (or from the connection's opening), its
  header lines must arrive within ``BNN_HEADER_TIMEOUT_S``; a client that trickles them gets
  408 and the connection is closed (uvicorn's keep-alive timeout only covers idle connections
  between requests, and nothing covers a connection that never completes its headers).
* **Head size**: a request line and headers over ``MAX_HEAD_BYTES`` get 431 and the connection
  is closed after a bounded linger (as ``limits.send_refusal``'s, so a client still sending
  reads the answer, not a reset). httptools has no bound: one 100 MiB header value was read
  whole (7.7 s, 100 MB, the worker's /healthz stalled 3.6 s). The bytes are counted per read:
  a read in which an earlier pipelined request ended is not counted (where the next head starts
  in it is unknown), so a head may pass the bound by at most one read (256 KiB on uvloop).
* **Write timeout**: a connection whose answer the client does not read, with uvicorn's writes
  paused (over 64 KiB unsent: its flow control) or its close waiting on unsent bytes, for
  ``BNN_WRITE_TIMEOUT_S``, is aborted. Without it, 2,300 connections that pipelined
  ``GET /openapi.json`` and never read held every slot for as long as they stayed open. A reader
  must take ``READ_PER_TIMEOUT`` (48 KiB) within the timeout (~5 KB/s at 10 s), which any client
  that reads does: each 48 KiB it takes, counted in uvloop's buffer and the kernel's send queue,
  starts the clock again. (It once ran until the writes resumed, with uvloop's low-water mark at
  16 bytes, so a reader had to take nearly all of a piece written at once: the review export,
  with lines of 600 KB, cut readers at 120 KB/s.)
* **Connection bound**: a worker with ``BNN_MAX_CONNECTIONS`` open connections first makes room:
  a new connection takes the place of the one idle longest (between requests, or silent since it
  opened), else of the one unable to write longest, if that one has done nothing for
  ``IDLE_GRACE_S`` (closing it loses no answer a client is reading). Only when every open
  connection is busy (receiving a request, being answered) does the new one get 503 +
  Retry-After, reading its request's body first (bounded, as for a 413) so a client that sends
  before it reads sees the answer. So a flood of connections that do nothing or read nothing
  cannot keep /healthz out; what is left is a flood of requests in progress, bounded in time by
  the header and body deadlines. uvicorn's own ``limit_concurrency`` is not used: it refuses
  requests on *every* connection, old ones included, once the count is reached.

Refusals, write timeouts and evictions are logged at most once per ``LOG_EVERY_S`` each, with
their count (a flood of refused connections once wrote one line each).

``server_config`` is the one place both ``python -m service`` paths (one process, or workers)
build uvicorn's configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import socket
import struct
import termios
import time
from collections.abc import Collection
from typing import ClassVar

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from service.edge.limits import LINGER_BYTES, LINGER_S, send_refusal
from service.settings import Settings

log = logging.getLogger("service")
GRACEFUL_SHUTDOWN_S = 20  # uvicorn's time for in-flight requests after SIGTERM (every serving process)
OVERLOADED_RETRY_AFTER_S = 1
MAX_HEAD_BYTES = 64 * 1024  # request line and headers; nginx's default allows 4 x 8 KiB lines
IDLE_GRACE_S = 1.0  # a connection that has done nothing this long may give its place to a new one
SWEEP_S = 1.0  # how often a worker looks for connections that cannot write
READ_PER_TIMEOUT = 48 * 1024  # what a reader must take per BNN_WRITE_TIMEOUT_S (~5 KB/s at 10 s)
LOG_EVERY_S = 10.0  # at most one log line per this, per kind of event
DRAIN_IDLE_S = 0.5  # at a graceful shutdown, how long an idle keep-alive connection waits for a request on its way
LINGER_QUIET_S = 0.5  # after a 431: a client silent this long has sent all it will before reading


def closing_response(status: bytes, detail: str) -> bytes:
    """A complete HTTP/1.1 answer with ``{"detail": ...}`` and ``Connection: close``."""
    body = json.dumps({"detail": detail}).encode()
    return (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
            % (status, len(body), body))


class Throttled:
    """A log line for a repeated event at most once per ``every_s``, saying how many there were."""

    def __init__(self, level: int, message: str, every_s: float = LOG_EVERY_S) -> None:
        self.level, self.message, self.every_s = level, message, every_s
        self.count, self.last = 0, -math.inf

    def __call__(self, *args: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            log.log(self.level, self.message + " (%d since the last such line)", *args, self.count)
            self.count, self.last = 0, now


async def refuse_connection(scope: Scope, receive: Receive, send: Send) -> None:
    """The app a connection over the bound is given instead of ours."""
    if scope["type"] == "http":
        await send_refusal(scope, receive, send, 503, "too many open connections to this worker; retry shortly",
                           retry_after_s=OVERLOADED_RETRY_AFTER_S)


def socket_queue(transport: asyncio.BaseTransport, request: int) -> int:
    """A byte count the kernel keeps for the transport's socket: ``termios.TIOCOUTQ`` (sent, not yet
    taken by the peer) or ``termios.FIONREAD`` (received, not yet read); 0 where it cannot say."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    with contextlib.suppress(OSError, ValueError):  # closed meanwhile
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0" * 4))[0])
    return 0


def unsent_bytes(transport: asyncio.WriteTransport) -> int:
    """What the client has not taken of the answers: the transport's buffer and the kernel's send queue.
    The buffer alone moves in steps of a third of the kernel's (megabytes on loopback): a reader at
    100 KB/s showed none for 11.5 s."""
    return transport.get_write_buffer_size() + socket_queue(transport, termios.TIOCOUTQ)


def oldest_waiting_since(waiting: dict[GuardedProtocol, float], now: float) -> GuardedProtocol | None:
    """The first (oldest) of ``waiting`` if it has waited ``IDLE_GRACE_S``: the others waited less."""
    first = next(iter(waiting.items()), None)
    return first[0] if first is not None and now - first[1] >= IDLE_GRACE_S else None


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guards; ``guarded_protocol`` makes one class per
    server, whose class attributes are that server's shared state."""

    header_timeout_s: float
    max_connections: int
    write_timeout_s: float
    idle: ClassVar[dict[GuardedProtocol, float]]  # doing nothing since (oldest first)
    stalled: ClassVar[dict[GuardedProtocol, float]]  # unable to write since (oldest first)
    sweeper: ClassVar[asyncio.TimerHandle | None]
    refused: Throttled
    evicted: Throttled
    timed_out: Throttled
    head_refused: Throttled

    _header_timer: asyncio.TimerHandle | None = None
    _in_head = False  # a request's head has begun and is not complete
    _head_bytes = 0  # of it, counted by reads
    _message_ended = False  # during one read: a request ended in it
    _lingering = False  # answered at the connection level: reading and discarding until closed
    _discarded = 0
    _linger_ends = 0.0
    _unsent_since_progress = 0  # unsent bytes when the write clock last started
    _draining = False  # the server shuts down: answer what comes, then close
    _drain_timer: asyncio.TimerHandle | None = None
    _linger_timer: asyncio.TimerHandle | None = None
    _answering: RequestResponseCycle | None = None  # the request being answered (self.cycle is the last parsed)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.max_connections
        super().connection_made(transport)
        if full and not self._make_room():
            self.refused(len(self.connections) - 1)
            self.app = refuse_connection
        else:
            self.idle[self] = self.loop.time()
        self._arm_header_deadline()
        cls = type(self)
        if cls.sweeper is None:
            cls.sweeper = self.loop.call_later(SWEEP_S, cls.sweep, self.loop, self.connections)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            else:
                self._linger_on()
            return
        self._message_ended = False
        super().data_received(data)
        if self._in_head and not self._message_ended and not self.transport.is_closing():
            self._head_bytes += len(data)  # all of this read is the head being received
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        self.idle.pop(self, None)
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_header_deadline()
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed

    def on_message_complete(self) -> None:
        self._message_ended = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # nothing pipelined: waiting for the next request
            self.idle[self] = self.loop.time()
            if self._draining:
                self._drain_later()

    def shutdown(self) -> None:
        """A graceful shutdown (uvicorn's closes an idle connection at once, under a request that may
        already be on its way: a reset, no answer, for 3 of 4 keep-alive clients posting in a loop):
        an answer not yet begun says Connection: close; a connection idle now, or once the answer
        under way ends, closes after ``DRAIN_IDLE_S`` unless a request came (answered, then closed)."""
        self._draining = True
        if self.cycle is None or self.cycle.response_complete:
            self._drain_later()
        elif not self.cycle.response_started:
            self.cycle.keep_alive = False
        # else its head is out, saying keep-alive: on_response_complete drains it as an idle one

    def _drain_later(self) -> None:
        if self._drain_timer is None and not self.transport.is_closing():
            self._drain_timer = self.loop.call_later(DRAIN_IDLE_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        """Close a draining connection with no request: none under way, none arriving (bytes unread
        in the socket: closing on them would reset it), none begun (its header deadline ends it)."""
        self._drain_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self._in_head \
                and not self.transport.is_closing():
            if socket_queue(self.transport, termios.FIONREAD):
                self._drain_timer = self.loop.call_later(DRAIN_IDLE_S, self._close_if_idle)  # parsed meanwhile
            else:
                self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stall(self.loop.time())

    def _stall(self, now: float) -> None:
        """Start the write clock, unless it runs: from now, and from what is unsent now."""
        if self not in self.stalled:
            self.stalled[self] = now
            self._unsent_since_progress = unsent_bytes(self.transport)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.stalled.pop(self, None)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._answering = cycle
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        self.idle.pop(self, None)
        self.stalled.pop(self, None)
        if self._answering is not None and not self._answering.response_complete:
            # uvicorn marks only the last parsed request disconnected; with requests pipelined
            # behind it, the one being answered would wake from its wait to write (flow control's
            # drain) and write to the closed transport: a RuntimeError and a 500 logged for each
            self._answering.disconnected = True
            self._answering.message_event.set()
        super().connection_lost(exc)

    @classmethod
    def sweep(cls, loop: asyncio.AbstractEventLoop, connections: Collection[object]) -> None:
        """Abort the connections unable to write for ``write_timeout_s``, a client that took
        ``READ_PER_TIMEOUT`` since the clock started restarting it (an answer written in one piece,
        an export's line of a megabyte, reaches a slow reader); runs every ``SWEEP_S`` while the
        server has connections."""
        now = loop.time()
        for connection in list(connections):
            if (isinstance(connection, cls) and connection.transport.is_closing()
                    and connection.transport.get_write_buffer_size()):
                connection._stall(now)  # closed, its last answer unread
        for connection, since in list(cls.stalled.items()):
            unsent = unsent_bytes(connection.transport)
            if connection._unsent_since_progress - unsent >= READ_PER_TIMEOUT:  # read, slowly: the clock restarts
                del cls.stalled[connection]  # and goes to the end: the oldest stay first
                cls.stalled[connection] = now
                connection._unsent_since_progress = unsent
            elif now - since >= cls.write_timeout_s:
                cls.timed_out(cls.write_timeout_s)
                connection.abort()
        cls.sweeper = loop.call_later(SWEEP_S, cls.sweep, loop, connections) if connections else None

    def abort(self) -> None:
        """Close now with a reset, dropping what is unsent: a plain close leaves the kernel holding
        the unsent bytes (up to the socket's send buffer, megabytes) until the peer reads them or
        its retries give up, minutes later (nginx's reset_timedout_connection)."""
        self.idle.pop(self, None)
        self.stalled.pop(self, None)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _make_room(self) -> bool:
        """Close the connection idle longest, else the one unable to write longest, if it has done
        nothing for ``IDLE_GRACE_S``; whether one was closed."""
        now = self.loop.time()
        victim = oldest_waiting_since(self.idle, now) or oldest_waiting_since(self.stalled, now)
        if victim is None:
            return False
        self.evicted(len(self.connections))
        if victim.transport.get_write_buffer_size():
            victim.abort()
        else:
            self.idle.pop(victim, None)
            victim.transport.close()
        return True

    def _refuse_head(self) -> None:
        self._disarm_header_deadline()
        self.head_refused(MAX_HEAD_BYTES)
        if self.cycle is not None and not self.cycle.response_complete:
            self.abort()  # an answer is being written: no room for a 431 on this connection
            return
        self._lingering, self._linger_ends = True, self.loop.time() + LINGER_S
        self.transport.write(closing_response(b"431 Request Header Fields Too Large",
                                              f"request line and headers exceed {MAX_HEAD_BYTES} bytes"))
        self._linger_on()

    def _linger_on(self) -> None:
        """Close once the client has sent nothing for ``LINGER_QUIET_S`` (it has sent its request
        and waits for the answer), or ``LINGER_S`` after the answer."""
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        quiet = min(LINGER_QUIET_S, max(0.0, self._linger_ends - self.loop.time()))
        self._linger_timer = self.loop.call_later(quiet, self.transport.close)

    def _arm_header_deadline(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if (self.transport.is_closing() or self._lingering
                or (self.cycle is not None and not self.cycle.response_complete)):
            return  # a request is being answered: its headers came in time
        self.transport.write(closing_response(b"408 Request Timeout",
                                              f"request headers not received within {self.header_timeout_s:g} s"))
        self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedProtocol]:
    """A protocol class for one server: the guards with ``settings``' bounds, and their shared state."""

    class GuardedHttpToolsProtocol(GuardedProtocol):
        header_timeout_s = settings.header_timeout_s
        max_connections = settings.max_connections
        write_timeout_s = settings.write_timeout_s
        idle: ClassVar[dict[GuardedProtocol, float]] = {}  # this server's, shared by its connections
        stalled: ClassVar[dict[GuardedProtocol, float]] = {}
        sweeper = None
        refused = Throttled(logging.WARNING, "connections refused: %d open, none idle or unread for 1 s "
                                             "(BNN_MAX_CONNECTIONS)")
        evicted = Throttled(logging.INFO, "connections closed to make room for new ones: %d open "
                                          "(BNN_MAX_CONNECTIONS), the closed ones idle or unread for 1 s")
        timed_out = Throttled(logging.INFO, "connections closed: their answers unread for %g s (BNN_WRITE_TIMEOUT_S)")
        head_refused = Throttled(logging.INFO, "requests refused with 431: head over %d bytes")

    return GuardedHttpToolsProtocol


PROXIES = "FORWARDED_ALLOW_IPS"  # uvicorn reads it: the proxies whose X-Forwarded-For names the client


def server_config(app: ASGIApp, settings: Settings, **overrides: object) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: uvloop, httptools with the guards, no access log unless
    BNN_ACCESS_LOG, graceful shutdown, X-Forwarded-For only from the proxies FORWARDED_ALLOW_IPS names."""
    options: dict[str, object] = {
        # a client is the connection's address: X-Forwarded-For counts only from the proxies FORWARDED_ALLOW_IPS
        # names (uvicorn's variable); left unset, uvicorn would trust it from 127.0.0.1, so any local proxy that
        # passed a client's header on would let that client pose as many and crowd others out of the review queue
        "proxy_headers": PROXIES in os.environ,
        "lifespan": "on", "loop": "uvloop", "http": guarded_protocol(settings),
        "access_log": settings.access_log, "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S, "log_level": "info",
        **overrides,
    }
    return uvicorn.Config(app, **options)  # type: ignore[arg-type]
