"""What people said of the served answers, read back: the review queue's NDJSON export
(``GET /review/export``) scored against a checkpoint.

    python -m model.evaluate --checkpoint checkpoints/bnn.safetensors --reviewed review-labels.ndjson

Each record holds the 28 x 28 the network saw (base64 of 784 bytes), the reviewer's label
(``0``-``9``, ``not_a_digit``, ``unreadable``), why it was queued (``referred`` or ``audit``) and
the served answer. The checkpoint named (the served one, or a candidate to ship) answers every
input again under its own refer rule, and the report says, on what people really send:

* **audits** (a uniform sample of what the served model accepted): how often the checkpoint's
  accepted answers are wrong, with the Clopper-Pearson 95 % interval, next to its promise (alpha);
* **referred digits**: the share the checkpoint would accept, and its accuracy on those (the human
  time a new threshold or model would save, and at what cost);
* **non-digits** (``not_a_digit``): the share the checkpoint refers (it should be all).

The audit sample is of what the *served* model accepted: for another checkpoint it measures the
error on those images, not on everything the new one would accept. Unreadable items are counted
and left out. Nothing here trains or calibrates: labels to retrain from must first be split into
training and held-out sets by whoever retrains.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.binomial import clopper_pearson
from model.calibration import Calibration
from model.data import IMAGE_SIZE
from model.network import BayesianNet
from model.scoring import predict_images


@dataclass(frozen=True)
class Reviewed:
    inputs: np.ndarray  # uint8 [n, 28, 28], as the network saw them
    labels: list[str]  # "0".."9", "not_a_digit", "unreadable"
    reasons: list[str]  # "referred" or "audit"
    served: list[int]  # the served answer's class
    model_versions: list[str]  # the served model of each

    def __len__(self) -> int:
        return len(self.labels)


def read_export(path: Path) -> Reviewed:
    """The NDJSON export; a malformed line raises ValueError naming its number."""
    inputs, labels, reasons, served, versions = [], [], [], [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pixels = np.frombuffer(base64.b64decode(record["input"]), np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)
            label, reason, predicted = str(record["label"]), str(record["reason"]), int(record["predicted"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not a review export record ({error})") from None
        inputs.append(pixels)
        labels.append(label)
        reasons.append(reason)
        served.append(predicted)
        versions.append(str(record.get("model_version", "")))
    empty = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return Reviewed(np.stack(inputs) if inputs else empty, labels, reasons, served, versions)


def _rate(errors: int, trials: int) -> dict[str, Any]:
    lower, upper = clopper_pearson(errors, trials)
    return {"n": trials, "wrong": errors, "ratio": errors / trials if trials else None, "lower": lower, "upper": upper}


def reviewed_report(net: BayesianNet, calibration: Calibration, reviewed: Reviewed, samples: int,
                    batch: int = 500) -> dict[str, Any]:
    """The checkpoint's answers on the labelled inputs, under its refer rule (see the module docstring)."""
    classes: list[int] = []
    referred: list[bool] = []
    if len(reviewed):
        result = predict_images(net, reviewed.inputs, samples, batch)
        classes, referred = result.mean_probs.argmax(-1).tolist(), (result.entropy > calibration.threshold).tolist()
    rows = list(zip(reviewed.labels, reviewed.reasons, reviewed.served, classes, referred, strict=True))

    def accepted_error(use_served: bool) -> dict[str, Any]:
        judged = [(label, served if use_served else mine) for label, reason, served, mine, refer in rows
                  if reason == "audit" and label != "unreadable" and (use_served or not refer)]
        return _rate(sum(label != str(answer) for label, answer in judged), len(judged))

    digits = [(label, mine, refer) for label, reason, _, mine, refer in rows if reason == "referred" and label.isdigit()]
    kept = [(label, mine) for label, mine, refer in digits if not refer]
    non_digits = [refer for label, _, _, _, refer in rows if label == "not_a_digit"]
    return {
        "items": len(reviewed), "unreadable": reviewed.labels.count("unreadable"),
        "served_models": sorted(set(reviewed.model_versions)), "samples": samples, "alpha": calibration.alpha,
        "audits": {"served": accepted_error(True), "checkpoint": accepted_error(False),
                   "checkpoint_refers": sum(refer for label, reason, _, _, refer in rows if reason == "audit")},
        "referred_digits": {"n": len(digits), "checkpoint_accepts": len(kept) / len(digits) if digits else None,
                            "accuracy_of_accepted": (sum(label == str(mine) for label, mine in kept) / len(kept)
                                                     if kept else None),
                            "served_right": sum(label == str(served) for label, reason, served, _, _ in rows
                                                if reason == "referred" and label.isdigit())},
        "non_digits": {"n": len(non_digits), "checkpoint_refers": sum(non_digits) / len(non_digits) if non_digits
                       else None},
    }


def markdown(report: dict[str, Any]) -> str:
    def share(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.2f} %"

    served, mine = report["audits"]["served"], report["audits"]["checkpoint"]
    return "\n".join([
        f"Reviewed items: {report['items']} ({report['unreadable']} unreadable), served by "
        f"{', '.join(report['served_models']) or '–'}; promise alpha = {share(report['alpha'])}",
        "",
        "| what | n | value | 95 % interval |",
        "|---|---:|---:|---|",
        f"| audits: served answers wrong | {served['n']} | {share(served['ratio'])} | "
        f"{share(served['lower'])} – {share(served['upper'])} |",
        f"| audits: this checkpoint's accepted answers wrong | {mine['n']} | {share(mine['ratio'])} | "
        f"{share(mine['lower'])} – {share(mine['upper'])} |",
        f"| referred digits this checkpoint accepts | {report['referred_digits']['n']} | "
        f"{share(report['referred_digits']['checkpoint_accepts'])} | |",
        f"| … accuracy of those | | {share(report['referred_digits']['accuracy_of_accepted'])} | |",
        f"| non-digits this checkpoint refers | {report['non_digits']['n']} | "
        f"{share(report['non_digits']['checkpoint_refers'])} | |",
    ])
