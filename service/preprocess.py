"""Uploaded bytes -> checked, decoded image -> an MNIST-style uint8 ``[28, 28]`` digit (ink high).

The HTTP-facing half lives here:

1. identify the format from the bytes (allow-list: PNG, JPEG, WebP, BMP, GIF; the declared
   Content-Type is ignored), check width x height from the header *before* decoding;
2. decode the first frame only (animated GIF/WebP/APNG: frame 0), apply EXIF orientation.

The image-to-network transform (luminance, polarity, lighting, ruling, crop, fit and centre)
is ``model.transform.to_digit``: training, calibration and evaluation run the same code on
simulated uploads, so the network is calibrated on what it is served.

Failures raise a subclass of :class:`ImageRejected`; nothing else escapes for any input bytes.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from model import transform
from model.transform import WORKING_SIDE
from service.errors import BlankImage, ImageTooLarge, UndecodableImage, UnsupportedFormat

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
        if image.format == "JPEG":
            image.draft(image.mode, (WORKING_SIDE, WORKING_SIDE))  # decode at reduced scale
        return transform.load_upright(image)
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"the image claims too many pixels; the limit is {max_pixels}") from None
    except Exception as error:
        raise UndecodableImage(f"{image.format} data is truncated or corrupt ({type(error).__name__})") from None


def preprocess(data: bytes, max_pixels: int) -> np.ndarray:
    """Upload bytes -> uint8 ``[28, 28]`` on MNIST's conventions (ink high, centred by mass)."""
    image = decode(data, max_pixels)
    try:
        return transform.to_digit(image)
    except transform.NoInk as error:
        raise BlankImage(str(error)) from None
    except Exception as error:  # exotic modes that Pillow cannot convert
        raise UndecodableImage(f"cannot read pixels of mode {image.mode} ({type(error).__name__})") from None
