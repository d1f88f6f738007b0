"""How each way of writing a digit fares: every sketched skeleton of the digits people write in
more than one way (a 1 plain, with a flag, with a flag and a foot; 4s open and closed; 7s of two
strokes, with a bar, ...; 9s with a curved, straight or boxy head), drawn as the drawing battery
draws its sketches, answered in process.

    python -m bench.sketch_variants [--checkpoint PATH ...] [--drawings 60] [--seed 777] [--precision float32]

Prints one markdown row per checkpoint: per skeleton (``model/synth/sketches.py``, "digit/index"),
the share accepted and right, and in brackets the share accepted and wrong. The sketches are the
battery's report source: no training pool draws them. A report, not a selection: nothing here
chooses anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from model.calibration import served_channels
from model.checkpoint import load_checkpoint
from model.report.drawings import in_process
from model.synth.drawing_battery import Drawing, sketched
from model.synth.sketches import SKELETONS

DIGITS = (1, 4, 7, 9)


def drawings(count: int, seed: int) -> dict[str, list[Drawing]]:
    rng = np.random.default_rng(seed)
    return {f"{digit}/{variant}": [sketched(digit, variant, rng) for _ in range(count)]
            for digit in DIGITS for variant in range(len(SKELETONS[digit]))}


def row(path: Path, sets: dict[str, list[Drawing]], precision: str) -> str:
    net, meta = load_checkpoint(path)
    calibration = served_channels(meta, precision)["drawn"]  # drawings: the drawn channel's rule
    cells = []
    for drawn in sets.values():
        answers = in_process(net, drawn, calibration, calibration.samples)
        right = np.mean([a.digit == int(d.label) and not a.refer for d, a in zip(drawn, answers, strict=True)])
        wrong = np.mean([a.digit != int(d.label) and not a.refer for d, a in zip(drawn, answers, strict=True)])
        cells.append(f"{100 * right:.0f}" + (f" ({100 * wrong:.0f})" if wrong else ""))
    return f"| {meta['model_version']} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sketch_variants", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, nargs="+", default=[Path("checkpoints/bnn.safetensors")])
    parser.add_argument("--drawings", type=int, default=60, help="per skeleton")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                        help="whose calibration record (the network runs in float32 in process)")
    args = parser.parse_args(argv)
    sets = drawings(args.drawings, args.seed)
    print(f"accepted and right % (accepted and wrong %), {args.drawings} drawings per skeleton, seed {args.seed}\n")
    print("| checkpoint | " + " | ".join(sets) + " |")
    print("|---|" + "---:|" * len(sets))
    for path in args.checkpoint:
        print(row(path, sets, args.precision), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
