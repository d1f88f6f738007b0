"""Long fuzz of decode-and-preprocess: mutated uploads of every accepted format, on all cores; or
(``--routes``) of every route of the app, with generated requests.

    python -m tools.fuzz --inputs 100000 [--workers 2] [--seed 0] [--crashes fuzz-crashes]
    python -m tools.fuzz --routes --examples 2000 [--only /v2]

Decoding: any exception other than the documented rejections is a crash: its input is written to
the crashes folder (to become a catalogue case) and the command exits 1. Routes: the app built in
process with every route (``harness.route_fuzzing.fuzz_settings``), ``--examples`` generated requests per
route (``harness.route_fuzzing.requests_for``, the strategies tests/test_fuzz_routes.py runs 40 of); a 5xx,
an answer over ``REQUEST_BUDGET_S`` or a memory growth over ``MEMORY_BUDGET_BYTES`` is a failure
(hypothesis shrinks it to a small request, printed), and the command exits 1.
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
from typing import Any


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


def fuzz_route(client: Any, method: str, template: str, known: Any, examples: int,
               statuses: collections.Counter[int]) -> float:
    """``examples`` generated requests to one route, their statuses counted; the slowest answer's seconds.
    AssertionError (hypothesis's shrunk example) at the first failing request."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from harness.route_fuzzing import check, requests_for, send

    slowest = 0.0

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def drive(data: st.DataObject) -> None:
        nonlocal slowest
        request = data.draw(requests_for(method, template, known))
        outcome = send(client, request)
        statuses[outcome.status] += 1
        slowest = max(slowest, outcome.seconds)
        check(request, outcome)

    drive()
    return slowest


def fuzz_routes(examples: int, only: str | None) -> int:
    """Every route (or those whose template contains ``only``), ``examples`` requests each; a table of
    statuses and the slowest answer per route, then each failure."""
    import tempfile

    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from harness import candidates
    from harness.inputs import mnist_fixtures
    from harness.route_fuzzing import API_KEY, Known, fuzz_settings, route_table
    from service.app import create_app

    warnings.simplefilter("ignore")
    directory = Path(tempfile.mkdtemp(prefix="bnn-fuzz-"))
    good = candidates.good(directory / "models")
    app = create_app(fuzz_settings(directory), registry=CollectorRegistry())
    failures: list[str] = []
    print(f"# fuzz of the routes: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {examples} per route")
    print("| route | requests | statuses | slowest (s) |\n|---|---|---|---|")
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = [client.post("/predict", content=path.read_bytes(),
                               headers={"Content-Type": "image/png", "X-API-Key": API_KEY}).json()
                   for path, _ in mnist_fixtures()[:3]]
        known = Known(answers[0]["model_version"], tuple(str(answer.get("review_id")) for answer in answers),
                      (str(good), str(directory / "models")))
        for method, template in route_table(app):
            if only is not None and only not in template:
                continue
            statuses: collections.Counter[int] = collections.Counter()
            slowest = float("nan")
            try:
                slowest = fuzz_route(client, method, template, known, examples, statuses)
            except Exception as error:  # the shrunk failure: recorded, and on to the next route
                failures.append(f"{method} {template}: {str(error).splitlines()[0]}")
            counts = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
            print(f"| {method} {template} | {sum(statuses.values())} | {counts} | {slowest:.2f} |", flush=True)
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


def fuzz_inputs(inputs: int, workers: int, seed: int, crashes_to: Path) -> int:
    """``inputs`` mutated uploads decoded and preprocessed on ``workers`` processes; a table of outcomes;
    each crashing input written to ``crashes_to`` (exit 1)."""
    chunk = 1000
    jobs = [(start, min(chunk, inputs - start), seed) for start in range(0, inputs, chunk)]
    totals: collections.Counter[str] = collections.Counter()
    crashes: list[tuple[bytes, str]] = []
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for outcomes, found in pool.imap_unordered(_work, jobs):
            totals.update(outcomes)
            crashes.extend(found)
            print(f"\r{sum(totals.values()):>8} inputs, {totals['CRASH']} crashes", end="", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    print(file=sys.stderr)
    print(f"# fuzz: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {workers} workers, seed {seed}")
    print(f"{sum(totals.values())} inputs in {seconds:.0f} s ({sum(totals.values()) / seconds:.0f}/s)")
    print("| outcome | count |\n|---|---|")
    for outcome, count in totals.most_common():
        print(f"| {outcome} | {count} |")
    if not crashes:
        return 0
    crashes_to.mkdir(parents=True, exist_ok=True)
    for index, (data, trace) in enumerate(crashes):
        (crashes_to / f"crash-{index}.bin").write_bytes(data)
        (crashes_to / f"crash-{index}.txt").write_text(trace)
    print(f"{len(crashes)} crashing inputs written to {crashes_to}/")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=multiprocessing.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"), help="where crashing inputs are written")
    parser.add_argument("--routes", action="store_true", help="fuzz every route of the app instead of decoding")
    parser.add_argument("--examples", type=int, default=2000, help="with --routes: generated requests per route")
    parser.add_argument("--only", help="with --routes: only the routes whose template contains this")
    args = parser.parse_args(argv)
    if args.routes:
        return fuzz_routes(args.examples, args.only)
    return fuzz_inputs(args.inputs, args.workers, args.seed, args.crashes)


if __name__ == "__main__":
    raise SystemExit(main())
