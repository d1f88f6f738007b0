"""The upload simulator: seeded, covering every kind it claims, and faithful to the service's path."""

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from harness.inputs import load_digit, mnist_fixtures
from model.synth.upload_simulator import (
    FORMATS,
    PAPERS,
    STROKES,
    UploadStyle,
    decode,
    random_style,
    render,
    simulate,
    simulate_many,
)
from model.transform import to_digit


@pytest.fixture
def digit() -> np.ndarray:
    return load_digit(mnist_fixtures()[0][0])  # a 7


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


def test_the_same_seed_and_index_give_the_same_file(digit):
    first = render(digit, random_style(np.random.default_rng([7, 3])), np.random.default_rng([7, 3]))
    again = render(digit, random_style(np.random.default_rng([7, 3])), np.random.default_rng([7, 3]))
    other = render(digit, random_style(np.random.default_rng([7, 4])), np.random.default_rng([7, 4]))
    assert first == again and first != other


def test_simulate_many_does_not_depend_on_the_number_of_workers(digit):
    source = lambda index, rng: (digit, False)  # noqa: E731
    one = simulate_many(source, 70, seed=5, workers=1, progress=False)
    two = simulate_many(source, 70, seed=5, workers=2, progress=False)
    assert one.shape == (70, 28, 28) and one.dtype == np.uint8
    assert np.array_equal(one, two)


def test_every_kind_the_simulator_claims_is_drawn():
    styles = [random_style(np.random.default_rng([0, i])) for i in range(600)]
    assert {s.fmt for s in styles} == set(FORMATS)
    assert {s.paper for s in styles} == set(PAPERS)
    assert {s.stroke for s in styles} == set(STROKES)
    assert Counter(s.alpha for s in styles)[True] >= 20
    assert Counter(s.tint for s in styles)[True] >= 60
    assert Counter(s.dark_ink for s in styles)[False] >= 60  # light strokes on dark canvases too
    assert Counter(s.noise > 0 for s in styles)[True] >= 60
    sides = [min(s.canvas) for s in styles]
    assert min(sides) <= 32 and max(max(s.canvas) for s in styles) >= 380  # 28-px drawings to 400-px photos
    aspects = [s.canvas[0] / s.canvas[1] for s in styles]
    assert min(aspects) < 0.8 and max(aspects) > 1.25
    positions = np.array([s.position for s in styles])
    assert positions.min() < 0.05 and positions.max() > 0.95  # off-centre, up to the edges


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_is_really_that_format(digit, fmt):
    style = UploadStyle((120, 90), 60, (0.2, 0.7), "as drawn", True, "flat", False, False, 0.0, fmt, 80)
    data = render(digit, style, np.random.default_rng(0))
    assert Image.open(io.BytesIO(data)).format == fmt


def test_alpha_canvas_exports_are_transparent(digit):
    style = UploadStyle((200, 200), 150, (0.5, 0.5), "as drawn", True, "flat", True, False, 0.0, "PNG", 90)
    image = Image.open(io.BytesIO(render(digit, style, np.random.default_rng(0))))
    assert image.mode == "RGBA"
    alpha = np.asarray(image)[..., 3]
    assert alpha.min() == 0 and alpha.max() > 200


def test_polarity_and_paper_are_as_asked(digit):
    dark = UploadStyle((200, 200), 120, (0.5, 0.5), "as drawn", True, "lined", False, False, 0.0, "PNG", 90)
    light = UploadStyle((200, 200), 120, (0.5, 0.5), "as drawn", False, "flat", False, False, 0.0, "PNG", 90)
    dark_pixels = np.asarray(decode(render(digit, dark, np.random.default_rng(0))).convert("L"), dtype=float)
    light_pixels = np.asarray(decode(render(digit, light, np.random.default_rng(0))).convert("L"), dtype=float)
    assert np.median(dark_pixels) > 150 and np.median(light_pixels) < 80
    ruled_rows = (dark_pixels < np.median(dark_pixels) - 10).mean(axis=1) > 0.9
    assert ruled_rows.sum() >= 5  # lined paper has its full-width lines


def test_a_clean_upload_comes_back_as_the_digit(digit):
    style = UploadStyle((280, 280), 200, (0.5, 0.5), "as drawn", True, "flat", False, False, 0.0, "PNG", 90)
    seen = to_digit(decode(render(digit, style, np.random.default_rng(0))))
    assert correlation(seen, digit) > 0.9


def test_simulated_uploads_keep_the_digit_recognisable(digit):
    rng = np.random.default_rng(1)
    seen = [simulate(digit, rng) for _ in range(40)]
    assert all(s is not None for s in seen)
    scores = [correlation(s, digit) for s in seen if s is not None]
    assert np.median(scores) > 0.75  # varied (thickness, position, noise), still this 7
