"""Shared fixtures: the shipped checkpoint, real MNIST digits as PNG files, tiny IDX data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "bnn.safetensors"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def mnist_fixtures() -> list[tuple[Path, int]]:
    """Committed MNIST test digits: (path, label)."""
    return [(path, int(path.stem.split("label")[1])) for path in sorted(FIXTURES.glob("mnist_test_*.png"))]


def load_digit(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


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
