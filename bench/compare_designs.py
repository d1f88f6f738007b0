"""Designs side by side: one markdown row per evaluated checkpoint, from `model.evaluate` reports.

    python -m bench.compare_designs NAME=reports/evaluation.json NAME=runs/x/report/evaluation.json ...

Arrays columns come from the arrays section (MNIST test, N = 100; AUROC against Fashion-MNIST
test by entropy, and by the second signal where the design has one). Upload columns come from
the operating-point table: every design is recalibrated the same way on the *validation* digit
uploads (alpha, delta 5 %, and the unfamiliar budget where the design has a second signal), and
the row is read off the test families. Nothing here chooses anything: it prints.
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
    ("printed symbols", "symbols"),
    ("photo crops", "photo crops"),
    ("generated shapes", "gen. shapes"),
    ("generated scribbles", "gen. scribbles"),
    ("generated noises", "gen. noise"),
)


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def operating_row(report: dict[str, Any], alpha: float, budget: float | None) -> dict[str, Any] | None:
    for row in report["uploads"]["operating_points"]:
        if row["alpha"] == alpha and row["unfamiliar_budget"] == budget and not row.get("refused"):
            return row
    return None


def table(reports: dict[str, dict[str, Any]], alpha: float, budget: float) -> str:
    head = ["design", "arrays acc.", "ECE", "AUROC Fashion (entropy / 2nd)", "val. referred",
            *[label for _, label in FAMILIES]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, report in reports.items():
        has_second = any(r["unfamiliar_budget"] for r in report["uploads"]["operating_points"])
        row = operating_row(report, alpha, budget if has_second else None)
        ood = report.get("ood", {})
        second = ood.get("auroc_unfamiliarity")
        cells = [name, _pct(report["accuracy"], 2), _pct(report["ece"], 2),
                 f"{ood.get('auroc_entropy', float('nan')):.4f} / " + ("–" if second is None else f"{second:.4f}")]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_designs", description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", help="NAME=path/to/evaluation.json")
    parser.add_argument("--alpha", type=float, default=0.002)
    parser.add_argument("--budget", type=float, default=0.01, help="unfamiliar budget for designs with a second signal")
    args = parser.parse_args(argv)
    reports = {}
    for item in args.reports:
        name, _, path = item.partition("=")
        reports[name] = json.loads(Path(path).read_text())
    print(table(reports, args.alpha, args.budget))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
