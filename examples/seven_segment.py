"""Seven-segment display digits, photographed: a style of upload that no training source draws.

Meter readings, scales, clocks and calculators show digits as lit segments; people photograph
them and upload the crop. Each image here is one digit of such a display: seven bars (a-g) with
the style's gaps between segments, slanted as most displays are, light-on-dark (LED, backlit LCD)
or dark-on-light (reflective LCD, with the unlit segments faintly visible as "ghosts"), at a
random size and place in the frame, slightly blurred, with sensor noise. Nothing under
``model/`` draws segments (its fonts are STIX, Computer Modern and DejaVu Sans Mono; its
simulator re-renders MNIST strokes): this module lives in ``examples/`` so training cannot import
it, and is used only by ``examples.flywheel`` as the traffic whose labels teach the model.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# which of the segments a (top), b (upper right), c (lower right), d (bottom), e (lower left), f (upper left),
# g (middle) are lit; some digits have two common forms (a 6 and 9 with or without their tail, a 7 with f)
SEGMENTS: dict[int, tuple[str, ...]] = {
    0: ("abcdef",), 1: ("bc",), 2: ("abdeg",), 3: ("abcdg",), 4: ("bcfg",), 5: ("acdfg",),
    6: ("acdefg", "cdefg"), 7: ("abc", "abcf"), 8: ("abcdefg",), 9: ("abcdfg", "abcfg"),
}


def _segment_polygons(width: float, height: float, thickness: float,
                      gap: float) -> dict[str, list[tuple[float, float]]]:
    """Hexagonal bars of a digit cell ``width`` x ``height`` (origin top left, unslanted)."""
    g, half = gap, thickness / 2
    middle = height / 2

    def horizontal(y: float) -> list[tuple[float, float]]:
        x0, x1 = g + half, width - g - half
        return [(x0, y), (x0 + half, y - half), (x1 - half, y - half),
                (x1, y), (x1 - half, y + half), (x0 + half, y + half)]

    def vertical(x: float, y0: float, y1: float) -> list[tuple[float, float]]:
        y0, y1 = y0 + g + half, y1 - g - half
        return [(x, y0), (x + half, y0 + half), (x + half, y1 - half),
                (x, y1), (x - half, y1 - half), (x - half, y0 + half)]

    return {"a": horizontal(half), "d": horizontal(height - half), "g": horizontal(middle),
            "f": vertical(half, 0, middle), "b": vertical(width - half, 0, middle),
            "e": vertical(half, middle, height), "c": vertical(width - half, middle, height)}


def render(digit: int, rng: np.random.Generator, size: int = 96) -> bytes:
    """One photographed seven-segment digit as PNG bytes."""
    lit = SEGMENTS[digit][int(rng.integers(len(SEGMENTS[digit])))]
    height = size * rng.uniform(0.55, 0.85)
    width = height * rng.uniform(0.45, 0.62)
    thickness = height * rng.uniform(0.08, 0.16)
    gap = thickness * rng.uniform(0.05, 0.35)
    slant = math.tan(math.radians(rng.uniform(-2, 12)))
    left = rng.uniform(0.05, 0.95) * (size - width - slant * height) if size > width + slant * height else 0.0
    top = rng.uniform(0.1, 0.9) * (size - height)
    dark_on_light = rng.random() < 0.5
    background = rng.uniform(150, 230) if dark_on_light else rng.uniform(0, 60)
    on = rng.uniform(0, 70) if dark_on_light else rng.uniform(170, 255)
    ghost = background + (on - background) * (rng.uniform(0.05, 0.2) if dark_on_light else rng.uniform(0.0, 0.08))
    image = Image.new("L", (size, size), int(background))
    draw = ImageDraw.Draw(image)
    for name, polygon in _segment_polygons(width, height, thickness, gap).items():
        points = [(left + x + slant * (height - y), top + y) for x, y in polygon]
        draw.polygon(points, fill=int(on if name in lit else ghost))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.6)))
    pixels = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(2, 10), (size, size))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def stream(count: int, seed: int) -> list[tuple[bytes, int]]:
    """``count`` uploads with their digits, uniform over 0-9, from ``seed``."""
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 10, count)
    return [(render(int(digit), rng), int(digit)) for digit in digits]
