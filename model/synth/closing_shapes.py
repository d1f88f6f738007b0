"""Non-digits that close and branch like digits: bumpy loops, loops on stems, branching trees,
ladders and combs, crossed loops and nested loops, drawn in code as strokes.

The generated outliers of ``model.synth.outliers`` leave out circles (a drawn circle is a fair 0)
and rarely close or branch, so a network trained on them took closed and branching drawings for
the digit nearest in shape (a scalloped loop for a 0, a branching shape for a 4). These
families are generic on purpose: each is a rule with random parts (how many bumps, branches,
rungs, teeth), not a picture of a named thing, and none is a letter: ladders have at least three
rungs, combs at least four teeth, trees fork into three. Left out: zigzag bolts (with few turns
they are a Z, a 2 or a 3) and a smooth loop crossed by one line (a slashed zero, a theta).
Every drawing is checked at its pen's width against the named digit skeletons
(``model.synth.sketches.DigitBank``) as the other generators are, and drawn again when it lands
near one (a thick pen fills a tree's crown: a 9).

Each shape is rendered two ways for training (``model.synth.pools``): as a random upload
(:func:`closing_source`, through the upload simulator) and drawn on the page's pad by a random hand
(:func:`draw_closing`, through ``model.synth.pen``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from model.data import IMAGE_SIZE
from model.synth.canvas import SIDE, SUPERSAMPLE, canvas, densify, finish, scaled
from model.synth.forked import render_all
from model.synth.pen import Stroke, drawn_by, random_hand, seen
from model.synth.sketches import digit_bank
from model.synth.upload_simulator import GlyphSource

CLOSING_VERSION = 2  # bump when a generator changes, so cached pools are rebuilt
KINDS = ("bumpy loop", "loop on a stem", "branching", "ladder", "comb", "crossed loop", "nested loops")
REDRAWS = 12


def _loop(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, bumps: int) -> Stroke:
    """A closed outline with ``bumps`` outward scallops (a cloud's, a bush's), its start turned at random."""
    depth = rng.uniform(0.25, 0.45)
    turn = rng.uniform(0, 2 * math.pi)
    t = np.linspace(0, 2 * math.pi, 24 * bumps + 1)
    r = 1 - depth + depth * np.abs(np.sin(bumps * (t - turn) / 2)) ** rng.uniform(0.5, 1.0)
    return [(float(cx + rx * rr * math.cos(a)), float(cy + ry * rr * math.sin(a))) for a, rr in zip(t, r, strict=True)]


def bumpy_loop(rng: np.random.Generator) -> list[Stroke]:
    """A scalloped closed outline of 3 to 7 bumps, wide or tall."""
    rx, ry = rng.uniform(0.25, 0.45), rng.uniform(0.2, 0.45)
    return [_loop(rng, 0.5, 0.5, rx, ry, int(rng.integers(3, 8)))]


def loop_on_a_stem(rng: np.random.Generator) -> list[Stroke]:
    """A scalloped crown on a trunk of two lines (sometimes one), with roots or a ground line."""
    crown = _loop(rng, 0.5, 0.33, rng.uniform(0.22, 0.4), rng.uniform(0.18, 0.3), int(rng.integers(4, 8)))
    half = rng.uniform(0.03, 0.09)
    base = rng.uniform(0.85, 0.97)
    strokes = [crown]
    if rng.random() < 0.75:
        strokes += [[(0.5 - half, 0.58), (0.5 - half, base)], [(0.5 + half, 0.58), (0.5 + half, base)]]
    else:
        strokes.append([(0.5, 0.58), (0.5, base)])
    if rng.random() < 0.5:
        strokes.append([(rng.uniform(0.1, 0.3), base), (rng.uniform(0.7, 0.9), base)])
    return strokes


def branching(rng: np.random.Generator) -> list[Stroke]:
    """A trunk that forks into three, each branch forking again once or twice: a bare tree, a river
    (never a lone fork: a Y is a letter)."""
    strokes: list[Stroke] = []
    spread = rng.uniform(0.35, 0.8)

    def grow(x: float, y: float, angle: float, length: float, depth: int, first: bool) -> None:
        end = (x + length * math.sin(angle), y - length * math.cos(angle))
        strokes.append([(x, y), end])
        if depth == 0:
            return
        for k in range(3 if first else int(rng.integers(2, 4))):
            turn = angle + spread * (k - 0.5 if k < 2 else 0.0) * 2 + rng.normal(0, 0.15)
            grow(end[0], end[1], turn, length * rng.uniform(0.6, 0.8), depth - 1, False)

    grow(0.5, 0.95, rng.normal(0, 0.1), rng.uniform(0.25, 0.4), int(rng.integers(2, 4)), True)
    return strokes


def ladder(rng: np.random.Generator) -> list[Stroke]:
    """Two rails and three to six rungs (one or two would be an H)."""
    left, right = rng.uniform(0.15, 0.35), rng.uniform(0.65, 0.85)
    rungs = int(rng.integers(3, 7))
    levels = np.sort(rng.uniform(0.15, 0.85, rungs)) if rng.random() < 0.3 else np.linspace(0.2, 0.8, rungs)
    return [[(left, 0.08), (left, 0.92)], [(right, 0.08), (right, 0.92)],
            *[[(left, float(y)), (right, float(y))] for y in levels]]


def comb(rng: np.random.Generator) -> list[Stroke]:
    """A spine with four to seven teeth on one side, or ribs on both (a fishbone)."""
    teeth = int(rng.integers(4, 8))
    length = rng.uniform(0.3, 0.6)
    both = rng.random() < 0.4
    spine_x = 0.5 if both else 0.25
    strokes: list[Stroke] = [[(spine_x, 0.08), (spine_x, 0.92)]]
    for y in np.linspace(0.1, 0.9, teeth):
        slope = rng.normal(0, 0.05) + (rng.uniform(0.05, 0.2) if both else 0.0)
        strokes.append([(spine_x, float(y)), (spine_x + length, float(y) - slope)])
        if both:
            strokes.append([(spine_x, float(y)), (spine_x - length, float(y) - slope)])
    return strokes


def crossed_loop(rng: np.random.Generator) -> list[Stroke]:
    """A closed loop crossed by two lines through and beyond it, or a scalloped loop by one (a smooth
    loop with one line is a slashed zero or a theta)."""
    rx, ry = rng.uniform(0.2, 0.32), rng.uniform(0.2, 0.32)
    bumps = int(rng.integers(3, 8)) if rng.random() < 0.5 else 0
    loop = _loop(rng, 0.5, 0.5, rx, ry, bumps) if bumps else [
        (0.5 + rx * math.cos(a), 0.5 + ry * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 60)]
    strokes = [loop]
    for _ in range(int(rng.integers(1, 3)) if bumps else 2):
        angle = rng.uniform(0, math.pi)
        reach = rng.uniform(0.4, 0.48)
        dx, dy = reach * math.cos(angle), reach * math.sin(angle)
        strokes.append([(0.5 - dx, 0.5 - dy), (0.5 + dx, 0.5 + dy)])
    return strokes


def nested_loops(rng: np.random.Generator) -> list[Stroke]:
    """Two or three loops one inside the other (a target, an eye), smooth or scalloped."""
    strokes = []
    rx, ry = rng.uniform(0.3, 0.45), rng.uniform(0.2, 0.45)
    for k in range(int(rng.integers(2, 4))):
        shrink = 1.0 - 0.35 * k
        bumps = int(rng.integers(3, 8)) if rng.random() < 0.4 else 0
        strokes.append(_loop(rng, 0.5, 0.5, rx * shrink, ry * shrink, bumps) if bumps else
                       [(0.5 + rx * shrink * math.cos(a), 0.5 + ry * shrink * math.sin(a))
                        for a in np.linspace(0, 2 * math.pi, 60)])
    return strokes


MAKERS: dict[str, Callable[[np.random.Generator], list[Stroke]]] = {
    "bumpy loop": bumpy_loop, "loop on a stem": loop_on_a_stem, "branching": branching, "ladder": ladder,
    "comb": comb, "crossed loop": crossed_loop, "nested loops": nested_loops,
}


def _ink(strokes: list[Stroke], width: int) -> np.ndarray:
    """Strokes in the unit box -> ink ``[64, 64]`` in [0, 1], fitted into the box with a margin."""
    every = np.concatenate([np.asarray(s) for s in strokes])
    low, high = every.min(0), every.max(0)
    extent = max(float((high - low).max()), 1e-6)
    fit = [[(0.5 + 0.8 * (x - (low[0] + high[0]) / 2) / extent, 0.5 + 0.8 * (y - (low[1] + high[1]) / 2) / extent)
            for x, y in s] for s in strokes]
    image, pen = canvas()
    for stroke in fit:
        pen.line(scaled(stroke), fill=255, width=width, joint="curve")
    return finish(image)


def closing_shape(rng: np.random.Generator, width: int) -> list[Stroke] | None:
    """The strokes of a random closing shape that, drawn ``width`` wide (canvas pixels), is no named
    digit (a thick pen fills a small loop: a tree becomes a 9); None after :data:`REDRAWS` tries."""
    kind = str(rng.choice(KINDS))
    for _ in range(REDRAWS):
        strokes = MAKERS[kind](rng)
        if not digit_bank().looks_like_digit(_ink(strokes, width)):
            return strokes
    return None


def closing_source() -> GlyphSource:
    """``source(index, rng)`` for the upload simulator: a closing shape as printed ink (blank when none)."""
    def source(index: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        width = int(rng.integers(2, 8)) * SUPERSAMPLE
        strokes = closing_shape(rng, width)
        return (np.zeros((SIDE, SIDE), np.float32) if strokes is None else _ink(strokes, width)), False

    return source


def _on_the_pad(index: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, index])
    hand = random_hand(rng)
    width = round(min(max(hand.pen / hand.height * 0.8 * SIDE, 1), 10) * SUPERSAMPLE)  # the hand's pen on the ink
    strokes = closing_shape(rng, width)
    out = None
    if strokes is not None:
        out = seen(drawn_by([densify(s, 0.02) for s in strokes], hand, rng))
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8) if out is None else out


def _job(args: tuple[int, int]) -> np.ndarray:
    return _on_the_pad(*args)


def draw_closing(count: int, seed: int, workers: int = 2, desc: str = "closing shapes drawn",
                 progress: bool = True) -> np.ndarray:
    """``count`` closing shapes drawn on the page's pad by random hands, seeded ``[seed, index]``,
    through the service's transform -> uint8 ``[count, 28, 28]`` (all zeros where none was drawn)."""
    return render_all(_job, [(index, seed) for index in range(count)], workers, desc, progress)
