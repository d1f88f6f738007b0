"""Latin letters as non-digits: printed in the training fonts and re-inked as pen strokes.

Without them the network had no signal that separates a printed or drawn letter from a digit:
the letters it accepted were the digit-shaped ones. These negatives are A-Z and a-z in the
**training fonts only** (``model.synth.families.TRAIN_FONTS``: STIX, Computer Modern, DejaVu Sans
Mono), each printed as an upload and re-inked by a random hand as pen strokes on the page's pad
(``model.synth.pen`` walks the glyph's skeleton into strokes in the page's pen widths). The report's
letters are printed in the other fonts (DejaVu Sans and Serif) and drawn by the drawing battery's
hands (``model.synth.drawing_battery``): neither is used here.

**No rendering that reads as a digit is a negative.** Two measured tests decide it:

- the glyph: squared into 28 px as a digit is, blurred (σ = 1 px) and compared by cosine similarity
  with every digit glyph of every training font and with :data:`HANDWRITTEN` MNIST train digits. A
  letter glyph at :data:`DIGIT_LIKE` or more to any of them is never rendered: as near to a
  handwritten digit as 95 % of MNIST validation digits are to their nearest of those training digits
  (0.897, measured). Left out in practice: O/o/D/Q as 0, I/l/i/J/j as 1, S/s as 5, B as 8, g/q/a as
  9, G/b as 6, z/Z as 2, in the fonts where they coincide (``letter_glyphs`` counts them);
- each rendering, printed or pen-drawn: one within ``NEAR_DIGIT`` of a named digit skeleton
  (``model.synth.sketches.DigitBank``; the marks of other scripts keep the same bound) is dropped: about 4 %,
  mostly Z/z as a 2, j/J/l as a 1 and o/O as a 0. The looser bound of the generated non-digits
  (``DIGIT_DISTANCE``, 1.4 px) dropped 47 %: E, R, F, A, H, d and t among them, letters no reader takes for a digit.
"""

from __future__ import annotations

import numpy as np

from model.synth.families import DIGITS, LETTERS, printed
from model.synth.other_scripts import squared

DIGIT_LIKE = 0.90  # blurred-glyph cosine similarity to a digit at which a letter reads as one
HANDWRITTEN = 10_000  # the first MNIST train digits a letter glyph is compared with
LETTERS_VERSION = 1


def signatures(images: np.ndarray) -> np.ndarray:
    """uint8 ``[N, 28, 28]`` -> ``[N, 784]``: blurred (σ = 1 px), unit length: the shape compared."""
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(images.astype(np.float32) / 255.0, (0, 1, 1)).reshape(len(images), -1)
    return blurred / (np.linalg.norm(blurred, axis=1, keepdims=True) + 1e-9)


def letter_glyphs(handwritten: np.ndarray) -> tuple[list[np.ndarray], list[str], dict[str, int]]:
    """Every Latin letter in every training font that has it and where it does not read as a digit
    (the training fonts' digits, and ``handwritten``: uint8 ``[N, 28, 28]`` MNIST train digits): the
    glyphs (ink ``[H, W]`` in [0, 1]), their characters, and how many of each character were left out."""
    digits, _ = printed(DIGITS, "train")
    bank = np.concatenate([signatures(np.stack([squared(glyph, 28) for glyph in digits])),
                           signatures(handwritten[:HANDWRITTEN])])  # [D, 784]
    glyphs, chars, left_out = [], [], dict.fromkeys(LETTERS, 0)
    for glyph, char in zip(*printed(LETTERS, "train"), strict=True):
        if float((bank @ signatures(squared(glyph, 28)[None])[0]).max()) >= DIGIT_LIKE:
            left_out[char] += 1
        else:
            glyphs.append(glyph)
            chars.append(char)
    return glyphs, chars, {char: n for char, n in left_out.items() if n}
