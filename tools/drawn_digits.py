"""The drawing battery through the real page: digits, letters and doodles drawn with the mouse on
the try-it page in headless Chromium (Playwright), as a person draws them.

    python -m tools.drawn_digits [--digits 1000] [--repeats 4] [--seed 51] [--checkpoint PATH] [--out reports]

Starts the service (``python -m service``) on a free port with ``--checkpoint``, opens the page,
and for each drawing of ``model.synth.drawing_battery.battery`` (seeded: MNIST *test* digits re-inked as
strokes and the sketched skeletons, three pens, a hand's size, slant and wobble; letters no
reader takes for a digit; doodles): clears the pad, picks the pen, draws every stroke with
pointer events (down, moves, up), waits for the page's own ``/predict`` answer, and checks that
the page shows it (the digit, and "Accepted", "unsure: 3 or 5?" or "Probably not a digit").
Prints the tally (per digit, per source, per pen; letters and doodles) and, with ``--compare``,
the same drawings answered in process (``model.synth.pen.draw`` instead of Chrome's canvas). Writes
``OUT/drawn_digits.json`` and ``OUT/drawn_gallery.png`` (the page's own canvas exports with
their answers). About 1.1 s a drawing on 2 cores: some 20 minutes for the default 1,156.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from model.calibration import served
from model.checkpoint import load_checkpoint
from model.mnist import load_mnist
from model.report.drawings import Answer, gallery, in_process, markdown, tally
from model.synth.drawing_battery import Drawing, battery

CHROMIUM = os.environ.get("BNN_CHROMIUM", "/usr/bin/chromium")
MIN_STEP = 7.0  # page pixels between pointer moves: a quick hand (Chrome joins them with lines)


def pointer_path(stroke: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The stroke's points at least MIN_STEP apart (its ends kept): the moves a mouse reports."""
    kept = [stroke[0]]
    for x, y in stroke[1:-1]:
        if (x - kept[-1][0]) ** 2 + (y - kept[-1][1]) ** 2 >= MIN_STEP**2:
            kept.append((x, y))
    return kept + ([stroke[-1]] if len(stroke) > 1 else [])


def expected_decision(answer: dict[str, Any]) -> str:
    """The start of what the page must say for ``answer``."""
    if not answer["refer"]:
        return f"Accepted: it is a {answer['class']}"
    if answer["refer_reason"] == "unfamiliar":
        return "Probably not a digit: refer to a human"
    return "Refer to a human: unsure: "


def through_the_page(url: str, drawings: list[Drawing], gallery_count: int) -> tuple[list[Answer], list[bytes], int]:
    """Each drawing drawn on the page: its answers, the first ``gallery_count`` canvas exports, and
    how many times the page showed something other than its API answer."""
    from playwright.sync_api import sync_playwright
    from tqdm import tqdm

    answers: list[Answer] = []
    canvases: list[bytes] = []
    mismatches = 0
    replies: list[dict[str, Any]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.on("response", lambda r: replies.append(r.json()) if "/predict" in r.url and r.ok else None)
        page.goto(url + "/")
        box = page.locator("#pad").bounding_box()
        assert box is not None
        scale = box["width"] / 280
        for index, drawing in enumerate(tqdm(drawings, desc="drawing on the page", dynamic_ncols=True, mininterval=2)):
            page.click("#clear")
            page.select_option("#pen", str(int(drawing.pen)))
            before = len(replies)
            for stroke in drawing.strokes:
                path = pointer_path(stroke)
                page.mouse.move(box["x"] + path[0][0] * scale, box["y"] + path[0][1] * scale)
                page.mouse.down()
                for x, y in path[1:]:
                    page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
                page.mouse.up()
            page.wait_for_function("() => document.body.dataset.state === 'idle'", timeout=20_000)
            deadline = time.monotonic() + 20
            while len(replies) <= before and time.monotonic() < deadline:
                page.wait_for_timeout(10)
            reply = replies[-1]
            shown = page.inner_text("#decision")
            mismatches += not (shown.startswith(expected_decision(reply))
                               and page.inner_text("#class") == str(reply["class"]))
            answers.append(Answer(int(reply["class"]), bool(reply["refer"]), reply["refer_reason"],
                                  float(reply["entropy"])))
            if index < gallery_count:
                data_url = page.evaluate("() => document.getElementById('pad').toDataURL('image/png')")
                canvases.append(base64.b64decode(data_url.split(",", 1)[1]))
        browser.close()
    return answers, canvases, mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.drawn_digits", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--digits", type=int, default=1000, help="digit drawings (digit index %% 10)")
    parser.add_argument("--repeats", type=int, default=4, help="drawings of each letter and doodle")
    parser.add_argument("--seed", type=int, default=51)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--gallery", type=int, default=60, help="digit drawings in the gallery (then 20 non-digits)")
    parser.add_argument("--compare", action="store_true", help="also answer the drawings in process")
    args = parser.parse_args(argv)
    from harness.server import running_service  # httpx: a dev dependency, not needed for --help

    drawings = battery(load_mnist().test, args.digits, args.repeats, args.seed)
    # the gallery: the first digits, then every 5th non-digit
    chosen = list(range(min(args.gallery, args.digits))) + list(range(args.digits, len(drawings), 5))[:20]
    ordered = [drawings[i] for i in chosen] + [d for i, d in enumerate(drawings) if i not in set(chosen)]
    env = {"BNN_MODEL_PATH": str(args.checkpoint.resolve()), "BNN_WORKERS": "1"}
    with running_service(env) as (url, _):
        answers, canvases, mismatches = through_the_page(url, ordered, len(chosen))
    result = tally(ordered, answers)
    net, meta = load_checkpoint(args.checkpoint)
    print(f"# drawing battery through the page: {meta['model_version']}, seed {args.seed}\n")
    print(markdown(result))
    print(f"\nthe page showed its API answer {len(ordered) - mismatches} of {len(ordered)} times")
    report: dict[str, Any] = {"model_version": meta["model_version"], "seed": args.seed, "through_the_page": result,
                              "page_mismatches": mismatches}
    if args.compare:
        torch.manual_seed(0)
        calibration = served(meta, "float32")["drawn"]  # the page's drawings: the drawn channel's rule
        report["in_process"] = tally(ordered, in_process(net, ordered, calibration, calibration.samples))
        print("\n# the same drawings in process (model.synth.pen.draw)\n")
        print(markdown(report["in_process"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drawn_digits.json").write_text(json.dumps(report, indent=2) + "\n")
    gallery(ordered[: len(chosen)], answers[: len(chosen)], args.out / "drawn_gallery.png", canvases)
    print(f"\nwrote {args.out / 'drawn_digits.json'} and {args.out / 'drawn_gallery.png'}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
