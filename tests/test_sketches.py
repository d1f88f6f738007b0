"""Digits sketched in code (model/sketches.py): every skeleton draws visible ink inside the box,
the source labels them index % 10, and, as uploads, the shipped network reads most of them as
their digit (they are digits, not marks)."""

from __future__ import annotations

import numpy as np

from model.sketches import SKELETONS, as_uploads, labels, sketch, sketch_source
from service.predictor import Predictor
from tests.conftest import SHIPPED


def test_every_skeleton_draws_visible_ink_inside_the_box():
    for digit, variants in SKELETONS.items():
        for variant in range(len(variants)):
            rng = np.random.default_rng([digit, variant])
            ink = sketch(digit, rng)
            assert ink.shape == (64, 64) and ink.dtype == np.float32
            assert ink.min() >= 0.0 and ink.max() <= 1.0 and ink.sum() > 20
            assert ink[0].max() < 0.5 and ink[-1].max() < 0.5  # the pen stays off the edges


def test_the_source_labels_each_sketch_with_its_digit_and_is_seeded():
    source = sketch_source()
    first, fills = source(13, np.random.default_rng(5))
    again, _ = source(13, np.random.default_rng(5))
    assert not fills and np.array_equal(first, again)
    assert list(labels(12)) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_sketches_as_uploads_are_read_as_their_digits():
    predictor = Predictor.from_checkpoint(SHIPPED)
    digits, truth = as_uploads(200, seed=7)
    answers = predictor.predict(digits)
    correct = np.mean([a.digit == t for a, t in zip(answers, truth, strict=True)])
    assert len(digits) >= 195 and correct >= 0.8  # measured: 0.89 on the shipped model, never trained on them
