"""Checkpoints: weights as safetensors (never pickle) plus a JSON metadata sidecar.

``bnn.safetensors`` holds the tensors; ``bnn.json`` beside it holds the architecture config,
the sha256 of the weights file (so a truncated, corrupted or swapped weights file is caught
before it is parsed), provenance, metrics and the calibration records (``model/calibration.py``).
``bnn.int8.onnx`` beside them, when the metadata's ``trunks`` names it, is the trunk quantized from
those weights (``model/int8_trunk.py``, ``python -m model.quantize``). Recalibration rewrites the
JSON only. ``format_version`` 2 holds the records in one map; format 1
(five keys) is refused here and rewritten by ``python -m model.migrate_records``.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.calibration import Calibration
from model.data import sha256_file
from model.int8_trunk import Int8Trunk, read_trunk
from model.network import BayesianNet, NetConfig
from model.precision import Precision

FORMAT_VERSION = 2  # 2: the calibration records in one map (model/calibration.py); 1: python -m model.migrate_records
MAX_VERSION_LENGTH = 64  # what the review store keeps of a version (service/review/schema.py: String(64))


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted or does not fit its architecture. ``check``
    names which: ``file`` (missing, unreadable, not its metadata's) or ``architecture``."""

    def __init__(self, message: str, check: str = "file"):
        super().__init__(message)
        self.check = check


def metadata_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_metadata(weights: Path, meta: dict[str, Any]) -> None:
    _atomic_write(metadata_path(weights), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def read_metadata(weights: Path) -> dict[str, Any]:
    path = metadata_path(weights)
    if not path.exists():
        raise CheckpointError(f"{path}: metadata file is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({error})") from error
    if isinstance(meta, dict) and meta.get("format_version") == 1:
        raise CheckpointError(f"{path}: format-1 metadata (its calibration records under the old keys): rewrite it "
                              f"with python -m model.migrate_records {path}")
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a format-{FORMAT_VERSION} checkpoint metadata file")
    for key in ("config", "weights_sha256"):
        if key not in meta:
            raise CheckpointError(f"{path}: metadata lacks '{key}'")
    if len(str(meta.get("model_version", ""))) > MAX_VERSION_LENGTH:
        raise CheckpointError(f"{path}: model_version is {len(str(meta['model_version']))} characters, over "
                              f"{MAX_VERSION_LENGTH} (the review store's limit)")
    return meta


def save_checkpoint(net: BayesianNet, weights: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write weights and metadata; returns the metadata as written (with hash and version)."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    partial = weights.with_name(weights.name + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt"})
    os.replace(partial, weights)
    digest = sha256_file(weights)
    full = {
        **meta,
        "format_version": FORMAT_VERSION,
        "config": net.config.to_dict(),
        "weights_file": weights.name,
        "weights_sha256": digest,
        "model_version": f"{meta.get('name', 'bnn')}-{digest[:12]}",
    }
    write_metadata(weights, full)
    return full


def load_checkpoint(weights: Path) -> tuple[BayesianNet, dict[str, Any]]:
    """Load and verify; any problem raises CheckpointError naming the file and what is wrong."""
    weights = Path(weights)
    meta = read_metadata(weights)
    if not weights.exists():
        raise CheckpointError(f"{weights}: weights file is missing")
    digest = sha256_file(weights)
    if digest != meta["weights_sha256"]:
        raise CheckpointError(
            f"{weights}: sha256 {digest[:16]}... does not match its metadata "
            f"({meta['weights_sha256'][:16]}...): the file is truncated, corrupted or from another model"
        )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({error})") from error
    try:
        net = BayesianNet(NetConfig.from_dict(meta["config"]))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{metadata_path(weights)}: invalid architecture config ({error})",
                              "architecture") from error
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{weights}: weights do not fit the architecture in its metadata ({error})",
                              "architecture") from error
    net.int8_trunk, net.int8_note = _int8_trunk(weights, meta)
    net.eval()
    return net, meta


def _int8_trunk(weights: Path, meta: dict[str, Any]) -> tuple[Int8Trunk | None, str]:
    """The checkpoint's int8 trunk when its metadata names one made from these weights that ONNX
    Runtime loads, and a note; else None and why (int8 is then not served; float32 still is)."""
    try:
        model, note = read_trunk(weights, meta)
    except ValueError as error:
        return None, str(error)
    if model is None:
        return None, note
    try:
        return Int8Trunk(model), note
    except ImportError:
        return None, "onnxruntime is not installed (pip install -r requirements.txt)"
    except Exception as error:  # onnxruntime's own errors (a model it cannot load) have no common base
        return None, f"{weights}: ONNX Runtime cannot load its int8 trunk ({type(error).__name__}: {error})"


def as_served(net: BayesianNet, calibration: Calibration | None, precision: Precision) -> BayesianNet:
    """``net`` as it is served in ``precision`` with that precision's ``calibration`` record: a new
    net whose trunk runs in that precision, at the record's temperature (when it names one)."""
    served = net.in_precision(precision)
    if calibration is not None and calibration.temperature not in (None, net.config.temperature):
        served = served.at_temperature(calibration.temperature)
    return served.eval()


def provenance() -> dict[str, Any]:
    """Git commit and package versions, recorded with every checkpoint."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        commit = ""
    versions = {}
    for package in ("torch", "numpy", "safetensors"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return {"git_commit": commit or "unknown", "versions": versions, "torch_threads": torch.get_num_threads()}
