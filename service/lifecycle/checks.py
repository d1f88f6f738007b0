"""The checks a checkpoint passes before the service holds it in any place (live, previous, shadow).

:func:`load_verified` is the one way in: the path is allowed (``path``, :func:`confined`: inside
``BNN_MODELS_DIR`` once symlinks are resolved, a regular file under ``BNN_MAX_CHECKPOINT_BYTES``,
its metadata too, no NUL byte; the live checkpoint ``BNN_MODEL_PATH`` is the operator's and exempt
from the directory rule only), the file reads and is its metadata's (``file``), the
architecture builds and takes the weights (``architecture``), every channel has a calibration record
for the precision the service runs (``calibration``), every weight is finite (``weights``), and the
known digits (``known_digits.npz`` beside this module: 20 MNIST test digits, the first 20 of the test
split) are read as their labels (``fixtures``). A failed check raises :class:`CandidateRefused` naming
the check and why (and, for ``path``, the rule: one of :data:`PATH_RULES`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import CheckpointError, load_checkpoint, metadata_path
from service.inference.predictor import Predictor
from service.lifecycle.held import HeldModel, provenance
from service.settings import Settings

KNOWN_DIGITS = Path(__file__).resolve().parent / "known_digits.npz"
CHECKS = ("path", "file", "architecture", "calibration", "weights", "fixtures")
# why a path is refused before anything is read: a NUL byte; outside BNN_MODELS_DIR (after ``..`` and
# symlinks); not a regular file (a directory, a device such as /dev/zero that reads without end, a FIFO
# that blocks, missing); over BNN_MAX_CHECKPOINT_BYTES
PATH_RULES = ("nul", "models_dir", "regular_file", "size")


class CandidateRefused(Exception):
    """A checkpoint failed one of :data:`CHECKS`; ``check`` names it, the message says why, and
    ``rule`` which of :data:`PATH_RULES` a refused path broke (None for the other checks)."""

    def __init__(self, check: str, reason: str, rule: str | None = None):
        super().__init__(reason)
        self.check = check
        self.reason = reason
        self.rule = rule


def refuse_path(path: object, rule: str, why: str) -> CandidateRefused:
    return CandidateRefused("path", f"{path}: {why}", rule)


def check_file(path: Path, info: os.stat_result, max_bytes: int | None) -> None:
    """``path`` (its ``stat``) is a regular file of at most ``max_bytes``, or CandidateRefused naming the rule."""
    if not stat.S_ISREG(info.st_mode):
        raise refuse_path(path, "regular_file", "not a regular file (a directory, device or pipe); a checkpoint "
                                                "is a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise refuse_path(path, "size", f"{info.st_size} bytes, over BNN_MAX_CHECKPOINT_BYTES={max_bytes}")


def read_file(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes``: checked on the open descriptor
    before reading (opened non-blocking, so a FIFO cannot hold the reader), and again by the read
    (a file that grew after the check)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise CandidateRefused("file", f"{path}: cannot read ({error.strerror or error})") from None
    with os.fdopen(fd, "rb") as handle:
        check_file(path, os.fstat(fd), max_bytes)
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise refuse_path(path, "size", f"grew past BNN_MAX_CHECKPOINT_BYTES={max_bytes} while it was read")
    return data


def checkpoint_digest(path: Path, max_bytes: int | None = None) -> str:
    """sha256 over the weights file and its metadata (a recalibration changes only the metadata),
    each a regular file of at most ``max_bytes`` (None: the live checkpoint, any size)."""
    digest = hashlib.sha256()
    for part in (path, metadata_path(path)):
        digest.update(read_file(part, max_bytes))
    return digest.hexdigest()


def confined(path: str | Path, settings: Settings) -> Path:
    """``path`` resolved (``..`` and symlinks), when a candidate may load from it: no NUL byte, the
    weights and the metadata beside them regular files of at most BNN_MAX_CHECKPOINT_BYTES inside
    BNN_MODELS_DIR (BNN_MODEL_PATH, the operator's live checkpoint, only need be regular files);
    otherwise CandidateRefused("path", ..., rule). Nothing is read: ``stat`` only. A relative path is
    the server's working directory's, as before (``checkpoints/candidate.safetensors``)."""
    text = str(path)
    if "\x00" in text:
        raise refuse_path(repr(text), "nul", "a path must not hold a NUL byte")
    resolved = Path(os.path.realpath(text))
    root = Path(os.path.realpath(settings.models_dir))
    cap = size_cap(resolved, settings)
    live = cap is None
    if not resolved.name:  # "/" and "/..": no file, and no metadata path beside it
        raise refuse_path(text, "models_dir", f"outside the models directory BNN_MODELS_DIR={root}")
    for part in (resolved, Path(os.path.realpath(metadata_path(resolved)))):
        if not live and not part.is_relative_to(root):
            raise refuse_path(text if part == resolved else part, "models_dir",
                              f"outside the models directory BNN_MODELS_DIR={root} (resolved: {part}); "
                              "candidates load only from there")
        try:
            info = os.stat(part)
        except OSError as error:
            raise refuse_path(part, "regular_file", f"no regular file there ({error.strerror or error})") from None
        check_file(part, info, cap)
    return resolved


def size_cap(resolved: Path, settings: Settings) -> int | None:
    """BNN_MAX_CHECKPOINT_BYTES for a candidate; None (any size) for the operator's own live
    checkpoint, BNN_MODEL_PATH, which a rollback or a restarted worker must always be able to load."""
    return None if resolved == Path(os.path.realpath(settings.model_path)) else settings.max_checkpoint_bytes


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
    path = confined(path, settings)
    digest = checkpoint_digest(path, size_cap(path, settings))
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
