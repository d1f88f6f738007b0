"""Load and soak: the real service at a sustainable concurrency for a long time, on loopback,
driven by wrk (``bench/wrk.py``; one wrk run per reported interval).

    python -m bench.soak [--minutes 10] [--concurrency 8] [--samples 100]

Reports throughput, p50/p99 and errors per interval, and the server's resident memory (RSS,
the supervisor and its workers together) after warm-up and at the end, and whether the workers
are the same processes at the end (none died and was replaced). Exits 1 on any error, a
replaced worker, or RSS growth of 10 % or more.
"""

from __future__ import annotations

import argparse

from bench.common import header
from bench.service import ensure_wrk
from bench.wrk import Request, multipart, run_wrk
from harness.inputs import mnist_fixtures
from harness.server import children, running_service


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (the workers), MiB."""
    total = 0.0
    for process in [pid, *children(pid)]:
        with open(f"/proc/{process}/status") as handle:
            total += next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per reported interval")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of load before the first RSS reading")
    args = parser.parse_args(argv)
    ensure_wrk()
    print(header(f"soak: concurrency {args.concurrency}, N = {args.samples}, {args.minutes:g} min"))
    body, content_type = multipart(mnist_fixtures()[0][0].read_bytes())
    request = Request(f"/predict?samples={args.samples}", "POST", body, (("Content-Type", content_type),))
    with running_service() as (url, process):
        run_wrk(url, request, args.concurrency, args.warmup, threads=2)
        baseline = rss_mib(process.pid)
        workers = children(process.pid)
        print(f"RSS after {args.warmup:g} s warm-up: {baseline:.1f} MiB\n")
        print("| minute | images/s | p50 ms | p99 ms | errors | RSS MiB |\n|---:|---:|---:|---:|---:|---:|")
        intervals = max(1, round(args.minutes * 60 / args.interval))
        total_ok = total_failures = 0
        worst_p99 = 0.0
        for index in range(intervals):
            result = run_wrk(url, request, args.concurrency, args.interval, threads=2, timeout_s=30)
            total_ok += result.requests - result.non_2xx
            total_failures += result.errors
            worst_p99 = max(worst_p99, result.p99_ms)
            print(f"| {(index + 1) * args.interval / 60:.1f} | {result.images_per_s:.1f} | {result.p50_ms:.1f} | "
                  f"{result.p99_ms:.1f} | {result.errors} | {rss_mib(process.pid):.1f} |", flush=True)
        final = rss_mib(process.pid)
        growth = (final - baseline) / baseline
        alive = process.poll() is None
        same_workers = children(process.pid) == workers
    seconds = intervals * args.interval
    print(f"\n{total_ok} answers in {seconds:g} s ({total_ok / seconds:.1f}/s), {total_failures} errors, worst p99 "
          f"{worst_p99:.1f} ms, RSS {baseline:.1f} -> {final:.1f} MiB ({growth:+.1%}), server alive: {alive}, "
          f"workers {workers} unchanged: {same_workers}")
    return 0 if total_failures == 0 and growth < 0.10 and alive and same_workers else 1


if __name__ == "__main__":
    raise SystemExit(main())
