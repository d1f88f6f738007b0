"""Uploaded bytes -> checked, decoded image -> an MNIST-style uint8 ``[28, 28]`` digit (ink high).

The HTTP-facing half lives here:

1. identify the format from the bytes (allow-list: PNG, JPEG, WebP, BMP, GIF; the declared
   Content-Type is ignored), check width x height from the header *before* decoding;
2. estimate what decoding will allocate (:func:`decode_cost`: the canvas x bytes per pixel), so
   ``service/inference/decoding.py`` can bound a request's work and choose where it runs;
3. decode the first frame only (animated GIF/WebP/APNG: frame 0), apply EXIF orientation;
4. keep a bounded copy of the decoded image for the review queue (:func:`review_copy`,
   :func:`review_png`): what is stored is re-encoded here, never the client's bytes.

The image-to-network transform (luminance, polarity, lighting, ruling, crop, fit and centre)
is ``model.transform.to_digit``: training, calibration and evaluation run the same code on
simulated uploads, so the network is calibrated on what it is served.

Failures raise (or, from :func:`prepare`, return) a subclass of :class:`ImageRejected`; nothing else
escapes for any input bytes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from model import transform
from model.transform import WORKING_SIDE
from service.errors import BlankImage, ImageRejected, ImageTooLarge, UndecodableImage, UnsupportedFormat
from service.inference import file_structure

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")

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


# Bytes a pixel takes in Pillow's storage of each mode (every mode not named takes 4), and in the
# transform's working copies (``model.transform.luminance``): luminance (1); RGBA with transparency
# and the premultiplied RGBa copy Pillow's resize makes of it (4 + 4); 32-bit for 16-bit, integer
# and float modes (4). Measured peaks of a 6324 x 6324 canvas (``ru_maxrss``): L 78 MB, RGB 192,
# I;16 236, palette GIF with transparency 354, RGBA 465: each within 3 % of this estimate.
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_WIDE_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")
PYTHON_DECODED = 64  # bytes a pixel counted for what Pillow decodes in Python (RLE BMP), for its time
REVIEW_SIDE = 384  # the longer side of the copy a reviewer is shown (an RGBA PNG of it stays under 600 KB)


@dataclass(frozen=True)
class Opened:
    """An upload whose header passed the checks, not decoded yet."""

    image: Image.Image
    cost: int  # bytes decoding it allocates: the canvas in its stored mode plus the transform's working copy


@dataclass(frozen=True)
class Prepared:
    """An upload ready for the network."""

    digit: np.ndarray  # uint8 [28, 28], ink high
    picture: Image.Image | None  # the decoded image, upright, at most REVIEW_SIDE (None: given as a digit)


def decode_cost(image: Image.Image, declared: tuple[int, int] | None = None) -> int:
    """What decoding ``image`` and the transform's working copies allocate, in bytes, from its header
    alone: width x height (a GIF's logical screen, an animation's canvas; a JPEG's draft) x bytes per
    pixel, and what some formats take besides (``declared``: a JPEG's size before its draft). Decoding
    time follows it, 1-2 ns a byte on this project's 2-core EPYC (a 43-byte GIF declaring a 6324 x
    6324 screen with transparency: 360 MB, 0.27 s; a 40 MP RGBA PNG: 480 MB, 0.66 s), except where
    Pillow decodes in Python (RLE BMP: about 100 ns a pixel, so counted as :data:`PYTHON_DECODED`
    bytes a pixel). Measured peaks (``ru_maxrss``) of 6324 x 6324 canvases are within 3 % of it, or
    under it, for every format and mode (``service/inference/decoding.py`` says how it is used)."""
    stored = _STORED_BYTES.get(image.mode, 4)
    working = 8 if transform.has_alpha(image) else 4 if image.mode in _WIDE_MODES else 1
    per_pixel = stored + working
    if image.format == "WEBP":  # libwebp's RGBA buffer, Pillow's copy, its mode's conversion: 614 MB for 40 MP RGB
        per_pixel += 2 * stored + 4
    if _turned(image):  # the EXIF orientation's transposed copy
        per_pixel += stored
    tiles = getattr(image, "tile", None)  # an opened file's decoders
    if tiles and tiles[0][0] == "bmp_rle":
        per_pixel = max(per_pixel, PYTHON_DECODED)
    extra = 0
    if declared is not None and image.info.get("progressive"):  # libjpeg keeps every coefficient, at full size
        extra = declared[0] * declared[1] * len(image.getbands()) * 2
    return image.width * image.height * per_pixel + extra


def _turned(image: Image.Image) -> bool:
    """Whether its EXIF orientation moves pixels, from EXIF read with the header only (a PNG's
    ``getexif`` without it would decode the whole image to look after the pixels)."""
    if "exif" not in image.info:
        return False
    try:
        return image.getexif().get(ExifTags.Base.Orientation, 1) in transform.TURNED
    except Exception:  # malformed EXIF: load_upright keeps the pixels as stored
        return False


def open_image(data: bytes, max_pixels: int) -> Opened:
    """Bytes -> an opened image whose format and pixel count passed (nothing decoded yet; JPEG set to
    decode at reduced scale), or a typed rejection."""
    if not data:
        raise UndecodableImage("the file is empty")
    costly = file_structure.excess(data)
    if costly is not None:
        raise ImageTooLarge(f"the file is too costly to read: {costly}")
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
            raise UndecodableImage(f"corrupt {claimed} header: the file starts like {claimed} "
                                   "but cannot be read") from None
        raise UndecodableImage("not a decodable image (expected PNG, JPEG, WebP, BMP or GIF)") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"the image header claims too many pixels; the limit is {max_pixels}") from None
    except Exception as error:  # any decoder failure on hostile bytes means the same thing
        raise UndecodableImage(f"corrupt {_claimed_format(data) or 'image'} header ({type(error).__name__})") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise UndecodableImage(f"image has zero width or height ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} pixels, too many pixels; "
                            f"the limit is {max_pixels}")
    declared = image.size
    try:
        if image.format == "JPEG":
            image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))  # decode at reduced scale
    except Exception as error:
        raise UndecodableImage(f"corrupt JPEG header ({type(error).__name__})") from None
    return Opened(image, decode_cost(image, declared))


def load(opened: Opened) -> Image.Image:
    """An opened image -> its pixels (first frame, EXIF-oriented), or a typed rejection."""
    try:
        return transform.load_upright(opened.image)
    except Image.DecompressionBombError:
        raise ImageTooLarge("the image claims too many pixels") from None
    except Exception as error:
        raise UndecodableImage(f"{opened.image.format} data is truncated or corrupt ({type(error).__name__})") from None


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Bytes -> a loaded PIL image (first frame, EXIF-oriented), or a typed rejection."""
    return load(open_image(data, max_pixels))


def to_network(image: Image.Image) -> np.ndarray:
    """A decoded image -> uint8 ``[28, 28]`` on MNIST's conventions (ink high, centred by mass)."""
    try:
        return transform.to_digit(image)
    except transform.NoInk as error:
        raise BlankImage(str(error)) from None
    except Exception as error:  # exotic modes that Pillow cannot convert
        raise UndecodableImage(f"cannot read pixels of mode {image.mode} ({type(error).__name__})") from None


def preprocess(data: bytes, max_pixels: int) -> np.ndarray:
    """Upload bytes -> uint8 ``[28, 28]`` on MNIST's conventions (ink high, centred by mass)."""
    return to_network(decode(data, max_pixels))


def review_copy(image: Image.Image) -> Image.Image:
    """What a reviewer is shown of a decoded upload: the image itself, scaled down to at most
    REVIEW_SIDE on its longer side (never the client's bytes: nothing trailing them is kept)."""
    factor = max(image.size) / REVIEW_SIDE
    if factor <= 1.0:
        return image
    size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
    try:
        return image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    except ValueError:  # modes Pillow resizes only by nearest neighbour
        return image.resize(size, Image.Resampling.NEAREST)


def prepare(opened: Opened) -> Prepared | ImageRejected:
    """Decode an opened upload and run the transform: the digit and the reviewer's copy, or why not.
    Never raises: it runs on the event loop or in the decoding pool (``service/inference/decoding.py``)."""
    try:
        image = load(opened)
        return Prepared(to_network(image), review_copy(image))
    except ImageRejected as error:
        return error
    except Exception as error:  # a bug must not kill a pool thread's caller: a refusal that names it
        return UndecodableImage(f"cannot decode the image ({type(error).__name__})")


def review_png(picture: Image.Image) -> bytes:
    """The reviewer's copy as a PNG (RGB, RGBA or grayscale): what the review store keeps."""
    if picture.mode not in ("L", "LA", "RGB", "RGBA"):
        if transform.has_alpha(picture):
            picture = picture.convert("RGBA")
        elif picture.mode in _WIDE_MODES:
            picture = Image.fromarray((transform.luminance(picture) * 255.0 + 0.5).astype(np.uint8))
        else:
            picture = picture.convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
