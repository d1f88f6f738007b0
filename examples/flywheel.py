"""The whole loop, from uploads the model handles badly to a candidate that handles them:

    python -m examples.flywheel --out /tmp/flywheel            # 3,000 uploads, the real fine-tune (~15 min)
    python -m examples.flywheel --out /tmp/flywheel --evaluate # and every report family, and the promotion rule
    python -m examples.flywheel --out /tmp/flywheel --tiny     # a few hundred items, a dry-run fine-tune (the test)

1. **Traffic** the live model reads badly and training never saw: photographed seven-segment
   display digits (``examples/seven_segment.py``; nothing under ``model/`` draws segments), posted
   to a real ``python -m service`` as PNG files, with the audit sample at ``--audit-fraction``.
2. **A scripted reviewer** claims every queued item through the public review API
   (``/review/items/next``) and labels it with the digit it shows, up to ``--labels`` labels.
3. **Export** (``GET /review/export``) to ``OUT/review-labels.ndjson``.
4. **Fine-tune** the live checkpoint on the export's training split
   (``python -m model.train --fine-tune``), to ``OUT/candidate/bnn.safetensors``.
5. **Recalibrate** the candidate on the labelled audits (``python -m model.calibrate --reviewed``;
   it refuses, saying how many more it needs, when there are too few: the candidate then keeps
   its validation-mix record).
6. **Compare** on a fresh stream of the same style (another seed): accepted and read right,
   referred, accuracy of the accepted, for the live model and the candidate, through the
   service's own preprocessing and refer rule. With ``--evaluate``, also ``model.evaluate`` of the
   candidate and ``python -m model.promote`` (every report family, the guarantee, the held-out
   labelled items).

Writes ``OUT/flywheel.json`` and prints the before/after table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from examples.seven_segment import stream
from harness.inputs import SHIPPED

TOKEN = "flywheel-reviewer-token-0123456789"
TRAFFIC_SEED, FRESH_SEED = 101, 202


def post_traffic(url: str, count: int, seed: int) -> dict[str, int]:
    """Post ``count`` uploads of the style; returns each queued answer's review id -> the true digit."""
    import httpx  # a dev dependency: --help must not need it

    truth: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for data, digit in stream(count, seed):
            answer = client.post("/predict", files={"file": ("display.png", data, "image/png")}).json()
            if answer.get("review_id"):
                truth[answer["review_id"]] = digit
    return truth


def review_everything(url: str, truth: dict[str, int], labels: int) -> int:
    """The scripted reviewer: claims and labels until nothing waits or ``labels`` are given."""
    import httpx

    from harness.server import wait_for

    headers = {"Authorization": f"Bearer {TOKEN}"}
    given = 0
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        wait_for(lambda: client.get("/review/stats").json().get("stored_items", 0) >= len(truth),
                 timeout_s=120, what=f"{len(truth)} stored items")
        while given < labels and (response := client.get("/review/items/next")).status_code == 200:
            item = response.json()
            client.post(f"/review/items/{item['id']}/label", json={"label": truth[item["id"]]}).raise_for_status()
            given += 1
    return given


def collect_labels(live: Path, out: Path, count: int, labels: int, audit_fraction: float) -> dict[str, Any]:
    """Steps 1-3: serve, post, review, export."""
    import httpx

    from harness.server import running_service

    env = {"BNN_MODEL_PATH": str(live), "BNN_REVIEW_DB": f"sqlite:///{out}/review.db",
           "BNN_REVIEW_TOKENS": f"flywheel:{TOKEN}", "BNN_AUDIT_FRACTION": str(audit_fraction),
           "BNN_WORKERS": "1", "BNN_PRECISION": "float32"}
    with running_service(env) as (url, _):
        truth = post_traffic(url, count, TRAFFIC_SEED)
        given = review_everything(url, truth, labels)
        export = out / "review-labels.ndjson"
        response = httpx.get(url + "/review/export", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600)
        response.raise_for_status()
        export.write_bytes(response.content)
        stats = httpx.get(url + "/review/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return {"posted": count, "queued": len(truth), "labelled": given, "export": str(export),
            "labelled_by_reason": stats["labelled"], "audit_fraction": audit_fraction}


def run_step(command: list[str], log: Path) -> tuple[int, float]:
    """A command of the loop, its output to ``log`` and the terminal; (exit code, seconds)."""
    from harness.server import ROOT

    started = time.perf_counter()
    with log.open("w") as handle, subprocess.Popen([sys.executable, *command], cwd=ROOT, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            print(line, end="", flush=True)
        code = process.wait()
    return code, time.perf_counter() - started


def style_scores(checkpoint: Path, count: int, seed: int) -> dict[str, float] | None:
    """On a fresh stream of the style, through the service's preprocessing and refer rule."""
    from model.checkpoint import CheckpointError
    from service.inference.predictor import Predictor
    from service.inference.preprocess import preprocess

    try:
        predictor = Predictor.from_checkpoint(checkpoint, precision="float32")
    except CheckpointError as error:
        print(f"{checkpoint}: not servable ({error})")
        return None
    items = stream(count, seed)
    answers = predictor.predict([preprocess(data, 40_000_000) for data, _ in items])
    truth = np.array([digit for _, digit in items])
    classes = np.array([answer.digit for answer in answers])
    refer = np.array([answer.refer for answer in answers])
    right = classes == truth
    return {"accepted_and_right": float((right & ~refer).mean()), "referred": float(refer.mean()),
            "accuracy_of_accepted": float(right[~refer].mean()) if (~refer).any() else float("nan"),
            "read_right": float(right.mean()), "count": count}


def table(scores: dict[str, dict[str, float] | None]) -> str:
    lines = ["| checkpoint | accepted and right | referred | accuracy of the accepted | read right |",
             "|---|---:|---:|---:|---:|"]
    for name, row in scores.items():
        if row is None:
            lines.append(f"| {name} | not servable | | | |")
            continue
        lines.append(f"| {name} | {100 * row['accepted_and_right']:.1f} % | {100 * row['referred']:.1f} % | "
                     f"{100 * row['accuracy_of_accepted']:.2f} % | {100 * row['read_right']:.1f} % |")
    return "\n".join(lines)


def make_candidate(live: Path, export: Path, out: Path, dry_run: bool) -> tuple[Path, dict[str, Any]]:
    """Steps 4-5: fine-tune ``live`` on the export's training split, then recalibrate the candidate on
    the labelled audits; the candidate's path and what each step did (no recalibration after a failed
    fine-tune)."""
    candidate = out / "candidate" / "bnn.safetensors"
    tune = ["-m", "model.train", "--fine-tune", str(live), "--reviewed", str(export), "--out", str(candidate),
            "--precision", "float32"] + (["--dry-run"] if dry_run else [])
    code, seconds = run_step(tune, out / "fine-tune.log")
    steps: dict[str, Any] = {"fine_tune": {"exit": code, "seconds": round(seconds, 1)}}
    if code != 0:
        return candidate, steps
    code, seconds = run_step(["-m", "model.calibrate", "--checkpoint", str(candidate), "--reviewed", str(export),
                              "--precision", "float32"], out / "recalibrate.log")
    steps["recalibrate"] = {"exit": code, "seconds": round(seconds, 1),
                            "said": (out / "recalibrate.log").read_text().strip().splitlines()[-1:]}
    return candidate, steps


def evaluate_and_promote(live: Path, live_report: Path, candidate: Path, export: Path, out: Path) -> bool:
    """Step 6's ``--evaluate``: ``model.evaluate`` of the candidate, then ``model.promote``; whether it promotes."""
    reports = out / "candidate" / "reports"
    run_step(["-m", "model.evaluate", "--checkpoint", str(candidate), "--out", str(reports)], out / "evaluate.log")
    code, _ = run_step(["-m", "model.promote", "--live", str(live), "--live-report", str(live_report),
                        "--candidate", str(candidate), "--candidate-report", str(reports / "evaluation.json"),
                        "--reviewed", str(export), "--out", str(out / "promote.json")], out / "promote.log")
    return code == 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.flywheel", description=__doc__.split("\n")[0])
    parser.add_argument("--live", type=Path, default=SHIPPED)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--uploads", type=int, default=3000, help="uploads of the style posted")
    parser.add_argument("--labels", type=int, default=3000, help="most labels the reviewer gives")
    parser.add_argument("--audit-fraction", type=float, default=0.5,
                        help="the audit sample while the style streams in (the service's default is 2 %%: the "
                             "demo samples densely so that the loop fits in one sitting)")
    parser.add_argument("--fresh", type=int, default=2000, help="fresh uploads of the style to compare on")
    parser.add_argument("--tiny", action="store_true", help="300 uploads, a dry-run fine-tune: the CI test")
    parser.add_argument("--evaluate", action="store_true", help="also model.evaluate the candidate and apply "
                        "model.promote against --live-report")
    parser.add_argument("--live-report", type=Path, default=Path("reports/evaluation.json"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.uploads, args.labels, args.fresh = 300, 300, 200
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"style": "photographed seven-segment display digits (examples/seven_segment.py)",
                               "collected": collect_labels(args.live, args.out, args.uploads, args.labels,
                                                           args.audit_fraction)}
    export = Path(summary["collected"]["export"])
    candidate, steps = make_candidate(args.live, export, args.out, args.tiny)
    summary.update(steps)
    if steps["fine_tune"]["exit"] != 0:
        print(json.dumps(summary, indent=2))
        return int(steps["fine_tune"]["exit"])
    scores = {"live": style_scores(args.live, args.fresh, FRESH_SEED),
              "candidate": style_scores(candidate, args.fresh, FRESH_SEED)}
    summary["fresh_stream"] = scores
    if args.evaluate:
        summary["promote"] = evaluate_and_promote(args.live, args.live_report, candidate, export, args.out)
    (args.out / "flywheel.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({key: value for key, value in summary.items() if key != "fresh_stream"}, indent=2))
    print(f"\nfresh stream of the style ({args.fresh} uploads, seed {FRESH_SEED}):\n")
    print(table(scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
