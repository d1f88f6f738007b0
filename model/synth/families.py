"""Report-only families of uploads: what the evaluation measures and training never sees.

Each family is a glyph source for the upload simulator (``model/synth/upload_simulator.py``), drawn with a
report seed of its own:

| family | what | kind |
|---|---|---|
| ``printed digits`` | 0-9 in every font found (matplotlib's DejaVu/STIX, Debian's DejaVu/Liberation) | digits |
| ``clothing`` | Fashion-MNIST test | out of distribution |
| ``printed letters`` | A-Z and a-z in the held-out fonts (training prints letters in its own) | out of distribution |
| ``printed letters unlike digits`` | less the look-alikes (``DIGIT_LOOKALIKES``) | out of distribution |
| ``printed symbols`` | punctuation, currency and math signs in every font found | out of distribution |
| ``photo crops`` | random crops of the photograph bundled with matplotlib | out of distribution |

None of them is used for training, selection or calibration: ``model/synth/outliers.py`` draws its
non-digits in code, and ``model/synth/latin_letters.py`` prints its letters in :data:`TRAIN_FONTS` only.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.synth.upload_simulator import GlyphSource

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DIGIT_LOOKALIKES = "OoDQIlijJSsZzBbgqGTty"  # letters a reader may take for a digit (0, 1, 2, 5, 6, 7, 8, 9)
UNLIKE_DIGITS = "".join(c for c in LETTERS if c not in DIGIT_LOOKALIKES)  # the 31 letters no reader takes for one
DIGITS = "0123456789"
SYMBOLS = "!?@#$%&*+=<>{}[]()~^§¶©®€£¥÷×±∞≈≠√∑∫Ωπµ♥♦♣♠☺★♪"
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
_GLYPH_SIZE = 96


@lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """Every TrueType font bundled with matplotlib or installed from Debian's DejaVu/Liberation."""
    import matplotlib

    bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = sorted(bundled.glob("*.ttf"))
    for directory in _FONT_DIRS:
        found += sorted(Path(directory).glob("*.ttf"))
    usable = []
    for path in found:
        if path.name.lower().startswith(("cmex", "cmsy", "stixsizes", "dejavumathtex")):
            continue  # math-extension fonts: no letters at their code points
        usable.append(path)
    return tuple(usable)


def _render(char: str, face: ImageFont.FreeTypeFont) -> np.ndarray:
    """``char`` drawn white on black, ``[2 * size, 2 * size]`` in [0, 1]."""
    image = Image.new("L", (_GLYPH_SIZE * 2, _GLYPH_SIZE * 2), 0)
    ImageDraw.Draw(image).text((_GLYPH_SIZE // 2, _GLYPH_SIZE // 4), char, fill=255, font=face)
    return np.asarray(image, dtype=np.float32) / 255.0


@lru_cache(maxsize=64)
def _face(font: Path) -> tuple[ImageFont.FreeTypeFont | None, np.ndarray | None]:
    """The font at the glyph size (None if unreadable) and its "missing glyph" drawing (None if blank)."""
    try:
        face = ImageFont.truetype(str(font), _GLYPH_SIZE)
    except OSError:
        return None, None
    notdef = _render("\uffff", face)
    return face, (notdef if notdef.max() >= 0.5 else None)


@lru_cache(maxsize=4096)
def _glyph(char: str, font: Path) -> np.ndarray | None:
    """One character as ink ``[H, W]`` in [0, 1], or None when the font lacks it (blank or tofu)."""
    face, notdef = _face(font)
    if face is None:
        return None
    array = _render(char, face)
    if array.max() < 0.5:
        return None
    if notdef is not None and np.array_equal(array > 0.5, notdef > 0.5):
        return None  # the font drew its "missing glyph" box
    return array


TRAIN_FONTS = ("STIX", "cm", "DejaVuSansMono")  # file-name prefixes of the fonts training prints digits in


def is_training_font(font: Path) -> bool:
    """Training sees printed digits in STIX, Computer Modern and DejaVu Sans Mono; the report's
    printed digits are in every other font (DejaVu Sans and Serif in all their cuts): held out."""
    return font.name.startswith(TRAIN_FONTS)


def printed(chars: str, fonts: str = "all") -> tuple[list[np.ndarray], list[str]]:
    """Every character of ``chars`` in every font that has it: glyphs and the characters.
    ``fonts``: "all", "train" (:data:`TRAIN_FONTS`) or "held-out" (the others)."""
    glyphs, labels = [], []
    chosen = [f for f in font_files() if fonts == "all" or is_training_font(f) == (fonts == "train")]
    for font in chosen:
        for char in chars:
            glyph = _glyph(char, font)
            if glyph is not None:
                glyphs.append(glyph)
                labels.append(char)
    return glyphs, labels


def cycling(glyphs: list[np.ndarray], fills: bool = False) -> GlyphSource:
    """A source that renders glyph ``index % len(glyphs)``: every glyph, in turn, in new styles."""
    return lambda index, rng: (glyphs[index % len(glyphs)], fills)


def photo_crops() -> GlyphSource:
    """Random square-ish crops (5-60 % of the side) of the photograph matplotlib ships."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photo = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0

    def source(index: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        height, width = photo.shape
        side = int(min(height, width) * rng.uniform(0.05, 0.6))
        top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
        return photo[top : top + side, left : left + side], True

    return source
