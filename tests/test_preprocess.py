import numpy as np
import pytest
from PIL import Image

from harness.images import (
    canvas_export,
    encode,
    enlarged_dark_on_light,
    off_centre_on_canvas,
    on_lined_paper,
    png_claiming,
    unevenly_lit_photo,
)
from harness.inputs import load_digit, mnist_fixtures
from model.data import CENTRE_OF_MASS
from service.errors import BlankImage, ImageTooLarge, UndecodableImage, UnsupportedFormat
from service.inference.preprocess import decode, preprocess

LIMIT = 40_000_000


@pytest.fixture
def digit() -> np.ndarray:
    return load_digit(mnist_fixtures()[0][0])  # a 7


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0:28, 0:28]
    mass = image.astype(float).sum()
    return float((image * ys).sum() / mass), float((image * xs).sum() / mass)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(float).ravel(), b.astype(float).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_output_is_mnist_shaped_and_centred_by_mass(digit):
    out = preprocess(encode(off_centre_on_canvas(digit)), LIMIT)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    cy, cx = centre_of_mass(out)
    assert abs(cy - CENTRE_OF_MASS) <= 0.75 and abs(cx - CENTRE_OF_MASS) <= 0.75
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # fitted into the 20x20 box
    assert out.max() >= 250  # stroke cores at full intensity, as in MNIST


def test_mnist_digit_survives_a_round_trip(digit):
    assert similarity(preprocess(encode(Image.fromarray(digit)), LIMIT), digit) > 0.95


def test_polarity_is_detected(digit):
    light_on_dark = preprocess(encode(Image.fromarray(digit).resize((140, 140))), LIMIT)
    dark_on_light = preprocess(encode(enlarged_dark_on_light(digit, 140)), LIMIT)
    assert similarity(light_on_dark, dark_on_light) > 0.98


@pytest.mark.parametrize("stroke", [(20, 20, 20), (250, 250, 250), (200, 30, 30)])
def test_transparent_canvas_export_is_composited_onto_paper(digit, stroke):
    out = preprocess(encode(canvas_export(digit, stroke)), LIMIT)
    assert similarity(out, preprocess(encode(Image.fromarray(digit)), LIMIT)) > 0.9


@pytest.mark.parametrize("mode", ["I;16", "P", "CMYK", "1", "LA", "RGB", "I", "F"])
def test_odd_modes_give_the_same_digit(digit, mode):
    base = Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base).astype(np.uint16) * 257)
        assert image.mode.startswith("I;16")
    elif mode == "1":
        image = base.point(lambda v: 255 if v > 127 else 0).convert("1")
    else:
        image = base.convert(mode)
    fmt = {"CMYK": "JPEG"}.get(mode, "PNG")
    data = encode(image, fmt) if mode not in ("I", "F") else None
    reference = preprocess(encode(base), LIMIT)
    if data is None:  # 32-bit int / float images don't travel in an accepted format: feed the decoded image
        from model.transform import fit_and_centre, ink_map, luminance

        out = fit_and_centre(ink_map(luminance(image)))
    else:
        out = preprocess(data, LIMIT)
    assert similarity(out, reference) > (0.75 if mode == "1" else 0.95)  # 1-bit loses the anti-aliasing


def test_uneven_lighting_is_flattened_not_mistaken_for_ink(digit):
    from model.transform import paper_surface

    xs = np.mgrid[0:200, 0:200][1] / 200
    lighting = 0.1 + 0.5 * xs  # paper darkens from left to right
    strokes = np.zeros((200, 200))
    strokes[60:140, 95:105] = 0.8  # a thick vertical bar of ink
    surface = paper_surface((lighting + strokes).astype(np.float32))
    assert np.abs(surface - lighting).max() < 0.02  # the bar is not part of the paper
    out = preprocess(encode(unevenly_lit_photo(digit, "gradient"), "JPEG", quality=80), LIMIT)
    assert similarity(out, preprocess(encode(Image.fromarray(digit)), LIMIT)) > 0.85


def test_ruling_is_erased_but_a_single_full_width_stroke_is_kept():
    from model.transform import remove_ruling

    lined = np.zeros((100, 100), dtype=np.float32)
    lined[10:12], lined[40:42], lined[70:72] = 0.5, 0.5, 0.5  # three ruled lines
    lined[20:80, 48:53] = 1.0  # a vertical stroke crossing them
    cleaned = remove_ruling(lined)
    assert cleaned[10:12].sum() == cleaned[40:42, :45].sum() == 0.0
    assert cleaned[20:38, 48:53].min() == 1.0  # the stroke between the lines survives
    seven = np.zeros((100, 100), dtype=np.float32)
    seven[0:8, :] = 1.0  # the top bar of a tightly cropped 7 spans the width: one band, not ruling
    seven[8:100, 60:68] = 1.0
    assert np.array_equal(remove_ruling(seven), seven)


def test_digit_on_squared_paper_matches_the_digit_on_plain_paper(digit):
    plain = preprocess(encode(on_lined_paper(digit, line_gray=0.9), "JPEG", quality=85), LIMIT)  # lines = paper
    squared = preprocess(encode(on_lined_paper(digit, 0.5, squared=True), "JPEG", quality=85), LIMIT)
    box = lambda image: np.ptp(np.argwhere(image > 0), axis=0)  # noqa: E731 -- ink extent (rows, cols)
    assert np.abs(box(squared) - box(plain)).max() <= 1  # the ruling did not widen the crop
    assert similarity(squared, plain) > 0.6  # same strokes, up to a pixel of shift and the erased rows


def test_exif_orientation_is_applied(digit):
    upright = Image.fromarray(digit).resize((112, 112))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways; EXIF 6 says rotate 270 to view
    exif = Image.Exif()
    exif[0x0112] = 6
    out = preprocess(encode(stored, "JPEG", exif=exif.tobytes(), quality=95), LIMIT)
    assert similarity(out, preprocess(encode(upright, "JPEG", quality=95), LIMIT)) > 0.95


def test_animated_gif_uses_the_first_frame(digit):
    first = Image.fromarray(digit).resize((56, 56)).convert("P")
    second = Image.fromarray(np.rot90(digit).copy()).resize((56, 56)).convert("P")
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert similarity(preprocess(data, LIMIT), preprocess(encode(first.convert("L")), LIMIT)) > 0.97


@pytest.mark.parametrize("image", [Image.new("L", (100, 100), 255), Image.new("L", (64, 64), 0),
                                   Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
                                   Image.new("RGB", (80, 80), (128, 128, 128))])
def test_blank_images_have_no_ink(image):
    with pytest.raises(BlankImage, match="no ink found"):
        preprocess(encode(image), LIMIT)


def test_unsupported_formats_are_named(digit):
    with pytest.raises(UnsupportedFormat, match="TIFF is not accepted"):
        decode(encode(Image.fromarray(digit), "TIFF"), LIMIT)
    with pytest.raises(UnsupportedFormat, match="SVG"):
        decode(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', LIMIT)
    with pytest.raises(UnsupportedFormat, match="PDF"):
        decode(b"%PDF-1.4 ...", LIMIT)


def test_garbage_and_truncation_are_undecodable(digit):
    with pytest.raises(UndecodableImage, match="empty"):
        decode(b"", LIMIT)
    with pytest.raises(UndecodableImage, match="not a decodable image"):
        decode(b"hello world" * 10, LIMIT)
    png = encode(Image.fromarray(digit).resize((300, 300)))
    with pytest.raises(UndecodableImage, match="truncated or corrupt"):
        decode(png[: len(png) // 2], LIMIT)


def test_pixel_bomb_is_refused_from_the_header():
    with pytest.raises(ImageTooLarge, match="too many pixels"):
        decode(png_claiming(100_000, 100_000), LIMIT)
    with pytest.raises(ImageTooLarge, match="limit is 1000"):
        decode(png_claiming(100, 100), 1000)


def _textures() -> dict[str, np.ndarray]:
    """Visible content that is not a digit: every one must be classified, never called blank."""
    ys, xs = np.mgrid[0:120, 0:120]
    rng = np.random.default_rng(0)
    trousers = np.zeros((28, 28))
    trousers[2:27, 8:13] = trousers[2:27, 15:20] = 0.8
    trousers[2:27:3, 8:20] = 0.3  # a striped pair of trousers: the ruling eraser once wiped it
    faint = np.full((120, 120), 0.9)
    faint[30:90, 30:90] = 0.75  # a faint grey square: contrast 0.15 on clean paper
    return {
        "full-width stripes": ((ys // 6) % 2 == 0) * 0.9,
        "thin full-width lines": ((ys % 10) < 2) * 0.9,
        "vertical stripes": ((xs // 5) % 2 == 0) * 0.9,
        "checkerboard": (((ys // 8) + (xs // 8)) % 2 == 0) * 0.9,
        "grid": (((ys % 12) < 2) | ((xs % 12) < 2)) * 0.9,
        "dense scribble": (rng.random((120, 120)) < 0.45) * 0.9,
        "striped trousers": trousers,
        "faint square": 1.0 - faint,
        "faint 50/50 stripes": 0.12 * ((ys // 10) % 2),  # half the image at +0.12: the median is no paper level
        "full-range gradient": xs / 120.0,  # flattening the "lighting" would leave nothing: it is the content
    }


@pytest.mark.parametrize("name", list(_textures()))
def test_visible_content_is_never_no_ink(name):
    ink = _textures()[name]
    for polarity in ("light on dark", "dark on light"):
        pixels = ink if polarity == "light on dark" else 1.0 - ink
        out = preprocess(encode(Image.fromarray(np.rint(pixels * 255).astype(np.uint8))), LIMIT)
        assert out.shape == (28, 28) and out.max() > 30, (name, polarity)  # fine textures average to grey


def test_noisy_blank_paper_is_still_no_ink():
    rng = np.random.default_rng(0)
    paper = np.clip(0.92 + rng.normal(0, 0.02, (300, 300)), 0, 1)
    with pytest.raises(BlankImage):
        preprocess(encode(Image.fromarray(np.rint(paper * 255).astype(np.uint8))), LIMIT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (2,), (7,), (28, 28), (27, 29), (64, 65)])
def test_the_fast_median_is_numpys_bit_for_bit(dtype, shape):
    """transform's median replaces np.median on the request path: it must change no output."""
    from model.transform import _median

    rng = np.random.default_rng(sum(shape))
    for values in (rng.random(shape).astype(dtype), rng.integers(0, 4, shape).astype(dtype),
                   (rng.random(shape) ** 9).astype(dtype)):
        fast, reference = _median(values), np.median(values)
        assert fast.dtype == reference.dtype and fast.tobytes() == reference.tobytes()
