"""Builders for test uploads: real digits re-encoded the ways people upload them, and hostile bytes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def enlarged_dark_on_light(digit: np.ndarray, size: int = 280) -> Image.Image:
    """A 'scan': black ink on white paper, 10x larger."""
    return Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BICUBIC)


def off_centre_on_canvas(digit: np.ndarray, canvas: tuple[int, int] = (400, 300),
                         at: tuple[int, int] = (20, 150)) -> Image.Image:
    """Light ink on a dark canvas, digit small and far from the centre."""
    big = Image.fromarray(digit).resize((84, 84), Image.Resampling.BICUBIC)
    background = Image.new("L", canvas, 0)
    background.paste(big, at)
    return background


def canvas_export(digit: np.ndarray, stroke: tuple[int, int, int] = (20, 20, 20)) -> Image.Image:
    """An HTML-canvas export: coloured strokes on a fully transparent background."""
    alpha = Image.fromarray(digit).resize((200, 200), Image.Resampling.BICUBIC)
    rgba = Image.new("RGBA", (200, 200), (*stroke, 0))
    rgba.putalpha(alpha)
    return rgba


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's calling card)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def _placed(digit: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The digit enlarged to 220 px as ink in [0, 1], at a random place on a size x size canvas."""
    ink = np.asarray(Image.fromarray(digit).resize((220, 220), Image.Resampling.BICUBIC), dtype=float) / 255
    canvas = np.zeros((size, size))
    top, left = rng.integers(40, 140, size=2)
    canvas[top : top + 220, left : left + 220] = ink
    return canvas


def unevenly_lit_photo(digit: np.ndarray, light: str = "gradient", seed: int = 0) -> Image.Image:
    """A 'phone photo': dark ink on off-white paper, lit unevenly, with sensor noise, as RGB."""
    rng = np.random.default_rng(seed)
    size = 400
    canvas = _placed(digit, size, rng)
    ys, xs = np.mgrid[0:size, 0:size] / size
    lighting = 1.0 - 0.55 * xs if light == "gradient" else 1.0 - 1.2 * ((xs - 0.5) ** 2 + (ys - 0.5) ** 2)
    gray = np.clip((0.85 - 0.75 * canvas) * lighting + rng.normal(0, 0.03, canvas.shape), 0, 1)
    return Image.fromarray((np.stack([gray * 0.98, gray, gray * 0.93], -1) * 255).astype(np.uint8))


def on_lined_paper(digit: np.ndarray, line_gray: float = 0.6, squared: bool = False, seed: int = 0) -> Image.Image:
    """Dark ink on lined (or squared) paper: ruling every 30 px, 2 px thick, with noise."""
    rng = np.random.default_rng(seed)
    size = 400
    canvas = _placed(digit, size, rng)
    paper = np.full((size, size), 0.9)
    for offset in range(15, size, 30):
        paper[offset : offset + 2, :] = line_gray
        if squared:
            paper[:, offset : offset + 2] = line_gray
    gray = np.clip(paper * (1 - canvas) + 0.1 * canvas + rng.normal(0, 0.02, canvas.shape), 0, 1)
    return Image.fromarray((gray * 255).astype(np.uint8))


def gif_declaring(width: int, height: int, transparent: bool = True) -> bytes:
    """A GIF of a few dozen bytes whose logical screen is ``width`` x ``height``, with one 1 x 1 frame:
    decoding allocates the whole screen (with ``transparent``, a graphic control extension naming a
    transparent colour, as the hostile catalogue's 37-byte GIFs do)."""
    data = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    if transparent:
        data += b"\x21\xf9\x04\x01\x00\x00\x00\x00"
    return data + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00;"
