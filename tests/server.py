"""Start the real service (uvicorn on loopback) in a subprocess, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_service(
    env: dict[str, str] | None = None, ready_timeout: float = 60.0, module: str = "service", ready_path: str = "/readyz"
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Runs ``python -m module`` with BNN_PORT set to a free port; yields (base URL, process) once
    ``ready_path`` answers 200; stops it (SIGTERM, then SIGKILL) afterwards."""
    port = free_port()
    full_env = {**os.environ, "BNN_PORT": str(port), "BNN_HOST": "127.0.0.1", **(env or {})}
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 -- a file, not a pipe: a full pipe would block the server
    process = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=full_env, text=True,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"service exited early: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(url + ready_path, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("service did not become ready")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
