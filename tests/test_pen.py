"""Digits re-inked as pen strokes (model/synth/pen.py): thinning to one-pixel lines, tracing them into
strokes, and drawing them as the page's canvas does."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from harness.inputs import load_digit, mnist_fixtures
from model.synth.pen import CANVAS, draw, pen_drawing, pen_strokes, seen, skeleton, thin, trace


def test_thinning_leaves_a_one_pixel_line_through_a_thick_bar():
    mask = np.zeros((40, 40), bool)
    mask[8:32, 15:24] = True  # a vertical bar 9 px thick
    line = thin(mask)
    rows = line[13:27]  # thinning shortens a bar by about half its width at each end
    assert (rows.sum(1) == 1).all()  # one pixel wide along its length
    assert set(np.nonzero(rows)[1]) == {19}  # in the middle of the bar
    assert line.sum() == 15
    assert thin(line).sum() == line.sum()  # a skeleton is its own skeleton


def test_a_traced_l_is_one_stroke_from_end_to_end():
    image = Image.new("L", (112, 112), 0)
    ImageDraw.Draw(image).line([(30, 10), (30, 90), (90, 90)], fill=255, width=9)
    strokes = trace(thin(np.asarray(image) > 127))
    assert len(strokes) == 1
    ends = sorted((round(x), round(y)) for x, y in (strokes[0][0], strokes[0][-1]))
    assert np.hypot(ends[0][0] - 30, ends[0][1] - 10) < 6 and np.hypot(ends[1][0] - 90, ends[1][1] - 90) < 8
    assert min(np.hypot(x - 30, y - 90) for x, y in strokes[0]) < 6  # the corner is passed through, not an end


def test_a_closed_loop_is_traced_as_one_stroke():
    image = Image.new("L", (112, 112), 0)
    ImageDraw.Draw(image).ellipse([20, 15, 90, 95], outline=255, width=8)
    strokes = trace(thin(np.asarray(image) > 127))
    assert len(strokes) == 1 and len(strokes[0]) > 100
    first, last = np.array(strokes[0][0]), np.array(strokes[0][-1])
    assert np.hypot(*(first - last)) < 4  # it comes back to where it started


def test_real_digits_become_few_strokes_and_drawings_read_back_as_ink():
    for path, label in mnist_fixtures():
        digit = load_digit(path)
        strokes = pen_strokes(digit)
        assert 1 <= len(strokes) <= 5, (label, len(strokes))
        assert skeleton(digit).sum() < (np.asarray(digit) > 90).sum() * 16  # thinner than the ink at 4x
        data = pen_drawing(digit, np.random.default_rng([14, label]))
        canvas = np.asarray(Image.open(io.BytesIO(data)))
        assert canvas.shape == (CANVAS, CANVAS) and canvas.max() == 255 and canvas.min() < 50  # black on white
        network = seen(data)
        assert network is not None and network.shape == (28, 28) and network.max() > 200


def test_drawings_are_seeded_and_pens_round():
    digit = load_digit(mnist_fixtures()[0][0])
    assert pen_drawing(digit, np.random.default_rng(3)) == pen_drawing(digit, np.random.default_rng(3))
    assert pen_drawing(digit, np.random.default_rng(3)) != pen_drawing(digit, np.random.default_rng(4))
    dot = np.asarray(draw([[(140.0, 140.0)]], 20.0))  # one pointer-down: a round dot of the pen's width
    inked = dot < 128
    assert abs(inked.sum() - np.pi * 10**2) < 0.1 * np.pi * 10**2
