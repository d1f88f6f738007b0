"""The whole loop on a real service, from a style the live model handles badly to a promoted model that
reads it:

    python -m examples.flywheel --out /tmp/flywheel          # 2,500 + 2,500 uploads, the real loop (~20 min)
    python -m examples.flywheel --out /tmp/flywheel --tiny   # a few hundred, a dry-run fine-tune (the test)

1. **A service** (``python -m service``, two workers) serving a copy of the live checkpoint from
   ``OUT/models`` (its ``BNN_MODELS_DIR``), with reviewer and admin tokens and the audit sample at
   ``--audit-fraction``.
2. **Traffic**: photographed seven-segment display digits (``examples/seven_segment.py``; nothing
   under ``model/`` draws segments), interleaved with as many MNIST training digits as PNG files.
3. **A scripted reviewer** labels every queued item through the review API with its truth.
4. **Before**: fresh uploads of the style (another seed) and MNIST test digits as PNG files, through
   ``POST /predict``.
5. **``python -m model.learn``** against the service while traffic keeps arriving (a thread posts
   both kinds all along and counts failed requests).
6. **After**: the same fresh uploads through ``POST /predict`` again, answered by whatever is live, and by
   the candidate in process (as the service would serve it), promoted or not.

Writes ``OUT/flywheel.json`` and prints the before/after table.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from examples.seven_segment import stream
from harness.inputs import SHIPPED

REVIEWER, ADMIN = "flywheel-reviewer-token-0123456789", "flywheel-admin-token-0123456789"
TRAFFIC_SEED, FRESH_SEED, ONGOING_SEED = 101, 202, 303
MNIST_TRAFFIC = 45_000  # the first MNIST training digit posted as traffic (the network trained on them)


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def mnist_files(images: np.ndarray, labels: np.ndarray) -> list[tuple[bytes, int]]:
    return [(png(image), int(label)) for image, label in zip(images, labels, strict=True)]


def interleave(*streams: list[tuple[bytes, int]]) -> list[tuple[bytes, int]]:
    return [item for group in zip(*streams, strict=False) for item in group]


def post(client: Any, data: bytes) -> dict[str, Any]:
    response = client.post("/predict", files={"file": ("upload.png", data, "image/png")})
    response.raise_for_status()
    return dict(response.json())


def post_traffic(url: str, items: list[tuple[bytes, int]]) -> dict[str, int]:
    """Post every item; each queued answer's review id -> the true digit."""
    import httpx  # a dev dependency: --help must not need it

    truth: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for data, digit in items:
            answer = post(client, data)
            if answer.get("review_id"):
                truth[answer["review_id"]] = digit
    return truth


def review_everything(url: str, truth: dict[str, int]) -> int:
    """The scripted reviewer: claims and labels until nothing waits."""
    import httpx

    from harness.server import wait_for

    given = 0
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {REVIEWER}"}) as client:
        wait_for(lambda: client.get("/review/stats").json().get("stored_items", 0) >= len(truth),
                 timeout_s=120, what=f"{len(truth)} stored items")
        while (response := client.get("/review/items/next")).status_code == 200:
            item = response.json()
            client.post(f"/review/items/{item['id']}/label", json={"label": truth[item["id"]]}).raise_for_status()
            given += 1
    return given


def tally(items: list[tuple[bytes, int]], classes: list[int], refers: list[bool],
          versions: list[str]) -> dict[str, Any]:
    """Accepted and read right, referred, accuracy of the accepted, read right, of answers to ``items``."""
    right = np.array(classes) == np.array([digit for _, digit in items])
    refer = np.array(refers, dtype=bool)
    return {"accepted_and_right": float((right & ~refer).mean()), "referred": float(refer.mean()),
            "accuracy_of_accepted": float(right[~refer].mean()) if (~refer).any() else float("nan"),
            "read_right": float(right.mean()), "count": len(items), "model_versions": versions}


def scores(url: str, items: list[tuple[bytes, int]]) -> dict[str, Any]:
    """Through ``POST /predict``: accepted and read right, referred, accuracy of the accepted, read right."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        answers = [post(client, data) for data, _ in items]
    return tally(items, [answer["class"] for answer in answers], [answer["refer"] for answer in answers],
                 sorted({str(answer["model_version"]) for answer in answers}))


def candidate_scores(checkpoint: Path, items: list[tuple[bytes, int]]) -> dict[str, Any] | None:
    """The candidate as the service would serve it (``auto`` precision, its refer rules), in process: what it
    would have answered whether or not it was promoted. None when it cannot be served."""
    from model.checkpoint import CheckpointError
    from service.inference.predictor import Predictor
    from service.inference.preprocess import preprocess
    from service.settings import Settings

    try:
        predictor = Predictor.from_checkpoint(checkpoint, precision="auto")
    except (CheckpointError, ValueError, OSError):
        return None
    pixels = Settings.model_fields["max_pixels"].default  # the service's default bound
    answers = predictor.predict([preprocess(data, pixels) for data, _ in items])
    return tally(items, [answer.digit for answer in answers], [answer.refer for answer in answers],
                 [f"{answers[0].model_version} (candidate, in process)"] if answers else [])


class Ongoing(threading.Thread):
    """Traffic that keeps arriving while the loop runs; counts the requests that failed."""

    def __init__(self, url: str, items: list[tuple[bytes, int]]):
        super().__init__(daemon=True)
        self.url, self.items, self.sent, self.failed = url, items, 0, 0
        self.stopping = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stopping.is_set():
                data, _ = self.items[self.sent % len(self.items)]
                try:
                    response = client.post("/predict", files={"file": ("upload.png", data, "image/png")})
                    failed = response.status_code != 200
                except httpx.HTTPError:
                    failed = True
                self.sent += 1
                self.failed += failed
                self.stopping.wait(0.05)  # a steady trickle, not a load test


def copy_live(live: Path, models: Path) -> Path:
    """The live checkpoint (weights, metadata, int8 trunk) copied into the service's models directory."""
    target = models / "live"
    target.mkdir(parents=True, exist_ok=True)
    for path in live.parent.glob(live.stem + ".*"):
        if not path.name.endswith(".train-state.safetensors"):
            shutil.copy2(path, target / path.name)
    return target / live.name


def table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| stream | model | accepted and right | referred | accuracy of the accepted | read right |",
             "|---|---|---:|---:|---:|---:|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {', '.join(row['model_versions'])} | {100 * row['accepted_and_right']:.1f} % | "
                     f"{100 * row['referred']:.1f} % | {100 * row['accuracy_of_accepted']:.2f} % | "
                     f"{100 * row['read_right']:.1f} % |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.flywheel", description=__doc__.split("\n")[0])
    parser.add_argument("--live", type=Path, default=SHIPPED)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--uploads", type=int, default=2500, help="uploads of the style posted (and as many MNIST)")
    parser.add_argument("--audit-fraction", type=float, default=0.5,
                        help="the audit sample while the style streams in (the service's default is 2 %%: the "
                             "demo samples densely so that the loop fits in one sitting)")
    parser.add_argument("--fresh", type=int, default=2000, help="fresh uploads of the style (and MNIST test digits) "
                        "to compare on")
    parser.add_argument("--tiny", action="store_true", help="150 + 150 uploads, a dry-run fine-tune: the CI test")
    args = parser.parse_args(argv)
    if args.tiny:
        args.uploads, args.fresh = 150, 100
    return args


def main(argv: list[str] | None = None) -> int:
    from harness.server import ROOT, running_service
    from model.mnist import load_mnist

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    models = args.out / "models"
    mnist = load_mnist()
    traffic = interleave(stream(args.uploads, TRAFFIC_SEED), mnist_files(
        mnist.train.images[MNIST_TRAFFIC:MNIST_TRAFFIC + args.uploads],
        mnist.train.labels[MNIST_TRAFFIC:MNIST_TRAFFIC + args.uploads]))
    fresh = {"fresh style": stream(args.fresh, FRESH_SEED),
             "MNIST test as PNG": mnist_files(mnist.test.images[:args.fresh], mnist.test.labels[:args.fresh])}
    env = {"BNN_MODEL_PATH": str(copy_live(args.live, models)), "BNN_MODELS_DIR": str(models),
           "BNN_REVIEW_DB": f"sqlite:///{args.out}/review.db", "BNN_REVIEW_TOKENS": f"reviewer:{REVIEWER}",
           "BNN_ADMIN_TOKENS": f"owner:{ADMIN}", "BNN_AUDIT_FRACTION": str(args.audit_fraction),
           "BNN_REVIEW_SOURCE_SHARE": "1", "BNN_SHADOW_FRACTION": "1"}
    summary: dict[str, Any] = {"style": "photographed seven-segment display digits (examples/seven_segment.py)"}
    with running_service(env, ready_timeout=120) as (url, _):
        truth = post_traffic(url, traffic)
        summary["collected"] = {"posted": len(traffic), "queued": len(truth), "labelled": review_everything(url, truth),
                                "audit_fraction": args.audit_fraction}
        before = {name: scores(url, items) for name, items in fresh.items()}
        ongoing = Ongoing(url, interleave(stream(200, ONGOING_SEED), fresh["MNIST test as PNG"][-200:]))
        ongoing.start()
        command = [sys.executable, "-m", "model.learn", "--service", url, "--review-token", REVIEWER,
                   "--admin-token", ADMIN, "--out", str(models / "candidate"),
                   "--shadow-answers", "50" if args.tiny else "200"] + (["--dry-run"] if args.tiny else [])
        started = time.perf_counter()
        code = subprocess.run(command, cwd=ROOT).returncode
        summary["learn"] = {"exit": code, "seconds": round(time.perf_counter() - started, 1)}
        ongoing.stopping.set()
        ongoing.join()
        summary["during_the_loop"] = {"requests": ongoing.sent, "failed": ongoing.failed}
        after = {name: scores(url, items) for name, items in fresh.items()}
    made = models / "candidate" / "bnn.safetensors"
    candidate = {name: candidate_scores(made, items) for name, items in fresh.items()}
    summary["fresh"] = {"before": before, "candidate": candidate, "after": after}
    (args.out / "flywheel.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({key: value for key, value in summary.items() if key != "fresh"}, indent=2))
    print(table({f"{name}, before": row for name, row in before.items()} |
                {f"{name}, candidate": row for name, row in candidate.items() if row is not None} |
                {f"{name}, after": row for name, row in after.items()}))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
