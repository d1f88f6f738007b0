"""Marks of other scripts as negatives: none from a reported family, none a digit, fonts held out."""

import ast
from pathlib import Path

import numpy as np
from PIL import Image

import model.synth.other_scripts as other_scripts
from model.synth.families import DIGITS, LETTERS, SYMBOLS
from model.synth.other_scripts import EXCLUDED, MARKS, near_a_digit, printed_marks, squared


def test_no_mark_is_a_reported_letter_or_symbol_a_digit_or_an_excluded_look_alike():
    assert len(set(MARKS)) == len(MARKS) > 50
    for reported in (LETTERS, SYMBOLS, DIGITS, EXCLUDED):
        assert not set(MARKS) & set(reported), set(MARKS) & set(reported)


def test_marks_are_printed_in_the_training_fonts_only():
    tree = ast.parse(Path(other_scripts.__file__).read_text())
    calls = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "printed"]
    assert len(calls) == 1 and ast.literal_eval(calls[0].args[1]) == "train"
    glyphs = printed_marks()
    assert len(glyphs) > 5 * len(MARKS)  # most marks exist in several training fonts


def test_squared_centres_the_ink_in_a_square():
    ink = np.zeros((100, 60), np.float32)
    ink[10:90, 20:30] = 1.0  # a tall bar
    out = squared(ink)
    assert out.shape == (56, 56) and out.dtype == np.uint8
    rows, cols = np.flatnonzero(out.max(1) > 128), np.flatnonzero(out.max(0) > 128)
    assert abs((rows[0] + rows[-1]) / 2 - 27.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 27.5) <= 1
    assert rows[-1] - rows[0] > 3 * (cols[-1] - cols[0])  # aspect kept


def test_a_lone_stroke_is_caught_and_the_marks_are_not():
    stroke = np.zeros((28, 28), np.uint8)
    stroke[4:24, 13:16] = 255  # what a re-inking that kept one stroke of three dots gives: a 1
    marks = [squared(g) for g in printed_marks()[::25]]
    seen = np.stack([np.asarray(Image.fromarray(m).resize((28, 28), Image.Resampling.BOX)) for m in marks])
    flags = near_a_digit(np.concatenate([stroke[None], seen]))
    assert flags[0] and not flags[1:].any()


def test_the_marks_pool_holds_no_near_digit(tmp_path):
    from model.synth.pools import other_script_marks

    pool = other_script_marks(workers=1, cache_dir=tmp_path, progress=False, renders=1, limit=30)
    assert len(pool.images) + pool.dropped == 60 and (pool.labels == -1).all()
    assert not near_a_digit(pool.images).any()
    assert len({image.tobytes() for image in pool.images}) == len(pool.images)
