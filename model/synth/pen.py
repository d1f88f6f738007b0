"""Digits re-inked as pen strokes: what people draw on a canvas or with a marker.

MNIST is scanned pen handwriting, blurred; a digit drawn with a mouse on the try-it page is a
few crisp strokes of one width with round caps. The network trained on the first referred half
of the second. This module turns any digit image into the strokes a hand would draw for it:

1. :func:`skeleton`: the ink thinned to one-pixel lines (Zhang and Suen, 1984) at 4x MNIST's
   resolution (smoother than thinning 28 px);
2. :func:`trace`: the skeleton walked into ordered strokes (pointer down, moves, up), spurs of
   the thinning dropped, each stroke smoothed;
3. :func:`place`: the strokes given a hand (size, aspect, slant, rotation, a slow wobble) and a
   place on a canvas;
4. :func:`draw`: the strokes drawn like the page's canvas draws them (black, round caps and
   joins, anti-aliased, on white) -> PNG bytes.

Training draws MNIST *train* digits this way (``model.synth.pools``, seed 14); calibration MNIST
*validation* (seed 15); the drawing battery (``tools/drawn_digits.py``) draws MNIST *test*
digits through the real page in Chromium, with its own seeds. Sources are split by MNIST split:
no stroke path used for training is drawn in a report.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from model.data import IMAGE_SIZE
from model.synth.forked import render_all
from model.synth.upload_simulator import decode
from model.transform import NoInk, to_digit

PEN_VERSION = 1  # bump when a step changes, so cached pools are rebuilt
CANVAS = 280  # the try-it page's drawing pad, pixels
PAGE_PEN = 18  # the page's stroke width, pixels
WORK = 112  # thinning resolution: 4x MNIST
SUPERSAMPLE = 2  # drawn at this multiple, then box-filtered: canvas-like anti-aliasing
Point = tuple[float, float]
Stroke = list[Point]


# ---------------------------------------------------------------------------------------- thinning

def _neighbours(mask: np.ndarray) -> list[np.ndarray]:
    """P2..P9 of Zhang-Suen (clockwise from north) for every pixel, as shifted copies."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    at = lambda dy, dx: p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]  # noqa: E731
    return [at(-1, 0), at(-1, 1), at(0, 1), at(1, 1), at(1, 0), at(1, -1), at(0, -1), at(-1, -1)]


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a bool ``[H, W]`` mask to 8-connected one-pixel lines."""
    mask = mask.astype(bool).copy()
    while True:
        changed = False
        for step in (0, 1):
            n = _neighbours(mask)
            count = sum(x.astype(np.uint8) for x in n)
            ring = n + n[:1]
            transitions = sum((~a & b).astype(np.uint8) for a, b in itertools.pairwise(ring))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            side = ~(p2 & p4 & p6) & ~(p4 & p6 & p8) if step == 0 else ~(p2 & p4 & p8) & ~(p2 & p6 & p8)
            remove = mask & (count >= 2) & (count <= 6) & (transitions == 1) & side
            if remove.any():
                mask &= ~remove
                changed = True
        if not changed:
            return mask


def skeleton(image: np.ndarray, level: float = 0.35) -> np.ndarray:
    """A digit (uint8 ``[H, W]``, white ink on black, e.g. MNIST's 28 x 28) -> bool ``[WORK, WORK]``
    one-pixel lines through the middle of its strokes."""
    big = Image.fromarray(image).resize((WORK, WORK), Image.Resampling.BILINEAR)
    return thin(np.asarray(big, dtype=np.float32) / 255.0 > level)


# ----------------------------------------------------------------------------------------- tracing

_STEPS = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]


def _graph(mask: np.ndarray) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """8-neighbour adjacency of the skeleton's pixels; a diagonal step is left out where a
    4-neighbour path of two steps joins the same pixels (the staircase thinning leaves)."""
    pixels = {(int(y), int(x)) for y, x in zip(*np.nonzero(mask), strict=True)}
    graph: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for y, x in pixels:
        links = []
        for dy, dx in _STEPS:
            other = (y + dy, x + dx)
            if other not in pixels:
                continue
            if dy and dx and ((y + dy, x) in pixels or (y, x + dx) in pixels):
                continue
            links.append(other)
        graph[(y, x)] = links
    return graph


def _walk(graph: dict[tuple[int, int], list[tuple[int, int]]], start: tuple[int, int],
          used: set[frozenset[tuple[int, int]]]) -> list[tuple[int, int]]:
    """From ``start`` along unused edges, at each pixel the straightest way on, until none is left."""
    path = [start]
    while True:
        here = path[-1]
        free = [n for n in graph[here] if frozenset((here, n)) not in used]
        if not free:
            return path
        if len(path) >= 3:
            back = path[-3]
            heading = (here[0] - back[0], here[1] - back[1])
            free.sort(key=lambda n: -(heading[0] * (n[0] - here[0]) + heading[1] * (n[1] - here[1])))
        used.add(frozenset((here, free[0])))
        path.append(free[0])


def _smooth(points: list[tuple[int, int]], radius: int = 2) -> Stroke:
    """A moving average along the stroke (ends kept): the pixel staircase becomes a line."""
    array = np.asarray(points, dtype=np.float64)[:, ::-1]  # (x, y)
    if len(array) <= 2 * radius + 1:
        return [(float(x), float(y)) for x, y in array]
    padded = np.concatenate([np.repeat(array[:1], radius, 0), array, np.repeat(array[-1:], radius, 0)])
    kernel = np.ones(2 * radius + 1) / (2 * radius + 1)
    smooth = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in (0, 1)], 1)
    smooth[0], smooth[-1] = array[0], array[-1]
    return [(float(x), float(y)) for x, y in smooth]


def trace(mask: np.ndarray, min_pixels: int = 6) -> list[Stroke]:
    """A skeleton -> ordered strokes in its pixel coordinates (x, y), the longest first. Walks start
    at ends (pixels with one neighbour), then anywhere on what is left (closed loops); strokes of
    fewer than ``min_pixels`` pixels (spurs of the thinning) are dropped, unless nothing else is."""
    graph = _graph(mask)
    used: set[frozenset[tuple[int, int]]] = set()
    walks: list[list[tuple[int, int]]] = []

    def left(pixel: tuple[int, int]) -> int:
        return sum(frozenset((pixel, n)) not in used for n in graph[pixel])

    for order in (lambda p: len(graph[p]) == 1, lambda p: True):
        for pixel in sorted(graph):
            while order(pixel) and left(pixel) > 0:
                walks.append(_walk(graph, pixel, used))
    isolated = [[p] for p, links in graph.items() if not links]
    walks = sorted(walks + isolated, key=len, reverse=True)
    kept = [w for w in walks if len(w) >= min_pixels] or walks[:1]
    return [_smooth(w) for w in kept]


# ------------------------------------------------------------------------------- hand and drawing

@dataclass(frozen=True)
class Hand:
    """How one drawing is made: its size and place on the canvas, the hand's slant, and the pen."""

    height: float  # pixels, the drawing's taller side on the canvas
    aspect: float  # width multiplier
    rotation: float  # degrees
    slant: float  # shear, x += slant * (centre_y - y)
    wobble: float  # pixels of slow hand tremor
    centre: Point  # where the drawing's middle lands, pixels
    pen: float  # stroke width, pixels


def random_hand(rng: np.random.Generator, canvas: int = CANVAS, pen: float | None = None) -> Hand:
    """A seeded hand: digits from small in a corner to filling the pad; pens from a fine liner to
    a marker (the page's own 18 px pen on a 280 px pad sits in the middle of the range)."""
    height = float(rng.uniform(0.25, 0.9) * canvas)
    width = float(pen if pen is not None else rng.choice([rng.uniform(0.025, 0.12) * height,
                                                          PAGE_PEN * canvas / CANVAS]))
    margin = 0.5 * height + width
    low, high = min(margin, canvas / 2), max(canvas - margin, canvas / 2)
    return Hand(height=height, aspect=float(rng.uniform(0.75, 1.25)), rotation=float(rng.normal(0, 8)),
                slant=float(rng.normal(0, 0.15)), wobble=float(rng.uniform(0, 0.012) * height),
                centre=(float(rng.uniform(low, high)), float(rng.uniform(low, high))), pen=max(2.0, width))


def place(strokes: list[Stroke], hand: Hand, rng: np.random.Generator) -> list[Stroke]:
    """Strokes in any coordinates -> on the canvas as ``hand`` draws them."""
    every = np.concatenate([np.asarray(s, dtype=np.float64) for s in strokes])
    low, high = every.min(0), every.max(0)
    middle, extent = (low + high) / 2, max(float((high - low).max()), 1e-6)
    angle = math.radians(hand.rotation)
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    phase = rng.uniform(0, 2 * math.pi, 4)
    out = []
    for stroke in strokes:
        xy = (np.asarray(stroke, dtype=np.float64) - middle) / extent * hand.height  # centred, [K, 2]
        xy[:, 0] = xy[:, 0] * hand.aspect - hand.slant * xy[:, 1]
        xy = xy @ rotate.T
        t = xy / hand.height * 2 * math.pi
        xy[:, 0] += hand.wobble * np.sin(t[:, 1] * 1.3 + phase[0]) + hand.wobble * np.sin(t[:, 0] * 0.7 + phase[1])
        xy[:, 1] += hand.wobble * np.sin(t[:, 0] * 1.1 + phase[2]) + hand.wobble * np.sin(t[:, 1] * 0.9 + phase[3])
        xy += np.asarray(hand.centre)
        out.append([(float(x), float(y)) for x, y in xy])
    return out


def draw(strokes: list[Stroke], pen: float, canvas: int = CANVAS) -> Image.Image:
    """Strokes as the page's canvas draws them: black, round caps and joins, on white."""
    scale = SUPERSAMPLE
    image = Image.new("L", (canvas * scale, canvas * scale), 255)
    ink = ImageDraw.Draw(image)
    radius = pen * scale / 2
    for stroke in strokes:
        points = [(x * scale, y * scale) for x, y in stroke]
        if len(points) > 1:
            ink.line(points, fill=0, width=max(1, round(pen * scale)))
        for x, y in points:  # round joins and caps at every vertex
            ink.ellipse([x - radius, y - radius, x + radius, y + radius], fill=0)
    return image.resize((canvas, canvas), Image.Resampling.BOX)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def pen_strokes(digit: np.ndarray) -> list[Stroke]:
    """A digit image -> the strokes a hand would draw for it (skeleton coordinates)."""
    return trace(skeleton(digit))


def drawn_by(strokes: list[Stroke], hand: Hand, rng: np.random.Generator) -> bytes:
    """Strokes in any coordinates -> the PNG of them drawn on the page's pad by ``hand``."""
    return png(draw(place(strokes, hand, rng), hand.pen))


def pen_drawing(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A digit image -> the PNG of it drawn on the page's pad by a random hand."""
    return drawn_by(pen_strokes(digit), random_hand(rng), rng)


def seen(data: bytes) -> np.ndarray | None:
    """PNG bytes -> what the network sees (uint8 ``[28, 28]``), None when the transform finds no ink."""
    try:
        return to_digit(decode(data))
    except NoInk:
        return None


# ----------------------------------------------------------------------------------------- pools

_DIGITS: np.ndarray  # the digits draw_many's forked workers draw


def _one(args: tuple[int, int]) -> np.ndarray:
    index, seed = args
    out = seen(pen_drawing(_DIGITS[index], np.random.default_rng([seed, index])))
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8) if out is None else out


def draw_many(digits: np.ndarray, seed: int, workers: int = 2, desc: str = "pen drawings",
              progress: bool = True) -> np.ndarray:
    """Every digit of uint8 ``[N, 28, 28]`` re-inked and drawn once, seeded ``[seed, index]``,
    through the service's transform -> uint8 ``[N, 28, 28]`` (all zeros where no ink was found)."""
    global _DIGITS
    _DIGITS = digits
    return render_all(_one, [(index, seed) for index in range(len(digits))], workers, desc, progress)
