"""What people said of the served answers, read back: the review queue's NDJSON export
(``GET /review/export``, a file or the running service's URL), its split into training and
held-out items, and a checkpoint scored against it. The library behind three commands:

    python -m model.evaluate  --checkpoint CKPT --reviewed SOURCE   # score a checkpoint on the labels
    python -m model.calibrate --checkpoint CKPT --reviewed SOURCE   # the refer rule from the labelled audits
    python -m model.train --fine-tune CKPT --reviewed SOURCE        # a candidate trained on the training split

Each record holds the 28 x 28 the network saw (base64 of 784 bytes), the reviewer's label
(``0``-``9``, ``not_a_digit``, ``unreadable``), why it was queued (``audit``: drawn at random
from every answer, with its fraction, maybe referred too; ``referred``: referred and not drawn),
the served answer and its channel (``file``, or ``drawn``: the page's pad; none before channels:
a file). The checkpoint named (the served one, or a candidate) answers every input again under
its refer rule for that channel, and the report says, on what people really send:

* **audits** (a uniform sample of the traffic): how often the accepted answers are wrong, the
  served ones and the checkpoint's own, with the Clopper-Pearson 95 % interval, next to alpha;
  files and drawings apart, each held to its own alpha;
* **referred digits** (every labelled digit the served model referred): the share the checkpoint
  would accept, and its accuracy on those (the human time it would save, and at what cost);
* **non-digits** (``not_a_digit``): the share the checkpoint refers (it should be all).

Unreadable items are counted and left out of the report (the calibration counts an accepted one
as an error). The split (:func:`split`): every audit is held out, for calibration and comparison,
and of the other items a fixed 30 % by a hash of their id; training sees only the rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from model.binomial import clopper_pearson
from model.calibration import Calibration, Channel, channel_of
from model.data import IMAGE_SIZE
from model.network import BayesianNet
from model.refer_rule import ReferRule
from model.scoring import predict_images

HELD_OUT_SHARE = 0.3  # of the items that are not audits, by a hash of their id (audits are all held out)
TOKEN_ENV = "BNN_REVIEW_TOKEN"  # a reviewer's token, to read the export from a running service
# each channel's audits in the report: its key (the file channel's the first, before channels) and what they are
AUDIT_SECTIONS: dict[Channel, tuple[str, str]] = {"file": ("audits", "files"), "drawn": ("drawn_audits", "drawings")}


@dataclass(frozen=True)
class Reviewed:
    inputs: np.ndarray  # uint8 [n, 28, 28], as the network saw them
    labels: list[str]  # "0".."9", "not_a_digit", "unreadable"
    reasons: list[str]  # "audit" (drawn from every answer; maybe referred too) or "referred" (not drawn)
    served: list[int]  # the served answer's class
    model_versions: list[str]  # the served model of each
    ids: list[str]  # the review item's id (what the train / held-out split hashes)
    referred: list[bool]  # the served answer said refer
    audit_fractions: list[float | None]  # an audit's draw fraction; None otherwise (and for pre-schema-2 audits)
    labelled_at: list[float]  # Unix seconds
    channels: list[Channel]  # whose refer rule judged it: "file", or "drawn" (the page's pad; older items: "file")
    source: str = ""  # the file or URL it was read from
    sha256: str = ""  # of the export's bytes as read

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, keep: Sequence[bool]) -> Reviewed:
        """The items where ``keep`` is true (same source and hash: a view of one export)."""
        chosen = [index for index, flag in enumerate(keep) if flag]
        columns = {field.name: getattr(self, field.name) for field in fields(self)}
        for name, column in columns.items():
            if isinstance(column, np.ndarray):
                columns[name] = column[chosen]
            elif isinstance(column, list):
                columns[name] = [column[index] for index in chosen]
        return Reviewed(**columns)

    @property
    def audits(self) -> list[bool]:
        """Items the audit sample drew with a known fraction: a sample of all traffic."""
        return [reason == "audit" and fraction is not None for reason, fraction in
                zip(self.reasons, self.audit_fractions, strict=True)]


def held_out(item_id: str, share: float = HELD_OUT_SHARE) -> bool:
    """Whether an item is held out of training: a fixed hash of its id (sha256, first 8 bytes) below
    ``share``, the same on every machine and every run."""
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big") < share * 2**64


def split(reviewed: Reviewed, share: float = HELD_OUT_SHARE) -> tuple[Reviewed, Reviewed]:
    """(train, held out): every audit is held out (the calibration's and the comparison's sample of the
    traffic), and of the rest a share ``share`` by id hash. Disjoint, and together everything."""
    kept = [reason == "audit" or held_out(item_id, share) for reason, item_id in
            zip(reviewed.reasons, reviewed.ids, strict=True)]
    return reviewed.take([not flag for flag in kept]), reviewed.take(kept)


def parse_export(data: bytes, source: str) -> Reviewed:
    """NDJSON export bytes; a malformed line raises ValueError naming its number."""
    rows: dict[str, list[Any]] = {name: [] for name in ("inputs", "labels", "reasons", "served", "model_versions",
                                                        "ids", "referred", "audit_fractions", "labelled_at",
                                                        "channels")}
    for number, line in enumerate(data.decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pixels = np.frombuffer(base64.b64decode(record["input"]), np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)
            reason = str(record["reason"])
            values = {"inputs": pixels, "labels": str(record["label"]), "reasons": reason,
                      "served": int(record["predicted"]), "model_versions": str(record.get("model_version", "")),
                      "ids": str(record.get("id", f"{source}:{number}")),
                      # exports before schema 2: an audit was an accepted answer, a referred item a referred one
                      "referred": bool(record.get("refer", reason == "referred")),
                      "audit_fractions": None if record.get("audit_fraction") is None
                      else float(record["audit_fraction"]),
                      "labelled_at": float(record.get("labelled_at") or 0.0),
                      # exports before the field named it only in the answer; before channels, nowhere
                      "channels": _channel(record.get("channel", (record.get("answer") or {}).get("channel")))}
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{source}:{number}: not a review export record ({error})") from None
        for name, value in values.items():
            rows[name].append(value)
    images = rows.pop("inputs")
    stacked = np.stack(images) if images else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return Reviewed(stacked, **rows, source=source, sha256=hashlib.sha256(data).hexdigest())


def _channel(raw: object) -> Channel:
    """An export's ``channel``: items stored before channels have none, and were judged as files."""
    return "file" if raw is None else channel_of(raw)


def read_export(path: Path) -> Reviewed:
    return parse_export(path.read_bytes(), str(path))


def read_source(source: str, token: str | None = None) -> Reviewed:
    """An export file, or a running service's export URL (``http://host:port/review/export``, read
    with a reviewer's token: ``token`` or ``$BNN_REVIEW_TOKEN``). The database itself is the
    service's to read: this side only knows the export's records."""
    if not source.startswith(("http://", "https://")):
        return read_export(Path(source))
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ValueError(f"reading {source} needs a reviewer's token: --token or ${TOKEN_ENV}")
    request = urllib.request.Request(source, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return parse_export(response.read(), source)


def uniform_audits(reviewed: Reviewed) -> Reviewed:
    """The audits as one uniform sample of the traffic: where fractions differ, each audit is kept
    with probability (smallest fraction / its fraction), decided by a hash of its id (so the same
    export always gives the same sample); items that are not audits, or have no fraction, are left
    out. With one fraction, every audit."""
    audits = reviewed.take(reviewed.audits)
    if not len(audits):
        return audits
    lowest = min(fraction for fraction in audits.audit_fractions if fraction is not None)
    return audits.take([held_out(f"uniform:{item_id}", lowest / (fraction or lowest))
                        for item_id, fraction in zip(audits.ids, audits.audit_fractions, strict=True)])


def _rate(errors: int, trials: int) -> dict[str, Any]:
    lower, upper = clopper_pearson(errors, trials)
    return {"n": trials, "wrong": errors, "ratio": errors / trials if trials else None, "lower": lower, "upper": upper}


def channel_refers(entropy: np.ndarray, channels: Sequence[Channel],
                   rules: Mapping[Channel, Calibration]) -> np.ndarray:
    """bool ``[n]``: which of ``n`` inputs (predictive entropy ``[n]`` in nats, each input's channel ``[n]``)
    are referred, each under its own channel's rule in ``rules``."""
    at = np.array(channels)
    refer = np.zeros(len(at), bool)
    for channel, rule in rules.items():
        refer[at == channel] = ReferRule.of(rule).refers(entropy[at == channel])
    return refer


def reviewed_report(net: BayesianNet, rules: Mapping[Channel, Calibration], reviewed: Reviewed, samples: int,
                    batch: int = 500) -> dict[str, Any]:
    """The checkpoint's answers on the labelled inputs, each under its channel's refer rule (see the
    module docstring). The audits' accepted error is each channel's, held to its own alpha: files
    (``audits``, what the live estimate counts) and drawings on the page's pad (``drawn_audits``)."""
    classes: list[int] = []
    referred: list[bool] = []
    if len(reviewed):
        result = predict_images(net, reviewed.inputs, samples, batch)
        classes = result.mean_probs.argmax(-1).tolist()
        referred = channel_refers(result.entropy.numpy(), reviewed.channels, rules).tolist()
    rows = list(zip(reviewed.labels, reviewed.reasons, reviewed.served, classes, referred, reviewed.referred,
                    reviewed.channels, strict=True))

    def audits(channel: Channel) -> dict[str, Any]:
        def accepted_error(use_served: bool) -> dict[str, Any]:
            judged = [(label, served if use_served else mine)
                      for label, reason, served, mine, refer, served_refer, at in rows
                      if at == channel and reason == "audit" and label != "unreadable"
                      and not (served_refer if use_served else refer)]
            return _rate(sum(label != str(answer) for label, answer in judged), len(judged))

        return {"alpha": rules[channel].alpha, "served": accepted_error(True), "checkpoint": accepted_error(False),
                "checkpoint_refers": sum(refer for _, reason, _, _, refer, _, at in rows
                                         if at == channel and reason == "audit")}

    digits = [(label, mine, refer) for label, _, _, mine, refer, served_refer, _ in rows
              if served_refer and label.isdigit()]
    kept = [(label, mine) for label, mine, refer in digits if not refer]
    non_digits = [refer for label, _, _, _, refer, _, _ in rows if label == "not_a_digit"]
    return {
        "items": len(reviewed), "unreadable": reviewed.labels.count("unreadable"),
        "served_models": sorted(set(reviewed.model_versions)), "samples": samples,
        "alpha": {channel: rule.alpha for channel, rule in rules.items()},
        **{key: audits(channel) for channel, (key, _) in AUDIT_SECTIONS.items()},
        "referred_digits": {"n": len(digits), "checkpoint_accepts": len(kept) / len(digits) if digits else None,
                            "accuracy_of_accepted": (sum(label == str(mine) for label, mine in kept) / len(kept)
                                                     if kept else None),
                            "served_right": sum(label == str(served) for label, _, served, _, _, served_refer, _ in rows
                                                if served_refer and label.isdigit())},
        "non_digits": {"n": len(non_digits), "checkpoint_refers": sum(non_digits) / len(non_digits) if non_digits
                       else None},
    }


def markdown(report: dict[str, Any]) -> str:
    def share(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.2f} %"

    def audit_rows(key: str, what: str) -> list[str]:
        served, mine = report[key]["served"], report[key]["checkpoint"]
        return [f"| audits of {what} (alpha {share(report[key]['alpha'])}): served answers wrong | {served['n']} | "
                f"{share(served['ratio'])} | {share(served['lower'])} – {share(served['upper'])} |",
                f"| audits of {what}: this checkpoint's accepted answers wrong | {mine['n']} | "
                f"{share(mine['ratio'])} | {share(mine['lower'])} – {share(mine['upper'])} |"]

    return "\n".join([
        f"Reviewed items: {report['items']} ({report['unreadable']} unreadable), served by "
        f"{', '.join(report['served_models']) or '–'}",
        "",
        "| what | n | value | 95 % interval |",
        "|---|---:|---:|---|",
        *(row for key, what in AUDIT_SECTIONS.values() for row in audit_rows(key, what)),
        f"| referred digits this checkpoint accepts | {report['referred_digits']['n']} | "
        f"{share(report['referred_digits']['checkpoint_accepts'])} | |",
        f"| … accuracy of those | | {share(report['referred_digits']['accuracy_of_accepted'])} | |",
        f"| non-digits this checkpoint refers | {report['non_digits']['n']} | "
        f"{share(report['non_digits']['checkpoint_refers'])} | |",
    ])
