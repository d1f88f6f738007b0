"""The drawing primitives every generator of ``model.synth`` shares: a supersampled square canvas,
its reduction to ink, points in unit coordinates scaled onto it, and smooth curves.

``canvas() -> (image, draw)``: an ``L`` image of ``SIDE * SUPERSAMPLE`` pixels, black;
``finish(image) -> ink [SIDE, SIDE] float32 in [0, 1]``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from PIL import Image, ImageDraw

SIDE = 64  # glyphs are drawn at this size (4x supersampled), then rendered as uploads
SUPERSAMPLE = 4

Points = list[tuple[float, float]]


def canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (SIDE * SUPERSAMPLE, SIDE * SUPERSAMPLE), 0)
    return image, ImageDraw.Draw(image)


def finish(image: Image.Image) -> np.ndarray:
    small = image.resize((SIDE, SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def scaled(points: Points) -> Points:
    return [(x * SIDE * SUPERSAMPLE, y * SIDE * SUPERSAMPLE) for x, y in points]


def bezier(points: Points, steps: int = 40) -> Points:
    """A smooth curve through control points (de Casteljau)."""
    out = []
    for t in np.linspace(0.0, 1.0, steps):
        layer = list(points)
        while len(layer) > 1:
            layer = [((1 - t) * a[0] + t * b[0], (1 - t) * a[1] + t * b[1]) for a, b in itertools.pairwise(layer)]
        out.append(layer[0])
    return out


def densify(points: Points, step: float) -> Points:
    """Points at most ``step`` apart along a polyline (a hand's pointer moves are dense, and a
    hand's wobble bends a stroke between its points)."""
    out = [points[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        count = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / step))
        out += [(x0 + (x1 - x0) * k / count, y0 + (y1 - y0) * k / count) for k in range(1, count + 1)]
    return out
