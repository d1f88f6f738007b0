"""The drawing battery's section of the report: digits, letters and doodles drawn on the page.

:func:`tally` turns answers (what was drawn, the class, refer, the reason) into the tables the
report and ``python -m tools.drawn_digits`` (the same drawings through the real page in Chromium)
print: per digit, accepted-and-right, read right, referred; accuracy of the accepted; per source;
letters and doodles referred and said "unfamiliar". :func:`in_process` answers the drawings
without a browser (drawn with ``model.synth.pen.draw``, as the canvas draws them) for ``model.evaluate``;
:func:`gallery` draws a sheet of drawings with their answers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from model.calibration import Calibration
from model.network import BayesianNet
from model.report.uploads import decisions, score
from model.synth.drawing_battery import Drawing
from model.synth.pen import seen


@dataclass(frozen=True)
class Answer:
    """One drawing's answer, from the API (the page) or in process."""

    digit: int
    refer: bool
    reason: str | None  # "uncertain", "unfamiliar" or None
    entropy: float


def in_process(net: BayesianNet, drawings: list[Drawing], calibration: Calibration, samples: int) -> list[Answer]:
    """Each drawing as the page's PNG, through the service's transform and the network."""
    images = []
    for drawing in drawings:
        digit = seen(drawing.png())
        images.append(np.zeros((28, 28), np.uint8) if digit is None else digit)
    scores = score(net, np.stack(images), samples)
    uncertain, unfamiliar = decisions(scores, calibration)  # the service's refer rule
    return [Answer(int(digit), bool(u or f), "unfamiliar" if f else "uncertain" if u else None, float(e))
            for digit, u, f, e in zip(scores.predicted, uncertain, unfamiliar, scores.entropy, strict=True)]


def _share(values: list[bool]) -> float | None:
    return float(np.mean(values)) if values else None


def tally(drawings: list[Drawing], answers: list[Answer]) -> dict[str, Any]:
    """The battery's numbers (JSON-ready)."""
    digits = [(d, a) for d, a in zip(drawings, answers, strict=True) if d.kind == "digit"]
    right = [a.digit == int(d.label) for d, a in digits]
    accepted = [not a.refer for _, a in digits]
    referred_reasons = [a.reason for _, a in digits if a.refer]
    report: dict[str, Any] = {
        "digit_drawings": len(digits),
        "accepted_and_right": _share([r and k for r, k in zip(right, accepted, strict=True)]),
        "read_right": _share(right),
        "referred": _share([not k for k in accepted]),
        "accepted_accuracy": _share([r for r, k in zip(right, accepted, strict=True) if k]),
        "referred_digits_uncertain": _share([r == "uncertain" for r in referred_reasons]),
        "per_digit": {}, "per_source": {}, "per_pen": {}, "non_digits": {},
    }
    for key, group in (("per_digit", lambda d: d.label), ("per_source", lambda d: d.source),
                       ("per_pen", lambda d: f"{d.pen:g} px")):
        for name in sorted({group(d) for d, _ in digits}):
            chosen = [(d, a) for d, a in digits if group(d) == name]
            report[key][name] = {
                "count": len(chosen),
                "accepted_and_right": _share([a.digit == int(d.label) and not a.refer for d, a in chosen]),
                "read_right": _share([a.digit == int(d.label) for d, a in chosen]),
                "referred": _share([a.refer for _, a in chosen]),
            }
    for kind in ("letter", "doodle"):
        chosen = [(d, a) for d, a in zip(drawings, answers, strict=True) if d.kind == kind]
        if not chosen:
            continue
        referred = [a for _, a in chosen if a.refer]
        report["non_digits"][kind + "s"] = {
            "count": len(chosen),
            "referred": _share([a.refer for _, a in chosen]),
            "referred_unfamiliar": _share([a.reason == "unfamiliar" for a in referred]),
            "accepted": sorted({f"{d.label} as {a.digit}" for d, a in chosen if not a.refer}),
        }
    return report


def markdown(report: dict[str, Any]) -> str:
    """The tally as the tables the README and the bench print."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f} %"

    lines = [f"{report['digit_drawings']} digit drawings: accepted and right {pct(report['accepted_and_right'])}, "
             f"read right {pct(report['read_right'])}, referred {pct(report['referred'])}, accuracy of the accepted "
             f"{pct(report['accepted_accuracy'])}; referred digits said \"uncertain\": "
             f"{pct(report['referred_digits_uncertain'])}", "",
             "| digit | drawings | accepted and right | read right | referred |", "|---|---|---|---|---|"]
    for key in ("per_digit", "per_source", "per_pen"):
        for name, row in report[key].items():
            lines.append(f"| {name} | {row['count']} | {pct(row['accepted_and_right'])} | {pct(row['read_right'])} | "
                         f"{pct(row['referred'])} |")
    lines += ["", "| non-digits | drawings | referred | of those, \"unfamiliar\" | accepted (as) |",
              "|---|---|---|---|---|"]
    for name, row in report["non_digits"].items():
        lines.append(f"| {name} | {row['count']} | {pct(row['referred'])} | {pct(row['referred_unfamiliar'])} | "
                     f"{', '.join(row['accepted']) or '-'} |")
    return "\n".join(lines)


def gallery(drawings: list[Drawing], answers: list[Answer], out: Path, images: list[bytes] | None = None,
            columns: int = 10, tile: int = 112) -> Path:
    """A sheet of drawings (the page's PNGs, or ``images``, e.g. the page's own canvas exports),
    each with its answer: the digit, accepted (green) or referred (red) and why."""
    rows = -(-len(drawings) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 16)), "white")
    pen = ImageDraw.Draw(sheet)
    for index, (drawing, answer) in enumerate(zip(drawings, answers, strict=True)):
        data = images[index] if images is not None else drawing.png()
        picture = Image.open(io.BytesIO(data)).convert("RGB").resize((tile - 4, tile - 4))
        row, column = divmod(index, columns)
        x, y = column * tile, row * (tile + 16)
        sheet.paste(picture, (x + 2, y + 2))
        ok = (not answer.refer and drawing.kind == "digit" and answer.digit == int(drawing.label)) or \
            (answer.refer and drawing.kind != "digit")
        verdict = f"accepted {answer.digit}" if not answer.refer else \
            ("not a digit" if answer.reason == "unfamiliar" else f"unsure, {answer.digit}?")
        pen.rectangle([x + 1, y + 1, x + tile - 2, y + tile - 2], outline=(0, 140, 0) if ok else (200, 0, 0), width=2)
        pen.text((x + 3, y + tile), f"{drawing.label}: {verdict}", fill=(0, 110, 0) if ok else (190, 0, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
