"""Several worker processes, each with its own listening socket on the same port (SO_REUSEPORT).

Why not uvicorn's ``--workers``: it binds one socket in the parent and hands it to every worker.
A burst of new connections then wakes one worker, whose accept loop takes them all, and the
other worker sits idle: measured here with 8 keep-alive clients, one worker got all 8
connections in about half the runs. With one socket per worker in a SO_REUSEPORT group the
kernel spreads connections over the workers as they arrive. (uvicorn's socket also lacked
IPPROTO_TCP, so asyncio never set TCP_NODELAY on accepted connections and every keep-alive
answer waited ~40 ms for the client's delayed ACK: uvicorn issue #3149. Ours sets it.)

Why not gunicorn (``--preload --reuse-port -k uvicorn.workers.UvicornWorker``): measured side by
side with wrk (16 connections, N = 100) it served the same (2,009 vs 2,071 images/s, within the
noise), but its workers inherit the master's one socket (``--reuse-port`` sets the flag on that
socket, so the accept race above remains), its uvicorn worker builds uvicorn's default
configuration (none of ``server.py``'s guards without a custom worker class), and it does not
refuse to start on a port another instance holds. This module is 150 lines and keeps all of that.

The parent supervises: it checks the port is free (a second instance must not silently join
the group and split the traffic), imports the app (torch, FastAPI: most of the start-up time)
once and forks the workers from it, restarts one that dies after it started, stops everything
when one cannot start or when they keep dying (more than 5 replacements a minute), and on
SIGTERM or SIGINT asks each worker to shut down gracefully (uvicorn finishes in-flight
requests) before it exits. Forking after importing torch is safe because the parent never runs
a torch operation (no thread pool exists yet); each worker loads the checkpoint itself, in its
lifespan.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from service.edge.server import GRACEFUL_SHUTDOWN_S, server_config
from service.settings import Settings

log = logging.getLogger("service")

STARTUP_FAILURE = 3  # a worker's exit status when it never served: restarting it would fail the same way
KILL_AFTER_S = GRACEFUL_SHUTDOWN_S + 5.0  # how long the supervisor waits for a stopping worker before SIGKILL
MAX_RESTARTS, RESTART_WINDOW_S = 5, 60.0  # more replacements than this within the window: give up, not crash-loop


def tcp_listener(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to (host, port) with ``proto=IPPROTO_TCP``, so asyncio sets TCP_NODELAY
    on the connections it accepts."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when the supervisor dies, even by SIGKILL: orphaned workers would keep
    the port (and the kernel would keep routing connections to them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("cannot ask to die with the supervisor: errno %d", ctypes.get_errno())
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(host: str, port: int, parent: int) -> None:
    """One worker process (forked): the app from the BNN_* environment on its own socket."""
    # not at module level: the supervisor imports this module before the metrics directory is set
    from service.app import create_app  # already imported by the parent before forking: free

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handlers are not ours; uvicorn installs its own
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _die_with_parent(parent)  # logging is configured already: the fork inherits the supervisor's
    try:
        listener = tcp_listener(host, port, reuse_port=True)
    except OSError as error:
        log.error("worker cannot listen on %s:%d: %s", host, port, error)
        sys.exit(STARTUP_FAILURE)
    settings = Settings()
    server = uvicorn.Server(server_config(create_app(settings), settings))
    server.run(sockets=[listener])
    sys.exit(0 if server.started else STARTUP_FAILURE)


def ensure_port_free(host: str, port: int) -> None:
    """Raises OSError if anything holds (host, port): a second instance must not join our group."""
    tcp_listener(host, port, reuse_port=False).close()


class Supervisor:
    """The worker processes: started, restarted when one dies (within bounds), stopped together."""

    def __init__(self, host: str, port: int):
        self.context = multiprocessing.get_context("fork")
        self.host, self.port = host, port
        self.restarts: deque[float] = deque(maxlen=MAX_RESTARTS)

    def start(self) -> BaseProcess:
        process = self.context.Process(target=_worker, args=(self.host, self.port, os.getpid()), daemon=False)
        process.start()
        return process

    def replace_dead(self, processes: list[BaseProcess]) -> bool:
        """Start a new worker for each that died; False when the group must stop instead (a worker
        could not start, or workers die too often)."""
        for index, process in enumerate(processes):
            if process.is_alive():
                continue
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %s could not start; stopping", process.pid)
                return False
            now = time.monotonic()
            if len(self.restarts) == MAX_RESTARTS and now - self.restarts[0] < RESTART_WINDOW_S:
                log.error("workers died %d times within %.0f s; stopping", MAX_RESTARTS + 1, RESTART_WINDOW_S)
                return False
            self.restarts.append(now)
            log.warning("worker %s died (exit %s); starting another", process.pid, process.exitcode)
            processes[index] = self.start()
        return True


def stop_all(processes: list[BaseProcess]) -> None:
    """SIGTERM to each (uvicorn stops accepting and finishes in-flight requests), SIGKILL after KILL_AFTER_S."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(KILL_AFTER_S)
        if process.is_alive():
            process.kill()
            process.join()


def serve(host: str, port: int, workers: int) -> int:
    """Run ``workers`` worker processes on (host, port) until SIGTERM or SIGINT; the exit status.
    Call :func:`ensure_port_free` first."""
    import service.app  # noqa: F401 -- once here, not in every worker: the workers fork from this

    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    supervisor = Supervisor(host, port)
    processes = [supervisor.start() for _ in range(workers)]
    log.info("%d workers on http://%s:%d (pids %s)", workers, host, port, ", ".join(str(p.pid) for p in processes))
    status = 0
    try:
        while not stopping.wait(0.25):
            if not supervisor.replace_dead(processes):
                status = 1
                break
    finally:
        stop_all(processes)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("all workers stopped")
    return status
