"""Known inputs: the shipped checkpoint, the committed MNIST test digits as PNG files, noise."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.images import encode
from model.calibration import Channel, served
from model.precision import choose_precision

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "bnn.safetensors"
FIXTURES = ROOT / "tests" / "fixtures"


def expected_precision() -> str:
    """The precision a service started here runs its trunk in: BNN_PRECISION, or auto on this CPU."""
    return choose_precision(os.environ.get("BNN_PRECISION", "auto")).precision


def shipped_calibration(precision: str | None = None, channel: Channel = "file") -> dict[str, Any]:
    """The shipped checkpoint's calibration record, as a service serves it, for ``precision`` (None:
    the one a service here serves) and ``channel`` (``file``, or ``drawn``: the page's drawings)."""
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    return served(meta, precision or expected_precision())[channel].to_dict()


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


def blended_digits(steps: int = 41) -> list[np.ndarray]:
    """The first fixture (a 7) faded into a 1, a 0 and a 4, ``steps`` weights each from 0.3 to 0.7
    (uint8 ``[28, 28]``): images between two digits, whose entropies run from 0 to over 2 nats, so
    that some fall between any two thresholds of the shipped rules."""
    fixtures = mnist_fixtures()
    seven = load_digit(fixtures[0][0]).astype(float)
    others = [load_digit(path).astype(float) for path, _ in fixtures[2:5]]
    return [np.clip((1 - w) * seven + w * other, 0, 255).astype(np.uint8)
            for other in others for w in np.linspace(0.3, 0.7, steps)]
