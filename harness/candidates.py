"""Candidate checkpoints made from the shipped one: a good one under a new version, and one broken
in each way a model change must refuse (``service/lifecycle/checks.py``'s checks)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from harness.inputs import SHIPPED
from model.calibration import without_precision
from model.data import sha256_file
from model.int8_trunk import KEY as TRUNKS
from model.int8_trunk import TrunkFile, trunk_path


def _write(out: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: Path) -> Path:
    """The tensors and metadata at ``out``, with ``source``'s int8 trunk beside them (every variant here
    keeps the trunk's weights, or is refused for them before the trunk matters)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out))
    meta["weights_file"] = out.name
    meta["weights_sha256"] = sha256_file(out)
    trunk = TrunkFile.from_meta(meta)
    if trunk is not None:
        shutil.copy(source.with_name(trunk.file), trunk_path(out))
        meta[TRUNKS] = {"int8": {**meta[TRUNKS]["int8"], "file": trunk_path(out).name,
                                 "made_from": meta["weights_sha256"]}}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def variant(out: Path, version: str, edit_tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
            edit_meta: Callable[[dict[str, Any]], None] | None = None, source: Path = SHIPPED) -> Path:
    """``source`` with its tensors and metadata edited, saved at ``out`` as ``version`` (sha256 made to match)."""
    tensors = load_file(str(source))
    meta = json.loads(source.with_suffix(".json").read_text())
    meta["model_version"] = version
    if edit_tensors is not None:
        edit_tensors(tensors)
    if edit_meta is not None:
        edit_meta(meta)
    return _write(out, tensors, meta, source)


def good(directory: Path, version: str = "head-candidate") -> Path:
    """The shipped weights under another version: reads every digit as the shipped model does."""
    return variant(directory / f"{version}.safetensors", version)


def truncated(directory: Path) -> Path:
    out = good(directory, "head-truncated")
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def wrong_architecture(directory: Path) -> Path:
    def narrower(meta: dict[str, Any]) -> None:
        meta["config"]["hidden"] = [128]

    return variant(directory / "head-narrow.safetensors", "head-narrow", edit_meta=narrower)


def without_record(directory: Path, precision: str) -> Path:
    """The shipped checkpoint without any record for ``precision`` (every channel's, every place's)."""
    def drop(meta: dict[str, Any]) -> None:
        meta.update(without_precision(meta, precision))

    return variant(directory / f"head-no-{precision}.safetensors", f"head-no-{precision}", edit_meta=drop)


def with_nan(directory: Path) -> Path:
    def poison(tensors: dict[str, torch.Tensor]) -> None:
        tensors["trunk.5.weight"][0, 0, 0, 0] = float("nan")

    return variant(directory / "head-nan.safetensors", "head-nan", edit_tensors=poison)


def misreading(directory: Path) -> Path:
    """The last layer's rows for 0 and 1 swapped: every 0 is read as 1 and every 1 as 0."""
    def swap(tensors: dict[str, torch.Tensor]) -> None:
        for name in ("head.1.weight_mu", "head.1.weight_rho", "head.1.bias_mu", "head.1.bias_rho"):
            tensors[name][[0, 1]] = tensors[name][[1, 0]].clone()

    return variant(directory / "head-swapped.safetensors", "head-swapped", edit_tensors=swap)


def copy_into(directory: Path, source: Path = SHIPPED) -> Path:
    """``source`` and its metadata copied into ``directory`` (a models directory, BNN_MODELS_DIR)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / source.name
    shutil.copy(source, out)
    shutil.copy(source.with_suffix(".json"), out.with_suffix(".json"))
    if trunk_path(source).exists():
        shutil.copy(trunk_path(source), trunk_path(out))
    return out


def copy_shipped(directory: Path) -> Path:
    return copy_into(directory)
