"""Generated non-digits: visible, seeded, varied, and never drawn from a reported family."""

import ast
from pathlib import Path

import numpy as np
import pytest

import model.synth.canvas as canvas
import model.synth.outliers as outliers
from harness.inputs import load_digit, mnist_fixtures
from model.synth.outliers import FAMILIES, OUTLIER_VERSION, outlier_source


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_draws_visible_varied_ink(family):
    digits = np.stack([load_digit(p) for p, _ in mnist_fixtures()])
    source = outlier_source(digits, (family,))
    drawn = [source(i, np.random.default_rng([3, i]))[0] for i in range(12)]
    assert all(g.max() > 0.3 for g in drawn)
    assert all(g.min() >= 0.0 and g.max() <= 1.0 for g in drawn)
    flattened = [np.asarray(g, dtype=float).ravel() for g in drawn if g.shape == drawn[0].shape]
    assert len({g.tobytes() for g in flattened}) == len(flattened)  # no two draws alike


def test_outliers_are_seeded():
    source = outlier_source(None)
    a, fills_a = source(5, np.random.default_rng([1, 5]))
    b, fills_b = source(5, np.random.default_rng([1, 5]))
    assert np.array_equal(a, b) and fills_a == fills_b


def test_the_generator_never_reads_a_font_or_a_data_set():
    """Reported out-of-distribution families (Fashion-MNIST, rendered letters, any font) must not
    reach training: the generator imports nothing that could load them."""
    tree = ast.parse(Path(outliers.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for alias in node.names}
    assert not any("ImageFont" in name or "families" in name or "data." in name for name in imported), imported
    text = Path(outliers.__file__).read_text()
    for forbidden in ("truetype", "load_fashion", "FASHION", ".ttf", "fashion-mnist"):
        assert forbidden not in text


def test_metadata_of_the_shipped_checkpoint_says_what_training_saw():
    import json

    from harness.inputs import SHIPPED
    from model.synth.families import TRAIN_FONTS
    from model.synth.other_scripts import MARKS
    from model.synth.pen import PEN_VERSION

    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    seen = meta["training_data"]
    assert seen["generated_outliers"] > 10_000 and seen["mnist_train_uploads"] > 40_000
    assert seen["mnist_train_pen_drawings"] > 40_000 and seen["pen_version"] == PEN_VERSION
    assert seen["printed_digits_training_fonts"] > 1_000 and seen["training_fonts"] == list(TRAIN_FONTS)
    assert set(seen["outlier_families"]) == set(FAMILIES) and seen["outlier_version"] == OUTLIER_VERSION
    marks = seen["other_script_marks"]  # printed and pen-drawn marks of other scripts, training fonts only
    assert marks["count"] > 5_000 and marks["marks"] == MARKS and marks["fonts"] == list(TRAIN_FONTS)
    assert {"Fashion-MNIST", "the report's symbols (any font)", "pen drawings of MNIST test digits",
            "single-stroke vector fonts"} <= set(seen["never_seen"])
    letters = seen["latin_letters"]  # printed and pen-drawn Latin letters, training fonts only; the report's elsewhere
    assert letters["count"] > 5_000 and letters["fonts"] == list(TRAIN_FONTS)
    assert any("Latin letters in the held-out fonts" in item for item in seen["never_seen"])
    mix = seen["selection_and_calibration"]  # what the temperature and the threshold were fitted on
    assert mix["uploads"] > 9_000 and mix["pen drawings"] > 9_000 and mix["plain PNG files"] > 9_000
    # each channel's record on its own part of that mix: files (uploads, PNG files) and drawings (pen drawings)
    for channel, alpha, size in (("file", 0.002, mix["uploads"] + mix["plain PNG files"]),
                                 ("drawn", 0.004, mix["pen drawings"])):
        calibration = meta["calibrations"]["validation"][channel]["float32"]
        assert mix["data"] in calibration["data"] and calibration["alpha"] == alpha
        assert calibration["validation_size"] == size
        assert 0.3 <= calibration["familiar_mass"] <= 1.0
        assert "generated non-digits" in calibration["reason_fit"]["non_digits"]


def _lattice_ink(*segments: tuple[tuple[float, float], tuple[float, float]], width: int = 5) -> np.ndarray:
    image, pen = canvas.canvas()
    for a, b in segments:
        pen.line(canvas.scaled([a, b]), fill=255, width=width * canvas.SUPERSAMPLE)
    return canvas.finish(image)


def test_the_digit_bank_knows_the_named_digits_and_not_other_marks():
    from model.synth.sketches import SKELETONS, digit_bank
    from tests.sketched_digits import sketch

    bank = digit_bank()
    caught = [bank.looks_like_digit(sketch(d, np.random.default_rng([9, d, k]))) for d in SKELETONS for k in range(20)]
    assert np.mean(caught) >= 0.97  # jittered, slanted, squashed named digits, at any pen width
    one = _lattice_ink(((0.5, 0.15), (0.5, 0.85)))  # the glyph lattice's lone stroke: a 1
    seven = _lattice_ink(((0.2, 0.15), (0.8, 0.15)), ((0.8, 0.15), (0.2, 0.85)))  # bar and diagonal: a 7
    four = _lattice_ink(((0.2, 0.15), (0.2, 0.5)), ((0.2, 0.5), (0.8, 0.5)), ((0.7, 0.15), (0.7, 0.85)))  # open 4
    assert [bank.nearest(ink)[0] for ink in (one, seven, four)] == [1, 7, 4]
    assert all(bank.looks_like_digit(ink) for ink in (one, seven, four))
    ex = _lattice_ink(((0.2, 0.15), (0.8, 0.85)), ((0.8, 0.15), (0.2, 0.85)))  # an X
    aitch = _lattice_ink(((0.2, 0.15), (0.2, 0.85)), ((0.8, 0.15), (0.8, 0.85)), ((0.2, 0.5), (0.8, 0.5)))
    assert not bank.looks_like_digit(ex) and not bank.looks_like_digit(aitch)


@pytest.mark.parametrize("family", outliers.LINE_FAMILIES)
def test_the_outlier_pool_holds_no_named_digit(family):
    """Every line family's draws stay away from every named digit skeleton: the generator drew
    again where a mark landed near one (a lone stroke, a 7's two strokes, a hexagon's 0, ...)."""
    from model.synth.sketches import digit_bank

    source = outlier_source(None, (family,))
    drawn = [source(i, np.random.default_rng([23, i]))[0] for i in range(150)]
    assert not any(digit_bank().looks_like_digit(ink) for ink in drawn)
    raw = getattr(outliers, family)
    unfiltered = [raw(np.random.default_rng([23, i])) for i in range(150)]
    if family == "glyph":  # the lattice draws digits by chance: the filter has work to do
        assert sum(digit_bank().looks_like_digit(ink) for ink in unfiltered) >= 10
