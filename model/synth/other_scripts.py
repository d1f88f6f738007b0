"""Non-digits that look like writing: glyphs of other scripts and signs, printed and pen-drawn.

The generated marks of ``model.synth.outliers`` are drawn in code and never look like type; training's
printed digits (``model.synth.families.TRAIN_FONTS``) then taught a network that anything printed is
a digit, and it accepted a quarter of the printed letters. These negatives are printed glyphs
that are not digits, in the **training fonts only**, and from no reported family: Greek and
Cyrillic letters and a few mathematical signs and arrows (:data:`MARKS`), each once printed as an
upload and once re-inked as pen strokes on the page's pad (``model.synth.pen``).

Left out on purpose (:data:`EXCLUDED`), so that no reported family reaches training and no
digit is taught as a non-digit: every Latin letter (``model.synth.latin_letters`` has them, with a
digit filter of its own) and every sign the report prints (``model.synth.families.LETTERS`` and
``SYMBOLS``), the Greek and Cyrillic letters drawn like a Latin letter (А В Е К М Н О Р С Т Х,
Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ, and the small-capital в к м н т),
and the ones a reader may take for a digit (Б б for 6, З з Э э Ε ε ∃ for 3, Ч ч for 4, Θ θ ∂ δ σ
for 0 or 6, ↑ ↓ † ⊥ ƒ for 1, ◊ for 0). A rendered mark that still lands near a named digit
skeleton (:data:`NEAR_DIGIT`: in practice a pen re-inking that lost all but one stroke) is dropped.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from model.synth.sketches import digit_bank

GREEK = "ΓΔΛΞΠΦΨλξφψ"
CYRILLIC = "ГДЖИЙЛПФЦШЩЪЫЮЯЉЊЋЏждлфцшщъыюяљњ"
SIGNS = "∀∇∉⊕⊗∠⇒⇔←→↔‡¤△▽◁▷⌘"
MARKS = GREEK + CYRILLIC + SIGNS
EXCLUDED = ("АВЕКМНОРСТХавекмнорстхΑΒΕΖΗΙΚΜΝΟΡΤΥΧαβγεζηικνορστυχω"  # drawn like a Latin letter
            "БбЗзЭэЧчΘθ∂δσ∃↑↓†⊥ƒ◊"  # a reader may take these for a digit
            "∴")  # dots: the pen re-inking keeps one of them, a lone stroke
NEAR_DIGIT = 0.8  # a rendered mark this near a named digit skeleton (model.synth.sketches) is dropped
PEN_SIDE = 56  # glyphs are handed to the pen re-inking at this square size


def printed_marks() -> list[np.ndarray]:
    """Every mark of :data:`MARKS` in every training font that has it: ink ``[H, W]`` in [0, 1]."""
    from model.synth.families import printed

    glyphs, _ = printed(MARKS, "train")
    return glyphs


def squared(ink: np.ndarray, side: int = PEN_SIDE) -> np.ndarray:
    """Ink ``[H, W]`` in [0, 1] -> uint8 ``[side, side]``: cropped to the ink, centred in a square
    with a margin (what ``model.synth.pen`` re-inks, like an MNIST digit)."""
    mask = ink > 0.3
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    extent = int(max(crop.shape) * 1.3) + 2
    square = np.zeros((extent, extent), np.float32)
    top, left = (extent - crop.shape[0]) // 2, (extent - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    image = Image.fromarray((square * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8)


def near_a_digit(images: np.ndarray, within: float = NEAR_DIGIT) -> np.ndarray:
    """bool ``[N]``: which of uint8 ``[N, 28, 28]`` land within ``within`` of a named digit."""
    bank = digit_bank()
    return np.array([bank.nearest(image / 255.0)[1] < within for image in images], dtype=bool)
