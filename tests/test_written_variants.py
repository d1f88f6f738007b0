"""1s with a flag or a foot and 7s with a bar (model/synth/written_variants.py): the stroke lands where
a writer puts it, a leaning or bent 1 gets none, and the drawings read back as what the bank calls a digit."""

from __future__ import annotations

import numpy as np
import pytest

from harness.inputs import load_digit, mnist_fixtures
from model.synth.pen import Stroke
from model.synth.written_variants import barred_seven, draw_variants, flagged_one

UPRIGHT_ONE: list[Stroke] = [[(56.0, 10.0 + y) for y in range(0, 91, 2)]]  # top (56, 10), bottom (56, 100)


def _styles(strokes: list[Stroke], seeds: range) -> list[list[Stroke]]:
    drawn = [flagged_one(strokes, np.random.default_rng(seed)) for seed in seeds]
    assert all(d is not None for d in drawn)
    return [d for d in drawn if d is not None]


def test_a_flag_hangs_down_to_the_left_of_the_top_and_a_foot_lies_level_across_the_bottom():
    flags = feet = 0
    for strokes in _styles(UPRIGHT_ONE, range(60)):
        assert strokes.count(UPRIGHT_ONE[0]) == 1 and 2 <= len(strokes) <= 3
        for extra in (s for s in strokes if s is not UPRIGHT_ONE[0]):
            xs, ys = np.array(extra)[:, 0], np.array(extra)[:, 1]
            if np.hypot(xs[-1] - 56, ys[-1] - 10) < 1e-6:  # ends at the top: a flag
                flags += 1
                assert xs[0] < 56 - 0.15 * 90 * np.cos(np.radians(60)) + 1e-6  # to the left
                assert 10 < ys[0] <= 10 + 0.35 * 90 * np.sin(np.radians(60)) + 1e-6  # below the top, not far
            else:  # a foot: level, across the bottom end
                feet += 1
                assert abs(ys[0] - 100) < 0.1 * 90 and ys[-1] == 100
                assert xs[0] < 56 < xs[-1] and 0.2 * 90 <= xs[-1] - xs[0] <= 0.6 * 90
    assert flags > 30 and feet > 15  # flag 50 %, flag and foot 40 %, foot 10 %


@pytest.mark.parametrize("points", [
    [(56.0 + 0.5 * y, 10.0 + y) for y in range(0, 91, 2)],  # leaning 27 degrees: a flag would make a 7
    [(56.0 + 25 * np.sin(y / 90 * np.pi), 10.0 + y) for y in range(0, 91, 2)],  # bowed
])
def test_a_leaning_or_bent_one_gets_no_variant(points):
    assert flagged_one([points], np.random.default_rng(0)) is None
    assert flagged_one([UPRIGHT_ONE[0], UPRIGHT_ONE[0]], np.random.default_rng(0)) is None  # two strokes


def test_a_seven_gets_a_short_bar_across_its_stem_below_the_middle():
    top = [(20.0 + x, 10.0) for x in range(0, 61, 2)]
    stem = [(80.0 - 0.4 * y, 10.0 + y) for y in range(0, 91, 2)]
    slopes = []
    for seed in range(40):
        strokes = barred_seven([top + stem], np.random.default_rng(seed))
        assert strokes is not None and len(strokes) == 2
        bar = np.array(strokes[1])
        level = bar[:, 1].mean()
        assert 10 + 0.4 * 90 < level < 10 + 0.67 * 90
        stem_x = 80.0 - 0.4 * (level - 10)
        assert bar[:, 0].min() < stem_x < bar[:, 0].max()  # it crosses the stem
        assert 0.2 * 60 < np.ptp(bar[:, 0]) < 0.8 * 60  # short: about half the 7's width
        slopes.append(abs(bar[-1, 1] - bar[0, 1]) / np.ptp(bar[:, 0]))
    assert np.median(slopes) < 0.27 and max(slopes) < 0.7  # about level (median under 15 degrees), never a diagonal


def test_only_ones_and_sevens_are_drawn_and_the_drawings_stay_digits_to_the_hygiene_bank():
    """The outlier generators redraw any mark near a named skeleton; the bank holds a flagged 1,
    one with a flag and a foot, and a barred 7, so the variants drawn here are digits to it."""
    from model.synth.sketches import DIGIT_DISTANCE, digit_bank

    fixtures = [(load_digit(path), label) for path, label in mnist_fixtures()]
    images = np.stack([image for image, _ in fixtures] * 4)
    labels = np.array([label for _, label in fixtures] * 4)
    drawn = draw_variants(images, labels, seed=5, workers=1, progress=False)
    visible = drawn.reshape(len(drawn), -1).max(1) > 0
    assert not visible[~np.isin(labels, (1, 7))].any()
    assert visible[labels == 7].all()
    near = [digit_bank().nearest(image / 255.0) for image in drawn[visible]]
    assert sum(distance < DIGIT_DISTANCE and digit in (1, 7) for digit, distance in near) >= 0.5 * len(near), near
    again = draw_variants(images, labels, seed=5, workers=1, progress=False)
    assert np.array_equal(drawn, again)  # seeded
