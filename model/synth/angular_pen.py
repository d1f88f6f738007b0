"""Digits drawn in straight segments: what a mouse on the try-it page often makes of a digit.

A digit drawn with a mouse is a few strokes with corners: a 0 as a box or a diamond, an 8 as two
boxes, a 6 or a 9 with a square loop. MNIST's pen handwriting re-inked as it is
(``model.synth.pen``) is round. This re-inks MNIST *train* digits the same way, then simplifies
each stroke to a polyline (Ramer-Douglas-Peucker, a tolerance drawn per digit as a share of its
height), so a curve becomes two to six straight segments through points of the digit's own
path, and draws it on the page's pad by a random hand, as training's other pen drawings are.

Sources are MNIST train only; the drawing battery's sketched skeletons (``model.synth.sketches``)
are never drawn here, so the battery's sketch rows stay a measure of shapes training did not see.

``angular(strokes, rng) -> strokes``; :func:`draw_angular` renders a pool.
"""

from __future__ import annotations

import numpy as np

from model.data import IMAGE_SIZE
from model.synth.canvas import densify
from model.synth.forked import render_all
from model.synth.pen import Stroke, drawn_by, pen_strokes, random_hand, seen

ANGULAR_VERSION = 1  # bump when a step changes, so cached pools are rebuilt
TOLERANCE = (0.06, 0.14)  # a stroke may stray this share of the digit's height from its polyline


def simplified(stroke: Stroke, tolerance: float) -> Stroke:
    """Ramer-Douglas-Peucker: a few points of ``stroke`` (its ends kept) such that no point of it
    lies further than ``tolerance`` from the polyline through them. A closed stroke (its
    ends meet) is split at its farthest point first, so a loop keeps its shape."""
    points = np.asarray(stroke, dtype=np.float64)
    if len(points) <= 2:
        return [(float(x), float(y)) for x, y in points]
    if np.hypot(*(points[0] - points[-1])) <= tolerance:
        far = int(np.argmax(np.hypot(*(points - points[0]).T)))
        if 0 < far < len(points) - 1:
            return simplified(stroke[: far + 1], tolerance)[:-1] + simplified(stroke[far:], tolerance)
    keep = np.zeros(len(points), dtype=bool)
    keep[[0, -1]] = True
    spans = [(0, len(points) - 1)]
    while spans:
        first, last = spans.pop()
        if last - first < 2:
            continue
        a, b = points[first], points[last]
        inner = points[first + 1 : last]
        along = b - a
        length = float(np.hypot(*along))
        if length < 1e-9:
            distance = np.hypot(*(inner - a).T)
        else:
            distance = np.abs(along[0] * (inner[:, 1] - a[1]) - along[1] * (inner[:, 0] - a[0])) / length
        worst = int(np.argmax(distance))
        if distance[worst] > tolerance:
            middle = first + 1 + worst
            keep[middle] = True
            spans += [(first, middle), (middle, last)]
    return [(float(x), float(y)) for x, y in points[keep]]


def angular(strokes: list[Stroke], rng: np.random.Generator) -> list[Stroke]:
    """A digit's strokes -> the same strokes as polylines, one tolerance for the whole digit
    (drawn from :data:`TOLERANCE` times its height), densified so the hand's wobble bends them
    as it bends any stroke."""
    every = np.concatenate([np.asarray(s, dtype=np.float64) for s in strokes])
    height = float(np.ptp(every, axis=0).max())
    tolerance = float(rng.uniform(*TOLERANCE)) * max(height, 1.0)
    return [densify(simplified(stroke, tolerance), 2.0) for stroke in strokes]


_DIGITS: np.ndarray  # the digits draw_angular's forked workers draw


def _one(args: tuple[int, int]) -> np.ndarray:
    index, seed = args
    rng = np.random.default_rng([seed, index])
    strokes = pen_strokes(_DIGITS[index])
    out = seen(drawn_by(angular(strokes, rng), random_hand(rng), rng)) if strokes else None
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8) if out is None else out


def draw_angular(digits: np.ndarray, seed: int, workers: int = 2, desc: str = "angular drawings",
                 progress: bool = True) -> np.ndarray:
    """Every digit of uint8 ``[N, 28, 28]`` re-inked, simplified to straight segments and drawn once,
    seeded ``[seed, index]``, through the service's transform -> uint8 ``[N, 28, 28]`` (all zeros
    where no ink was found)."""
    global _DIGITS
    _DIGITS = digits
    return render_all(_one, [(index, seed) for index in range(len(digits))], workers, desc, progress)
