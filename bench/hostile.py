"""The second hostile catalogue, as an attacker sends it, against the real service; prints a table.

Each case is a request (or a flood of them) that froze a worker, lost a reviewer's label, reached a
500 or went unbounded before issue 42; each row says what the service did: status, time, memory.
The service runs as ``make serve`` does (``python -m service``, 2 workers, its defaults), with only
documented variables set: reviewer and admin tokens, the review byte cap lowered to 64 MiB
(BNN_REVIEW_MAX_BYTES) and the retention pass every second (BNN_REVIEW_RETENTION_INTERVAL_S), so
that the flood's effect shows within the run.

    python -m bench.hostile [--baseline DIR]

``--baseline DIR`` runs the same catalogue against another checkout (``git worktree add DIR
COMMIT``) first, for a before/after table in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from harness.images import gif_declaring
from harness.inputs import noise_png
from harness.server import ROOT, children, running_service

MIB = 1024 * 1024
REVIEWER, ADMIN = "reviewer-token-0123456789", "admin-token-0123456789ab"
PAGES = ("/", "/review", "/admin", "/docs")
SECURITY_HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options", "referrer-policy")


def peak_rss_mib(pid: int) -> float:
    """The largest peak resident size (VmHWM) among the server's worker processes."""
    peaks = []
    for child in children(pid) or [pid]:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        peaks += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")]
    return max(peaks, default=float("nan"))


def gif_batch(url: str, pid: int) -> str:
    """Three /predict/batch requests of 32 GIFs of 43 bytes each declaring a 6324 x 6324 screen, back
    to back, while /healthz is asked every 50 ms on new connections."""
    files = [("files", (f"g{index}.gif", gif_declaring(6324, 6324), "image/gif")) for index in range(32)]
    probes: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            start = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url + "/healthz", timeout=60)
            probes.append(time.perf_counter() - start)
            done.wait(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    times, statuses = [], []
    try:
        for _ in range(3):
            start = time.perf_counter()
            response = httpx.post(url + "/predict/batch", files=files, timeout=120)
            times.append(time.perf_counter() - start)
            statuses = sorted({str(item.get("status", 200)) for item in response.json()}) \
                if response.status_code == 200 else [str(response.status_code)]
    finally:
        done.set()
        prober.join()
    return (f"batch {max(times):.2f} s (worst of 3), items {'/'.join(statuses)}; /healthz worst {max(probes):.2f} s; "
            f"worker peak RSS {peak_rss_mib(pid):.0f} MiB")


def flood(url: str, pid: int) -> str:
    """A reviewer labels a referred item; then 60 uploads of a 64 x 64 noise PNG followed by 7.5 MB of
    random bytes (7x the 64 MiB cap), no credentials; then is the label still in the export?"""
    review = {"Authorization": f"Bearer {REVIEWER}"}
    first = httpx.post(url + "/predict", files={"file": ("n.png", noise_png(0), "image/png")}, timeout=60).json()
    item = first.get("review_id")
    if item is None:
        return "the noise image was not queued"
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/review/items/{item}", headers=review, timeout=30).status_code != 200:
        if time.monotonic() > deadline:
            return "the item never reached the store"
        time.sleep(0.2)
    labelled = httpx.post(f"{url}/review/items/{item}/label", json={"label": "not_a_digit"}, headers=review, timeout=30)
    tail = np.random.default_rng(1).bytes(7_500_000)
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=120) as client:
        for seed in range(60):
            response = client.post(url + "/predict", files={"file": ("p.png", noise_png(seed + 1) + tail, "image/png")})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    time.sleep(4)  # four retention passes (BNN_REVIEW_RETENTION_INTERVAL_S=1)
    exported = httpx.get(url + "/review/export", headers=review, timeout=60)
    ids = [json.loads(line).get("id") for line in exported.text.splitlines() if line.strip()]
    alive = httpx.get(url + "/healthz", timeout=10).status_code
    return (f"label {labelled.status_code}; flood {statuses}; label {'KEPT' if item in ids else 'LOST'} in the export "
            f"({len(ids)} items); /healthz {alive}")


def oip_bodies(url: str, pid: int) -> str:
    infer = url + "/v2/models/bnn-digits/infer"
    image = {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["AAAA"]}
    bodies = {
        "nested": b"[" * 100_000 + b"]" * 100_000,
        "5000-digit integer": b'{"inputs": [{"name": "image", "shape": [' + b"9" * 5000
                              + b'], "datatype": "BYTES", "data": ["AAAA"]}]}',
        "parameters 'x'": json.dumps({"inputs": [{**image, "parameters": "x"}]}).encode(),
    }
    out = []
    for name, body in bodies.items():
        response = httpx.post(infer, content=body, headers={"content-type": "application/json"}, timeout=60)
        out.append(f"{name}: {response.status_code}")
    return "; ".join(out)


def admin_paths(url: str, pid: int) -> str:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    out = []
    for path in ("/dev/zero", "a\u0000b", "/tmp", "/etc/passwd"):
        start = time.perf_counter()
        try:
            status: Any = httpx.post(url + "/admin/models/shadow", json={"path": path}, headers=admin,
                                     timeout=20).status_code
        except httpx.TimeoutException:
            status = "no answer in 20 s"
        out.append(f"{path!r}: {status} ({time.perf_counter() - start:.1f} s)")
    return "; ".join(out)


def announced_oversize(url: str, pid: int) -> str:
    """A raw /predict announcing 20 MiB (over the 8 MiB file limit), 64 KiB of it sent, then waiting."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        start = time.perf_counter()
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     f"Content-Length: {20 * MIB}\r\n\r\n".encode() + b"\x00" * 65536)
        try:
            head = sock.recv(4096)
        except TimeoutError:
            head = b""
        elapsed = time.perf_counter() - start
    status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else "closed, no answer"
    return f"{status} after {elapsed:.2f} s"


def page_headers(url: str, pid: int) -> str:
    out = []
    for page in PAGES:
        headers = httpx.get(url + page, timeout=30).headers
        missing = [name for name in SECURITY_HEADERS if name not in headers]
        out.append(f"{page}: {'all four' if not missing else 'missing ' + ', '.join(missing)}")
    return "; ".join(out)


CASES: dict[str, Callable[[str, int], str]] = {
    "32 canvas-declaring GIFs in one batch": gif_batch,
    "padded-upload flood at 7x the byte cap": flood,
    "OIP bodies": oip_bodies,
    "admin candidate paths": admin_paths,
    "announced 20 MiB raw /predict": announced_oversize,
    "security headers": page_headers,
}


def run_catalogue(cwd: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as directory:
        env = {"BNN_REVIEW_TOKENS": f"ana:{REVIEWER}", "BNN_ADMIN_TOKENS": f"root:{ADMIN}",
               "BNN_REVIEW_MAX_BYTES": str(64 * MIB), "BNN_REVIEW_RETENTION_INTERVAL_S": "1",
               "BNN_REVIEW_DB": f"sqlite:///{directory}/review.db", "BNN_CONTROL_DIR": f"{directory}/control",
               "PYTHONPATH": str(cwd)}
        with running_service(env, cwd=cwd, ready_timeout=120) as (url, process):
            results = {}
            for name, case in CASES.items():
                try:
                    results[name] = case(url, process.pid)
                except Exception as error:  # a case that breaks the client is a result too
                    results[name] = f"failed: {type(error).__name__}: {error}"
                print(f"  {name}: {results[name]}", flush=True)
            return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout to run first, for a before/after table")
    args = parser.parse_args(argv)
    runs = {}
    if args.baseline is not None:
        print(f"baseline: {args.baseline}", flush=True)
        runs["before"] = run_catalogue(args.baseline.resolve())
    print(f"this checkout: {ROOT}", flush=True)
    runs["now"] = run_catalogue(ROOT)
    print("\n| case | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for name in CASES:
        print(f"| {name} | " + " | ".join(run[name] for run in runs.values()) + " |")


if __name__ == "__main__":
    main()
