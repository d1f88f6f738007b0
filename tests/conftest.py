"""Shared fixtures: tiny IDX data (real digits, jittered), review
stores on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.inputs import load_digit, mnist_fixtures
from harness.postgres import PostgresServer, postgres_server

# every app and service a test starts without naming a review store gets this one, never the
# checkout's data/ (tests that count items name their own)
TEST_DATA = Path(tempfile.mkdtemp(prefix="bnn-test-data-"))
os.environ.setdefault("BNN_REVIEW_DB", f"sqlite:///{TEST_DATA}/review.db")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(TEST_DATA, ignore_errors=True)
def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_idx_dir(tmp_path: Path) -> Path:
    """A tiny MNIST-shaped IDX copy: real digits (the fixtures, jittered) so that learning is possible."""
    rng = np.random.default_rng(0)
    digits = [(load_digit(p), label) for p, label in mnist_fixtures()]
    images, labels = [], []
    for _ in range(12):
        for image, label in digits:
            shifted = np.roll(image, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1))
            images.append(shifted)
            labels.append(label)
    images_array, labels_array = np.stack(images), np.array(labels)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images_array)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels_array)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images_array[:40])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels_array[:40])
    return tmp_path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (each test takes a database of its own)."""
    with postgres_server() as server:
        yield server



@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty review store URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/review.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database("review")
