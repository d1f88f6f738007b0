"""The real service under load, side by side with a naive reference, in one run.

Starts each variant (uvicorn on loopback), drives it with a bounded closed-loop load at several
concurrencies, and prints throughput, p50/p95/p99 and errors:

* ours, 2 workers x 1 thread, micro-batching (the default),
* ours, 1 worker x 2 threads, micro-batching,
* ours, 2 workers x 1 thread, micro-batching off,
* the naive reference service (``bench.naive_service``: loop of N, no batching, one worker).

    python -m bench.service [--seconds 10] [--concurrency 1 8 16 32 64] [--samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import torch

from bench.common import header
from bench.load import LoadResult, multipart_request, run_load
from tests.conftest import mnist_fixtures
from tests.server import running_service

P99_BOUND_MS = 50.0


def drive(url: str, path: str, image: bytes, levels: list[int], seconds: float) -> list[LoadResult]:
    host, port = url.removeprefix("http://").split(":")
    request = multipart_request(host, int(port), path, image)
    asyncio.run(run_load(host, int(port), request, 4, 2.0))  # warm-up
    return [asyncio.run(run_load(host, int(port), request, level, seconds)) for level in levels]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16, 32, 64])
    parser.add_argument("--naive-concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--cores", type=int, default=2, help="workers x threads of each variant")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.cores)
    image = mnist_fixtures()[0][0].read_bytes()
    path = f"/predict?samples={args.samples}"
    print(header(f"service under closed-loop load, N = {args.samples}, {args.seconds:g} s per level"))
    cores = str(args.cores)
    workers = {"BNN_WORKERS": cores, "BNN_THREADS": "1"}
    variants = [
        ("ours, micro-batching", {**workers, "BNN_MICRO_BATCHING": "true"}, "service", "/readyz", args.concurrency, path),
        ("ours, 1 worker", {"BNN_WORKERS": "1", "BNN_THREADS": cores, "BNN_MICRO_BATCHING": "true"}, "service",
         "/readyz", args.concurrency, path),
        ("ours, no batching", {**workers, "BNN_MICRO_BATCHING": "false"}, "service", "/readyz", args.concurrency, path),
        ("naive reference", {}, "bench.naive_service", "/ready", args.naive_concurrency, "/predict"),
    ]
    best: dict[str, float] = {}
    throughput_at_any: dict[str, list[float]] = {name: [0.0] for name, *_ in variants}
    start_to_ready: dict[str, float] = {}
    print("| variant | concurrency | images/s | p50 ms | p95 ms | p99 ms | non-200 + errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, env, module, ready, levels, route in variants:
        launched = time.perf_counter()
        with running_service(env, module=module, ready_path=ready) as (url, _):
            start_to_ready[name] = time.perf_counter() - launched
            for result in drive(url, route, image, levels, args.seconds):
                print(f"| {name} | {result.concurrency} | {result.throughput:.1f} | {result.percentile(0.5):.1f} | "
                      f"{result.percentile(0.95):.1f} | {result.percentile(0.99):.1f} | {result.failures} |", flush=True)
                throughput_at_any[name].append(result.throughput)
                if result.percentile(0.99) <= P99_BOUND_MS and result.failures == 0:
                    best[name] = max(best.get(name, 0.0), result.throughput)
    print(f"\nbest throughput with p99 <= {P99_BOUND_MS:g} ms and no errors:")
    for name, *_ in variants:
        print(f"- {name}: {best.get(name, 0.0):.1f} images/s")
    print("service start (process launch) to ready: " + ", ".join(f"{n} {s:.2f} s" for n, s in start_to_ready.items()))
    naive = best.get("naive reference", 0.0)
    ours = best.get("ours, micro-batching", 0.0)
    print(f"ratio ours (micro-batching) / naive: {ours / naive:.1f}x" if naive else
          "ratio: the naive reference never meets the p99 bound (its single request is slower than 50 ms)")
    naive_any = max(throughput_at_any["naive reference"])
    print(f"the naive reference's best throughput at any latency: {naive_any:.1f} images/s; ours at p99 <= "
          f"{P99_BOUND_MS:g} ms is {ours / naive_any:.0f}x that" if naive_any else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
