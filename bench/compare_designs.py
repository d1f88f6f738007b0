"""Designs side by side: one markdown row per evaluated checkpoint, from `model.evaluate` reports.

    python -m bench.compare_designs NAME=reports/evaluation.json NAME=runs/x/report/evaluation.json ...

Arrays columns come from the arrays section (MNIST test, N = 100; AUROC against Fashion-MNIST
test by entropy). Upload columns come from the operating-point table: every design is
recalibrated the same way on the *validation* mix (alpha, delta 5 %), and the row is read off
the test families. With ``--as-shipped``, each checkpoint under its own
calibration instead, across every section of the report: arrays, plain PNG files, uploads, pen
drawings, the drawing battery, printed digits and every non-digit family. Nothing here chooses
anything: it prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

FAMILIES = (
    ("MNIST test digits as uploads", "digit uploads referred"),
    ("MNIST test digits as uploads: accepted", "accepted acc."),
    ("printed digits: accepted", "printed digits: accepted acc."),
    ("clothing (Fashion-MNIST test)", "clothing"),
    ("printed letters", "letters"),
    ("printed letters unlike digits", "letters unlike digits"),
    ("printed symbols", "symbols"),
    ("photo crops", "photo crops"),
    ("generated shapes", "gen. shapes"),
    ("generated scribbles", "gen. scribbles"),
    ("generated noises", "gen. noise"),
)


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def operating_row(report: dict[str, Any], alpha: float) -> dict[str, Any] | None:
    for row in report["uploads"]["operating_points"]:  # reports of the retired second signal had budgets
        if row["alpha"] == alpha and row.get("unfamiliar_budget") is None and not row.get("refused"):
            return row
    return None


def table(reports: dict[str, dict[str, Any]], alpha: float) -> str:
    head = ["design", "arrays acc.", "ECE", "AUROC Fashion (entropy)", "val. referred",
            *[label for _, label in FAMILIES]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, report in reports.items():
        row = operating_row(report, alpha)
        ood = report.get("ood", {})
        cells = [name, _pct(report["accuracy"], 2), _pct(report["ece"], 2), f"{ood.get('auroc_entropy', float('nan')):.4f}"]
        if row is None:
            cells += ["refused"] + ["–"] * len(FAMILIES)
        else:
            cells.append(_pct(row["validation_referred"]))
            for key, _label in FAMILIES:
                if key.endswith(": accepted"):
                    cells.append(_pct(row.get(key.replace(": accepted", ": accepted accuracy")), 2))
                else:
                    cells.append(_pct(row.get(f"{key}: referred")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _family(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next((row for row in report["uploads"]["families"] if row["family"] == name), {})


def shipped_table(reports: dict[str, dict[str, Any]]) -> str:
    """Each checkpoint under its own calibration (percentages; "ref." = referred)."""
    head = ["checkpoint", "arrays acc. / ECE", "PNG files acc. / ECE / ref.", "uploads ref. / acc. of accepted",
            "pen drawings ref. / acc. of accepted", "drawn: accepted and right (worst digit)", "drawn: acc. of accepted",
            "printed digits ref.", *[label for key, label in FAMILIES[3:]], "generated pairs", "drawn letters",
            "drawn doodles", "non-digit referrals said unfamiliar (letters, clothing, noise)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, report in reports.items():
        files = report["png_files"]["files"]
        parts = report["service_view"]["parts"]
        drawn = report["drawings"]["in_process"]
        worst = min(row["accepted_and_right"] for row in drawn["per_digit"].values())
        uploads, pen = parts["uploads"], parts["pen drawings"]
        unfamiliar = [_family(report, f).get("unfamiliar_of_referred") for f in
                      ("printed letters", "clothing (Fashion-MNIST test)", "generated noises")]
        cells = [name, f"{_pct(report['accuracy'], 2)} / {_pct(report['ece'], 2)}",
                 f"{_pct(files['accuracy'], 2)} / {_pct(files['ece'], 2)} / {_pct(files['referred'])}",
                 f"{_pct(uploads['referred'])} / {_pct(uploads['accepted_accuracy'], 2)}",
                 f"{_pct(pen['referred'])} / {_pct(pen['accepted_accuracy'], 2)}",
                 f"{_pct(drawn['accepted_and_right'])} ({_pct(worst, 0)})", _pct(drawn["accepted_accuracy"], 2),
                 _pct(_family(report, "printed digits").get("referred"))]
        cells += [_pct(_family(report, key).get("referred")) for key, _ in FAMILIES[3:]]
        cells += [_pct(_family(report, "generated pairs").get("referred")),
                  _pct(drawn["non_digits"]["letters"]["referred"]), _pct(drawn["non_digits"]["doodles"]["referred"]),
                  " / ".join(_pct(value, 0) for value in unfamiliar)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_designs", description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", help="NAME=path/to/evaluation.json")
    parser.add_argument("--alpha", type=float, default=0.002)
    parser.add_argument("--as-shipped", action="store_true", help="each under its own calibration, every section")
    args = parser.parse_args(argv)
    reports = {}
    for item in args.reports:
        name, _, path = item.partition("=")
        reports[name] = json.loads(Path(path).read_text())
    print(shipped_table(reports) if args.as_shipped else table(reports, args.alpha))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
