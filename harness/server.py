"""Start the real service (uvicorn on loopback) in a subprocess, for tests and benchmarks; or an app
behind the service's server configuration in a thread of this process (``serving``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.types import ASGIApp

if TYPE_CHECKING:
    from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def post_image(client: httpx.Client | str, data: bytes, name: str = "digit.png", content_type: str = "image/png",
               **params: Any) -> httpx.Response:
    """POST one image to ``/predict`` as the multipart field ``file``: through ``client`` (an httpx
    or Starlette test client), or to the service at URL ``client`` on a new connection. Parameters
    that are None are left out."""
    files = {"file": (name, data, content_type)}
    query = {key: value for key, value in params.items() if value is not None}
    if isinstance(client, str):
        return httpx.post(client + "/predict", files=files, params=query, timeout=60)
    return client.post("/predict", files=files, params=query)


def wait_for(check: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition",
             interval_s: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy (no fixed sleep); its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval_s)


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (a service's workers), sorted."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def listening_children(pid: int, port: int) -> list[int]:
    """The children of ``pid`` that hold a socket listening on ``port``. A worker binds its socket
    (SO_REUSEPORT) before it loads the model and listens only after: until then the kernel hands every
    connection to the workers already listening, so a test that needs them all waits for this."""
    listening = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        lines = table.read_text().splitlines()[1:] if table.exists() else []  # no tcp6 without IPv6
        for fields in map(str.split, lines):
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: TCP_LISTEN
                listening.add(f"socket:[{fields[9]}]")
    return [child for child in children(pid) if open_files(child) & listening]


def open_files(pid: int) -> set[str]:
    """What the descriptors of ``pid`` point at (``socket:[inode]`` for a socket); empty once it exited."""
    found: set[str] = set()
    try:
        links = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return found  # exited meanwhile
    for link in links:
        try:
            found.add(os.readlink(link))
        except OSError:
            continue  # closed meanwhile
    return found


def wait_for_listening_workers(url: str, supervisor: int, count: int, timeout_s: float = 60.0) -> None:
    """Returns once ``count`` workers of ``supervisor`` listen on ``url``'s port."""
    port = urlsplit(url).port
    if port is None:
        raise ValueError(f"{url} names no port")
    wait_for(lambda: len(listening_children(supervisor, port)) >= count, timeout_s, f"{count} workers listening",
             interval_s=0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_process(command: list[str], ready_url: str, name: str, env: dict[str, str] | None = None,
                    ready_timeout: float = 60.0, stop_timeout: float = 30.0,
                    cwd: Path = ROOT) -> Iterator[subprocess.Popen[str]]:
    """Runs ``command`` (output to a file, not a pipe: a full pipe would block it); yields the process
    once ``ready_url`` answers 200; stops it (SIGTERM, then SIGKILL) afterwards. A process that
    exits before it is ready raises with the end of its output."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 -- closed in finally
    process = subprocess.Popen(command, cwd=cwd, env=env, text=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{name} exited early: {log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not become ready")
            time.sleep(0.1)
        try:
            yield process
        except BaseException:  # the test failed: its service's output goes to the captured stderr
            log.seek(0)
            print(f"--- {name}'s output (last 6000 characters) ---\n{log.read()[-6000:]}", file=sys.stderr)
            raise
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@contextmanager
def running_service(
    env: dict[str, str] | None = None, ready_timeout: float = 60.0, module: str = "service",
    ready_path: str = "/readyz", cwd: Path = ROOT,
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Runs ``python -m module`` (in ``cwd``: another checkout runs its own code) with BNN_PORT set
    to a free port; yields (base URL, process) once ``ready_path`` answers 200; stops it (SIGTERM,
    then SIGKILL) afterwards."""
    port = free_port()
    full_env = {**os.environ, "BNN_PORT": str(port), "BNN_HOST": "127.0.0.1", **(env or {})}
    url = f"http://127.0.0.1:{port}"
    with running_process([sys.executable, "-m", module], url + ready_path, module, full_env, ready_timeout,
                         cwd=cwd) as process:
        yield url, process


@contextmanager
def serving(app: ASGIApp, settings: Settings, **overrides: object) -> Iterator[uvicorn.Server]:
    """``app`` behind the service's server configuration (``overrides`` as ``server_config``'s) on a free
    loopback port, in a thread of this process; yields the server once it listens (its port:
    ``server.config.port``; ``should_exit`` shuts it down gracefully) and stops it afterwards."""
    from service.edge.server import server_config

    server = uvicorn.Server(server_config(app, settings, **{"host": "127.0.0.1", "port": free_port(),
                                                          "log_level": "warning", **overrides}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), timeout_s=30, what="the server in a thread")
        if not server.started:
            raise RuntimeError("the server in a thread stopped before it listened")
        yield server
    finally:
        server.should_exit = True
        thread.join(10)
