"""The drawing battery's strokes: digits, letters and doodles as a person draws them on the page.

Report only: nothing that trains or calibrates imports this module (a structural test checks).
Every drawing is a list of strokes (pointer down, moves, up) on the page's 280 px pad, a pen
width (the page's fine, medium and marker pens) and what it shows. Digit sources, each apart from
what training saw by source and seed:

* ``mnist-test``: MNIST *test* digits re-inked as pen strokes (``model.synth.pen``; training re-inks
  MNIST *train*, calibration MNIST *validation*);
* ``sketch``: the sketched skeletons of ``model/synth/sketches.py`` with this module's jitter and hands
  (the shipped recipe trains on no sketches; the outlier generator's digit filter uses their
  shapes to keep digits *out* of its non-digits).

Non-digits, drawn here by hand in a unit box and never seen by training (its Latin letters are
printed in fonts and re-inked from them: not these hands): ``letters`` (capitals
and small letters no reader takes for a digit: not O o D Q I l i j J S s Z z B b g q G T t y)
and ``doodles`` (a smiley, a house, a star, a heart, ...). :func:`battery` is seeded: the same
seed gives the same drawings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.data import Split
from model.synth.canvas import bezier, densify
from model.synth.pen import CANVAS, Hand, Stroke, draw, pen_strokes, place, png
from model.synth.sketches import SKELETONS

PENS = (8.0, 18.0, 30.0)  # the page's pens: fine, medium (the default), marker
DIGIT_SOURCES = ("mnist-test", "sketch")
SKETCH_SHARE = 0.3  # of the digit drawings; the rest are MNIST test digits


@dataclass(frozen=True)
class Drawing:
    kind: str  # "digit", "letter" or "doodle"
    label: str  # "7", "A", "house"
    source: str  # "mnist-test", "sketch", "letters", "doodles"
    strokes: list[Stroke]  # page pixels
    pen: float  # page pixels

    def png(self) -> bytes:
        """The drawing as the page's canvas exports it (black on white PNG)."""
        return png(draw(self.strokes, self.pen))


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, steps: int = 24) -> Stroke:
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(start, end, steps)]


def _l(*points: tuple[float, float]) -> Stroke:
    return list(points)


LETTERS: dict[str, list[Stroke]] = {
    "A": [_l((0.1, 0.95), (0.5, 0.05), (0.9, 0.95)), _l((0.27, 0.6), (0.73, 0.6))],
    "C": [_arc(0.55, 0.5, 0.4, 0.45, -50, -310)],
    "E": [_l((0.8, 0.05), (0.2, 0.05), (0.2, 0.95), (0.8, 0.95)), _l((0.2, 0.5), (0.65, 0.5))],
    "F": [_l((0.8, 0.05), (0.2, 0.05), (0.2, 0.95)), _l((0.2, 0.5), (0.65, 0.5))],
    "H": [_l((0.2, 0.05), (0.2, 0.95)), _l((0.8, 0.05), (0.8, 0.95)), _l((0.2, 0.5), (0.8, 0.5))],
    "K": [_l((0.2, 0.05), (0.2, 0.95)), _l((0.8, 0.05), (0.2, 0.55), (0.8, 0.95))],
    "L": [_l((0.25, 0.05), (0.25, 0.95), (0.8, 0.95))],
    "M": [_l((0.1, 0.95), (0.15, 0.05), (0.5, 0.7), (0.85, 0.05), (0.9, 0.95))],
    "N": [_l((0.2, 0.95), (0.2, 0.05), (0.8, 0.95), (0.8, 0.05))],
    "P": [_l((0.25, 0.95), (0.25, 0.05)) + _arc(0.45, 0.28, 0.3, 0.23, -90, 90)[1:] + [(0.25, 0.51)]],
    "R": [_l((0.25, 0.95), (0.25, 0.05)) + _arc(0.45, 0.28, 0.3, 0.23, -90, 90)[1:] + [(0.25, 0.51), (0.8, 0.95)]],
    "U": [_l((0.2, 0.05), (0.2, 0.6)) + _arc(0.5, 0.6, 0.3, 0.33, 180, 0)[1:] + [(0.8, 0.05)]],
    "V": [_l((0.1, 0.05), (0.5, 0.95), (0.9, 0.05))],
    "W": [_l((0.05, 0.05), (0.27, 0.95), (0.5, 0.35), (0.73, 0.95), (0.95, 0.05))],
    "X": [_l((0.15, 0.05), (0.85, 0.95)), _l((0.85, 0.05), (0.15, 0.95))],
    "Y": [_l((0.15, 0.05), (0.5, 0.5), (0.85, 0.05)), _l((0.5, 0.5), (0.5, 0.95))],
    "a": [[*_arc(0.45, 0.7, 0.28, 0.25, -30, 330), (0.73, 0.95)]],
    "e": [_l((0.2, 0.65), (0.78, 0.65)) + _arc(0.5, 0.68, 0.3, 0.27, 0, -300)[1:]],
    "h": [_l((0.25, 0.05), (0.25, 0.95)),
          _l((0.25, 0.65)) + _arc(0.5, 0.68, 0.25, 0.22, 200, 360)[1:] + [(0.75, 0.95)]],
    "k": [_l((0.25, 0.05), (0.25, 0.95)), _l((0.75, 0.45), (0.25, 0.75), (0.75, 0.95))],
    "m": [_l((0.1, 0.95), (0.1, 0.45)) + _arc(0.3, 0.55, 0.2, 0.15, 180, 360)[1:] + [(0.5, 0.95)],
          _l((0.5, 0.55)) + _arc(0.7, 0.55, 0.2, 0.15, 180, 360)[1:] + [(0.9, 0.95)]],
    "n": [_l((0.2, 0.95), (0.2, 0.45)) + _arc(0.5, 0.6, 0.3, 0.2, 180, 360)[1:] + [(0.8, 0.95)]],
    "r": [_l((0.3, 0.95), (0.3, 0.45)), _l((0.3, 0.6)) + _arc(0.55, 0.6, 0.25, 0.15, 180, 300)[1:]],
    "w": [_l((0.05, 0.45), (0.27, 0.95), (0.5, 0.55), (0.73, 0.95), (0.95, 0.45))],
    "x": [_l((0.2, 0.45), (0.8, 0.95)), _l((0.8, 0.45), (0.2, 0.95))],
}


def _star(points: int = 5) -> Stroke:
    outer = [(0.5 + 0.45 * math.cos(math.radians(-90 + 144 * k)), 0.52 + 0.45 * math.sin(math.radians(-90 + 144 * k)))
             for k in range(points + 1)]
    return outer


DOODLES: dict[str, list[Stroke]] = {
    "smiley": [_arc(0.5, 0.5, 0.45, 0.45, 0, 360, 40), _l((0.35, 0.35), (0.36, 0.38)), _l((0.65, 0.35), (0.66, 0.38)),
               _arc(0.5, 0.55, 0.25, 0.2, 20, 160)],
    "house": [_l((0.15, 0.45), (0.15, 0.95), (0.85, 0.95), (0.85, 0.45), (0.15, 0.45), (0.5, 0.05), (0.85, 0.45)),
              _l((0.42, 0.95), (0.42, 0.7), (0.58, 0.7), (0.58, 0.95))],
    "star": [_star()],
    "heart": [_l((0.5, 0.95)) + _arc(0.3, 0.3, 0.22, 0.22, 135, 360)[1:] + _arc(0.7, 0.3, 0.22, 0.22, 180, 405)[1:]
              + [(0.5, 0.95)]],
    "sun": [_arc(0.5, 0.5, 0.22, 0.22, 0, 360, 30)]
    + [_l((0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a)), (0.5 + 0.45 * math.cos(a), 0.5 + 0.45 * math.sin(a)))
       for a in np.linspace(0, 2 * math.pi, 8, endpoint=False)],
    "tree": [_l((0.45, 0.95), (0.45, 0.6)), _l((0.55, 0.95), (0.55, 0.6)),
             _arc(0.5, 0.35, 0.35, 0.3, 100, 440, 36)],
    "fish": [[*_arc(0.45, 0.5, 0.35, 0.22, 30, 330), (0.95, 0.25), (0.95, 0.75), (0.73, 0.39)],
             _l((0.25, 0.45), (0.26, 0.47))],
    "flower": [_arc(0.5, 0.35, 0.1, 0.1, 0, 360, 16)]
    + [_arc(0.5 + 0.2 * math.cos(a), 0.35 + 0.2 * math.sin(a), 0.1, 0.1, 0, 360, 16)
       for a in np.linspace(0, 2 * math.pi, 6, endpoint=False)] + [_l((0.5, 0.45), (0.5, 0.95))],
    "cloud": [_arc(0.3, 0.6, 0.18, 0.18, 90, 270) + _arc(0.5, 0.45, 0.2, 0.2, 180, 360)[1:]
              + _arc(0.72, 0.6, 0.18, 0.18, 270, 450)[1:] + [(0.3, 0.78)]],
    "envelope": [_l((0.05, 0.2), (0.95, 0.2), (0.95, 0.8), (0.05, 0.8), (0.05, 0.2), (0.5, 0.55), (0.95, 0.2))],
    "cat": [_arc(0.5, 0.6, 0.35, 0.32, -60, 240, 36), _l((0.33, 0.33), (0.25, 0.05), (0.45, 0.28)),
            _l((0.55, 0.28), (0.75, 0.05), (0.67, 0.33)), _l((0.4, 0.55), (0.41, 0.57)), _l((0.6, 0.55), (0.61, 0.57))],
    "arrow": [_l((0.05, 0.5), (0.9, 0.5)), _l((0.65, 0.25), (0.92, 0.5), (0.65, 0.75))],
    "grid": [_l((0.35, 0.05), (0.35, 0.95)), _l((0.65, 0.05), (0.65, 0.95)), _l((0.05, 0.35), (0.95, 0.35)),
             _l((0.05, 0.65), (0.95, 0.65))],
    "stick figure": [_arc(0.5, 0.17, 0.12, 0.12, 0, 360, 20), _l((0.5, 0.29), (0.5, 0.65)),
                     _l((0.2, 0.42), (0.8, 0.42)), _l((0.3, 0.95), (0.5, 0.65), (0.7, 0.95))],
}


def _jittered(points: Stroke, rng: np.random.Generator, amount: float = 0.02) -> Stroke:
    """A hand's imprecision: the whole stroke a little off, and a polyline's corners each a
    little off too (a dense curve is moved whole: point noise would make it jagged)."""
    dx, dy = rng.normal(0, amount, 2)
    corner = amount if len(points) <= 8 else 0.0
    return [(x + dx + rng.normal(0, corner), y + dy + rng.normal(0, corner)) for x, y in points]


def _sketch_strokes(digit: int, rng: np.random.Generator, variant: int | None = None) -> list[Stroke]:
    """One of ``digit``'s skeletons (``variant``, or one at random) as a hand's jittered strokes."""
    variants = SKELETONS[digit]
    strokes = []
    for kind, points in variants[int(rng.integers(len(variants))) if variant is None else variant]:
        jittered = _jittered(points, rng)
        strokes.append(densify(bezier(jittered) if kind == "curve" else jittered, 0.02))
    return strokes


def _on_the_pad(strokes: list[Stroke], pen: float) -> list[Stroke]:
    """Moved (and if need be shrunk) so that every stroke lies on the pad, a pen's width from
    its edges: a person drawing on the page sees the edge."""
    every = np.concatenate([np.asarray(s) for s in strokes])
    low, high = every.min(0), every.max(0)
    room = CANVAS - 2 * pen
    scale = min(1.0, room / max(float((high - low).max()), 1e-6))
    middle = (low + high) / 2
    shift = np.clip(middle, pen + (high - low) * scale / 2, CANVAS - pen - (high - low) * scale / 2) - middle * 1.0
    return [[(float(middle[0] + (x - middle[0]) * scale + shift[0]),
              float(middle[1] + (y - middle[1]) * scale + shift[1]))
             for x, y in s] for s in strokes]


def battery_hand(rng: np.random.Generator, pen: float) -> Hand:
    """A person at the page: from a small digit in the middle to one filling the pad."""
    height = float(rng.uniform(0.35, 0.85) * CANVAS)
    margin = 0.5 * height + pen
    low, high = min(margin, CANVAS / 2), max(CANVAS - margin, CANVAS / 2)
    return Hand(height=height, aspect=float(rng.uniform(0.8, 1.2)), rotation=float(rng.normal(0, 6)),
                slant=float(rng.normal(0, 0.12)), wobble=float(rng.uniform(0, 0.01) * height),
                centre=(float(rng.uniform(low, high)), float(rng.uniform(low, high))), pen=pen)


def battery(mnist_test: Split, digits: int = 1000, non_digit_repeats: int = 4, seed: int = 51) -> list[Drawing]:
    """``digits`` digit drawings (digit ``index % 10``; MNIST test or sketch source), then every
    letter and doodle ``non_digit_repeats`` times, each with a new hand and pen."""
    rng = np.random.default_rng(seed)
    by_digit = {d: rng.permutation(np.flatnonzero(mnist_test.labels == d)) for d in range(10)}
    drawings: list[Drawing] = []
    for index in range(digits):
        digit = index % 10
        pen = float(rng.choice(PENS))
        hand = battery_hand(rng, pen)
        if rng.random() < SKETCH_SHARE or len(by_digit[digit]) == 0:  # (a tiny split may lack a digit)
            source, strokes = "sketch", _sketch_strokes(digit, rng)
        else:
            pool = by_digit[digit]
            source, strokes = "mnist-test", pen_strokes(mnist_test.images[pool[(index // 10) % len(pool)]])
        drawings.append(Drawing("digit", str(digit), source, _on_the_pad(place(strokes, hand, rng), pen), pen))
    for kind, shapes in (("letter", LETTERS), ("doodle", DOODLES)):
        for name, strokes in shapes.items():
            for _ in range(non_digit_repeats):
                pen = float(rng.choice(PENS))
                hand = battery_hand(rng, pen)
                placed = place([densify(_jittered(s, rng), 0.02) for s in strokes], hand, rng)
                drawings.append(Drawing(kind, name, f"{kind}s", _on_the_pad(placed, pen), pen))
    return drawings


def sketched(digit: int, variant: int, rng: np.random.Generator) -> Drawing:
    """``SKELETONS[digit][variant]`` (a flagged 1, a barred 7, a boxy 9, ...) drawn once as the
    battery draws its sketches: one of the page's pens, a battery hand, on the pad."""
    pen = float(rng.choice(PENS))
    hand = battery_hand(rng, pen)
    strokes = _sketch_strokes(digit, rng, variant)
    return Drawing("digit", str(digit), "sketch", _on_the_pad(place(strokes, hand, rng), pen), pen)
