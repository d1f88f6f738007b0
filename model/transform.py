"""A decoded image -> the network's uint8 ``[28, 28]`` digit (ink high, MNIST's conventions).

This is the one image-to-network transform: the service runs it on every upload, and training,
calibration and evaluation run it on simulated uploads (``model/synth/upload_simulator.py``), so the network is
trained and calibrated on exactly what it is served. Decoding bytes and the HTTP limits stay in
``service/inference/preprocess.py``. The steps mirror how MNIST itself was made:

1. any mode (1-bit, palette, 16-bit, CMYK, RGBA, ...) -> luminance; a transparent background is
   composited onto paper that contrasts with the strokes (canvas exports);
2. polarity is detected (the paper is the majority of pixels) so ink is always high; uneven
   lighting is flattened; ink is stretched between paper level and the strongest stroke;
3. the ruling of lined or squared paper is erased, unless that would erase everything (stripes
   and textures are content, not ruling);
4. crop to the ink, fit into 20x20 keeping the aspect ratio, centre by mass in 28x28.

Only an image with no visible content raises :class:`NoInk`.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps

from model.data import CENTRE_OF_MASS, DIGIT_BOX, IMAGE_SIZE

WORKING_SIDE = 512  # uploads are downscaled towards this longer side before per-pixel work...
MIN_SHORT_SIDE = 64  # ...but never below this shorter side, so thin strokes of extreme shapes survive
CLEAR_CONTRAST = 0.2  # ink differing from paper by this much (0-1 luminance) is content...
MIN_CONTRAST = 0.1  # ...and so is fainter ink down to this, if it stands out of the paper's noise
NOISE_MARGIN = 6.0  # by this many standard deviations (blank paper's noise peaks near 5)
INK_FLOOR = 0.2  # fraction of the contrast treated as paper texture / noise and cut to zero
CROP_LEVEL = 0.25  # normalised ink above this defines the bounding box
FLAT_PAPER = 0.05  # paper pixels spanning less than this (0-1 luminance) are evenly lit
RULED_SPAN = 0.9  # a row whose ink covers this fraction of the width may be a ruled line...
RULED_THICKNESS = 0.03  # ...if its band is at most this fraction of the height thick...
MIN_RULED_LINES = 3  # ...and there are at least this many such bands
TURNED = (2, 3, 4, 5, 6, 7, 8)  # the EXIF orientations that move pixels (1: as stored)
MIN_CONTENT_AFTER_RULING = 0.02  # ink left after erasing "ruling", as a fraction; below it the lines were the content


class NoInk(ValueError):
    """The image has no visible content: blank, or nearly uniform."""


def load_upright(image: Image.Image) -> Image.Image:
    """An opened upload, loaded (its first frame, for animations) and turned upright by its EXIF
    orientation (malformed EXIF: the pixels as stored). The one way an upload file is read, by the
    service (``service/inference/preprocess.py``, after its format and size checks) and by the upload
    simulator; decoder errors propagate for the caller to name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns on odd-but-harmless metadata
        image.load()
        try:
            if image.getexif().get(ExifTags.Base.Orientation, 1) not in TURNED:
                return image  # exif_transpose would return a copy: a whole canvas more of memory
            upright = ImageOps.exif_transpose(image)
        except Exception:  # malformed EXIF: keep the pixels as stored
            upright = None
    return upright if upright is not None else image


def has_alpha(image: Image.Image) -> bool:
    """Whether the image carries transparency (the transform composites it onto contrasting paper)."""
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def luminance(image: Image.Image) -> np.ndarray:
    """Any mode -> float32 luminance ``[H, W]`` in [0, 1], at most WORKING_SIDE on its longer side.
    Transparent pixels are composited onto paper that contrasts with the opaque strokes."""
    if image.mode.startswith("I;16") or image.mode == "I":
        standard = image.convert("I") if image.mode != "I" else image
    elif image.mode == "F":
        standard = image
    elif has_alpha(image):
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


def _median(values: np.ndarray) -> np.floating:
    """``np.median(values)`` bit for bit (the same dtype too), for finite values, without its generic
    reduction machinery: it is called several times per upload, on small arrays, where that
    machinery cost more than the partition itself."""
    flat = values.reshape(-1)
    half = flat.size // 2
    if flat.size % 2:
        return np.partition(flat, half)[half]
    part = np.partition(flat, (half - 1, half))
    return (part[half - 1] + part[half]) / 2  # np.median's mean of the middle two


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

    def design(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        y, x = y - 0.5, x - 0.5
        return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)

    values = grid.reshape(-1)
    level = float(_median(values))
    paper = values <= level
    if np.ptp(values[paper]) < FLAT_PAPER:  # evenly lit (scans, canvas exports, MNIST): nothing to fit
        return np.full(ink.shape, level, dtype=np.float32)
    ys, xs = np.mgrid[0 : grid.shape[0], 0 : grid.shape[1]]
    features = design(ys * step / height, xs * step / width).reshape(-1, 6)
    coefficients = np.array([level, 0.0, 0.0, 0.0, 0.0, 0.0])  # flat, if too few pixels
    for _ in range(iterations):
        if paper.sum() < 6:
            break
        coefficients = np.linalg.lstsq(features[paper], values[paper], rcond=None)[0]
        residual = values - features @ coefficients
        spread = 1.4826 * float(_median(np.abs(residual[paper]))) + 0.01
        paper = residual < 3.0 * spread
    y = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]  # evaluated by broadcasting,
    x = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]  # not as an [H, W, 6] array
    c = coefficients.astype(np.float32)
    return c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * y * y + c[5] * x * y


def paper_noise(ink: np.ndarray) -> float:
    """Standard deviation of pixel noise, from differences of horizontal neighbours (robust:
    smooth content and edges barely move their median)."""
    if ink.shape[1] < 2:
        return 0.0
    return float(1.4826 * _median(np.abs(np.diff(ink, axis=1))) / np.sqrt(2.0))


def _visible(ink: np.ndarray, clear_only: bool = False) -> bool:
    """Does ``ink`` (paper near 0) hold visible content? Clear contrast over the paper, or, unless
    ``clear_only``, faint contrast well above the paper's own noise. The faint test measures from
    the lower quartile, not the median, so a faint 50/50 texture counts with its full contrast."""
    peak = float(ink.max())
    if peak - float(_median(ink)) >= CLEAR_CONTRAST:
        return True
    faint = peak - float(np.quantile(ink, 0.25))
    return not clear_only and faint >= MIN_CONTRAST and faint >= NOISE_MARGIN * paper_noise(ink)


def ink_map(lum: np.ndarray) -> np.ndarray:
    """Luminance -> ink in [0, 1] (paper 0), whatever the polarity and lighting; raises NoInk on an
    image with no visible content. Uneven lighting is flattened first; when that leaves nothing
    but the unflattened image has clear contrast, the "lighting" was the content (a gradient, a
    large dark shape) and the unflattened image is used."""
    paper_is_light = float(_median(lum)) > 0.5
    raw = 1.0 - lum if paper_is_light else lum
    flattened = raw - paper_surface(raw)  # paper now at 0 everywhere
    if _visible(flattened):
        ink = flattened
    elif _visible(raw - float(_median(raw)), clear_only=True):
        ink = raw - float(_median(raw))
    else:
        contrast = float(flattened.max() - _median(flattened))
        raise NoInk(f"no ink found: the image is blank or nearly uniform (contrast {contrast:.2f} "
                    f"< {CLEAR_CONTRAST}, and not clearly above the paper's noise)")
    paper, peak = float(_median(ink)), float(ink.max())
    floor = paper + INK_FLOOR * (peak - paper)
    return np.clip((ink - floor) / (peak - floor), 0.0, 1.0)


def _ruled_bands(ink: np.ndarray) -> np.ndarray:
    """Rows of ``ink`` that belong to ruling: thin bands whose ink spans almost the whole width,
    kept only when there are at least MIN_RULED_LINES of them (a digit's stroke is one band at
    most, even in a tight crop; lined or squared paper has many)."""
    height = ink.shape[0]
    full = (ink > 0.0).mean(axis=1) >= RULED_SPAN  # [H]; faint lines count too (paper is exactly 0)
    if int(full.sum()) < MIN_RULED_LINES:  # fewer full rows than lines needed: no ruling (most uploads)
        return np.zeros(height, dtype=bool)
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
    """Erase the lines of lined or squared paper (horizontal and vertical) before cropping.
    When erasing would leave (almost) nothing, the lines were the content (stripes, a grid, a
    texture): the image is kept as it is."""
    rows, cols = _ruled_bands(ink), _ruled_bands(ink.T)
    if not rows.any() and not cols.any():  # no ruling (most uploads): nothing to erase
        return ink
    cleaned = ink.copy()
    cleaned[rows] = 0.0
    cleaned[:, cols] = 0.0
    if float((cleaned > CROP_LEVEL).sum()) < MIN_CONTENT_AFTER_RULING * float((ink > CROP_LEVEL).sum()):
        return ink
    return cleaned


def fit_and_centre(ink: np.ndarray) -> np.ndarray:
    """Crop to the ink, fit into DIGIT_BOX keeping aspect, centre by mass in IMAGE_SIZE -> uint8."""
    inked = ink > CROP_LEVEL
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
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
    ys, xs = np.arange(new_h)[:, None], np.arange(new_w)[None, :]  # broadcast: the products are mgrid's
    centre_y, centre_x = float((digit * ys).sum() / mass), float((digit * xs).sum() / mass)
    top = int(np.clip(round(CENTRE_OF_MASS - centre_y), 0, IMAGE_SIZE - new_h))
    left = int(np.clip(round(CENTRE_OF_MASS - centre_x), 0, IMAGE_SIZE - new_w))
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    canvas[top : top + new_h, left : left + new_w] = digit
    return np.rint(canvas * 255.0).astype(np.uint8)


def to_digit(image: Image.Image) -> np.ndarray:
    """A decoded image (any mode, any size) -> uint8 ``[28, 28]`` on MNIST's conventions."""
    return fit_and_centre(remove_ruling(ink_map(luminance(image))))
