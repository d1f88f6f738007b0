"""The bad-input catalogue: each case asserts the exact status and a useful detail, and the
service must still be alive, with no 5xx, after all of them."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import CollectorRegistry

from harness.images import encode, enlarged_dark_on_light, png_chunk, png_claiming
from harness.inputs import SHIPPED, mnist_fixtures
from service.app import create_app
from service.settings import Settings

DIGIT_PATH, DIGIT_LABEL = mnist_fixtures()[0]
PNG = DIGIT_PATH.read_bytes()
DIGIT = np.asarray(Image.open(DIGIT_PATH))
SCAN = enlarged_dark_on_light(DIGIT, 140)
LIMITS = {"max_upload_bytes": 2_000_000, "max_request_bytes": 3_000_000, "max_pixels": 5_000_000}


def upload(data: bytes, name: str = "digit.png", content_type: str | None = "image/png",
           **params: Any) -> dict[str, Any]:
    file = (name, data, content_type) if content_type is not None else (name, data)
    return {"files": {"file": file}, "params": params}


def png_with_ihdr(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * 11))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + idat + png_chunk(b"IEND", b"")


def flip(data: bytes, marker: bytes, offset: int) -> bytes:
    mutable = bytearray(data)
    mutable[data.find(marker) + offset] ^= 0xFF
    return bytes(mutable)


def zero_png(width: int, height: int) -> bytes:
    return encode(Image.new("L", (width, height), 0), optimize=True)


def gif_with_screen(width: int, height: int) -> bytes:
    frame = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + frame


def animated(fmt: str) -> bytes:
    second = Image.fromarray(np.rot90(DIGIT).copy())
    return encode(Image.fromarray(DIGIT), fmt, save_all=True, append_images=[second], duration=100, loop=0)


def line(width: int, height: int, thickness: int) -> bytes:
    image = Image.new("L", (width, height), 255)
    image.paste(0, (0, (height - thickness) // 2, width, (height + thickness) // 2))
    return encode(image)


def jpeg_with_exif(exif: bytes) -> bytes:
    return encode(SCAN.convert("RGB"), "JPEG", exif=exif, quality=90)


def rotated_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated 90 degrees clockwise
    return encode(SCAN.transpose(Image.Transpose.ROTATE_270).convert("RGB"), "JPEG", exif=exif.tobytes(), quality=95)


def palette_with_transparency() -> bytes:
    image = SCAN.convert("P")
    return encode(image, "PNG", transparency=int(np.asarray(image)[0, 0]))


def sixteen_bit() -> bytes:
    return encode(Image.fromarray(np.asarray(SCAN).astype(np.uint16) * 257))


def multipart(body: bytes, boundary: str = "b") -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


NOISE_JPEG = encode(Image.effect_noise((400, 400), 80).convert("RGB"), "JPEG", quality=90)
NOISE_PNG = encode(Image.effect_noise((300, 300), 80))

OK = 200
# (id, request kwargs, status, detail substring or None when the answer is a prediction)
CASES: list[tuple[str, Callable[[], dict[str, Any]], int, str | None]] = [
    ("no_body_at_all", lambda: {}, 422, "body.file: Field required"),
    ("empty_file", lambda: upload(b""), 400, "the file is empty"),
    ("text_bytes", lambda: upload(b"hello, I am not an image\n" * 20, "a.txt", "text/plain"), 400,
     "not a decodable image"),
    ("random_bytes", lambda: upload(np.random.default_rng(1).bytes(4000)), 400, "not a decodable image"),
    ("null_bytes", lambda: upload(b"\x00" * 1000), 400, "not a decodable image"),
    ("truncated_png", lambda: upload(NOISE_PNG[: len(NOISE_PNG) // 2]), 400, "PNG data is truncated or corrupt"),
    ("truncated_png_header", lambda: upload(PNG[:20]), 400, "corrupt PNG header"),
    ("truncated_jpeg", lambda: upload(NOISE_JPEG[: len(NOISE_JPEG) // 2], "a.jpg", "image/jpeg"), 400,
     "JPEG data is truncated"),
    ("jpeg_magic_only", lambda: upload(b"\xff\xd8\xff\xe0" + b"\x00" * 50, "a.jpg"), 400, "corrupt JPEG header"),
    ("bad_crc_idat", lambda: upload(flip(NOISE_PNG, b"IDAT", 10)), 400, "PNG data is truncated or corrupt"),
    ("bad_crc_ihdr", lambda: upload(flip(PNG, b"IHDR", 17)), 400, "corrupt PNG header"),
    ("zero_width", lambda: upload(png_with_ihdr(0, 10)), 400, "corrupt PNG header"),
    ("zero_height", lambda: upload(png_with_ihdr(10, 0)), 400, "corrupt PNG header"),
    ("bomb_header_100k", lambda: upload(png_claiming(100_000, 100_000)), 413, "too many pixels"),
    ("bomb_real_10k_png", lambda: upload(zero_png(10_000, 10_000)), 413, "10000x10000 = 100000000 pixels"),
    ("bomb_gif_logical_screen", lambda: upload(gif_with_screen(65_535, 65_535), "a.gif", "image/gif"), 413,
     "too many pixels"),
    ("bomb_bmp_header", lambda: upload(b"BM" + struct.pack("<IHHIIiiHHIIiiII", 0, 0, 0, 54, 40, 200_000, 200_000, 1, 8,
                                                              0, 0, 0, 0, 0, 0)), 413, "too many pixels"),
    ("extreme_aspect_wide_line", lambda: upload(line(20_000, 12, 4)), OK, None),
    ("extreme_aspect_tall_blank", lambda: upload(encode(Image.new("L", (1, 5000), 255))), 422, "no ink found"),
    ("animated_gif_first_frame", lambda: upload(animated("GIF"), "a.gif", "image/gif"), OK, None),
    ("apng_first_frame", lambda: upload(animated("PNG")), OK, None),
    ("animated_webp_first_frame", lambda: upload(animated("WEBP"), "a.webp", "image/webp"), OK, None),
    ("multi_frame_tiff", lambda: upload(encode(Image.fromarray(DIGIT), "TIFF", save_all=True,
                                                append_images=[Image.fromarray(DIGIT)]), "a.tif"), 415,
     "TIFF is not accepted"),
    ("svg", lambda: upload(b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><text>7</text></svg>',
                           "a.svg", "image/svg+xml"), 415, "SVG is not accepted"),
    ("svg_with_xml_prolog", lambda: upload(b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'), 415,
     "SVG"),
    ("pdf", lambda: upload(b"%PDF-1.7\n1 0 obj<<>>endobj\n", "a.pdf", "application/pdf"), 415, "PDF is not accepted"),
    ("eps", lambda: upload(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n", "a.eps"), 415,
     "PostScript/EPS is not accepted"),
    ("eps_binary_header", lambda: upload(b"\xc5\xd0\xd3\xc6" + b"\x00" * 40, "a.eps"), 415, "EPS is not accepted"),
    ("ico", lambda: upload(encode(Image.fromarray(DIGIT).convert("RGB"), "ICO"), "a.ico"), 415, "ICO is not accepted"),
    ("psd", lambda: upload(b"8BPS\x00\x01" + b"\x00" * 40, "a.psd"), 415, "PSD is not accepted"),
    ("heic", lambda: upload(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20, "a.heic"), 415, "HEIC is not accepted"),
    ("html_prefixed_png", lambda: upload(b"<html><body>" + PNG), 400, "not a decodable image"),
    ("png_with_zip_appended", lambda: upload(PNG + b"PK\x03\x04" + b"\x00" * 200), OK, None),
    ("malformed_exif", lambda: upload(jpeg_with_exif(b"Exif\x00\x00" + b"\xff" * 64), "a.jpg"), OK, None),
    ("exif_claiming_huge_ifd", lambda: upload(jpeg_with_exif(b"Exif\x00\x00MM\x00*\xff\xff\xff\xff"), "a.jpg"), OK,
     None),
    ("sixteen_bit_png", lambda: upload(sixteen_bit()), OK, None),
    ("cmyk_jpeg", lambda: upload(encode(SCAN.convert("CMYK"), "JPEG", quality=95), "a.jpg"), OK, None),
    ("palette_with_transparency", lambda: upload(palette_with_transparency()), OK, None),
    ("exif_rotated_jpeg", lambda: upload(rotated_with_exif(), "a.jpg"), OK, None),
    ("one_bit_png", lambda: upload(encode(SCAN.point(lambda v: 255 if v > 128 else 0).convert("1"))), OK, None),
    ("webp", lambda: upload(encode(SCAN, "WEBP", quality=90), "a.webp"), OK, None),
    ("bmp", lambda: upload(encode(SCAN, "BMP"), "a.bmp"), OK, None),
    ("la_mode_png", lambda: upload(encode(SCAN.convert("LA"))), OK, None),
    ("declared_type_lies", lambda: upload(PNG, "a.gif", "image/gif"), OK, None),
    ("declared_type_text", lambda: upload(PNG, "a.txt", "text/plain"), OK, None),
    ("no_part_content_type", lambda: upload(PNG, content_type=None), OK, None),
    ("missing_field", lambda: {"files": {"image": ("a.png", PNG, "image/png")}}, 422, "body.file: Field required"),
    ("file_sent_as_text_field", lambda: {"data": {"file": "not a file"}}, 422, "body.file"),
    ("json_instead_of_multipart", lambda: {"json": {"file": "abc"}}, 422, "body.file: Field required"),
    ("raw_png_body", lambda: {"content": PNG, "headers": {"content-type": "image/png"}}, OK, None),
    ("raw_png_body_declared_gif", lambda: {"content": PNG, "headers": {"content-type": "image/gif"}}, OK, None),
    ("raw_body_with_charset", lambda: {"content": PNG, "headers": {"content-type": "Image/PNG; charset=binary"}}, OK,
     None),
    ("raw_body_junk", lambda: {"content": b"\x00junk" * 9, "headers": {"content-type": "application/octet-stream"}},
     400, "not a decodable image"),
    ("raw_body_pdf", lambda: {"content": b"%PDF-1.7\n", "headers": {"content-type": "application/octet-stream"}}, 415,
     "PDF is not accepted"),
    ("raw_body_as_text", lambda: {"content": PNG, "headers": {"content-type": "text/plain"}}, 422,
     "body.file: Field required"),
    ("multipart_without_boundary", lambda: {"content": b"xx", "headers": {"content-type": "multipart/form-data"}}, 400,
     "Missing boundary"),
    ("two_files_in_one_field", lambda: {"files": [("file", ("a.png", PNG, "image/png")),
                                                  ("file", ("b.png", PNG, "image/png"))]},
     422, "2 files sent in field 'file'"),
    ("samples_zero", lambda: upload(PNG, samples="0"), 422,
     "query.samples: Input should be greater than or equal to 1"),
    ("samples_negative", lambda: upload(PNG, samples="-1"), 422, "greater than or equal to 1"),
    ("samples_huge", lambda: upload(PNG, samples="1000000000"), 422, "less than or equal to 1000"),
    ("samples_text", lambda: upload(PNG, samples="abc"), 422, "valid integer"),
    ("samples_float", lambda: upload(PNG, samples="1.5"), 422, "valid integer"),
    ("samples_empty", lambda: upload(PNG, samples=""), 422, "valid integer"),
    ("samples_exponent", lambda: upload(PNG, samples="1e3"), 422, "valid integer"),
    ("samples_thousand_digits", lambda: upload(PNG, samples="9" * 1000), 422, "query.samples"),
    ("filename_100kb", lambda: upload(PNG, "a" * 100_000 + ".png"), 400, "Invalid multipart data"),
    ("filename_unicode_and_nul", lambda: upload(PNG, "\u0000\u202e\u00e9\u4e03.png"), OK, None),
    ("body_over_limit_with_length", lambda: upload(b"\x00" * 3_100_000), 413, "request body exceeds the limit"),
    ("body_over_limit_chunked", lambda: {"content": (b"x" * 100_000 for _ in range(40)),
                                         "headers": {"content-type": "multipart/form-data; boundary=b"}}, 413,
     "request body exceeds the limit"),
    ("file_over_upload_limit", lambda: upload(b"\x89PNG" + b"\x00" * 2_100_000), 413,
     "file exceeds the limit of 2000000 bytes"),
    ("thousands_of_fields", lambda: {"files": {"file": ("a.png", PNG, "image/png")},
                                     "data": {f"f{i}": "x" for i in range(3000)}}, 400, "Too many fields"),
    ("pathological_boundary", lambda: multipart(b"--" + b"a" * 5000 + b"\r\n", "a" * 5000), 400,
     "Invalid multipart data"),
    ("boundary_never_closed",
     lambda: multipart(b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n" + PNG),
     422, "body.file"),
    ("blank_white", lambda: upload(encode(Image.new("L", (300, 300), 255))), 422, "no ink found"),
    ("blank_transparent", lambda: upload(encode(Image.new("RGBA", (64, 64), (0, 0, 0, 0)))), 422, "no ink found"),
    ("one_pixel", lambda: upload(encode(Image.new("L", (1, 1), 0))), 422, "no ink found"),
]


@pytest.fixture(scope="module")
def client():
    app = create_app(Settings(model_path=SHIPPED, **LIMITS), registry=CollectorRegistry())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_catalogue_has_at_least_fifty_cases():
    assert len(CASES) >= 50


@pytest.mark.parametrize(("build", "status", "detail"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_catalogue_case(client, build, status, detail):
    response = client.post("/predict", **build())
    assert response.status_code == status, response.text
    body = response.json()
    if status == OK:
        assert 0 <= body["class"] <= 9 and isinstance(body["refer"], bool)
    elif detail is not None:
        assert detail in body["detail"]


def test_odd_but_valid_digits_are_still_read_correctly(client):
    for name in ("sixteen_bit_png", "cmyk_jpeg", "palette_with_transparency", "exif_rotated_jpeg", "webp", "bmp",
                 "malformed_exif", "png_with_zip_appended", "animated_gif_first_frame", "apng_first_frame"):
        build = next(case[1] for case in CASES if case[0] == name)
        assert client.post("/predict", **build()).json()["class"] == DIGIT_LABEL, name


def test_service_is_alive_and_served_no_5xx_after_the_catalogue(client):
    for _, build, _, _ in CASES:
        assert client.post("/predict", **build()).status_code < 500
    hostile_files = [("files", (name, build()["files"]["file"][1], "application/octet-stream"))
                     for name, build, _, _ in CASES if "file" in build().get("files", {}) and name != "filename_100kb"]
    batch = client.post("/predict/batch", files=hostile_files[:8])
    assert batch.status_code == 200 and len(batch.json()) == 8
    assert client.get("/healthz").status_code == 200
    assert client.post("/predict", **upload(PNG)).json()["class"] == DIGIT_LABEL
