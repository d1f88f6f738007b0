"""A real PostgreSQL server for tests: Debian's ``postgresql`` binaries, a cluster initialised in
a temporary directory, listening on a free loopback port (and a socket in that directory), run as
the ``postgres`` user when the tests run as root (the server refuses root).

A missing binary skips, unless ``BNN_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it after installing
the package): then it fails.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.server import free_port

REQUIRED = os.environ.get("BNN_REQUIRE_POSTGRES") == "1"


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def require_binaries() -> Path:
    where = binaries()
    if where is None:
        message = "PostgreSQL not found (apt-get install postgresql)"
        if REQUIRED:
            pytest.fail(message + " but BNN_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    return where


def owner() -> str | None:
    """The user and group to run as: ``postgres`` when we are root (the process itself, so that a signal
    to it reaches the server, not a wrapper such as runuser); None (ourselves) otherwise."""
    return "postgres" if os.geteuid() == 0 else None


@dataclass
class PostgresServer:
    bin: Path
    data: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def start(self, timeout_s: float = 30.0) -> None:
        self.process = subprocess.Popen([
            str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.data),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=60"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=owner(), group=owner())
        deadline = time.monotonic() + timeout_s
        while subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                             check=False).returncode != 0:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("postgres did not accept connections")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients (SIGTERM waits for them)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def create_database(self, prefix: str) -> str:
        """A new, empty database named after `prefix` and never named before (a random suffix, so tests
        on one server never collide, as pid and id() could), returned as its URL."""
        import asyncpg

        name = f"{prefix}_{uuid.uuid4().hex[:16]}"

        async def create() -> None:
            connection = await asyncpg.connect(self.url.replace("postgresql://", "postgres://"))
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        return self.database_url(name)


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    where = require_binaries()
    root = Path(tempfile.mkdtemp(prefix="bnn-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(root, account.pw_uid, account.pw_gid)
        subprocess.run([str(where / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
                        "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       user=owner(), group=owner())
        server = PostgresServer(where, data, free_port())
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
