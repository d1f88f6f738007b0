"""The fuzzing corpus and mutator, shared by the short CI run and the long on-demand run
(``python -m tools.fuzz``). Seeds are valid uploads of every accepted format and mode;
mutations flip, overwrite, insert, delete, truncate and splice bytes."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from harness.images import canvas_export, encode, enlarged_dark_on_light
from harness.inputs import load_digit, mnist_fixtures
from service.errors import ImageRejected
from service.inference.preprocess import preprocess

MAX_PIXELS = 5_000_000


def seed_corpus() -> list[bytes]:
    digit = load_digit(mnist_fixtures()[0][0])
    scan = enlarged_dark_on_light(digit, 84)
    second = Image.fromarray(np.rot90(digit).copy())
    return [
        encode(Image.fromarray(digit)),
        encode(scan, "JPEG", quality=80),
        encode(scan.convert("CMYK"), "JPEG"),
        encode(scan.convert("P"), "GIF"),
        encode(Image.fromarray(digit), "GIF", save_all=True, append_images=[second]),
        encode(scan, "BMP"),
        encode(scan, "WEBP", quality=70),
        encode(canvas_export(digit)),
        encode(Image.fromarray(np.asarray(scan).astype(np.uint16) * 257)),
        encode(scan.point(lambda v: 255 if v > 128 else 0).convert("1")),
        encode(Image.fromarray(digit), "PNG", save_all=True, append_images=[second]),
    ]


def mutate(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        position = rng.randrange(len(buffer)) if buffer else 0
        if op == 0 and buffer:
            buffer[position] ^= 1 << rng.randrange(8)
        elif op == 1 and buffer:
            buffer[position] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op == 2:
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3 and buffer:
            del buffer[position : position + rng.randint(1, 64)]
        elif op == 4:
            del buffer[rng.randint(0, len(buffer)) :]
        elif op == 5 and len(buffer) > 8:  # overwrite a 4-byte field (sizes, lengths) with an extreme value
            value = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000, rng.randrange(1 << 32)))
            buffer[position : position + 4] = value.to_bytes(4, rng.choice(("big", "little")))
    return bytes(buffer)


def run_one(data: bytes) -> str:
    """'ok' or the rejection reason; anything else propagates (a crash)."""
    try:
        out = preprocess(data, MAX_PIXELS)
    except ImageRejected as error:
        return error.reason
    if out.shape != (28, 28) or out.dtype != np.uint8:
        raise AssertionError(f"bad output {out.shape} {out.dtype}")
    return "ok"
