"""Generated non-digits that close and branch (model/synth/closing_shapes.py): each family is what it
says, none is a named digit, none is a letter by construction, and both renderings give ink."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import model.synth.closing_shapes as closing
from model.synth.closing_shapes import KINDS, MAKERS, closing_shape, closing_source, draw_closing


def _closed(stroke: list[tuple[float, float]]) -> bool:
    return bool(np.hypot(stroke[0][0] - stroke[-1][0], stroke[0][1] - stroke[-1][1]) < 1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_draws_sizeable_strokes_and_varies(kind):
    """Both renderings fit the strokes' extent to their box, so a tree may reach past the unit box."""
    drawn = [MAKERS[kind](np.random.default_rng([7, k])) for k in range(20)]
    for strokes in drawn:
        every = np.concatenate([np.asarray(s) for s in strokes])
        assert np.isfinite(every).all() and np.ptp(every, 0).max() > 0.3 and every.min() > -1 and every.max() < 2
    assert len({np.concatenate([np.asarray(s) for s in strokes]).tobytes() for strokes in drawn}) == 20


def test_the_families_close_and_branch_as_they_say_and_are_never_letters():
    for k in range(30):
        def rng(k: int = k) -> np.random.Generator:
            return np.random.default_rng([8, k])

        loop = MAKERS["bumpy loop"](rng())
        assert len(loop) == 1 and _closed(loop[0])
        radii = np.hypot(*(np.asarray(loop[0]) - 0.5).T)
        assert radii.max() / radii.min() > 1.2  # scalloped, not a smooth 0
        assert len(MAKERS["ladder"](rng())) >= 2 + 3  # two rails and three rungs or more: never an H
        assert len(MAKERS["comb"](rng())) >= 1 + 4  # a spine and four teeth or more: never an E or an F
        tree = MAKERS["branching"](rng())
        assert len(tree) >= 1 + 3 + 3 * 2  # the trunk forks into three, each again: never a Y
        crossed = MAKERS["crossed loop"](rng())
        assert _closed(crossed[0]) and len(crossed) in (2, 3)
        if len(crossed) == 2:  # one line through: only across a scalloped loop (else a slashed zero)
            radii = np.hypot(*(np.asarray(crossed[0]) - 0.5).T)
            assert radii.max() / radii.min() > 1.2


def test_no_drawn_closing_shape_is_a_named_digit():
    from model.synth.sketches import digit_bank

    source = closing_source()
    inks = [source(i, np.random.default_rng([26, i]))[0] for i in range(120)]
    assert sum(ink.max() > 0.3 for ink in inks) >= 118
    assert not any(digit_bank().looks_like_digit(ink) for ink in inks if ink.max() > 0)
    assert closing_shape(np.random.default_rng(3), 12) == closing_shape(np.random.default_rng(3), 12)  # seeded


def test_drawn_on_the_pad_they_read_back_as_ink():
    drawn = draw_closing(40, seed=27, workers=1, progress=False)
    peaks = drawn.reshape(40, -1).max(1)
    assert drawn.shape == (40, 28, 28) and (peaks > 100).mean() >= 0.9 and np.median(peaks) > 200  # a few redrawn out
    assert np.array_equal(drawn, draw_closing(40, seed=27, workers=1, progress=False))


def test_the_generator_never_reads_a_font_a_data_set_or_the_report():
    tree = ast.parse(Path(closing.__file__).read_text())
    imported = {f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names} | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                                             for alias in node.names}
    assert not any("ImageFont" in n or "families" in n or "drawing_battery" in n or "mnist" in n for n in imported)
