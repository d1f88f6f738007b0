"""Known inputs: the shipped checkpoint, the committed MNIST test digits as PNG files, noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from harness.images import encode

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "bnn.safetensors"
FIXTURES = ROOT / "tests" / "fixtures"


def mnist_fixtures() -> list[tuple[Path, int]]:
    """Committed MNIST test digits: (path, label)."""
    return [(path, int(path.stem.split("label")[1])) for path in sorted(FIXTURES.glob("mnist_test_*.png"))]


def load_digit(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def noise_png(seed: int, size: int = 64) -> bytes:
    """Uniform noise: the shipped model refers it as 'unfamiliar' (entropy near ln 10)."""
    return encode(Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)))


def digit_pngs() -> list[tuple[bytes, int]]:
    """The committed MNIST test digits as their PNG files (accepted by the shipped model)."""
    return [(path.read_bytes(), label) for path, label in mnist_fixtures()]
