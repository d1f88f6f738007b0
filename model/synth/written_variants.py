"""Digits as much of the world writes them and MNIST's writers rarely did: a 1 with a flag (the
upstroke at its top), with or without a foot, and a 7 with a bar through its stem.

MNIST train 1s and 7s are re-inked as pen strokes (``model.synth.pen``), the missing stroke is
added in the digit's own frame, and the result is drawn on the page's pad by a random hand, as
training's other pen drawings are. Only 1s that re-ink as one straight stroke get a flag or a foot
(a 1 that already has one is left out, not flagged twice). Sources are MNIST *train* only; the
drawing battery (a report) draws MNIST test digits and its own sketches.

``variant_strokes(image, label, rng) -> strokes or None``; :func:`draw_variants` renders a pool.
"""

from __future__ import annotations

import math

import numpy as np

from model.data import IMAGE_SIZE
from model.synth.canvas import densify
from model.synth.forked import render_all
from model.synth.pen import Stroke, drawn_by, pen_strokes, random_hand, seen

VARIANTS_VERSION = 1  # bump when a step changes, so cached pools are rebuilt
VARIANT_DIGITS = (1, 7)  # the digits with a variant
STRAIGHT = 0.12  # a 1 whose stroke strays more than this share of its height from a line is left out
UPRIGHT = 20.0  # degrees: a 1 leaning more than this is left out


def flagged_one(strokes: list[Stroke], rng: np.random.Generator) -> list[Stroke] | None:
    """A straight, upright 1 -> the same 1 with a flag, a foot or both, drawn in the writer's frame
    (a flag down to the left of the top, a level foot); None when the 1 is not one straight stroke
    within :data:`UPRIGHT` of vertical (a flag on a leaning stroke makes a 7)."""
    if len(strokes) != 1:
        return None
    points = np.asarray(strokes[0], dtype=np.float64)
    top, bottom = points[points[:, 1].argmin()], points[points[:, 1].argmax()]
    height = float(np.hypot(*(bottom - top)))
    if height < 1e-6 or abs(math.degrees(math.atan2(top[0] - bottom[0], bottom[1] - top[1]))) > UPRIGHT:
        return None
    along = (top - bottom) / height
    across = np.array([along[1], -along[0]])  # perpendicular to the stroke
    if np.abs((points - bottom) @ across).max() > STRAIGHT * height:
        return None
    style = rng.choice(("flag", "flag and foot", "foot"), p=(0.5, 0.4, 0.1))
    out = [strokes[0]]
    if "flag" in style:
        angle = math.radians(rng.uniform(25, 60))  # below the horizontal, to the left
        length = rng.uniform(0.15, 0.35) * height
        end = (top[0] - length * math.cos(angle), top[1] + length * math.sin(angle))
        out.insert(0, densify([end, (float(top[0]), float(top[1]))], 2.0))
    if "foot" in style:
        half = rng.uniform(0.15, 0.3) * height
        skew = rng.uniform(-0.3, 0.3) * half
        level = float(bottom[1]) + rng.normal(0, 0.015) * height
        out.append(densify([(bottom[0] - half - skew, level), (bottom[0] + half - skew, float(bottom[1]))], 2.0))
    return out


def barred_seven(strokes: list[Stroke], rng: np.random.Generator) -> list[Stroke] | None:
    """A 7 -> the same 7 with a short bar across its stem, a little below half its height."""
    points = np.concatenate([np.asarray(s, dtype=np.float64) for s in strokes])
    low, high = points.min(0), points.max(0)
    height, width = float(high[1] - low[1]), float(high[0] - low[0])
    if height < 1e-6:
        return None
    level = low[1] + rng.uniform(0.45, 0.62) * height
    near = points[np.abs(points[:, 1] - level) < 0.04 * height]
    if len(near) == 0:
        return None
    stem = float(near[:, 0].mean())
    half = rng.uniform(0.2, 0.35) * max(width, 0.5 * height)
    tilt = rng.normal(0, 0.04) * height
    return [*strokes, densify([(stem - half, level + tilt), (stem + half, level - tilt)], 2.0)]


def variant_strokes(image: np.ndarray, label: int, rng: np.random.Generator) -> list[Stroke] | None:
    """An MNIST digit -> its pen strokes with the variant's stroke added, or None when it has none."""
    strokes = pen_strokes(image)
    if not strokes:
        return None
    if label == 1:
        return flagged_one(strokes, rng)
    if label == 7:
        return barred_seven(strokes, rng)
    return None


_SOURCE: tuple[np.ndarray, np.ndarray]  # the digits and labels draw_variants' forked workers draw


def _one(args: tuple[int, int]) -> np.ndarray:
    index, seed = args
    images, labels = _SOURCE
    rng = np.random.default_rng([seed, index])
    strokes = variant_strokes(images[index], int(labels[index]), rng)
    out = None
    if strokes is not None:
        out = seen(drawn_by(strokes, random_hand(rng), rng))
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8) if out is None else out


def draw_variants(images: np.ndarray, labels: np.ndarray, seed: int, workers: int = 2, desc: str = "written variants",
                  progress: bool = True) -> np.ndarray:
    """Every digit of uint8 ``[N, 28, 28]`` (labels ``[N]``) as its variant drawn on the pad, seeded
    ``[seed, index]``, through the service's transform -> uint8 ``[N, 28, 28]``; all zeros where
    the digit has no variant (not a 1 or a 7, or a 1 that is not one straight stroke)."""
    global _SOURCE
    _SOURCE = (images, labels)
    return render_all(_one, [(index, seed) for index in range(len(images))], workers, desc, progress)
