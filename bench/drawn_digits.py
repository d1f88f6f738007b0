"""Digits drawn the way the try-it page's canvas draws them (round pen on white, 280 x 280 PNG),
through the service's preprocessing and the shipped model: what a user drawing on the page sees.

    python -m bench.drawn_digits [--checkpoint checkpoints/bnn.safetensors]

Ten hand-built stroke sets (one per digit: arcs and straight strokes) at three pen widths; prints
each answer (digit, Accepted/Referred, entropy) and the counts. A fixed, small battery: a smoke
test of canvas drawings, not a measured rate. Then ``--sketches`` digits sketched in code
(``model/sketches.py``, seed 41; training with ``--sketches`` uses seed 31) rendered as uploads:
the share read correctly and the share referred, per digit.
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from model.sketches import as_uploads
from service.predictor import Predictor
from service.preprocess import preprocess

Points = list[tuple[float, float]]
SIDE = 280
WIDTHS = (12, 18, 24)


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, steps: int = 24) -> Points:
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(start, end, steps)]


STROKES: dict[int, list[Points]] = {
    0: [arc(140, 140, 60, 95, 0, 360)],
    1: [[(150, 45), (140, 140), (135, 235)]],
    2: [[*arc(140, 95, 55, 50, 200, 360), (190, 120), (90, 235), (200, 235)]],
    3: [arc(135, 90, 50, 45, 220, 450), arc(135, 185, 55, 50, 270, 500)],
    4: [[(150, 40), (80, 170), (210, 170)], [(170, 110), (165, 240)]],
    5: [[(190, 45), (100, 45), (95, 125)], arc(135, 170, 60, 60, 240, 500)],
    6: [arc(150, 110, 60, 80, 220, 300) + arc(140, 180, 50, 55, 180, 540)],
    7: [[(70, 55), (215, 50), (120, 235)]],
    8: [arc(140, 90, 45, 45, 0, 360), arc(140, 185, 55, 50, 0, 360)],
    9: [arc(140, 95, 50, 50, 0, 360), [(190, 95), (175, 235)]],
}


def render(strokes: list[Points], width: int) -> bytes:
    """Strokes as the page draws them: black, round caps and joins, on white, as PNG."""
    image = Image.new("L", (SIDE, SIDE), 255)
    draw = ImageDraw.Draw(image)
    for points in strokes:
        draw.line(points, fill=0, width=width, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drawn_digits", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--sketches", type=int, default=1000, help="sketched digits rendered as uploads (0: none)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)  # the Monte Carlo draws too: the same numbers each run
    predictor = Predictor.from_checkpoint(args.checkpoint)
    print(f"# drawn digits: {predictor.model_version}, N = {predictor.default_samples}\n")
    print("| pen | " + " | ".join(str(d) for d in STROKES) + " |")
    print("|---|" + "---|" * len(STROKES))
    correct = accepted = 0
    for width in WIDTHS:
        digits = [preprocess(render(strokes, width), 40_000_000) for strokes in STROKES.values()]
        answers = predictor.predict(digits)
        cells = []
        for truth, answer in zip(STROKES, answers, strict=True):
            cells.append(f"{answer.digit} {'R' if answer.refer else 'A'} {answer.entropy:.2f}")
            correct += answer.digit == truth
            accepted += answer.digit == truth and not answer.refer
        print(f"| {width} px | " + " | ".join(cells) + " |")
    total = len(WIDTHS) * len(STROKES)
    print(f"\ncell: answered digit, A(ccepted) or R(eferred), entropy (nats)\ncorrect {correct}/{total}, "
          f"accepted and correct {accepted}/{total}")
    if args.sketches:
        sketches_as_uploads(predictor, args.sketches)
    return 0


def sketches_as_uploads(predictor: Predictor, count: int, seed: int = 41) -> None:
    seen, truth = as_uploads(count, seed)
    answers = predictor.predict(seen)
    right = np.array([a.digit == t for a, t in zip(answers, truth, strict=True)])
    referred = np.array([a.refer for a in answers])
    labels = np.array(truth)
    print(f"\n{len(seen)} sketched digits as uploads: {right.mean():.1%} read correctly, {referred.mean():.1%} "
          f"referred, accepted accuracy {right[~referred].mean():.2%}")
    print("referred per digit: " + ", ".join(f"{d}: {referred[labels == d].mean():.0%}" for d in range(10)))


if __name__ == "__main__":
    raise SystemExit(main())
