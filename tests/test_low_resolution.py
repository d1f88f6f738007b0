"""Digits scanned at low resolution (model/synth/low_resolution.py): a few pixels' worth of detail, scaled
back up, soft."""

import numpy as np
from PIL import Image

from model.synth.low_resolution import SIDES, UP, low_resolution, low_resolution_source, scanned
from model.synth.upload_simulator import simulate_many


def _ring() -> np.ndarray:
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 8:20] = 255
    digit[8:20, 12:16] = 0  # a ring: a 0
    return digit


def _distinct_rows(image: np.ndarray) -> int:
    return len({row.tobytes() for row in (image * 255).round().astype(np.uint8)})


def test_a_scan_has_no_more_detail_than_its_tiny_original():
    detailed = (np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)  # every row different
    for side in (7, 10, 14):
        blocky = scanned(detailed, side, Image.Resampling.NEAREST, 0.0)
        assert blocky.shape == (UP, UP) and _distinct_rows(blocky) == side  # one row per sensor row
    assert _distinct_rows(scanned(detailed, 28, Image.Resampling.NEAREST, 0.0)) == 28


def test_blur_softens_every_edge_and_keeps_the_hole():
    soft = scanned(_ring(), 10, Image.Resampling.BICUBIC, 3.0)
    assert soft.max() < 0.999 and soft.max() > 0.3  # no pixel is full ink, the ink is still there
    assert soft[UP // 2, UP // 2] < 0.5 * soft.max()  # the ring's hole is still darker than its stroke


def test_random_scans_draw_sides_resamplings_and_blurs():
    scans = [low_resolution(_ring(), np.random.default_rng(seed)) for seed in range(30)]
    rows = [_distinct_rows(scan) for scan in scans]
    assert min(rows) <= SIDES[1] < max(rows)  # some blocky (nearest, little blur), some smooth
    assert len({scan.tobytes() for scan in scans}) == 30


def test_scans_become_uploads_the_network_can_see():
    digits = np.stack([_ring()] * 4)
    images = simulate_many(low_resolution_source(digits), 8, 0, workers=1, progress=False)
    assert images.shape == (8, 28, 28) and (images.reshape(8, -1).max(1) > 0).all()
