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
            "plain PNG files: accepted and right", "drawn digits: accepted and right", "printed digits: accepted and right",
            "clothing (Fashion-MNIST test): referred", "drawn doodles: referred"} <= set(families)
    assert len(families) == 19 and all(0.0 <= value <= 1.0 for value in families.values())
