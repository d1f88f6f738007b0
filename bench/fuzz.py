"""Long fuzz of decode-and-preprocess: mutated uploads of every accepted format, on all cores.

    python -m bench.fuzz --inputs 100000 [--workers 2] [--seed 0] [--crashes bench/crashes]

Any exception other than the documented rejections is a crash: its input is written to the
crashes folder (to become a catalogue case) and the command exits 1.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import platform
import random
import sys
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path


def _work(args: tuple[int, int, int]) -> tuple[collections.Counter[str], list[tuple[bytes, str]]]:
    from harness.fuzzing import mutate, run_one, seed_corpus

    warnings.simplefilter("ignore")
    start, count, seed = args
    seeds = seed_corpus()
    outcomes: collections.Counter[str] = collections.Counter()
    crashes = []
    for index in range(start, start + count):
        rng = random.Random(seed * 1_000_003 + index)
        data = mutate(rng.choice(seeds), rng)
        try:
            outcomes[run_one(data)] += 1
        except Exception:
            outcomes["CRASH"] += 1
            crashes.append((data, traceback.format_exc(limit=3)))
    return outcomes, crashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crashes", type=Path, default=Path("bench/crashes"))
    args = parser.parse_args(argv)

    chunk = 1000
    jobs = [(start, min(chunk, args.inputs - start), args.seed) for start in range(0, args.inputs, chunk)]
    totals: collections.Counter[str] = collections.Counter()
    crashes: list[tuple[bytes, str]] = []
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for _done, (outcomes, found) in enumerate(pool.imap_unordered(_work, jobs), 1):
            totals.update(outcomes)
            crashes.extend(found)
            print(f"\r{sum(totals.values()):>8} inputs, {totals['CRASH']} crashes", end="", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    print(file=sys.stderr)
    print(f"# fuzz: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {args.workers} workers, seed {args.seed}")
    print(f"{sum(totals.values())} inputs in {seconds:.0f} s ({sum(totals.values()) / seconds:.0f}/s)")
    print("| outcome | count |\n|---|---|")
    for outcome, count in totals.most_common():
        print(f"| {outcome} | {count} |")
    if crashes:
        args.crashes.mkdir(parents=True, exist_ok=True)
        for index, (data, trace) in enumerate(crashes):
            (args.crashes / f"crash-{index}.bin").write_bytes(data)
            (args.crashes / f"crash-{index}.txt").write_text(trace)
        print(f"{len(crashes)} crashing inputs written to {args.crashes}/")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
