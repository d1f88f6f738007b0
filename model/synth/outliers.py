"""Generated non-digits for outlier exposure: drawn in code, never taken from a data set.

Training shows the network these (through the upload simulator, like every digit) with a loss
that asks for a uniform prediction (Hendrycks et al., "Deep Anomaly Detection with Outlier
Exposure", 2019), so that "not a digit" becomes something it has seen. The families are generic
on purpose: strokes and scribbles, geometric shapes (crosses, triangles, squares, stars,
polygons, arrows, ...), glyph-like marks (straight strokes and arcs at one width),
textures (stripes, checks, grids, dots, hatching), noise (uniform,
Gaussian, salt and pepper, smooth), filled silhouettes, and pairs of digits (two digits are not
one). No rendered letters, fonts or clothing here (Latin letters in the training fonts are
``model.synth.latin_letters``'s; the report's letters are in other fonts and other hands, and its
other families are never seen in training or selection).

Circles and ellipses are left out: a drawn circle is a fair 0. And no mark may be a digit: a
drawn line family (scribbles, glyph-like marks, shapes) that lands near a named digit skeleton
(``model.synth.sketches.DigitBank``: a lone stroke is a 1, a bar and a diagonal a 7, a hexagon a 0, ...)
is drawn again, up to ``REDRAWS`` times, then replaced by noise. Exposure to marks that are digits
taught an earlier network that clean pen-drawn 1s and 7s are not digits.

``outlier(index, rng) -> (ink [64, 64] float32 in [0, 1], fills_canvas)``
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from model.synth.canvas import SIDE, SUPERSAMPLE, Points, bezier, canvas, finish, scaled
from model.synth.sketches import digit_bank
from model.synth.upload_simulator import GlyphSource

FAMILIES = ("scribble", "glyph", "shape", "texture", "noise", "silhouette", "pair")
FAMILY_WEIGHTS = (0.15, 0.2, 0.25, 0.1, 0.1, 0.1, 0.1)
LINE_FAMILIES = ("scribble", "glyph", "shape")  # the ones that can draw a digit by chance
REDRAWS = 12
OUTLIER_VERSION = 3  # bump when a generator changes, so cached pools are rebuilt

def _stroke_width(rng: np.random.Generator) -> int:
    return int(rng.integers(2, 8)) * SUPERSAMPLE


def scribble(rng: np.random.Generator) -> np.ndarray:
    """Two to five random curved strokes, or one long tangled one: doodles that are no digit."""
    image, draw = canvas()
    width = _stroke_width(rng)
    if rng.random() < 0.3:
        points = [tuple(rng.uniform(0.1, 0.9, 2)) for _ in range(int(rng.integers(7, 12)))]
        draw.line(scaled(bezier(points[:4]) + bezier(points[3:7]) + bezier(points[6:])), fill=255,
                  width=width, joint="curve")
    else:
        for _ in range(int(rng.integers(2, 6))):
            points = [tuple(rng.uniform(0.05, 0.95, 2)) for _ in range(int(rng.integers(2, 5)))]
            draw.line(scaled(bezier(points)), fill=255, width=width, joint="curve")
    return finish(image)


_LATTICE = [(x, y) for y in (0.15, 0.5, 0.85) for x in (0.2, 0.5, 0.8)]


def glyph(rng: np.random.Generator) -> np.ndarray:
    """Two to four primitives of printed marks (straight strokes between points of a 3x3 lattice,
    half and quarter arcs) at one uniform width, optionally slanted: mark-like compositions of the
    kind typefaces are made of, none drawn from a font. A lone straight stroke (a fair 1) and a
    full circle (a fair 0) are never drawn alone."""
    image, draw = canvas()
    width = int(rng.integers(3, 9)) * SUPERSAMPLE
    slant = rng.uniform(-0.25, 0.25) if rng.random() < 0.4 else 0.0
    squash = rng.uniform(0.6, 1.0)  # narrow or wide letter boxes

    def place(points: Points) -> Points:
        return [(0.5 + (x - 0.5) * squash - slant * (y - 0.5), y) for x, y in points]

    for _ in range(int(rng.integers(2, 5))):
        if rng.random() < 0.65:
            a, b = rng.choice(len(_LATTICE), size=2, replace=False)
            points = [_LATTICE[int(a)], _LATTICE[int(b)]]
        else:
            cx, cy = _LATTICE[int(rng.integers(len(_LATTICE)))]
            radius = rng.uniform(0.15, 0.35)
            start = rng.choice((0.0, 0.5, 1.0, 1.5)) * math.pi
            sweep = rng.choice((0.5, 1.0, 1.5)) * math.pi
            t = np.linspace(start, start + sweep, 30)
            points = list(zip(cx + radius * np.cos(t), cy + radius * np.sin(t), strict=True))
        draw.line(scaled(place(points)), fill=255, width=width, joint="curve")
    return finish(image)


def _regular(sides: int, rng: np.random.Generator, star: bool = False) -> Points:
    radius, rotation = rng.uniform(0.3, 0.45), rng.uniform(0, 2 * math.pi)
    count = sides * 2 if star else sides
    inner = rng.uniform(0.35, 0.55)
    return [(0.5 + radius * (inner if star and k % 2 else 1.0) * math.cos(rotation + 2 * math.pi * k / count),
             0.5 + radius * (inner if star and k % 2 else 1.0) * math.sin(rotation + 2 * math.pi * k / count))
            for k in range(count)]


def _jitter(points: Points, rng: np.random.Generator, amount: float = 0.03) -> Points:
    return [(x + rng.normal(0, amount), y + rng.normal(0, amount)) for x, y in points]


SHAPES = ("plus", "x", "triangle", "square", "rectangle", "diamond", "star", "polygon", "arrow", "heart", "asterisk",
          "hash", "tick", "zigzag", "spiral", "lines")


@dataclass(frozen=True)
class _Pen:
    draw: ImageDraw.ImageDraw
    width: int
    jitter: float

    def line(self, points: Points, rng: np.random.Generator) -> None:
        self.draw.line(scaled(_jitter(points, rng, self.jitter)), fill=255, width=self.width)


def _crossing_strokes(kind: str, pen: _Pen, rng: np.random.Generator) -> None:
    """A plus, an x or an asterisk: straight arms through the centre."""
    arms = {"plus": 2, "x": 2, "asterisk": int(rng.integers(3, 5))}[kind]
    turn = {"plus": 0.0, "x": math.pi / 4, "asterisk": rng.uniform(0, math.pi)}[kind] + rng.normal(0, 0.1)
    length = rng.uniform(0.3, 0.45)
    for k in range(arms):
        angle = turn + math.pi * k / arms
        dx, dy = length * math.cos(angle), length * math.sin(angle)
        pen.line([(0.5 - dx, 0.5 - dy), (0.5 + dx, 0.5 + dy)], rng)


def _open_strokes(kind: str, pen: _Pen, a: float, b: float, rng: np.random.Generator) -> None:
    """A hash, a tick, a zigzag, parallel bars or a spiral."""
    if kind == "hash":
        for offset in (0.35, 0.65):
            pen.line([(offset, a), (offset, b)], rng)
            pen.line([(a, offset), (b, offset)], rng)
    elif kind == "lines":  # parallel bars
        for k in range(int(rng.integers(3, 6))):
            y = a + (b - a) * k / 4
            pen.line([(a, y), (b, y)], rng)
    elif kind == "spiral":
        turns, start = rng.uniform(1.5, 3.5), rng.uniform(0, 2 * math.pi)
        t = np.linspace(0, 1, 200)
        r = 0.05 + 0.38 * t
        points = list(zip(0.5 + r * np.cos(start + 2 * math.pi * turns * t),  # noqa: B905
                          0.5 + r * np.sin(start + 2 * math.pi * turns * t)))
        pen.draw.line(scaled(points), fill=255, width=pen.width, joint="curve")
    else:
        if kind == "tick":
            points = [(a, 0.55), (0.42, b), (b, a)]
        else:  # zigzag
            count = int(rng.integers(4, 8))
            points = [(a + (b - a) * k / (count - 1), 0.35 if k % 2 else 0.65) for k in range(count)]
        pen.draw.line(scaled(_jitter(points, rng, pen.jitter)), fill=255, width=pen.width, joint="curve")


def _outline(kind: str, a: float, b: float, rng: np.random.Generator) -> Points:
    """The corners of a closed shape, in the unit box."""
    if kind in ("triangle", "square"):
        return _regular(3 if kind == "triangle" else 4, rng)
    if kind == "diamond":
        return [(0.5, a), (b, 0.5), (0.5, b), (a, 0.5)]
    if kind == "rectangle":
        corners = [(a, 0.5 - rng.uniform(0.1, 0.3)), (b, 0.5 - rng.uniform(0.1, 0.3))]
        return [corners[0], (corners[1][0], corners[0][1]), (corners[1][0], 1 - corners[0][1]),
                (corners[0][0], 1 - corners[0][1])]
    if kind in ("star", "polygon"):
        return _regular(int(rng.integers(5, 8)), rng, star=True) if kind == "star" \
            else _regular(int(rng.integers(5, 9)), rng)
    if kind == "heart":
        t = np.linspace(0, 2 * math.pi, 80)
        x, y = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return list(zip(0.5 + x / 40, 0.45 - y / 40))  # noqa: B905
    arrow = [(a, 0.45), (0.6, 0.45), (0.6, 0.3), (b, 0.5), (0.6, 0.7), (0.6, 0.55), (a, 0.55)]
    angle = rng.uniform(0, 2 * math.pi)
    return [(0.5 + (x - 0.5) * math.cos(angle) - (y - 0.5) * math.sin(angle),
             0.5 + (x - 0.5) * math.sin(angle) + (y - 0.5) * math.cos(angle)) for x, y in arrow]


def shape(rng: np.random.Generator) -> np.ndarray:
    """Crosses, triangles, squares and rectangles, diamonds, stars, polygons, arrows, hearts,
    asterisks, hashes, ticks, zigzags, spirals: outlined or filled, hand-jittered or exact."""
    image, draw = canvas()
    width = _stroke_width(rng)
    kind = str(rng.choice(SHAPES))
    pen = _Pen(draw, width, 0.0 if rng.random() < 0.4 else 0.025)
    filled = rng.random() < 0.3
    a, b = rng.uniform(0.1, 0.3), rng.uniform(0.7, 0.9)
    if kind in ("plus", "x", "asterisk"):
        _crossing_strokes(kind, pen, rng)
    elif kind in ("hash", "tick", "zigzag", "lines", "spiral"):
        _open_strokes(kind, pen, a, b, rng)
    else:
        points = scaled(_jitter(_outline(kind, a, b, rng), rng, pen.jitter))
        if filled:
            draw.polygon(points, fill=int(rng.integers(128, 256)))
        else:
            draw.line([*points, points[0]], fill=255, width=width, joint="curve")
    return finish(image)


def texture(rng: np.random.Generator) -> np.ndarray:
    """Stripes at any angle, checks, grids, dot lattices, hatching, concentric rings."""
    ys, xs = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    period = rng.uniform(3, 16)
    angle = rng.uniform(0, math.pi)
    u = xs * math.cos(angle) + ys * math.sin(angle)
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    kind = str(rng.choice(("stripes", "checks", "grid", "dots", "rings", "waves")))
    duty = rng.uniform(0.2, 0.6)
    if kind == "stripes":
        ink = (u / period) % 1 < duty
    elif kind == "checks":
        ink = ((u // period) + (v // period)) % 2 == 0
    elif kind == "grid":
        ink = ((u / period) % 1 < duty / 2) | ((v / period) % 1 < duty / 2)
    elif kind == "dots":
        ink = (((u / period) % 1 - 0.5) ** 2 + ((v / period) % 1 - 0.5) ** 2) < (duty / 2) ** 2
    elif kind == "rings":
        ink = (np.hypot(xs - rng.uniform(0, SIDE), ys - rng.uniform(0, SIDE)) / period) % 1 < duty
    else:
        ink = np.sin(u / period * 2 * math.pi + 3 * np.sin(v / (2 * period))) > 0
    return ink.astype(np.float32) * float(rng.uniform(0.5, 1.0))


def noise(rng: np.random.Generator) -> np.ndarray:
    """Uniform, Gaussian, salt and pepper, or smooth (blurred) noise."""
    kind = str(rng.choice(("uniform", "gaussian", "salt", "smooth")))
    if kind == "uniform":
        return rng.random((SIDE, SIDE), dtype=np.float32)
    if kind == "gaussian":
        return np.clip(rng.normal(0.5, 0.25, (SIDE, SIDE)), 0, 1).astype(np.float32)
    if kind == "salt":
        return (rng.random((SIDE, SIDE)) < rng.uniform(0.02, 0.3)).astype(np.float32)
    field = Image.fromarray((rng.random((SIDE, SIDE)) * 255).astype(np.uint8))
    field = field.filter(ImageFilter.GaussianBlur(float(rng.uniform(1, 5))))
    array = np.asarray(field, dtype=np.float32)
    array = (array - array.min()) / max(1e-6, float(np.ptp(array)))
    return (array > rng.uniform(0.4, 0.6)).astype(np.float32) if rng.random() < 0.5 else array


def silhouette(rng: np.random.Generator) -> np.ndarray:
    """A filled blob (a smooth star-convex outline), plain or textured inside: things, not digits."""
    image, draw = canvas()
    count = int(rng.integers(5, 12))
    radii = rng.uniform(0.2, 0.45, count)
    angles = np.sort(rng.uniform(0, 2 * math.pi, count))
    points = [(0.5 + r * math.cos(t), 0.5 + r * math.sin(t)) for r, t in zip(radii, angles)]  # noqa: B905
    draw.polygon(scaled(points), fill=255)
    blob = finish(image)
    if rng.random() < 0.5:
        pattern = texture(rng)
        blob = blob * (0.4 + 0.6 * pattern / max(1e-6, float(pattern.max())))
    return np.clip(blob * float(rng.uniform(0.5, 1.0)), 0, 1).astype(np.float32)


def pair(rng: np.random.Generator, digits: np.ndarray | None) -> np.ndarray:
    """Two digits side by side (a number is not a digit); a scribble when no digits are given."""
    if digits is None or len(digits) == 0:
        return scribble(rng)
    first, second = digits[rng.integers(len(digits), size=2)]
    gap = int(rng.integers(0, 6))
    both = np.concatenate([first[:, 4:24], np.zeros((28, gap), np.uint8), second[:, 4:24]], axis=1)
    return both.astype(np.float32) / 255.0


def outlier_source(digits: np.ndarray | None = None, families: tuple[str, ...] = FAMILIES) -> GlyphSource:
    """``source(index, rng)`` for the upload simulator: a random non-digit of the given families;
    textures and noise fill their canvas. ``digits`` (training digits) feed the "pair" family."""
    weights = np.array([FAMILY_WEIGHTS[FAMILIES.index(f)] for f in families])
    weights = weights / weights.sum()
    makers: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
        "scribble": scribble, "glyph": glyph, "shape": shape, "texture": texture, "noise": noise,
        "silhouette": silhouette, "pair": lambda rng: pair(rng, digits),
    }

    def source(index: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        family = str(rng.choice(families, p=weights))
        fills = family in ("texture", "noise") and rng.random() < 0.7
        if family not in LINE_FAMILIES:
            return makers[family](rng), fills
        for _ in range(REDRAWS):
            ink = makers[family](rng)
            if not digit_bank().looks_like_digit(ink):
                return ink, fills
        return noise(rng), fills

    return source
