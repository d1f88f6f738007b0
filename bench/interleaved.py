"""This checkout's service against another checkout's, in interleaved rounds: a fairer ratio than
one run on a machine whose speed drifts (each round starts both services afresh, one after the
other, and drives ``/predict`` with the fixture digit as multipart under ``wrk``).

    git worktree add /tmp/baseline COMMIT
    python -m bench.interleaved /tmp/baseline [--rounds 4] [--seconds 6] [--connections 16] [--env KEY=VALUE ...]
        [--baseline-env KEY=VALUE ...]

``--env`` applies to both services (e.g. ``BNN_PRECISION=float32``), ``--baseline-env`` to the
baseline only, after it (e.g. the model shipped before, served as it was: ``BNN_PRECISION=float32``).
Prints images/s per round and the ratio of the means.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from bench.common import header
from bench.service import Variant, serving
from bench.wrk import Request, multipart, run_wrk
from harness.inputs import mnist_fixtures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interleaved", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("baseline", type=Path, help="the other checkout (its own code and checkpoint)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0, help="per service per round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for both services")
    parser.add_argument("--baseline-env", nargs="*", default=[], help="KEY=VALUE for the baseline only")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    baseline_env = {**env, **dict(item.split("=", 1) for item in args.baseline_env)}
    form, form_type = multipart(mnist_fixtures()[0][0].read_bytes())
    request = Request("/predict", "POST", form, (("Content-Type", form_type),))
    sides = {"this checkout": (None, env), f"baseline ({args.baseline})": (args.baseline.resolve(), baseline_env)}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    print(header(f"/predict multipart, {args.connections} connections, {args.rounds} interleaved rounds of "
                 f"{args.seconds:g} s, env {env or 'none'}, baseline's {baseline_env or 'none'}"))
    print("| round | " + " | ".join(f"{name} images/s" for name in sides) + " |")
    print("|---:|" + "---:|" * len(sides))
    for round_ in range(1, args.rounds + 1):
        for name, (cwd, side_env) in sides.items():
            with serving(Variant(name, "service", side_env, (), cwd=cwd)) as url:
                run_wrk(url, request, 4, 2.0, timeout_s=30)  # warm-up
                rates[name].append(run_wrk(url, request, args.connections, args.seconds, threads=2,
                                           timeout_s=30).images_per_s)
        print(f"| {round_} | " + " | ".join(f"{rates[name][-1]:.0f}" for name in sides) + " |", flush=True)
    ours, theirs = (statistics.mean(values) for values in rates.values())
    print(f"\nmeans: {ours:.0f} vs {theirs:.0f} images/s: this checkout {ours / theirs:.2f}x the baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
