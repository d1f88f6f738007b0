"""The models a worker holds: the live one, the previous live one (kept for a rollback) and at most
one candidate (the shadow), and the checks a checkpoint passes before it may hold any place.

:func:`load_verified` is the one way in: the file reads and is its metadata's (``file``), the
architecture builds and takes the weights (``architecture``), a calibration record exists for the
precision the service runs (``calibration``), every weight is finite (``weights``), and the known
digits (``service/known_digits.npz``: 20 MNIST test digits, the first 20 of the test split) are read as their
labels (``fixtures``). A failed check raises :class:`CandidateRefused` naming the check and why.

A :class:`ModelSet` is immutable: a swap builds a new one and the inference path replaces its
reference between passes (``service/inference.py``), so a pass never sees half of a change.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import CheckpointError, load_checkpoint, metadata_path
from service.predictor import Predictor
from service.settings import Settings

KNOWN_DIGITS = Path(__file__).resolve().parent / "known_digits.npz"
CHECKS = ("file", "architecture", "calibration", "weights", "fixtures")


class CandidateRefused(Exception):
    """A checkpoint failed one of :data:`CHECKS`; ``check`` names it, the message says why."""

    def __init__(self, check: str, reason: str):
        super().__init__(reason)
        self.check = check
        self.reason = reason


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
                "threshold": predictor.rule.threshold, "drawn_threshold": predictor.rules["drawn"].threshold,
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


def checkpoint_digest(path: Path) -> str:
    """sha256 over the weights file and its metadata (a recalibration changes only the metadata)."""
    digest = hashlib.sha256()
    for part in (path, metadata_path(path)):
        try:
            digest.update(part.read_bytes())
        except OSError as error:
            raise CandidateRefused("file", f"{part}: cannot read ({error.strerror or error})") from None
    return digest.hexdigest()


def provenance(meta: dict[str, Any], predictor: Predictor) -> dict[str, Any]:
    calibration = predictor.calibration
    return {
        "name": meta.get("name"), "git_commit": meta.get("git_commit"), "epochs": meta.get("epochs"),
        "fine_tune": {key: meta["fine_tune"].get(key) for key in ("parent", "epochs", "lr")}
        if isinstance(meta.get("fine_tune"), dict) else None,
        "calibration": None if calibration is None else {
            "data": calibration.data, "alpha": calibration.alpha, "source":
                "reviewed audits" if calibration.provenance is not None else "validation mix"},
    }


def known_digits(path: Path = KNOWN_DIGITS) -> tuple[list[np.ndarray], list[int]]:
    with np.load(path, allow_pickle=False) as data:
        return list(data["images"]), [int(label) for label in data["labels"]]


def check_fixtures(predictor: Predictor, path: Path = KNOWN_DIGITS) -> None:
    images, labels = known_digits(path)
    read = [prediction.digit for prediction in predictor.predict(images)]
    wrong = [f"{label} read as {digit}" for label, digit in zip(labels, read, strict=True) if label != digit]
    if wrong:
        raise CandidateRefused("fixtures", f"{len(wrong)} of {len(labels)} known digits misread: {', '.join(wrong)}")


def load_verified(path: Path, precision: str, settings: Settings) -> HeldModel:
    """Load ``path`` to run in ``precision`` (the live model's: a candidate never changes it) with
    the settings' overrides, after every check; :class:`CandidateRefused` on the first that fails."""
    digest = checkpoint_digest(path)
    try:
        net, meta = load_checkpoint(path)
    except CheckpointError as error:
        raise CandidateRefused(error.check, str(error)) from None
    bad = [name for name, tensor in net.state_dict().items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise CandidateRefused("weights", f"{path}: {len(bad)} tensor(s) hold NaN or infinite values: "
                                          f"{', '.join(bad[:3])}")
    try:
        predictor = Predictor.from_loaded(net, meta, path, settings.threshold, settings.default_samples,
                                          settings.expected_referral_rate, precision)
    except CheckpointError as error:
        raise CandidateRefused(error.check, str(error)) from None
    if predictor.default_samples > settings.max_samples:
        raise CandidateRefused("calibration", f"{path}: calibrated N={predictor.default_samples} exceeds "
                                              f"BNN_MAX_SAMPLES={settings.max_samples}")
    check_fixtures(predictor)
    return HeldModel(predictor, path, digest, time.time(), provenance(meta, predictor))
