"""A model change under load, through the real service: ``python -m bench.model_swap``.

Starts ``python -m service`` (its defaults: 2 workers, the review queue on SQLite) with an admin
token, and drives ``POST /predict`` with ``wrk`` (16 connections, one MNIST digit as the raw
body), counting the answers by ``model_version``:

1. **steady**: no change, ``--seconds`` long;
2. **swaps**: the same load while ``python -m service.lifecycle.admin``'s client alternates ``--swaps``
   promotions of the candidate and rollbacks, with the five broken candidates of
   ``harness/candidates.py`` tried in between (each must be refused with its check); each call's
   time until every worker serves the new version is printed;
3. **shadow**: rounds of shadow off and shadow on (the candidate at ``BNN_SHADOW_FRACTION``,
   default 10 %), alternated, images/s each; and the class and refer decision of the 20 fixture
   digits compared with the shadow off and on (entropy is a Monte Carlo estimate: it varies
   between any two calls).

The candidate is ``--candidate PATH`` (e.g. a fine-tuned checkpoint) or the shipped weights under
another version. Prints one JSON summary at the end. Needs ``wrk`` (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.service import ensure_wrk
from bench.wrk import Request, WrkResult, run_wrk
from harness import candidates
from harness.inputs import expected_precision, mnist_fixtures
from harness.server import running_service, wait_for
from service.lifecycle.admin import call

TOKEN = "bench-admin-token-0123456789"
BROKEN = {"file": candidates.truncated, "architecture": candidates.wrong_architecture,
          "calibration": lambda d: candidates.without_record(d, expected_precision()), "weights": candidates.with_nan,
          "fixtures": candidates.misreading}


def load(url: str, seconds: float, connections: int) -> WrkResult:
    digit = mnist_fixtures()[0][0].read_bytes()
    request = Request("/predict", "POST", digit, (("Content-Type", "image/png"),), tally="model_version")
    return run_wrk(url, request, connections, seconds, threads=2, timeout_s=30)


def row(name: str, result: WrkResult) -> dict[str, Any]:
    return {"phase": name, "images_per_s": round(result.images_per_s, 1), "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms, "non_2xx": result.non_2xx, "socket_errors": result.socket_errors,
            "versions": result.tallies}


def swaps(url: str, candidate: Path, count: int, broken: dict[str, Path], pause_s: float) -> list[dict[str, Any]]:
    """``count`` alternating promotions and rollbacks, a broken candidate tried after each; one record per call."""
    records: list[dict[str, Any]] = []
    kinds = list(broken)
    for index in range(count):
        action, body = (("promote", {"path": str(candidate)}) if index % 2 == 0 else ("rollback", None))
        started = time.perf_counter()
        status, answer = call(url, TOKEN, "POST", f"/admin/models/{action}", body)
        records.append({"action": action, "status": status, "wall_s": round(time.perf_counter() - started, 3),
                        "elapsed_s": answer.get("elapsed_s"), "live": answer.get("live"),
                        "workers": [w.get("live") for w in answer.get("workers", [])]})
        time.sleep(pause_s)
        kind = kinds[index % len(kinds)]
        status, answer = call(url, TOKEN, "POST", "/admin/models/promote", {"path": str(broken[kind])})
        records.append({"action": f"promote broken ({kind})", "status": status, "check": answer.get("check"),
                        "refused_as_expected": status == 422 and answer.get("check") == kind})
        time.sleep(pause_s)
    return records


def decisions(url: str) -> list[tuple[int, bool]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return [(answer["class"], answer["refer"]) for answer in (
            client.post("/predict", content=path.read_bytes(), headers={"Content-Type": "image/png"}).json()
            for path, _ in mnist_fixtures())]


def shadow_rounds(url: str, candidate: Path, rounds: int, seconds: float, connections: int) -> dict[str, Any]:
    off, on, agree = [], [], []
    for _ in range(rounds):
        call(url, TOKEN, "DELETE", "/admin/models/shadow")
        before = decisions(url)
        off.append(load(url, seconds, connections).images_per_s)
        status, answer = call(url, TOKEN, "POST", "/admin/models/shadow", {"path": str(candidate)})
        assert status == 200, answer
        agree.append(decisions(url) == before)
        on.append(load(url, seconds, connections).images_per_s)
    status, summary = call(url, TOKEN, "GET", "/admin/models")
    return {"off_images_per_s": [round(v, 1) for v in off], "on_images_per_s": [round(v, 1) for v in on],
            "ratio_on_off": round(sum(on) / sum(off), 3), "fixture_decisions_identical": agree,
            "shadow_summary": summary.get("shadow")}


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parse.add_argument("--candidate", type=Path, help="a checkpoint to promote (default: the shipped weights renamed)")
    parse.add_argument("--swaps", type=int, default=10)
    parse.add_argument("--seconds", type=float, default=15.0, help="steady phase and each shadow round")
    parse.add_argument("--connections", type=int, default=16)
    parse.add_argument("--shadow-rounds", type=int, default=3)
    parse.add_argument("--shadow-fraction", type=float, default=0.1)
    args = parse.parse_args(argv)
    ensure_wrk()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        # candidates load only from BNN_MODELS_DIR: every one is made (or copied) there
        candidate = (candidates.copy_into(work, args.candidate) if args.candidate else candidates.good(work)).resolve()
        broken = {kind: make(work) for kind, make in BROKEN.items()}
        env = {"BNN_ADMIN_TOKENS": f"bench:{TOKEN}", "BNN_SHADOW_FRACTION": str(args.shadow_fraction),
               "BNN_REVIEW_DB": f"sqlite:///{work}/review.db", "BNN_MODELS_DIR": str(work)}
        with running_service(env) as (url, _):
            wait_for(lambda: len(call(url, TOKEN, "GET", "/admin/models")[1]["workers"]) == 2, 60, "both workers")
            load(url, 3, 4)  # warm-up
            steady = load(url, args.seconds, args.connections)
            records: list[dict[str, Any]] = []
            changer = threading.Thread(target=lambda: records.extend(
                swaps(url, candidate, args.swaps, broken, pause_s=0.5)))
            during = args.swaps * 2 * 0.5 + args.swaps * 1.5 + 3
            changer.start()
            swapping = load(url, during, args.connections)
            changer.join()
            shadow = shadow_rounds(url, candidate, args.shadow_rounds, args.seconds, args.connections)
    changes = [r for r in records if r["action"] in ("promote", "rollback")]
    summary = {
        "load": [row("steady", steady), row("during swaps", swapping)],
        "p99_ratio_swaps_to_steady": round(swapping.p99_ms / steady.p99_ms, 2),
        "changes": changes, "max_change_s": max(r["wall_s"] for r in changes),
        "broken_refused_as_expected": all(r["refused_as_expected"] for r in records if "broken" in r["action"]),
        "broken": [r for r in records if "broken" in r["action"]],
        "shadow": shadow,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
