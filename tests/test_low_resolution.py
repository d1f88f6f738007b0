"""Digits scanned at low resolution (model/synth/low_resolution.py): a few pixels' worth of detail, scaled
back up, soft; the label kept."""

import numpy as np

from model.synth.low_resolution import SIDES, UP, low_resolution, low_resolution_source
from model.synth.upload_simulator import simulate_many


def _detail(image: np.ndarray) -> int:
    """Distinct rows of an image: how many pixels' worth of detail it has along one axis."""
    return len({row.tobytes() for row in (image * 255).round().astype(np.uint8)})


def test_a_scan_has_no_more_detail_than_its_tiny_original():
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 8:20] = 255
    digit[8:20, 12:16] = 0  # a ring: a 0
    sides = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        side = int(np.random.default_rng(seed).integers(SIDES[0], SIDES[1] + 1))
        scan = low_resolution(digit, rng)
        assert scan.shape == (UP, UP) and scan.min() >= 0 and scan.max() <= 1
        assert scan.max() > 0.3 and scan[UP // 2, UP // 2] < scan.max()  # still ink, the hole still darker
        sides.append(side)
    assert min(sides) >= SIDES[0] and max(sides) <= SIDES[1] and len(set(sides)) > 3


def test_nearest_neighbour_enlargement_keeps_the_tiny_grid():
    digit = (np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)
    # some of 40 draws are nearest-neighbour with almost no blur: a few distinct rows, not 112
    scans = [low_resolution(digit, np.random.default_rng(seed)) for seed in range(40)]
    assert min(_detail(scan) for scan in scans) <= 3 * SIDES[1] < UP


def test_scans_become_uploads_the_network_can_see():
    digits = np.zeros((4, 28, 28), np.uint8)
    digits[:, 5:23, 11:17] = 255
    images = simulate_many(low_resolution_source(digits), 8, 0, workers=1, progress=False)
    assert images.shape == (8, 28, 28) and (images.reshape(8, -1).max(1) > 0).all()
