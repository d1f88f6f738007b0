"""Where a ``/predict`` request's time goes under load: py-spy samples of the real service's workers
while ``wrk`` drives it, added up by stage.

The service runs as ``make serve`` runs it (two workers, its defaults, the review queue on SQLite);
``wrk`` posts the fixture digit as multipart at ``--connections`` for ``--seconds``; ``py-spy
record`` samples every worker (``--subprocesses``, native frames off, idle samples dropped) and
writes collapsed stacks. Each sample is given to the first stage whose code is on its stack,
looking from the innermost frame out:

* **pass**: the network (``model/network.py``, ``model/predictive.py``, ``model/layers.py``, torch;
  ``model/int8_trunk.py`` and ONNX Runtime for the int8 trunk);
* **transform**: ``model/transform.py`` (crop, fit, centre) and ``model/data.py``;
* **decode**: ``service/inference/preprocess.py`` and Pillow;
* **answer**: the answer's shaping and encoding (``service/inference/predictor.py``'s Prediction,
  ``service/schemas.py``, pydantic, JSON, the audit and the metrics);
* **multipart**: reading the form (python-multipart, Starlette's form parser);
* **HTTP**: uvicorn, httptools, Starlette and FastAPI's routing, the middleware;
* **other**: the event loop itself and everything else.

    python -m bench.profile_predict [--seconds 20] [--connections 16] [--rate 200]

Needs py-spy (``pip install py-spy``; not a dependency of the service) and wrk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import header
from bench.wrk import Request, multipart, run_wrk
from harness.inputs import mnist_fixtures
from harness.server import running_service

# stage -> substrings of a frame ("function (file:line)") that belong to it; the innermost match wins
STAGES: dict[str, tuple[str, ...]] = {
    "pass": ("model/network.py", "model/predictive.py", "model/layers.py", "model/int8_trunk.py", "torch/",
             "onnxruntime/"),
    "transform": ("model/transform.py", "model/data.py"),
    "decode": ("service/inference/preprocess.py", "PIL/"),
    "answer": ("service/inference/predictor.py", "service/schemas.py", "service/inference/audit.py",
               "service/metrics.py", "pydantic", "json/", "fastapi/encoders.py", "prometheus_client",
               "service/review/"),
    "multipart": ("multipart/", "starlette/formparsers.py", "service/routes/predict.py"),
    "HTTP": ("uvicorn/", "httptools", "starlette/", "fastapi/", "service/edge/limits.py", "service/edge/latency.py",
             "h11"),
}


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # innermost first
        for stage, marks in STAGES.items():
            if any(mark in frame for mark in marks):
                return stage
    return "other"


def tally(collapsed: Path) -> Counter[str]:
    """Samples per stage from py-spy's collapsed output ("frame;frame;... count" per line)."""
    counts: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[stage_of(stack)] += int(count)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_predict", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="how long wrk drives the service (and py-spy samples)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--precision", default=None, help="BNN_PRECISION for the service (default: its own, auto)")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed: pip install py-spy")
        return 2
    image = mnist_fixtures()[0][0].read_bytes()
    form, form_type = multipart(image)
    request = Request("/predict", "POST", form, (("Content-Type", form_type),))
    env = {"BNN_PRECISION": args.precision} if args.precision else {}
    with tempfile.TemporaryDirectory() as directory, running_service(env) as (url, process):
        collapsed = Path(directory) / "stacks.txt"
        run_wrk(url, request, 4, 2.0, timeout_s=30)  # warm-up
        sampler = subprocess.Popen([spy, "record", "--pid", str(process.pid), "--subprocesses", "--rate",
                                    str(args.rate), "--duration", f"{args.seconds:g}", "--format", "raw",
                                    "--output", str(collapsed), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        result = run_wrk(url, request, args.connections, args.seconds, threads=2, timeout_s=30)
        _, errors = sampler.communicate(timeout=args.seconds + 60)
        if sampler.returncode != 0 or not collapsed.exists():
            print(f"py-spy failed: {errors.strip()[-500:]}")
            return 1
        counts = tally(collapsed)
        precision = os.environ.get("BNN_PRECISION", "auto") if not args.precision else args.precision
    print(header(f"/predict under wrk, {args.connections} connections, {args.seconds:g} s, multipart, "
                 f"BNN_PRECISION={precision}"))
    print(f"{result.images_per_s:.0f} images/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
          f"{result.errors} errors; {sum(counts.values())} busy samples of the workers\n")
    total = sum(counts.values()) or 1
    per_image_ms = 1000.0 * 2 / max(result.images_per_s, 1e-9)  # two workers' busy time per answered image
    print("| stage | share of busy samples | ≈ ms of a worker per image |")
    print("|---|---:|---:|")
    for stage in (*STAGES, "other"):
        share = counts.get(stage, 0) / total
        print(f"| {stage} | {100 * share:.1f} % | {share * per_image_ms:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
