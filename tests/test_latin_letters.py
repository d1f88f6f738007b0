"""Latin letters as negatives (model/synth/latin_letters.py): training fonts only, none that reads as
a digit by measured shape, and the report's letters in fonts training never printed in."""

import numpy as np

from model.synth.families import DIGITS, LETTERS, printed
from model.synth.latin_letters import DIGIT_LIKE, letter_glyphs, signatures
from model.synth.other_scripts import near_a_digit, squared


def _tiny_handwritten() -> np.ndarray:
    """A 1 and a 0 as MNIST writes them: a vertical bar and a tall ring."""
    one = np.zeros((28, 28), np.uint8)
    one[4:24, 12:16] = 255
    yy, xx = np.mgrid[:28, :28]
    ring = np.abs(np.hypot((yy - 14) / 10, (xx - 14) / 7) - 1) < 0.22
    return np.stack([one, (ring * 255).astype(np.uint8)])


def test_every_training_font_glyph_is_kept_or_counted_as_left_out_and_no_other_font_is_used():
    from collections import Counter

    glyphs, chars, left_out = letter_glyphs(_tiny_handwritten())
    trained = Counter(printed(LETTERS, "train")[1])
    assert Counter(chars) + Counter(left_out) == trained  # the training fonts' glyphs, each kept or left out
    held_out = {glyph.tobytes() for glyph in printed(LETTERS, "held-out")[0]}
    assert not held_out & {glyph.tobytes() for glyph in glyphs}  # none of the report's fonts


def test_a_letter_that_reads_as_a_digit_is_left_out_and_the_others_kept():
    glyphs, chars, left_out = letter_glyphs(_tiny_handwritten())
    digits, _ = printed(DIGITS, "train")
    bank = signatures(np.stack([squared(glyph, 28) for glyph in digits]))
    kept = signatures(np.stack([squared(glyph, 28) for glyph in glyphs]))
    assert (kept @ bank.T).max() < DIGIT_LIKE  # measured: no kept glyph is as near to a font's digit
    assert left_out["O"] >= 10 and left_out["I"] >= 5 and left_out["S"] >= 10  # O/0, I/1, S/5 coincide in most
    for clear in "AKMWXkmwx":  # letters no font draws like a digit keep every font
        assert clear not in left_out and chars.count(clear) >= 15
    assert set(chars) <= set(LETTERS) and len(glyphs) == len(chars) > 500


def test_a_glyph_near_a_handwritten_digit_is_left_out():
    k_glyphs, _ = printed("K", "train")
    nothing_handwritten = letter_glyphs(np.zeros((1, 28, 28), np.uint8))[2]
    assert "K" not in nothing_handwritten
    # a "handwritten digit" drawn like the first font's K: that K is left out for it
    assert letter_glyphs(squared(k_glyphs[0], 28)[None])[2]["K"] >= 1


def test_the_letters_pool_holds_no_rendering_near_a_digit(tmp_path):
    from model.synth.pools import latin_letters as pool_of_letters

    pool = pool_of_letters(_tiny_handwritten(), "sha", workers=1, cache_dir=tmp_path, progress=False, renders=1,
                           limit=30)
    assert len(pool.images) + pool.dropped == 60 and (pool.labels == -1).all()
    assert not near_a_digit(pool.images).any()
