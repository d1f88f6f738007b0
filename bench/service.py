"""The service under ``wrk`` load, side by side with the HTTP floor and a naive reference, in one run.

Each variant is a real server process on loopback, driven by ``wrk`` (C, keep-alive, one fixed
request; see ``bench/wrk.py``) at several connection counts; the table gives images/s (answered
with 200), p50/p99 and errors (non-2xx answers, socket errors, timeouts):

* **floor**: ``bench/floor.py``, a plain ASGI app that reads the same body and answers a small
  JSON (uvicorn + httptools + uvloop, 2 workers): what any app on this server and machine can reach;
* **ours**: ``python -m service`` with its defaults (``make serve``): ``/predict`` with the digit
  as multipart and as the raw body, and ``/predict/batch`` with 32 digits a request;
* **ours, inference thread**: the same with ``BNN_INFERENCE_THREAD=true`` (the pass in a thread);
* **ours, the other precision**: ``/predict`` and ``/predict/batch`` with ``BNN_PRECISION`` set to the
  precision ``auto`` did not pick (``model/precision.py``): float32 where this CPU has int8
  units, else int8 (on slower kernels); the ratio to ours is printed;
* **naive reference**: ``bench/naive_service.py``, a loop of N sampled forward passes per request;
* **the review queue off and on** (``BNN_REVIEW=false``; on: SQLite, and PostgreSQL when its binaries
  are installed, on the same cores): ``/predict`` with a digit and 5 % of the answers audited
  (queued: about the shipped referral rate), and with a noise image, so that *every* answer is
  referred and queued, the worst case (``python -m bench.review`` gives the cost per item of the
  queue's two halves).

Then a statistical check that the service's answers over HTTP follow the in-process
predictive's distribution (per image, Kolmogorov-Smirnov on 30 entropies each way), and each
variant's start-to-ready time.

    python -m bench.service [--seconds 10] [--connections 1 16 64] [--samples 100] [--baseline DIR]
    python -m bench.service --precisions [--rounds 3] [--seconds 8]

``--precisions`` measures only the served precisions side by side: the service with its defaults in each
(``auto``'s and every other served one; the review queue on SQLite in a temporary directory), started in turn
for each of ``--rounds`` alternating rounds, on
``/predict`` (multipart and raw body) and ``/predict/batch`` at 16 connections and ``/predict`` at one
connection (the latency of one image at N); the median of the rounds and each precision's ratio to
float32.

``--baseline DIR`` adds a variant: the service of another checkout (``git worktree add DIR
COMMIT``), its own code and checkpoint, measured in the same run for a side-by-side ratio.

Installs wrk (``apt-get install wrk``) when it is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.common import header
from bench.wrk import Request, WrkResult, multipart, run_wrk
from harness.inputs import SHIPPED, mnist_fixtures, noise_png
from harness.postgres import binaries as postgres_binaries
from harness.postgres import postgres_server
from harness.server import ROOT, free_port, post_image, running_process, running_service
from model.precision import KINDS, SERVED, choose_precision
from service.inference.predictor import Predictor
from service.inference.preprocess import preprocess

P99_BOUND_MS = 50.0
BATCH = 32
AUTO_PRECISION = choose_precision("auto").precision
OTHER_PRECISION = next(precision for precision in SERVED if precision != AUTO_PRECISION)  # of the two served
AUDITED = 0.05  # the queue variants' audit fraction: about the shipped referral rate (4.4 %) of digits queued
QUEUE_TYPICAL = f"/predict, digit, {100 * AUDITED:g} % audited"
QUEUE_WORST = "/predict, noise (all referred)"


def ensure_wrk() -> None:
    """Install Debian's wrk if it is missing (as root, or with sudo)."""
    if shutil.which("wrk"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("installing wrk (apt-get install wrk) ...", file=sys.stderr)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        subprocess.run([*sudo, "apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "floor", "service", "naive"
    env: dict[str, str]
    routes: tuple[tuple[str, Request], ...]
    connections: tuple[int, ...] | None = None  # None: the run's levels
    cwd: Path | None = None  # another checkout's service (--baseline)


@contextmanager
def serving(variant: Variant) -> Iterator[str]:
    if variant.kind == "service":
        with running_service(variant.env, cwd=variant.cwd or ROOT) as (url, _):
            yield url
        return
    port = free_port()
    if variant.kind == "floor":
        command = [sys.executable, "-m", "uvicorn", "bench.floor:app", "--host", "127.0.0.1", "--port", str(port),
                   "--workers", "2", "--http", "httptools", "--loop", "uvloop", "--no-access-log"]
        ready = "/"
    else:
        command = [sys.executable, "-m", "bench.naive_service", "--port", str(port)]
        ready = "/ready"
    with running_process(command, f"http://127.0.0.1:{port}{ready}", variant.name, env=dict(os.environ)):
        yield f"http://127.0.0.1:{port}"


def agreement(url: str, images: list[bytes], samples: int, repeats: int = 30) -> float:
    """Do answers over HTTP follow the in-process predictive's distribution? Each image is answered
    ``repeats`` times each way; per image, a two-sample Kolmogorov-Smirnov test compares the two
    sets of entropies (a Monte Carlo mean of near-certain probabilities is heavy-tailed, so no
    normal z-score: a single far draw is expected now and then). Returns the smallest p-value
    times the number of images (Bonferroni); above 0.01: no difference found."""
    from scipy.stats import ks_2samp

    predictor = Predictor.from_checkpoint(SHIPPED)
    digits = [preprocess(image, 40_000_000) for image in images]
    reference = np.array([[p.entropy for p in predictor.predict(digits, samples)] for _ in range(repeats)])
    served = np.array([[post_image(url, image, samples=samples).json()["entropy"] for image in images]
                       for _ in range(repeats)])
    smallest = min(float(ks_2samp(reference[:, i], served[:, i]).pvalue) for i in range(len(images)))
    return min(1.0, smallest * len(images))


@dataclass(frozen=True)
class Requests:
    """The requests the variants send: one digit as multipart and as the raw body, a batch of
    ``BATCH`` digits, and a noise image (referred, so queued for review)."""

    one_form: Request
    one_raw: Request
    many: Request
    noise: Request
    naive: Request  # the naive reference has no ``samples`` parameter: its N is its own

    @classmethod
    def of(cls, image: bytes, samples: int) -> Requests:
        path = f"/predict?samples={samples}"
        form, form_type = multipart(image)
        batch, batch_type = multipart(image, field="files", count=BATCH)
        return cls(one_form=Request(path, "POST", form, (("Content-Type", form_type),)),
                   one_raw=Request(path, "POST", image, (("Content-Type", "image/png"),)),
                   many=Request(f"/predict/batch?samples={samples}", "POST", batch, (("Content-Type", batch_type),),
                                BATCH),
                   noise=Request(path, "POST", noise_png(0), (("Content-Type", "image/png"),)),
                   naive=Request("/predict", "POST", form, (("Content-Type", form_type),)))


def review_databases(stack: ExitStack) -> list[tuple[str, dict[str, str]]]:
    """The review queue variants: off, SQLite, and PostgreSQL where its binaries are installed (a
    server for the run, stopped with ``stack``)."""
    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bnn-bench-review-")))
    databases = [("queue off", {"BNN_REVIEW": "false"}),
                 ("queue on, SQLite", {"BNN_REVIEW_DB": f"sqlite:///{root}/review.db"})]
    if postgres_binaries() is not None:
        server = stack.enter_context(postgres_server())
        databases.append(("queue on, PostgreSQL", {"BNN_REVIEW_DB": server.create_database("bench")}))
    return databases


def variants_for(requests: Requests, databases: list[tuple[str, dict[str, str]]],
                 baseline: Path | None) -> list[Variant]:
    """Every variant of the run, in the order measured (see the module docstring)."""
    one, batch = ("/predict, multipart", requests.one_form), (f"/predict/batch, {BATCH} a request", requests.many)
    variants = [Variant("floor (plain ASGI)", "floor", {}, (one,)),
                Variant("ours", "service", {}, (one, ("/predict, raw body", requests.one_raw), batch))]
    if baseline is not None:
        variants.append(Variant(f"baseline ({baseline.name})", "service", {}, (one,), cwd=baseline.resolve()))
    queue_routes = ((QUEUE_TYPICAL, requests.one_raw), (QUEUE_WORST, requests.noise))
    variants += [Variant(f"ours, {name}", "service", {**env, "BNN_AUDIT_FRACTION": str(AUDITED)}, queue_routes)
                 for name, env in databases]
    return [*variants,
            Variant("ours, inference thread", "service", {"BNN_INFERENCE_THREAD": "true"}, (one,)),
            Variant(f"ours, {OTHER_PRECISION}", "service", {"BNN_PRECISION": OTHER_PRECISION}, (one, batch)),
            Variant("naive reference", "naive", {}, (("/predict, multipart", requests.naive),), connections=(1,))]


Results = dict[tuple[str, str, int], WrkResult]  # (variant, route, connections) -> wrk's result


def measure(variants: list[Variant], levels: list[int], seconds: float,
            agreement_images: list[bytes]) -> tuple[Results, dict[str, float], float | None]:
    """Each variant's routes under wrk at each level (a row printed as measured), its start-to-ready
    time, and the agreement check on "ours"."""
    print("| variant | route | connections | images/s | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    results: Results = {}
    start_to_ready: dict[str, float] = {}
    check: float | None = None
    for variant in variants:
        launched = time.perf_counter()
        with serving(variant) as url:
            start_to_ready[variant.name] = time.perf_counter() - launched
            for route, request in variant.routes:
                run_wrk(url, request, 4, 2.0, timeout_s=30)  # warm-up
                for connections in variant.connections or levels:
                    result = run_wrk(url, request, connections, seconds, threads=2, timeout_s=30)
                    results[(variant.name, route, connections)] = result
                    digits = 0 if result.images_per_s >= 100 else 1
                    print(f"| {variant.name} | {route} | {connections} | {result.images_per_s:.{digits}f} | "
                          f"{result.requests_per_s:.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} | "
                          f"{result.errors} |", flush=True)
            if variant.name == "ours":
                check = agreement(url, agreement_images, 1000)
    return results, start_to_ready, check


def print_ratios(results: Results, at: int, databases: list[tuple[str, dict[str, str]]],
                 baseline: Path | None) -> None:
    """The summary at ``at`` connections: each variant against ours, ours against the floor."""
    floor = results[("floor (plain ASGI)", "/predict, multipart", at)]
    single = results[("ours", "/predict, multipart", at)]
    raw = results[("ours", "/predict, raw body", at)]
    batched = results[("ours", f"/predict/batch, {BATCH} a request", at)]
    threaded = results[("ours, inference thread", "/predict, multipart", at)]
    other = {route: results[(f"ours, {OTHER_PRECISION}", route, at)] for route in ("/predict, multipart",
                                                                                 f"/predict/batch, {BATCH} a request")}
    naive = results[("naive reference", "/predict, multipart", 1)]
    print(f"\nat {at} connections:")
    print(f"- /predict (multipart): {single.images_per_s:.0f} images/s, p99 {single.p99_ms:.1f} ms "
          f"(bound {P99_BOUND_MS:g} ms); {100 * single.requests_per_s / floor.requests_per_s:.1f} % of the floor's "
          f"{floor.requests_per_s:.0f} requests/s")
    print(f"- /predict (raw body): {raw.images_per_s:.0f} images/s, p99 {raw.p99_ms:.1f} ms")
    print(f"- /predict/batch: {batched.images_per_s:.0f} images/s = {batched.images_per_s / single.images_per_s:.1f}x "
          "the single-image rate")
    print(f"- ours ({AUTO_PRECISION}, auto) vs {OTHER_PRECISION}: /predict "
          f"{single.images_per_s / other['/predict, multipart'].images_per_s:.2f}x, /predict/batch "
          f"{batched.images_per_s / other[f'/predict/batch, {BATCH} a request'].images_per_s:.2f}x")
    print(f"- the pass on the event loop vs in a thread: {single.images_per_s / threaded.images_per_s:.2f}x "
          f"({threaded.images_per_s:.0f} images/s with the thread)")
    print(f"- the naive reference (1 connection): {naive.images_per_s:.1f} images/s, p50 {naive.p50_ms:.0f} ms: "
          f"ours is {single.images_per_s / max(naive.images_per_s, 1e-9):.0f}x")
    if baseline is not None:
        theirs = results[(f"baseline ({baseline.name})", "/predict, multipart", at)]
        print(f"- this checkout vs the baseline {baseline}: {single.images_per_s / theirs.images_per_s:.2f}x "
              f"({theirs.images_per_s:.0f} images/s there)")
    for route in (QUEUE_TYPICAL, QUEUE_WORST):
        off = results[("ours, queue off", route, at)]
        for name, _ in databases[1:]:
            on = results[(f"ours, {name}", route, at)]
            print(f"- {route}: {name} vs queue off {on.images_per_s / off.images_per_s:.3f}x ({on.images_per_s:.0f} vs "
                  f"{off.images_per_s:.0f} images/s; p99 {on.p99_ms:.1f} vs {off.p99_ms:.1f} ms)")


Measured = dict[tuple[str, str, int], list[WrkResult]]  # (precision, route, connections) -> each round's result
Route = tuple[str, Request, int]  # (name, request, connections)


def precisions_side_by_side(requests: Requests, rounds: int, seconds: float) -> int:
    """``--precisions``: each served precision's service in turn, ``rounds`` times, the medians and ratios."""
    routes: tuple[Route, ...] = (
        ("/predict, multipart", requests.one_form, 16), ("/predict, raw body", requests.one_raw, 16),
        (f"/predict/batch, {BATCH} a request", requests.many, 16), ("/predict, multipart", requests.one_form, 1))
    names = [AUTO_PRECISION, *(precision for precision in SERVED if precision != AUTO_PRECISION)]
    with tempfile.TemporaryDirectory(prefix="bnn-bench-precisions-") as store:  # the review queue, out of the tree
        measured = precision_rounds(routes, names, rounds, seconds, store)

    def median(name: str, route: str, connections: int, field: str) -> float:
        return float(np.median([getattr(r, field) for r in measured[(name, route, connections)]]))

    print("\n| precision (runtime) | route | connections | images/s | p50 ms | p99 ms | images/s vs float32 | "
          "p50 vs float32 |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for route, _, connections in routes:
        for name in names:
            rate, p50 = (median(name, route, connections, field) for field in ("images_per_s", "p50_ms"))
            print(f"| {name} ({KINDS[name].runtime}) | {route} | {connections} | {rate:.0f} | {p50:.2f} | "
                  f"{median(name, route, connections, 'p99_ms'):.2f} | "
                  f"{rate / median('float32', route, connections, 'images_per_s'):.2f}x | "
                  f"{median('float32', route, connections, 'p50_ms') / p50:.2f}x faster |")
    return 1 if any(r.errors for results in measured.values() for r in results) else 0


def precision_rounds(routes: tuple[Route, ...], names: Sequence[str], rounds: int, seconds: float,
                     store: str) -> Measured:
    """Each precision's service (its review queue under ``store``) in turn, ``rounds`` times, every route."""
    measured: Measured = {}
    for round_ in range(rounds):
        for name in names:
            with running_service({"BNN_PRECISION": name, "BNN_REVIEW_DB": f"sqlite:///{store}/{name}.db"}) as (url, _):
                for route, request, connections in routes:
                    run_wrk(url, request, connections, 2.0, timeout_s=30)  # warm-up
                    result = run_wrk(url, request, connections, seconds, threads=min(2, connections), timeout_s=30)
                    measured.setdefault((name, route, connections), []).append(result)
                    print(f"round {round_ + 1} {name}: {route} at {connections}: {result.images_per_s:.0f} images/s, "
                          f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, errors {result.errors}", flush=True)
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per level")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout's service, side by side")
    parser.add_argument("--precisions", action="store_true", help="only the served precisions, side by side")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of --precisions")
    args = parser.parse_args(argv)
    ensure_wrk()
    torch.set_num_threads(2)
    fixtures = mnist_fixtures()
    requests = Requests.of(fixtures[0][0].read_bytes(), args.samples)
    if args.precisions:
        print(header(f"the served precisions under wrk, N = {args.samples}, {args.seconds:g} s a route, "
                     f"{args.rounds} alternating rounds"))
        return precisions_side_by_side(requests, args.rounds, args.seconds)
    with ExitStack() as stack:
        databases = review_databases(stack)
        print(header(f"service under wrk load, N = {args.samples}, {args.seconds:g} s per level"))
        results, start_to_ready, check = measure(variants_for(requests, databases, args.baseline), args.connections,
                                                 args.seconds, [path.read_bytes() for path, _ in fixtures[:16]])
        print_ratios(results, 16 if 16 in args.connections else args.connections[0], databases, args.baseline)
    errors = sum(r.errors for (name, _, _), r in results.items() if name.startswith("ours"))
    print(f"errors under load (all of ours): {errors}")
    print("start (process launch) to ready: " + ", ".join(f"{n} {s:.2f} s" for n, s in start_to_ready.items()))
    if check is None:
        return 1
    verdict = "no difference found" if check > 0.01 else "DIFFERENT"
    print(f"answers over HTTP vs in process, 16 digits x 30 answers each way at N=1000, Kolmogorov-Smirnov on "
          f"the entropies: smallest p x 16 = {check:.3f}: {verdict}")
    return 0 if verdict == "no difference found" and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
