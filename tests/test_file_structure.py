"""service/inference/file_structure.py and the costs preprocess counts from a header: files whose structure costs
more to read than their pixels (segment floods, scan floods) are refused before Pillow parses
them, and real files pass."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from harness.images import encode, enlarged_dark_on_light, png_chunk
from harness.inputs import load_digit, mnist_fixtures
from service.errors import ImageTooLarge
from service.inference.file_structure import MAX_JPEG_SCANS, MAX_SEGMENTS, excess
from service.inference.preprocess import PYTHON_DECODED, decode_cost, open_image, preprocess

DIGIT = load_digit(mnist_fixtures()[0][0])
SCAN = enlarged_dark_on_light(DIGIT, 300)


def real_files() -> dict[str, bytes]:
    rgb = SCAN.convert("RGB")
    return {"png": encode(SCAN), "jpeg": encode(rgb, "JPEG"), "progressive jpeg": encode(rgb, "JPEG", progressive=True),
            "gif": encode(SCAN.convert("P"), "GIF"), "webp": encode(rgb, "WEBP"), "bmp": encode(SCAN, "BMP")}


@pytest.mark.parametrize("name", list(real_files()))
def test_real_files_pass(name):
    data = real_files()[name]
    assert excess(data) is None
    assert preprocess(data, 40_000_000).shape == (28, 28)


def jpeg_with_markers(count: int) -> bytes:
    data = encode(SCAN, "JPEG")
    return data[:2] + b"\xff\xe3\x00\x02" * count + data[2:]  # empty APP3 segments after SOI


def png_with_chunks(count: int) -> bytes:
    data = encode(SCAN)
    at = data.index(b"IDAT") - 4
    return data[:at] + png_chunk(b"tEXt", b"k\x00v") * count + data[at:]


def gif_with_comments(count: int) -> bytes:
    data = encode(SCAN.convert("P"), "GIF")
    at = 13 + (3 << ((data[10] & 7) + 1))  # after the header and its global colour table
    return data[:at] + b"\x21\xfe\x01x\x00" * count + data[at:]


@pytest.mark.parametrize(("build", "what"), [(jpeg_with_markers, "JPEG marker segments"),
                                             (png_with_chunks, "PNG chunks"),
                                             (gif_with_comments, "GIF extension blocks")])
def test_a_segment_flood_is_refused_before_pillow_reads_it(build, what):
    assert excess(build(MAX_SEGMENTS - 16)) is None  # near the limit (the file has its own few): read as any file
    assert preprocess(build(MAX_SEGMENTS - 16), 40_000_000).shape == (28, 28)
    flood = build(100_000)
    assert excess(flood) == f"more than {MAX_SEGMENTS} {what} before the image data"
    with pytest.raises(ImageTooLarge, match=f"the file is too costly to read: more than {MAX_SEGMENTS} {what}"):
        preprocess(flood, 40_000_000)


def test_a_jpeg_of_more_scans_than_any_real_one_is_refused():
    data = encode(SCAN.convert("RGB"), "JPEG", progressive=True)
    scans = data.count(b"\xff\xda")
    assert 1 < scans <= 12  # what Pillow's encoder writes: a handful
    first, end = data.index(b"\xff\xda"), data.rindex(b"\xff\xd9")
    second = data.index(b"\xff\xda", first + 2)
    repeated = data[:end] + data[first:second] * (MAX_JPEG_SCANS - scans + 1) + data[end:]
    assert repeated.count(b"\xff\xda") == MAX_JPEG_SCANS + 1
    assert excess(repeated) == (f"{MAX_JPEG_SCANS + 1} JPEG scans; the limit is {MAX_JPEG_SCANS} "
                                "(a progressive JPEG has about 10)")


def test_costs_count_what_each_decoder_allocates_besides_the_canvas():
    side = 1000
    pixels = side * side
    webp = open_image(encode(Image.new("RGB", (side, side), (200, 200, 200)), "WEBP", lossless=True), 40_000_000)
    assert webp.cost == pixels * (4 + 1 + 2 * 4 + 4)  # libwebp's buffer and Pillow's copies: 614 MB measured at 40 MP
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side)).save(buffer, "PNG", exif=exif)
    turned = open_image(buffer.getvalue(), 40_000_000)
    assert turned.cost == pixels * (4 + 8 + 4)  # the transposed copy too
    photo = Image.fromarray(np.full((4000, 4000, 3), 200, np.uint8))
    progressive = open_image(encode(photo, "JPEG", progressive=True), 40_000_000)
    width, height = progressive.image.size  # the draft
    assert progressive.cost == width * height * (4 + 1) + 4000 * 4000 * 3 * 2  # every coefficient, at full size
    bmp = Image.new("L", (300, 200), 255)
    buffer = io.BytesIO()
    bmp.save(buffer, "BMP")
    plain = buffer.getvalue()
    rle = plain[:30] + struct.pack("<I", 1) + plain[34:]  # BI_RLE8 declared: Pillow's Python decoder
    assert decode_cost(Image.open(io.BytesIO(rle))) == 300 * 200 * PYTHON_DECODED
