"""The promotion rule, on hand-made numbers: each of its three conditions can keep the live model."""

from __future__ import annotations

import copy
from typing import Any

from model.promote import report_families, verdict


def side(held: float, families: dict[str, float], guarantee: bool = True) -> dict[str, Any]:
    return {"held_out": {"digits accepted and right": held, "non-digits referred": 0.9}, "families": families,
            "guarantee_held": guarantee, "model_version": "x"}


def test_better_on_held_out_items_within_a_point_everywhere_and_the_guarantee_promotes() -> None:
    live = side(0.25, {"uploads: accepted and right": 0.96, "printed letters: referred": 0.81})
    candidate = side(0.80, {"uploads: accepted and right": 0.951, "printed letters: referred": 0.83})
    assert verdict(live, candidate) == (True, [])


def test_each_condition_alone_keeps_the_live_model() -> None:
    live = side(0.25, {"uploads: accepted and right": 0.96})
    good = side(0.80, {"uploads: accepted and right": 0.96})
    not_better = copy.deepcopy(good)
    not_better["held_out"]["digits accepted and right"] = 0.25
    worse_family = side(0.80, {"uploads: accepted and right": 0.949})
    broken = side(0.80, {"uploads: accepted and right": 0.96}, guarantee=False)
    assert verdict(live, not_better)[1] == ["not better on the held-out labelled digits"]
    assert verdict(live, worse_family)[1] == ["uploads: accepted and right: 94.9 against 96.0"]
    assert verdict(live, broken)[1] == ["the guarantee did not hold on the test split"]


def test_every_family_of_the_report_is_compared() -> None:
    import json
    from pathlib import Path

    families = report_families(json.loads(Path("reports/evaluation.json").read_text()))
    assert {"MNIST arrays: accuracy", "uploads: accepted and right", "pen drawings: accepted and right",
            "plain PNG files: accepted and right", "drawn digits: accepted and right",
            "printed digits: accepted and right", "clothing (Fashion-MNIST test): referred",
            "drawn doodles: referred", "low-resolution scans: accepted and right"} <= set(families)
    assert len(families) == 20 and all(0.0 <= value <= 1.0 for value in families.values())


def test_each_held_out_item_is_judged_by_its_channels_rule(monkeypatch) -> None:
    """The same digit as a file and as a drawing: with the file threshold at its entropy and the drawn one
    below, the file is accepted and read right and the drawing referred (under the file rule alone: both)."""
    from dataclasses import replace

    import numpy as np
    import torch

    from harness.inputs import SHIPPED, load_digit, mnist_fixtures
    from model import promote
    from model.calibration import served
    from model.checkpoint import as_served, load_checkpoint
    from model.reviewed import Reviewed
    from model.scoring import predict_images

    net, meta = load_checkpoint(SHIPPED)
    rules = served(meta, "float32")
    fixture, label = mnist_fixtures()[0]
    pixels = np.stack([load_digit(fixture)] * 2)
    torch.manual_seed(0)  # the draws held_out_scores makes with its default seed
    as_file, as_drawing = predict_images(as_served(net, rules["file"], "float32"), pixels, 50).entropy.tolist()
    assert as_drawing > 0
    rules = {"file": replace(rules["file"], threshold=as_file),
             "drawn": replace(rules["drawn"], threshold=as_drawing / 2)}
    monkeypatch.setattr(promote, "served", lambda _meta, _precision: rules)
    held = Reviewed(pixels, [str(label)] * 2, ["audit"] * 2, [label] * 2, ["served"] * 2, ["a", "b"], [False] * 2,
                    [0.02] * 2, [1.8e9] * 2, ["file", "drawn"])
    scores = promote.held_out_scores(SHIPPED, held, 50)
    assert scores == {"digits": 2, "non_digits": 0, "digits accepted and right": 0.5, "non-digits referred": None}
