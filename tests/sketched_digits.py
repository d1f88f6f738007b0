"""Sketched digits rendered as the outlier generators render their marks (jittered, slanted,
squashed, at a random pen width): what the tests hold the digit bank and the shipped network to.
Nothing that trains, calibrates or serves draws these (the drawing battery re-draws the same
skeletons with a pen, ``model.synth.drawing_battery``)."""

from __future__ import annotations

import numpy as np

from model.synth.canvas import SUPERSAMPLE, Points, bezier, canvas, finish, scaled
from model.synth.sketches import SKELETONS


def sketch(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One sketched ``digit``: ink ``[64, 64]`` float32 in [0, 1], like the outlier generators'."""
    strokes = SKELETONS[digit][int(rng.integers(len(SKELETONS[digit])))]
    image, draw = canvas()
    width = int(rng.integers(2, 9)) * SUPERSAMPLE
    slant = rng.uniform(-0.25, 0.3)
    squash = rng.uniform(0.55, 1.0)
    shift = rng.normal(0.0, 0.025, 2)

    def place(points: Points) -> Points:
        return [(0.5 + (x - 0.5) * squash - slant * (y - 0.5) + shift[0], y + shift[1]) for x, y in points]

    for kind, points in strokes:
        jittered = [(x + rng.normal(0, 0.025), y + rng.normal(0, 0.025)) for x, y in points]
        path = bezier(jittered) if kind == "curve" else jittered
        placed = scaled(place([(0.1 + 0.8 * x, 0.1 + 0.8 * y) for x, y in path]))  # a margin for the pen
        draw.line(placed, fill=255, width=width, joint="curve")
        radius = width / 2
        for x, y in (placed[0], placed[-1]):  # round caps, as a pen or a canvas brush makes them
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    return finish(image)
