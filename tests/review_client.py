"""Helpers for the review tests: images the model refers or accepts, and waiting on the store."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from tests.conftest import mnist_fixtures

TOKEN = "reviewer-token-0123456789"
OTHER_TOKEN = "second-token-0123456789ab"
TOKENS = f"ana:{TOKEN},ben:{OTHER_TOKEN}"


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def noise_png(seed: int, size: int = 64) -> bytes:
    """Uniform noise: the shipped model refers it as 'unfamiliar' (entropy near ln 10)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_pngs() -> list[tuple[bytes, int]]:
    """The committed MNIST test digits as their PNG files (accepted by the shipped model)."""
    return [(path.read_bytes(), label) for path, label in mnist_fixtures()]


def wait_for(check: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (no fixed sleep); its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)
