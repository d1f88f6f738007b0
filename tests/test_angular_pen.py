"""Digits drawn in straight segments (model/synth/angular_pen.py): a curve becomes a few segments
through points of its own path, no point strays further than the tolerance, a loop stays closed,
and the drawings are seeded and read back as ink."""

from __future__ import annotations

import itertools
import math

import numpy as np

from harness.inputs import load_digit, mnist_fixtures
from model.synth.angular_pen import TOLERANCE, angular, draw_angular, simplified
from model.synth.canvas import densify
from model.synth.pen import Stroke, draw_many, pen_strokes


def _distance_to_polyline(points: np.ndarray, polyline: Stroke) -> np.ndarray:
    """Each point's distance to the nearest segment of ``polyline``."""
    best = np.full(len(points), np.inf)
    for (x0, y0), (x1, y1) in itertools.pairwise(polyline):
        a, ab = np.array([x0, y0]), np.array([x1 - x0, y1 - y0])
        t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
        best = np.minimum(best, np.hypot(*(points - (a + t[:, None] * ab)).T))
    return best


def test_an_l_drawn_densely_becomes_its_three_corners():
    stroke = densify([(10.0, 10.0), (10.0, 90.0), (60.0, 90.0)], 1.0)
    assert simplified(stroke, 3.0) == [(10.0, 10.0), (10.0, 90.0), (60.0, 90.0)]


def test_a_circle_becomes_a_closed_polygon_of_its_own_points_within_the_tolerance():
    circle = [(50 + 40 * math.cos(t), 50 + 40 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 200)]
    for tolerance, fewest, most in ((2.0, 8, 16), (6.0, 4, 8), (12.0, 3, 6)):
        polygon = simplified(circle, tolerance)
        assert fewest <= len(polygon) - 1 <= most, (tolerance, len(polygon))  # distinct corners
        assert polygon[0] == circle[0] and polygon[-1] == circle[-1]  # still closed
        assert set(polygon) <= set(circle)
        assert _distance_to_polyline(np.array(circle), polygon).max() <= tolerance + 1e-9


def test_a_digits_strokes_keep_their_count_and_stay_within_the_largest_tolerance():
    for path, _label in mnist_fixtures():
        strokes = pen_strokes(load_digit(path))
        every = np.concatenate([np.asarray(s) for s in strokes])
        height = float(np.ptp(every, axis=0).max())
        for seed in range(3):
            drawn = angular(strokes, np.random.default_rng(seed))
            assert len(drawn) == len(strokes)
            for before, after in zip(strokes, drawn, strict=True):
                assert _distance_to_polyline(np.asarray(before), after).max() <= TOLERANCE[1] * height + 1e-6


def test_drawings_are_seeded_visible_and_not_the_round_re_inking():
    images = np.stack([load_digit(path) for path, _ in mnist_fixtures()])
    drawn = draw_angular(images, seed=3, workers=1, progress=False)
    assert drawn.shape == images.shape and (drawn.reshape(len(drawn), -1).max(1) > 0).all()
    assert np.array_equal(drawn, draw_angular(images, seed=3, workers=1, progress=False))
    assert not np.array_equal(drawn, draw_many(images, seed=3, workers=1, progress=False))
