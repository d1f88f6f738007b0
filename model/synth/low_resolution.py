"""Digits scanned at low resolution: tiny originals scaled back up, blurred.

A digit scanned or photographed at a few pixels and enlarged by whatever viewer or client sent
it is soft, blocky or both, and no stroke of it is sharp. :func:`low_resolution_source` makes
that from an MNIST digit: the 28-px ink averaged down to :data:`SIDES` pixels (a sensor's
pixels), scaled back up to :data:`UP` pixels by nearest-neighbour, bilinear or bicubic
resampling, and blurred by a Gaussian of a random radius. The upload simulator
(``model.synth.upload_simulator``) then sends it as any other upload. Training draws it from
MNIST train (``model.synth.pools``); the report from MNIST test (``model.report.uploads``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from model.synth.upload_simulator import GlyphSource

SIDES = (7, 14)  # the tiny original's side in pixels, inclusive
UP = 112  # the side it is scaled back up to
BLUR = (0.0, 3.0)  # the Gaussian's radius at UP pixels
RESAMPLING = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)  # drawn uniformly
RESAMPLING_NAMES = [method.name for method in RESAMPLING]  # how the records and the cache key name them


def scanned(digit: np.ndarray, side: int, resampling: Image.Resampling, blur: float) -> np.ndarray:
    """uint8 ink ``[28, 28]`` -> ink ``[UP, UP]`` in [0, 1]: averaged down to ``side`` pixels, scaled back up
    by ``resampling``, blurred by a Gaussian of radius ``blur``."""
    tiny = Image.fromarray(digit).resize((side, side), Image.Resampling.BOX)
    enlarged = tiny.resize((UP, UP), resampling).filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(enlarged, dtype=np.float32) / 255.0


def low_resolution(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`scanned` at a random side in :data:`SIDES`, resampling and blur in :data:`BLUR`."""
    side = int(rng.integers(SIDES[0], SIDES[1] + 1))
    resampling = RESAMPLING[int(rng.integers(len(RESAMPLING)))]
    return scanned(digit, side, resampling, float(rng.uniform(*BLUR)))


def low_resolution_source(images: np.ndarray) -> GlyphSource:
    """Glyphs from uint8 digit images ``[N, 28, 28]``, each scanned at low resolution: image ``index % N``."""
    return lambda index, rng: (low_resolution(images[index % len(images)], rng), False)
