"""A seeded upload simulator: an ink image rendered the way people send it, as a real file.

Nobody uploads MNIST arrays. They send canvas exports, scans and phone photos: a digit somewhere
on a canvas of any size and aspect, thick or thin strokes, either polarity, a transparent
background, coloured ink or paper, uneven light, ruled paper, sensor noise, and any of the
accepted formats at any quality. :func:`render` draws one such file from a glyph (MNIST's ink
``[28, 28]`` or a generated non-digit) and an :class:`UploadStyle`; :func:`simulate` decodes it
with Pillow and runs the service's own image-to-network transform (``model.transform``), so
training, calibration and evaluation see exactly what the network is served.

Every draw comes from ``numpy.random.default_rng([seed, index])``: the same seed and index give
the same file whatever the chunking or the number of worker processes.

    python -m model.synth.upload_simulator --count 16 --out runs/uploads.png   # a contact sheet to look at
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from model.data import IMAGE_SIZE
from model.synth.forked import render_all
from model.transform import NoInk, load_upright, to_digit

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
FORMAT_WEIGHTS = (0.35, 0.3, 0.15, 0.1, 0.1)
PAPERS = ("flat", "photo", "lined", "squared")
STROKES = ("thin", "as drawn", "thick", "very thick")
SIMULATOR_VERSION = 1  # bump when a rendering change should invalidate cached pools
_WORK = 112  # glyphs are thickened or thinned at this resolution, then resized to the canvas


@dataclass(frozen=True)
class UploadStyle:
    """Everything that decides how one glyph becomes one uploaded file."""

    canvas: tuple[int, int]  # width, height in pixels
    glyph_size: int  # pixels along the glyph's longer side (ignored when ``fills`` is set)
    position: tuple[float, float]  # where the glyph sits: 0 = left/top edge, 1 = right/bottom edge
    stroke: str  # one of STROKES
    dark_ink: bool  # dark ink on light paper (scan, photo) rather than light strokes on dark
    paper: str  # one of PAPERS
    alpha: bool  # a transparent canvas export (PNG/WebP with an alpha channel)
    tint: bool  # coloured ink and paper instead of grey
    noise: float  # standard deviation of sensor noise, 0-1 luminance
    fmt: str  # one of FORMATS
    quality: int  # JPEG/WebP quality
    fills: bool = False  # the glyph covers the whole canvas (textures, noise, photos of things)


def random_style(rng: np.random.Generator, fills: bool = False) -> UploadStyle:
    """One draw of how people send images."""
    if rng.random() < 0.3:  # small canvases: thumbnails, 28-px drawings, icons
        side = int(rng.integers(28, 81))
        canvas = (side, side) if rng.random() < 0.7 else (side, int(side * rng.uniform(0.7, 1.4)))
        glyph = int(min(canvas) * rng.uniform(0.4, 0.95))
    else:
        width = int(rng.integers(80, 401))
        canvas = (width, int(np.clip(width * rng.uniform(0.6, 1.6), 48, 480)))
        glyph = int(min(canvas) * rng.uniform(0.25, 0.9))
    paper = str(rng.choice(PAPERS, p=(0.5, 0.25, 0.15, 0.1))) if min(canvas) >= 150 else \
        str(rng.choice(PAPERS[:2], p=(0.75, 0.25)))
    alpha = paper == "flat" and rng.random() < 0.15
    fmt = str(rng.choice(("PNG", "WEBP"))) if alpha else str(rng.choice(FORMATS, p=FORMAT_WEIGHTS))
    return UploadStyle(
        canvas=canvas,
        glyph_size=max(8, glyph),
        position=(float(rng.uniform(0, 1)), float(rng.uniform(0, 1))),
        stroke=str(rng.choice(STROKES, p=(0.15, 0.5, 0.25, 0.1))),
        dark_ink=bool(rng.random() < 0.6) or paper != "flat",
        paper=paper,
        alpha=bool(alpha),
        tint=bool(rng.random() < 0.25),
        noise=float(rng.uniform(0.005, 0.05)) if paper == "photo" or rng.random() < 0.25 else 0.0,
        fmt=fmt,
        quality=int(rng.integers(40, 96)),
        fills=fills,
    )


def _crop_to_ink(glyph: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(glyph.max(1) > 0.05), np.flatnonzero(glyph.max(0) > 0.05)
    if rows.size == 0:
        return glyph
    return glyph[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _stroked(glyph: np.ndarray, stroke: str) -> Image.Image:
    """The glyph at working resolution (longer side _WORK), thinned or thickened as asked."""
    image = Image.fromarray((np.clip(glyph, 0, 1) * 255).astype(np.uint8))
    scale = _WORK / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BICUBIC)
    pad = 12  # room for thickening at the edges
    padded = Image.new("L", (image.width + 2 * pad, image.height + 2 * pad), 0)
    padded.paste(image, (pad, pad))
    if stroke == "thin":
        padded = padded.filter(ImageFilter.MinFilter(3))
    elif stroke == "thick":
        padded = padded.filter(ImageFilter.MaxFilter(5))
    elif stroke == "very thick":
        padded = padded.filter(ImageFilter.MaxFilter(9))
    array = _crop_to_ink(np.asarray(padded, dtype=np.float32) / 255.0)
    return Image.fromarray((array * 255).astype(np.uint8))


def _coverage(glyph: np.ndarray, style: UploadStyle) -> np.ndarray:
    """Ink coverage ``[H, W]`` in [0, 1] on the canvas."""
    width, height = style.canvas
    if style.fills:
        image = Image.fromarray((np.clip(glyph, 0, 1) * 255).astype(np.uint8))
        return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    stroked = _stroked(_crop_to_ink(glyph), style.stroke)
    scale = min(style.glyph_size / max(stroked.size), width / stroked.width, height / stroked.height)
    size = (max(1, round(stroked.width * scale)), max(1, round(stroked.height * scale)))
    placed = stroked.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    canvas = np.zeros((height, width), dtype=np.float32)
    left = round(style.position[0] * (width - size[0]))
    top = round(style.position[1] * (height - size[1]))
    canvas[top : top + size[1], left : left + size[0]] = np.asarray(placed, dtype=np.float32) / 255.0
    return np.clip(canvas, 0.0, 1.0)


def _paper(style: UploadStyle, rng: np.random.Generator, level: float) -> np.ndarray:
    """Paper luminance ``[H, W]``: flat, unevenly lit, or ruled."""
    width, height = style.canvas
    paper = np.full((height, width), level, dtype=np.float32)
    if style.paper in ("lined", "squared"):
        spacing = int(rng.integers(14, 41))
        thickness = int(rng.integers(1, 3))
        line = level - float(rng.uniform(0.08, 0.35))
        offset = int(rng.integers(0, spacing))
        for y in range(offset, height, spacing):
            paper[y : y + thickness, :] = line
        if style.paper == "squared":
            for x in range(offset, width, spacing):
                paper[:, x : x + thickness] = line
    if style.paper == "photo" or (style.paper != "flat" and rng.random() < 0.5):
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ys, xs = ys / height - 0.5, xs / width - 0.5
        if rng.random() < 0.5:
            angle = rng.uniform(0, 2 * np.pi)
            light = 1.0 - rng.uniform(0.1, 0.45) * (np.cos(angle) * xs + np.sin(angle) * ys + 0.5)
        else:
            light = 1.0 - rng.uniform(0.3, 1.0) * (xs**2 + ys**2)
        paper = paper * light.astype(np.float32)
    return paper


def render(glyph: np.ndarray, style: UploadStyle, rng: np.random.Generator) -> bytes:
    """A glyph (ink ``[H, W]`` in [0, 1], or uint8) -> an encoded image file, as ``style`` says."""
    if glyph.dtype == np.uint8:
        glyph = glyph.astype(np.float32) / 255.0
    coverage = _coverage(glyph, style)  # [H, W]
    if style.dark_ink:
        paper_level, ink_level = float(rng.uniform(0.72, 1.0)), float(rng.uniform(0.0, 0.35))
    else:
        paper_level, ink_level = float(rng.uniform(0.0, 0.25)), float(rng.uniform(0.7, 1.0))
    if style.alpha:
        stroke = np.full(3, ink_level) * (rng.uniform(0.5, 1.0, 3) if style.tint else 1.0)
        rgba = np.concatenate([np.broadcast_to(stroke, (*coverage.shape, 3)), coverage[..., None]], -1)
        image = Image.fromarray(np.rint(np.clip(rgba, 0, 1) * 255).astype(np.uint8), "RGBA")
    else:
        paper = _paper(style, rng, paper_level)
        lum = paper * (1.0 - coverage) + ink_level * coverage
        if style.noise > 0:
            lum = lum + rng.normal(0.0, style.noise, lum.shape).astype(np.float32)
        if style.tint:  # per-channel colour casts of paper and ink (blue pen, yellowish paper, ...)
            paper_cast, ink_cast = rng.uniform(0.85, 1.1, 3), rng.uniform(0.4, 1.4, 3)
            cast = (1.0 - coverage)[..., None] * paper_cast + coverage[..., None] * ink_cast
            rgb = np.clip(lum[..., None] * cast, 0, 1)
            image = Image.fromarray(np.rint(rgb * 255).astype(np.uint8), "RGB")
        else:
            image = Image.fromarray(np.rint(np.clip(lum, 0, 1) * 255).astype(np.uint8), "L")
    return encode(image, style.fmt, style.quality)


def encode(image: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB" if image.mode in ("RGB", "RGBA") else "L").save(buffer, "JPEG", quality=quality)
    elif fmt == "WEBP":
        image.save(buffer, "WEBP", quality=quality, lossless=quality > 90)
    elif fmt == "GIF":
        image.convert("RGB").quantize(64).save(buffer, "GIF") if image.mode == "RGB" else image.save(buffer, "GIF")
    elif fmt == "BMP":
        image.convert("RGB" if image.mode == "RGBA" else image.mode).save(buffer, "BMP")
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    """Bytes from :func:`render` -> the loaded, upright image, read as the service reads an upload
    (:func:`model.transform.load_upright`); the service adds its format and size checks."""
    return load_upright(Image.open(io.BytesIO(data)))


def simulate(glyph: np.ndarray, rng: np.random.Generator, fills: bool = False) -> np.ndarray | None:
    """One glyph -> a random upload -> what the network sees (uint8 ``[28, 28]``), or None when
    the transform found no ink (never for a visible glyph; counted by callers)."""
    data = render(glyph, random_style(rng, fills), rng)
    try:
        return to_digit(decode(data))
    except NoInk:
        return None


GlyphSource = Callable[[int, np.random.Generator], tuple[np.ndarray, bool]]


def _one(args: tuple[int, int]) -> np.ndarray:
    index, seed = args
    rng = np.random.default_rng([seed, index])
    glyph, fills = _SOURCE(index, rng)
    digit = simulate(glyph, rng, fills)
    return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8) if digit is None else digit


_SOURCE: GlyphSource


def simulate_many(source: GlyphSource, count: int, seed: int, workers: int = 2, desc: str = "uploads",
                  progress: bool = True) -> np.ndarray:
    """``count`` simulated uploads -> uint8 ``[count, 28, 28]``; ``source(index, rng)`` gives
    each glyph and whether it fills its canvas. Runs in ``workers`` forked processes."""
    global _SOURCE
    _SOURCE = source
    return render_all(_one, [(index, seed) for index in range(count)], workers, desc, progress)


def digit_source(images: np.ndarray) -> GlyphSource:
    """Glyphs from uint8 digit images ``[N, 28, 28]``, one per index."""
    return lambda index, rng: (images[index], False)


def contact_sheet(images: Sequence[np.ndarray], out: Path, columns: int = 16) -> None:
    """A PNG grid of 28x28 images (what the network saw)."""
    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * (IMAGE_SIZE + 2), columns * (IMAGE_SIZE + 2)), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * 30 : r * 30 + 28, c * 30 : c * 30 + 28] = image
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.Resampling.NEAREST).save(out)


def main(argv: list[str] | None = None) -> int:
    from model.mnist import load_mnist

    parser = argparse.ArgumentParser(prog="python -m model.synth.upload_simulator", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/uploads.png"))
    args = parser.parse_args(argv)
    test = load_mnist().test
    contact_sheet(list(simulate_many(digit_source(test.images), args.count, args.seed)), args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
