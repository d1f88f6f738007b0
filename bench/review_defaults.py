"""The review queue as a new user runs it on PostgreSQL: only the store and the reviewers set.

A real PostgreSQL in a temporary directory (``harness/postgres.py``), the real service
(``python -m service``, as ``make serve`` runs it: two workers) with ``BNN_REVIEW_DB`` and
``BNN_REVIEW_TOKENS`` and nothing else, so every other setting is its shipped default (retention
every 60 s with the 2 GiB byte cap, 100,000 rows and 30 days; a 300 s lease; a 10,000-answer
buffer; no export directory). It prints, for the run:

* how long each referred upload took to become claimable (``/review/items/next``);
* ``/review/stats`` polled once a second for ``--seconds`` (default 80: more than one retention
  interval), by status;
* the writer's errors by operation and the retention passes that ran (``/metrics``);
* two reviewers draining the queue at once: items given, given twice, missing;
* after a restart: the labels and the waiting items kept.

    python -m bench.review_defaults [--seconds 80] [--uploads 20]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import time
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.common import header
from harness.inputs import noise_png
from harness.postgres import postgres_server, require_binaries
from harness.server import running_service, wait_for

TOKENS = {"ana": "bench-reviewer-ana-0123456789", "ben": "bench-reviewer-ben-0123456789"}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def metric_totals(url: str, name: str, label: str | None = None) -> dict[str, float]:
    """Sum of a metric's samples over the workers, by the value of ``label`` (one key "" without it)."""
    sums: Counter[str] = Counter()
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == name:
                sums[sample.labels.get(label, "") if label else ""] += sample.value
    return dict(sums)


def claimable_after(url: str, seed: int) -> tuple[str, float]:
    """Post one referred upload; its review id and the seconds until a claim returned it. Items
    claimed meanwhile (the ones this skipped before) are skipped back: they stay in the queue."""
    answer = httpx.post(url + "/predict", content=noise_png(seed), headers={"content-type": "image/png"},
                        timeout=30).json()
    start = time.monotonic()

    def claimed_it() -> bool:
        response = httpx.get(url + "/review/items/next", headers=bearer("ana"), timeout=10)
        if response.status_code != 200:
            return False
        item_id = response.json()["id"]
        httpx.post(f"{url}/review/items/{item_id}/skip", headers=bearer("ana"), timeout=10).raise_for_status()
        return bool(item_id == answer["review_id"])

    wait_for(claimed_it, timeout_s=30, what="the upload claimable", interval_s=0.01)
    return answer["review_id"], time.monotonic() - start


def poll_stats(url: str, seconds: float) -> Counter[int]:
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses[httpx.get(url + "/review/stats", headers=bearer("ana"), timeout=10).status_code] += 1
        time.sleep(1.0)
    return statuses


def drain(url: str) -> dict[str, list[str]]:
    def one(name: str) -> list[str]:
        got = []
        with httpx.Client(base_url=url, headers=bearer(name), timeout=10) as client:
            while (response := client.get("/review/items/next")).status_code == 200:
                got.append(response.json()["id"])
                client.post(f"/review/items/{got[-1]}/label", json={"label": 3}).raise_for_status()
        return got

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return dict(zip(TOKENS, pool.map(one, TOKENS), strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.review_defaults", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=80.0, help="how long /review/stats is polled, once a second")
    parser.add_argument("--uploads", type=int, default=20, help="referred uploads sent one at a time")
    args = parser.parse_args(argv)
    require_binaries()
    print(header("review queue on PostgreSQL, shipped defaults"))
    stray = sorted(key for key in os.environ if key.startswith("BNN_"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("BNN_")}
    with postgres_server() as server:
        env |= {"BNN_REVIEW_DB": server.create_database("reviews"),
                "BNN_REVIEW_TOKENS": ",".join(f"{name}:{token}" for name, token in TOKENS.items())}
        print(f"set: BNN_REVIEW_DB, BNN_REVIEW_TOKENS only (removed from the environment: {stray or 'none'})")
        with running_service(env) as (url, _):
            sent = [claimable_after(url, seed) for seed in range(args.uploads)]
            delays = sorted(delay for _, delay in sent)
            print(f"referred uploads claimable after: median {1000 * delays[len(delays) // 2]:.0f} ms, "
                  f"max {1000 * delays[-1]:.0f} ms ({len(delays)} uploads)")
            statuses = poll_stats(url, args.seconds)
            print(f"/review/stats over {args.seconds:.0f} s: {dict(statuses)}")
            print(f"writer errors by operation: {metric_totals(url, 'bnn_review_store_errors_total', 'operation')}")
            print(f"retention passes: {metric_totals(url, 'bnn_review_retention_passes_total').get('', 0):.0f}")
            labelled = sent[0][0]
            half = [review_id for review_id, _ in sent[1: 1 + args.uploads // 2]]
            for review_id in [labelled, *half]:
                httpx.post(f"{url}/review/items/{review_id}/label", json={"label": 5}, headers=bearer("ben"),
                           timeout=10).raise_for_status()
        with running_service(env) as (url, _):
            kept = httpx.get(url + "/review/stats", headers=bearer("ana"), timeout=10).json()
            print(f"after a restart: {kept['stored_items']} stored, labelled {kept['labelled']}, "
                  f"waiting {kept['waiting']}")
            given = drain(url)
            everyone = [item for items in given.values() for item in items]
            waiting = {review_id for review_id, _ in sent} - {labelled, *half}
            print(f"two reviewers drained: {', '.join(f'{k} {len(v)}' for k, v in given.items())}; "
                  f"given twice {len(everyone) - len(set(everyone))}; missing {len(waiting - set(everyone))}")


if __name__ == "__main__":
    main()
