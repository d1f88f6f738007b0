"""The promotion rule, applied: a candidate replaces the live model only when it is better on the
held-out labelled items, no report family is worse by more than one point, and the guarantee
held on the test split.

    python -m model.promote --live checkpoints/bnn.safetensors --live-report reports/evaluation.json \
        --candidate candidate/bnn.safetensors --candidate-report candidate/reports/evaluation.json \
        --reviewed review-labels.ndjson

1. **Held-out labelled items** (the export's held-out split, ``model/reviewed.py``: every audit
   and 30 % of the rest by id hash; no fine-tune trained on them): the share of labelled digits
   each checkpoint accepts and reads right must be higher for the candidate, and the share of
   labelled non-digits (``not_a_digit``) it refers no lower by more than one point.
2. **Every report family** of ``model.evaluate`` (MNIST arrays, PNG files, uploads and pen
   drawings of MNIST test, drawn digits, printed digits: accepted and right; every non-digit
   family and the drawn letters and doodles: referred) no worse than one point below the live
   model's.
3. **The guarantee** (accepted error <= alpha, Clopper-Pearson at 1 - delta) held on the test
   split's service view in the candidate's report.

Prints the table and the verdict; exits 0 to promote, 1 not to. Each checkpoint is scored as it would be
served in float32 (``model.calibration.served``): each held-out item under its own channel's refer rule
(``model.reviewed.channel_refers``, as ``model.evaluate --reviewed`` judges them).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.calibration import served
from model.checkpoint import as_served, load_checkpoint
from model.reviewed import Reviewed, channel_refers, read_source, split
from model.scoring import predict_images

TOLERANCE = 0.01  # one point


def accepted_and_right(part: dict[str, Any]) -> float:
    return (1.0 - part["referred"]) * part["accepted_accuracy"]


def report_families(report: dict[str, Any]) -> dict[str, float]:
    """Every family of an evaluation report as a share where higher is better."""
    parts, drawn = report["service_view"]["parts"], report["drawings"]["in_process"]
    families = {"MNIST arrays: accuracy": report["accuracy"],
                **{f"{name}: accepted and right": accepted_and_right(part) for name, part in parts.items()},
                "drawn digits: accepted and right": drawn["accepted_and_right"]}
    for row in report["uploads"]["families"]:
        if row["kind"] == "digits":
            families[f"{row['family']}: accepted and right"] = accepted_and_right(row)
        else:
            families[f"{row['family']}: referred"] = row["referred"]
    for name, row in drawn["non_digits"].items():
        families[f"drawn {name}: referred"] = row["referred"]
    return families


def held_out_scores(checkpoint: Path, held: Reviewed, samples: int, seed: int = 0) -> dict[str, float | None]:
    """On the held-out labelled items, each judged by its channel's rule: digits accepted and read right,
    non-digits referred."""
    net, meta = load_checkpoint(checkpoint)
    rules = served(meta, "float32")
    if not rules:
        raise ValueError(f"{checkpoint} has no float32 calibration record for every channel: "
                         "run python -m model.calibrate")
    torch.manual_seed(seed)
    # the net at its served temperature: the file record's, as the service takes it (every channel's record shares it)
    result = predict_images(as_served(net, rules["file"], "float32"), held.inputs, samples)
    classes = result.mean_probs.argmax(-1).numpy()
    refer = channel_refers(result.entropy.numpy(), held.channels, rules)
    labels = np.array(held.labels)
    digits, non_digits = np.char.isdigit(labels.astype(str)), labels == "not_a_digit"
    right = np.array([label == str(mine) for label, mine in zip(labels, classes, strict=True)])
    return {"digits": int(digits.sum()), "non_digits": int(non_digits.sum()),
            "digits accepted and right": float((right & ~refer)[digits].mean()) if digits.any() else None,
            "non-digits referred": float(refer[non_digits].mean()) if non_digits.any() else None}


def verdict(live: dict[str, Any], candidate: dict[str, Any]) -> tuple[bool, list[str]]:
    """The rule (module docstring) on the two sides' numbers; the reasons it fails, if it does."""
    reasons = []
    mine, theirs = candidate["held_out"], live["held_out"]
    if mine["digits accepted and right"] is None or not (
            mine["digits accepted and right"] > (theirs["digits accepted and right"] or 0.0)):
        reasons.append("not better on the held-out labelled digits")
    if mine["non-digits referred"] is not None and theirs["non-digits referred"] is not None and \
            mine["non-digits referred"] < theirs["non-digits referred"] - TOLERANCE:
        reasons.append("refers fewer held-out non-digits (by more than a point)")
    for family, value in live["families"].items():
        other = candidate["families"].get(family)
        if other is None or other < value - TOLERANCE:
            reasons.append(f"{family}: {100 * (other or 0):.1f} against {100 * value:.1f}")
    if not candidate["guarantee_held"]:
        reasons.append("the guarantee did not hold on the test split")
    return not reasons, reasons


def side(checkpoint: Path, report_path: Path, held: Reviewed, samples: int) -> dict[str, Any]:
    report = json.loads(report_path.read_text())
    return {"held_out": held_out_scores(checkpoint, held, samples), "families": report_families(report),
            "guarantee_held": bool(report["service_view"]["overall"].get("guarantee_held")),
            "model_version": report.get("model_version")}


@dataclass(frozen=True)
class Comparison:
    """The two sides' numbers, the rule's verdict and its reasons."""

    live: dict[str, Any]
    candidate: dict[str, Any]
    held_out_items: int
    promote: bool
    reasons: list[str]


def compare(live: Path, live_report: Path, candidate: Path, candidate_report: Path, reviewed: Reviewed,
            samples: int = 100) -> Comparison:
    """The rule applied to two checkpoints and their ``model.evaluate`` reports, on ``reviewed``'s held-out split.
    A candidate without a float32 refer rule for every channel is refused (nothing to compare or serve)."""
    _, held = split(reviewed)
    before = side(live, live_report, held, samples)
    try:
        after = side(candidate, candidate_report, held, samples)
    except ValueError as error:
        return Comparison(before, {}, len(held), False, [str(error)])
    promote, reasons = verdict(before, after)
    return Comparison(before, after, len(held), promote, reasons)


def markdown(live: dict[str, Any], candidate: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.2f}"

    lines = [f"| what | live {live['model_version']} | candidate {candidate['model_version']} | change |",
             "|---|---:|---:|---:|"]
    rows = [(f"held out: {key}", live["held_out"][key], candidate["held_out"][key])
            for key in ("digits accepted and right", "non-digits referred")]
    rows += [(family, value, candidate["families"].get(family)) for family, value in live["families"].items()]
    for name, before, after in rows:
        change = "–" if before is None or after is None else f"{100 * (after - before):+.2f}"
        lines.append(f"| {name} | {pct(before)} | {pct(after)} | {change} |")
    lines.append(f"| guarantee held on the test split | {live['guarantee_held']} | {candidate['guarantee_held']} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.promote", description=__doc__.split("\n")[0])
    parser.add_argument("--live", type=Path, required=True)
    parser.add_argument("--live-report", type=Path, required=True, help="model.evaluate's evaluation.json of --live")
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--candidate-report", type=Path, required=True)
    parser.add_argument("--reviewed", required=True, help="the review export (its held-out split is used)")
    parser.add_argument("--token", default=None, help="a reviewer's token for an export URL")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON here")
    args = parser.parse_args(argv)
    result = compare(args.live, args.live_report, args.candidate, args.candidate_report,
                     read_source(args.reviewed, args.token), args.samples)
    live, candidate = result.live, result.candidate
    print(f"held-out labelled items: {result.held_out_items} ({live['held_out']['digits']} digits, "
          f"{live['held_out']['non_digits']} non-digits)\n")
    if candidate:
        print(markdown(live, candidate))
    print("\npromote" if result.promote else "\nkeep the live model: " + "; ".join(result.reasons))
    if args.out is not None:
        args.out.write_text(json.dumps({"live": live, "candidate": candidate, "promote": result.promote,
                                        "reasons": result.reasons}, indent=2) + "\n")
    return 0 if result.promote else 1


if __name__ == "__main__":
    raise SystemExit(main())
