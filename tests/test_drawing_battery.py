"""The drawing battery (model/synth/drawing_battery.py): seeded, every digit from both sources, on the pad,
letters no reader takes for a digit, and apart from everything training sees (structural)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

import model
from harness.inputs import load_digit, mnist_fixtures
from model.data import Split
from model.synth.drawing_battery import DIGIT_SOURCES, DOODLES, LETTERS, PENS, battery
from model.synth.families import DIGIT_LOOKALIKES
from model.synth.pen import CANVAS
from model.synth.pools import SEEDS

EXCLUDED_LETTERS = set(DIGIT_LOOKALIKES)  # letters a reader may take for a digit


def tiny_test() -> Split:
    fixtures = mnist_fixtures()
    return Split(np.stack([load_digit(p) for p, _ in fixtures]), np.array([label for _, label in fixtures]))


def test_the_battery_is_seeded_and_covers_every_digit_from_both_sources():
    first, again = battery(tiny_test(), 200, 1, seed=5), battery(tiny_test(), 200, 1, seed=5)
    assert [(d.label, d.source, d.pen, d.strokes) for d in first] \
        == [(d.label, d.source, d.pen, d.strokes) for d in again]
    assert [d.strokes for d in battery(tiny_test(), 200, 1, seed=6)] != [d.strokes for d in first]
    digits = [d for d in first if d.kind == "digit"]
    assert [d.label for d in digits] == [str(i % 10) for i in range(200)]
    for digit in "0123456789":
        sources = {d.source for d in digits if d.label == digit}
        # the fixtures hold no 3, 6 or 8: those come from the sketches alone
        assert sources == set(DIGIT_SOURCES) or (digit in "368" and sources == {"sketch"}), (digit, sources)
    assert {d.pen for d in digits} == set(PENS)


def test_every_drawing_is_on_the_pad_and_the_letters_are_not_digit_like():
    drawings = battery(tiny_test(), 50, 2, seed=7)
    for drawing in drawings:
        points = np.concatenate([np.asarray(s) for s in drawing.strokes])
        assert points.min() >= drawing.pen - 1e-6 and points.max() <= CANVAS - drawing.pen + 1e-6
    assert not EXCLUDED_LETTERS & set(LETTERS)
    letters = [d for d in drawings if d.kind == "letter"]
    doodles = [d for d in drawings if d.kind == "doodle"]
    assert len(letters) == 2 * len(LETTERS) and len(doodles) == 2 * len(DOODLES)


def test_nothing_that_trains_or_calibrates_reads_the_battery_or_mnist_test_drawings():
    """Training's pen drawings re-ink MNIST train, calibration's MNIST validation; the battery
    draws MNIST test and its own letters and doodles: no training module imports it."""
    package = Path(model.__file__).parent
    for name in ("train", "batch_mix", "calibrate", "synth/pools", "synth/outliers", "synth/sketches", "synth/pen",
                 "synth/upload_simulator", "synth/other_scripts", "transform", "synth/families", "synth/canvas",
                 "train_config", "fine_tune", "mnist"):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {"model.synth.drawing_battery", "model.report.drawings"} & imported, name
    mix = (package / "batch_mix.py").read_text()
    # training draws MNIST train, and only it
    assert "train, sha = data.train, data.source_sha256" in mix and 'pen_drawings(train, "pen-train"' in mix
    pools = (package / "synth" / "pools.py").read_text()
    assert 'pen_drawings(split, "pen-validation"' in pools  # the calibration mix draws the split it is given
    assert len(set(SEEDS.values())) == len(SEEDS)  # no two roles share a seed


def test_one_skeleton_is_drawn_as_the_battery_draws_its_sketches():
    from model.synth.drawing_battery import sketched
    from model.synth.sketches import SKELETONS

    for digit, variants in SKELETONS.items():
        for variant, skeleton in enumerate(variants):
            drawing = sketched(digit, variant, np.random.default_rng([digit, variant]))
            assert (drawing.label, drawing.source, len(drawing.strokes)) == (str(digit), "sketch", len(skeleton))
            points = np.concatenate([np.asarray(s) for s in drawing.strokes])
            assert points.min() >= drawing.pen - 1e-6 and points.max() <= CANVAS - drawing.pen + 1e-6
    again = sketched(1, 1, np.random.default_rng(3)), sketched(1, 1, np.random.default_rng(3))
    assert again[0].strokes == again[1].strokes and again[0].pen in PENS
