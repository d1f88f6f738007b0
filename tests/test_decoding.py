"""The decoder's bounds: a budget per request from the headers, small work inline, large work in a
bounded pool answered within its deadline, and the reviewer's copy made from the decoded image."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from harness.images import encode, enlarged_dark_on_light, gif_declaring
from harness.inputs import load_digit, mnist_fixtures
from service.errors import BlankImage, DecoderBusy, DecodeTimeout, ImageTooLarge
from service.inference import decoding
from service.inference.decoding import Decoder, UploadLimits
from service.inference.preprocess import Opened, Prepared, decode_cost, open_image, prepare, review_copy, review_png

MIB = 1024 * 1024
DIGIT = load_digit(mnist_fixtures()[0][0])
LIMITS = UploadLimits(max_upload_bytes=8 * MIB, max_pixels=40_000_000, budget_bytes=512 * MIB)


@pytest.fixture
def decoder() -> Iterator[Decoder]:
    made = Decoder(LIMITS, threads=1, timeout_s=5.0)
    yield made
    made.close()


def test_the_cost_counts_the_canvas_and_the_working_copy():
    gif = open_image(gif_declaring(6324, 6324), LIMITS.max_pixels)
    assert gif.image.size == (6324, 6324)
    assert gif.cost == 6324 * 6324 * (1 + 8)  # palette canvas + RGBA and premultiplied working copies
    grey = open_image(gif_declaring(300, 200, transparent=False), LIMITS.max_pixels)
    assert grey.cost == 300 * 200 * (1 + 1)
    rgba = Image.new("RGBA", (100, 50))
    assert decode_cost(rgba) == 100 * 50 * (4 + 8)
    assert decode_cost(Image.new("I;16", (10, 10))) == 10 * 10 * (2 + 4)


def test_a_jpeg_costs_what_its_reduced_decode_allocates():
    photo = encode(enlarged_dark_on_light(DIGIT, 4000).convert("RGB"), "JPEG", quality=80)
    opened = open_image(photo, LIMITS.max_pixels)
    assert opened.image.size[0] < 4000  # draft: decoded at 1/2, 1/4 or 1/8
    assert opened.cost == opened.image.size[0] * opened.image.size[1] * (4 + 1)


def test_images_past_the_request_budget_are_refused_undecoded(decoder):
    """32 canvas-declaring GIFs of 43 bytes (a 1.4 KB request): one fits the 512 MiB budget and is
    decoded (blank: 422); the other 31 are refused at once, naming the budget."""
    uploads = [gif_declaring(6324, 6324)] * 32
    results = asyncio.run(decoder.admit(uploads))
    assert len(results) == 32
    assert isinstance(results[0], BlankImage)
    assert all(isinstance(result, ImageTooLarge) for result in results[1:])
    assert str(results[1]).startswith(f"decoding this request's images would take more than {512 * MIB} bytes; "
                                      f"this image alone {6324 * 6324 * 9}")


def test_an_image_past_the_budget_leaves_room_for_a_smaller_one_after_it():
    made = Decoder(UploadLimits(8 * MIB, 40_000_000, budget_bytes=3_000_000), inline_bytes=0)
    big, middle = gif_declaring(1000, 1000, transparent=False), gif_declaring(1000, 600, transparent=False)
    try:
        results = asyncio.run(made.admit([big, middle, encode(Image.fromarray(DIGIT))]))
    finally:
        made.close()
    # 2 MB fits; 1.2 MB more would pass 3 MB; the digit's 1.6 KB still fits
    assert [type(result) for result in results] == [BlankImage, ImageTooLarge, Prepared]


def test_small_work_is_left_to_the_pass_and_large_work_decoded_in_the_pool(decoder, monkeypatch):
    threads: list[str] = []
    real_prepare = decoding.prepare

    def recording(opened: Opened):
        threads.append(threading.current_thread().name)
        return real_prepare(opened)

    monkeypatch.setattr(decoding, "prepare", recording)
    small = encode(Image.fromarray(DIGIT))
    large = encode(enlarged_dark_on_light(DIGIT, 2000))  # 2000 x 2000 grey: 8 MB of work, over the inline 1 MiB
    results = asyncio.run(decoder.admit([small, large, DIGIT]))
    assert [type(result) for result in results] == [Opened, Prepared, Prepared]
    assert len(threads) == 1 and threads[0].startswith("decode")  # only the large one was decoded, in the pool
    assert results[0].cost == 28 * 28 * 2
    assert results[2].picture is None and np.array_equal(results[2].digit, DIGIT)
    inline = prepare(results[0])
    assert isinstance(inline, Prepared) and np.abs(inline.digit.astype(int) - results[1].digit.astype(int)).mean() < 8


def test_a_decode_past_its_deadline_is_refused_and_the_next_is_withdrawn(monkeypatch):
    """One image holds the only pool thread past the deadline (422, its thread finishes later); the
    image behind it never starts (503). The event loop is free meanwhile: a task runs to the end."""
    release = threading.Event()
    started = threading.Event()

    def stuck(opened: Opened):
        started.set()
        release.wait(30)
        return BlankImage("late")

    monkeypatch.setattr(decoding, "prepare", stuck)
    made = Decoder(LIMITS, threads=1, timeout_s=0.3, inline_bytes=0)
    large = encode(enlarged_dark_on_light(DIGIT, 600))

    async def scenario() -> tuple[list, int]:
        ticks = 0

        async def ticking() -> None:
            nonlocal ticks
            while not release.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(ticking())
        results = await made.admit([large, large])
        release.set()
        await ticker
        return results, ticks

    try:
        results, ticks = asyncio.run(scenario())
    finally:
        release.set()
        made.close()
    assert started.is_set()
    assert isinstance(results[0], DecodeTimeout) and "longer than 0.3 s" in str(results[0])
    assert isinstance(results[1], DecoderBusy) and "did not start within 0.3 s" in str(results[1])
    assert ticks >= 5  # the loop went on while the pool was stuck


def test_the_reviewers_copy_is_the_decoded_image_bounded_not_the_bytes_sent():
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    padded = encode(noise) + np.random.default_rng(1).bytes(2 * MIB)  # bytes after the PNG's end
    prepared = asyncio.run(Decoder(LIMITS).admit([padded]))[0]  # a 2 MiB file: decoded in the pool
    assert isinstance(prepared, Prepared) and prepared.picture is not None
    stored = review_png(prepared.picture)
    assert len(stored) < 10_000  # the 2 MiB tail is gone
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored))), np.asarray(noise))
    big = review_copy(Image.new("RGBA", (4000, 1000)))
    assert big.size == (384, 96) and big.mode == "RGBA"
    palette = review_png(review_copy(Image.open(io.BytesIO(gif_declaring(2000, 2000)))))
    assert Image.open(io.BytesIO(palette)).mode == "RGBA"
