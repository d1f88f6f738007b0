"""The review queue's cost per referred answer, in its two halves, on SQLite and PostgreSQL.

* **on the request path**: ``ReviewQueue.submit`` (no I/O: the answer joins the buffer), timed
  over many calls;
* **in the writer task**: turning a buffered answer into a row and inserting it, by batch size
  (the writer takes what has piled up, up to 256, in one transaction), as items/s and
  microseconds per item; and a reviewer's claim + label round trip.

    python -m bench.review [--items 4000]

PostgreSQL runs when Debian's binaries are installed (``harness/postgres.py`` starts one in a
temporary directory). Numbers only: ``python -m bench.service`` measures the throughput with the
queue on and off under wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import timeit
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from bench.common import header
from harness.inputs import noise_png
from harness.postgres import binaries, postgres_server
from service.inference.predictor import Prediction
from service.metrics import Metrics
from service.review.buffer import Pending
from service.review.queue import ReviewQueue
from service.review.retention_policy import RetentionPolicy
from service.review.store import ReviewStore

BATCHES = (1, 16, 256)


def referred() -> Prediction:
    probabilities = [0.1] * 10
    return Prediction(digit=3, probabilities=probabilities, entropy=2.3, expected_entropy=2.2, mutual_information=0.1,
                      refer=True, refer_reason="unfamiliar", candidates=[3, 5, 1], threshold=0.097, samples=100,
                      model_version="bench", seen=np.zeros((28, 28), np.uint8))


def submit_cost(calls: int) -> float:
    """Microseconds per ``submit`` of a referred answer, every call queued: the buffer holds them all and one
    source may fill it (``source_share=1``; at the default share most calls from one source would be refusals)."""
    queue = ReviewQueue(ReviewStore.open("sqlite:///:memory:"), Metrics(CollectorRegistry()), calls + 1,
                        RetentionPolicy(1e9, 10**9, 10**12), buffer_bytes=2**40, source_share=1.0)
    prediction, upload = referred(), noise_png(0)
    seconds = min(timeit.repeat(lambda: queue.submit(prediction, upload, False, "bench"), number=calls, repeat=1))
    queued = queue.backlog
    if queued != calls:  # a refusal costs less than queueing: the figure would be of the wrong path
        raise RuntimeError(f"{calls - queued} of {calls} submits were refused")
    return 1e6 * seconds / calls


async def store_costs(url: str, items: int) -> dict[str, float]:
    store = ReviewStore.open(url)
    await store.migrate()
    prediction, upload = referred(), noise_png(0)
    costs: dict[str, float] = {}
    try:
        for batch in BATCHES:
            pending = [Pending(f"{batch}-{k}", time.time(), prediction, upload, False, "bench", 0.02)
                       for k in range(items)]
            start = time.perf_counter()
            for first in range(0, items, batch):
                await store.add([p.item() for p in pending[first:first + batch]])
            costs[f"insert, batch {batch}"] = 1e6 * (time.perf_counter() - start) / items
        rounds = min(items, 500)
        start = time.perf_counter()
        for _ in range(rounds):
            item = await store.claim("bench", 300)
            assert item is not None
            await store.label(item.id, "bench", "not_a_digit")
        costs["claim + label"] = 1e6 * (time.perf_counter() - start) / rounds
    finally:
        await store.close()
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.review", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=4000, help="items per insert batch size")
    args = parser.parse_args(argv)
    print(header("review queue: cost per referred answer"))
    print(f"- on the request path, ReviewQueue.submit: {submit_cost(100_000):.2f} µs per referred answer")
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stores = {"SQLite (WAL)": f"sqlite:///{root}/review.db"}
        if binaries() is not None:
            stores["PostgreSQL"] = stack.enter_context(postgres_server()).create_database("bench")
        print("\n| store | step | µs per item | items/s |")
        print("|---|---|---:|---:|")
        for name, url in stores.items():
            for step, micros in asyncio.run(store_costs(url, args.items)).items():
                print(f"| {name} | {step} | {micros:.0f} | {1e6 / micros:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
