"""Which printed letters and symbols are still accepted as digits, glyph by glyph.

The report's printed families (``model.report.uploads``: every letter and symbol in every font on
the machine, one simulated upload each) scored by a checkpoint as it is served in one precision,
at that precision's threshold and reason rule. Prints, per family, the share referred, then every
character accepted more than ``--at-least`` times: how many of its renders were accepted and the
digits they were read as, most often first.

    python -m bench.printed_glyphs [--checkpoint checkpoints/bnn.safetensors] [--precision float32]

The report's pools (cached by ``make evaluate``) and no other data; the Monte Carlo draws are seeded.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch

from model.calibration import calibrations
from model.checkpoint import as_served, load_checkpoint
from model.data import DEFAULT_CACHE
from model.mnist import load_mnist
from model.precision import PRECISIONS
from model.report.uploads import build_families, decisions, score
from model.synth.families import LETTERS, SYMBOLS, printed

FAMILIES = {"printed letters": LETTERS, "printed symbols": SYMBOLS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.printed_glyphs", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--at-least", type=int, default=2, help="list a character accepted more often than this")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    net, meta = load_checkpoint(args.checkpoint)
    calibration = calibrations(meta)[args.precision]
    served = as_served(net, calibration, args.precision)
    families = {family.name: family for family in build_families(load_mnist(), None, args.workers, args.cache_dir)}
    print(f"{meta['model_version']} in {args.precision}, threshold {calibration.threshold:.4f} nats, N {args.samples}")
    for name, chars in FAMILIES.items():
        family = families[name]
        _, labels = printed(chars)
        if len(labels) != len(family.images):
            raise SystemExit(f"{name}: {len(family.images)} renders for {len(labels)} glyphs (blank renders dropped?)")
        scores = score(served, family.images, args.samples)
        uncertain, unfamiliar = decisions(scores, calibration)
        accepted = ~(uncertain | unfamiliar)
        renders = Counter(labels)
        read_as: dict[str, Counter[int]] = {char: Counter() for char in renders}
        for char, keep, digit in zip(labels, accepted, scores.predicted, strict=True):
            if keep:
                read_as[char][int(digit)] += 1
        print(f"\n{name}: {len(labels)} renders, {1 - accepted.mean():.1%} referred; per character, accepted of "
              f"its renders (one per font that has it: {min(renders.values())} to {max(renders.values())}), read as:")
        listed = sorted((char for char in renders if sum(read_as[char].values()) > args.at_least),
                        key=lambda char: -sum(read_as[char].values()))
        print(", ".join(f"{char} {sum(read_as[char].values())} ({'/'.join(str(d) for d, _ in read_as[char].most_common(2))})"
                        for char in listed) or "none")
        print(f"every other character accepted at most {args.at_least} times ({len(renders) - len(listed)} of {len(renders)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
