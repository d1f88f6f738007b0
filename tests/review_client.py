"""Helpers for the review tests: reviewer tokens, images the model refers or accepts."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.conftest import mnist_fixtures
from tests.images import encode

TOKEN = "reviewer-token-0123456789"
OTHER_TOKEN = "second-token-0123456789ab"
TOKENS = f"ana:{TOKEN},ben:{OTHER_TOKEN}"


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def noise_png(seed: int, size: int = 64) -> bytes:
    """Uniform noise: the shipped model refers it as 'unfamiliar' (entropy near ln 10)."""
    return encode(Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)))


def digit_pngs() -> list[tuple[bytes, int]]:
    """The committed MNIST test digits as their PNG files (accepted by the shipped model)."""
    return [(path.read_bytes(), label) for path, label in mnist_fixtures()]
