"""The models a worker holds: the live one, the previous live one (kept for a rollback) and at most
one candidate (the shadow), each with what it was fitted on; a checkpoint gets here only through the
checks of ``checks.py``.

A :class:`ModelSet` is immutable: a swap builds a new one and the inference path replaces its
reference between passes (``service/pipeline.py``), so a pass never sees half of a change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from model.calibration import Calibration, Channel
from model.refer_rule import ReferRule
from service.inference.predictor import Predictor

# each channel's threshold in describe(), under the names the models page reads (the file channel's: "threshold")
THRESHOLD_KEYS: dict[Channel, str] = {"file": "threshold", "drawn": "drawn_threshold"}


@dataclass(frozen=True)
class HeldModel:
    predictor: Predictor
    path: Path
    digest: str  # sha256 of the weights file and the metadata file: what was verified
    loaded_at: float  # Unix time
    provenance: dict[str, Any]  # from its metadata: training and calibration records

    @property
    def version(self) -> str:
        return self.predictor.model_version

    def describe(self) -> dict[str, Any]:
        predictor = self.predictor
        return {"model_version": self.version, "path": str(self.path), "sha256": self.digest,
                "loaded_at": self.loaded_at, "precision": predictor.precision.precision,
                **{THRESHOLD_KEYS[channel]: rule.threshold for channel, rule in predictor.rules.items()},
                "samples": predictor.default_samples, **self.provenance}


@dataclass(frozen=True)
class ModelSet:
    live: HeldModel
    previous: HeldModel | None = None
    shadow: HeldModel | None = None

    def held(self) -> list[HeldModel]:
        return [model for model in (self.live, self.previous, self.shadow) if model is not None]

    def find(self, digest: str) -> HeldModel | None:
        return next((model for model in self.held() if model.digest == digest), None)

    def with_shadow(self, shadow: HeldModel | None) -> ModelSet:
        return replace(self, shadow=shadow)

    def describe(self) -> dict[str, Any]:
        return {role: None if model is None else model.describe()
                for role, model in (("live", self.live), ("previous", self.previous), ("shadow", self.shadow))}


def provenance(meta: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    return {
        "name": meta.get("name"), "git_commit": meta.get("git_commit"), "epochs": meta.get("epochs"),
        "fine_tune": {key: meta["fine_tune"].get(key) for key in ("parent", "epochs", "lr")}
        if isinstance(meta.get("fine_tune"), dict) else None,
        "calibration": calibration_summary(predictor),
    }


def fitted_on(calibration: Calibration | None, rule: ReferRule) -> str:
    """What one channel's rule in force was fitted on: its reviewed audits (how many), the validation mix,
    or neither (BNN_THRESHOLD set the threshold)."""
    if calibration is None or rule.threshold != calibration.threshold:
        return "threshold set by BNN_THRESHOLD"
    if calibration.provenance is not None:
        return f"reviewed audits ({calibration.provenance.get('audits_used')} labelled, {calibration.data})"
    return "validation mix"


def calibrated_on(predictor: Predictor) -> str:
    """What the rules in force were fitted on: one phrase when every channel's is the same, else each channel's."""
    by_channel = {channel: fitted_on(predictor.calibrations.get(channel), rule)
                  for channel, rule in predictor.rules.items()}
    if len(set(by_channel.values())) == 1:
        return next(iter(by_channel.values()))
    return "; ".join(f"{channel}: {on}" for channel, on in by_channel.items())


def calibration_summary(predictor: Predictor) -> dict[str, Any] | None:
    """What each channel's rule was fitted on and promises, and :func:`calibrated_on` as ``source`` (what the
    models page shows). None: no record (BNN_THRESHOLD alone)."""
    if not predictor.calibrations:
        return None
    channels = {channel: {"data": record.data, "alpha": record.alpha,
                          "source": fitted_on(record, predictor.rules[channel])}
                for channel, record in predictor.calibrations.items()}
    return {"source": calibrated_on(predictor), "channels": channels}


