"""Uploaded bytes -> checked image -> an MNIST-style uint8 ``[28, 28]`` digit (ink high).

The steps mirror how MNIST itself was made, so the network sees what it was trained on:

1. identify the format from the bytes (allow-list: PNG, JPEG, WebP, BMP, GIF; the declared
   Content-Type is ignored), check width x height from the header *before* decoding;
2. decode the first frame only (animated GIF/WebP/APNG: frame 0), apply EXIF orientation;
3. turn any mode (1-bit, palette, 16-bit, CMYK, RGBA, ...) into luminance; a transparent
   background is composited onto paper that contrasts with the strokes (canvas exports);
4. detect polarity (the paper is the majority of pixels) so ink is always high, and stretch
   the ink between paper level and the darkest stroke;
5. erase the ruling of lined or squared paper (three or more thin full-width/height lines);
6. crop to the ink, fit it into 20x20 keeping the aspect ratio, and centre it by its centre of
   mass in 28x28.

Failures raise a subclass of :class:`ImageRejected`; nothing else escapes for any input bytes.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model.data import CENTRE_OF_MASS, DIGIT_BOX, IMAGE_SIZE

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
WORKING_SIDE = 512  # uploads are downscaled towards this longer side before per-pixel work...
MIN_SHORT_SIDE = 64  # ...but never below this shorter side, so thin strokes of extreme shapes survive
MIN_CONTRAST = 0.2  # ink must differ from paper by this much (0-1 luminance) to count as ink
INK_FLOOR = 0.2  # fraction of the contrast treated as paper texture / noise and cut to zero
CROP_LEVEL = 0.25  # normalised ink above this defines the bounding box
FLAT_PAPER = 0.05  # paper pixels spanning less than this (0-1 luminance) are evenly lit
RULED_SPAN = 0.9  # a row whose ink covers this fraction of the width may be a ruled line...
RULED_THICKNESS = 0.03  # ...if its band is at most this fraction of the height thick...
MIN_RULED_LINES = 3  # ...and there are at least this many such bands

# Formats we recognise but refuse (415), by their leading bytes.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"%PDF", "PDF"), (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"), (b"\x00\x00\x01\x00", "ICO"), (b"\x00\x00\x02\x00", "CUR"), (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xffO\xffQ", "JPEG 2000"), (b"qoif", "QOI"),
    (b"v/1\x01", "OpenEXR"), (b"#?RADIANCE", "Radiance HDR"), (b"DDS ", "DDS"), (b"icns", "ICNS"),
    (b"P1", "PBM"), (b"P4", "PBM"), (b"P2", "PGM"), (b"P5", "PGM"), (b"P3", "PPM"), (b"P6", "PPM"),
    (b"\x0a\x05\x01", "PCX"), (b"FORM", "IFF/ILBM"), (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"gimp xcf", "XCF"), (b"\x01\xda", "SGI"), (b"\xd7\xcd\xc6\x9a", "WMF"), (b"\x01\x00\x00\x00", "EMF"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}
# Accepted formats, to say "corrupt PNG" rather than "not an image" when Pillow cannot identify them.
_ACCEPTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"),
)


class ImageRejected(Exception):
    """An upload we will not classify; ``reason`` is a short machine-readable label."""

    reason = "rejected"


class UndecodableImage(ImageRejected):
    reason = "undecodable"


class UnsupportedFormat(ImageRejected):
    reason = "unsupported_format"


class ImageTooLarge(ImageRejected):
    reason = "too_large"


class NoInk(ImageRejected):
    reason = "no_ink"


def sniff_unsupported(data: bytes) -> str | None:
    """Name of a recognised image/document format that is not on the allow-list, if any."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[data[8:12]]
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "SVG"
    return None


def _claimed_format(data: bytes) -> str | None:
    """The accepted format whose signature the bytes start with, if any."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _ACCEPTED_SIGNATURES if data.startswith(magic)), None)


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> a loaded PIL image (first frame, EXIF-oriented), or a typed rejection."""
    if not data:
        raise UndecodableImage("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd-but-harmless metadata
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        unsupported = sniff_unsupported(data)
        if unsupported:
            raise UnsupportedFormat(
                f"{unsupported} is not accepted; send PNG, JPEG, WebP, BMP or GIF"
            ) from None
        claimed = _claimed_format(data)
        if claimed:
            raise UndecodableImage(f"corrupt {claimed} header: the file starts like {claimed} but cannot be read") from None
        raise UndecodableImage("not a decodable image (expected PNG, JPEG, WebP, BMP or GIF)") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"the image header claims too many pixels; the limit is {max_pixels}") from None
    except Exception as error:  # any decoder failure on hostile bytes means the same thing
        raise UndecodableImage(f"corrupt {_claimed_format(data) or 'image'} header ({type(error).__name__})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise UndecodableImage(f"image has zero width or height ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels, too many pixels; the limit is {max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if image.format == "JPEG":
                image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))  # decode at reduced scale
            image.load()
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"the image claims too many pixels; the limit is {max_pixels}") from None
    except Exception as error:
        raise UndecodableImage(f"{image.format} data is truncated or corrupt ({type(error).__name__})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            oriented = ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF: keep the pixels as stored
        oriented = None
    return oriented if oriented is not None else image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def luminance(image: Image.Image) -> np.ndarray:
    """Any mode -> float32 luminance ``[H, W]`` in [0, 1], at most WORKING_SIDE on its longer side.
    Transparent pixels are composited onto paper that contrasts with the opaque strokes."""
    if image.mode.startswith("I;16") or image.mode == "I":
        standard = image.convert("I") if image.mode != "I" else image
    elif image.mode == "F":
        standard = image
    elif _has_alpha(image):
        standard = image.convert("RGBA")
    else:
        standard = image.convert("L")
    width, height = standard.size
    factor = min(max(width, height) / WORKING_SIDE, min(width, height) / MIN_SHORT_SIDE)
    if factor > 1.0:
        target = (max(1, round(width / factor)), max(1, round(height / factor)))
        standard = standard.resize(target, Image.Resampling.BOX, reducing_gap=2.0)
    array = np.asarray(standard, dtype=np.float32)
    if standard.mode == "RGBA":
        alpha = array[..., 3] / 255.0
        lum = (0.299 * array[..., 0] + 0.587 * array[..., 1] + 0.114 * array[..., 2]) / 255.0
        opaque = alpha > 0.5
        strokes_dark = bool(opaque.any()) and float(lum[opaque].mean()) < 0.5
        paper = 1.0 if strokes_dark else 0.0
        return (alpha * lum + (1.0 - alpha) * paper).astype(np.float32)
    if standard.mode == "I":
        top = 65535.0 if array.max() > 255 else 255.0
        return np.clip(array / top, 0.0, 1.0)
    if standard.mode == "F":
        finite = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(finite.min()), float(finite.max())
        return (finite - low) / (high - low) if high > low else np.zeros_like(finite)
    return array / 255.0


def paper_surface(ink: np.ndarray, iterations: int = 4) -> np.ndarray:
    """The paper's level under the ink, as a smooth quadratic surface ``[H, W]``.

    Photos of paper are lit unevenly (a gradient, a vignette, a soft shadow): one global paper
    level would turn the darker side into 'ink'. The surface is fitted by least squares to a
    coarse grid of pixels, starting from the lighter half (paper is the majority) and then
    keeping only pixels that do not stand above it (ink is excluded). A quadratic is too smooth
    to follow strokes, so thick strokes are never hollowed out; on uniform paper it is flat."""
    height, width = ink.shape
    step = max(1, max(height, width) // 64)
    grid = ink[::step, ::step].astype(np.float64)
    ys, xs = np.mgrid[0 : grid.shape[0], 0 : grid.shape[1]]

    def design(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        y, x = y - 0.5, x - 0.5
        return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)

    values = grid.reshape(-1)
    paper = values <= np.median(values)
    level = float(np.median(values))
    if np.ptp(values[paper]) < FLAT_PAPER:  # evenly lit (scans, canvas exports, MNIST): nothing to fit
        return np.full(ink.shape, level, dtype=np.float32)
    features = design(ys * step / height, xs * step / width).reshape(-1, 6)
    coefficients = np.array([level, 0.0, 0.0, 0.0, 0.0, 0.0])  # flat, if too few pixels
    for _ in range(iterations):
        if paper.sum() < 6:
            break
        coefficients = np.linalg.lstsq(features[paper], values[paper], rcond=None)[0]
        residual = values - features @ coefficients
        spread = 1.4826 * float(np.median(np.abs(residual[paper]))) + 0.01
        paper = residual < 3.0 * spread
    y = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]  # evaluated by broadcasting,
    x = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]  # not as an [H, W, 6] array
    c = coefficients.astype(np.float32)
    return c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * y * y + c[5] * x * y


def ink_map(lum: np.ndarray) -> np.ndarray:
    """Luminance -> ink in [0, 1] (paper 0), whatever the polarity and lighting; raises NoInk on a
    blank image."""
    paper_is_light = float(np.median(lum)) > 0.5
    ink = 1.0 - lum if paper_is_light else lum
    ink = ink - paper_surface(ink)  # paper now at 0 everywhere
    paper, peak = float(np.median(ink)), float(ink.max())
    contrast = peak - paper
    if contrast < MIN_CONTRAST:
        raise NoInk(f"no ink found: the image is blank or nearly uniform (contrast {contrast:.2f} < {MIN_CONTRAST})")
    floor = paper + INK_FLOOR * contrast
    return np.clip((ink - floor) / (peak - floor), 0.0, 1.0)


def _ruled_bands(ink: np.ndarray) -> np.ndarray:
    """Rows of ``ink`` that belong to ruling: thin bands whose ink spans almost the whole width,
    kept only when there are at least MIN_RULED_LINES of them (a digit's stroke is one band at
    most, even in a tight crop; lined or squared paper has many)."""
    height = ink.shape[0]
    full = (ink > 0.0).mean(axis=1) >= RULED_SPAN  # [H]; faint lines count too (paper is exactly 0)
    bands, start = [], None
    for row, flag in enumerate([*full.tolist(), False]):
        if flag and start is None:
            start = row
        elif not flag and start is not None:
            bands.append((start, row))
            start = None
    thin = [(a, b) for a, b in bands if b - a <= max(2, RULED_THICKNESS * height)]
    mask = np.zeros(height, dtype=bool)
    if len(thin) >= MIN_RULED_LINES:
        for a, b in thin:
            mask[max(0, a - 1) : b + 1] = True  # and the anti-aliased row on each side
    return mask


def remove_ruling(ink: np.ndarray) -> np.ndarray:
    """Erase the lines of lined or squared paper (horizontal and vertical) before cropping."""
    cleaned = ink.copy()
    cleaned[_ruled_bands(ink)] = 0.0
    cleaned[:, _ruled_bands(ink.T)] = 0.0
    return cleaned


def fit_and_centre(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit into DIGIT_BOX keeping aspect, centre by mass in IMAGE_SIZE -> uint8."""
    rows = np.flatnonzero((ink > CROP_LEVEL).any(axis=1))
    cols = np.flatnonzero((ink > CROP_LEVEL).any(axis=0))
    if rows.size == 0:
        raise NoInk("no ink found: nothing stands out from the background")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = DIGIT_BOX / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = Image.fromarray(crop.astype(np.float32), mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS)
    digit = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    mass = digit.sum()
    if mass <= 0:
        raise NoInk("no ink found after resizing")
    ys, xs = np.mgrid[0:new_h, 0:new_w]
    centre_y, centre_x = float((digit * ys).sum() / mass), float((digit * xs).sum() / mass)
    top = int(np.clip(round(CENTRE_OF_MASS - centre_y), 0, IMAGE_SIZE - new_h))
    left = int(np.clip(round(CENTRE_OF_MASS - centre_x), 0, IMAGE_SIZE - new_w))
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    canvas[top : top + new_h, left : left + new_w] = digit
    return np.rint(canvas * 255.0).astype(np.uint8)


def preprocess(data: bytes, max_pixels: int) -> np.ndarray:
    """Upload bytes -> uint8 ``[28, 28]`` on MNIST's conventions (ink high, centred by mass)."""
    image = decode(data, max_pixels)
    try:
        lum = luminance(image)
    except ImageRejected:
        raise
    except Exception as error:  # exotic modes that Pillow cannot convert
        raise UndecodableImage(f"cannot read pixels of mode {image.mode} ({type(error).__name__})") from None
    return fit_and_centre(remove_ruling(ink_map(lum)))
