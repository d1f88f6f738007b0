"""The conv trunk in int8, as it is served: a statically quantized ONNX model (``python -m
model.quantize`` makes it from the trained weights) run by ONNX Runtime on the CPU's int8 dot-product
units (VNNI, AMX-INT8), with the worker's threads like the rest of the pass.

The model file sits beside the checkpoint's weights; the metadata's ``trunks`` map names it by
precision with its sha256 and the sha256 of the weights it was made from. :func:`read_trunk`
checks both. A trunk that is not its metadata's, not a regular file, made from other weights (the
checkpoint was retrained since) or not copied with the weights is left off, and
``model.checkpoint.load_checkpoint`` says why (``int8_note``): the checkpoint then serves float32
(``auto``) or is refused (``int8`` asked for by name).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

MAX_BYTES = 64 * 2**20  # an int8 trunk larger than this is not one this project made (the shipped one: 0.3 MB)
KEY = "trunks"  # the metadata's map {precision: {file, sha256, made_from, ...}}
INPUT = "images"  # the ONNX model's input: float32 [B, 1, 28, 28]


class Int8Trunk:
    """``images [B, 1, 28, 28]`` float32 -> the trunk's features ``[B, F]`` float32, through the
    quantized model. Inference only (no gradient flows through it)."""

    def __init__(self, model: bytes, threads: int | None = None):
        import onnxruntime  # the serving dependency of int8 alone

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy wait beside the loop
        # from bytes, never a path: ONNX Runtime then refuses external data, so a model cannot make it read files
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def __call__(self, images: Tensor) -> Tensor:
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (features,) = self.session.run(None, {INPUT: array})
        return torch.from_numpy(features).flatten(1)


@dataclass(frozen=True)
class TrunkFile:
    """What the metadata says of a precision's trunk file."""

    file: str  # a name beside the weights, no directory
    sha256: str
    made_from: str  # the sha256 of the weights it was quantized from

    @classmethod
    def from_meta(cls, meta: dict[str, Any], precision: str = "int8") -> TrunkFile | None:
        trunks = meta.get(KEY, {})
        if not isinstance(trunks, dict):
            raise ValueError(f"{KEY} is not a mapping of precision to trunk file")
        raw = trunks.get(precision)
        if raw is None:
            return None
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) for k in ("file", "sha256", "made_from")):
            raise ValueError(f"{KEY}.{precision} is not a mapping with file, sha256 and made_from")
        if Path(raw["file"]).name != raw["file"] or raw["file"] in ("", ".", ".."):
            raise ValueError(f"{KEY}.{precision}.file must be a file name beside the weights, not {raw['file']!r}")
        return cls(raw["file"], raw["sha256"], raw["made_from"])


def trunk_path(weights: Path, precision: str = "int8") -> Path:
    """Where ``python -m model.quantize`` writes a checkpoint's trunk for ``precision``."""
    return weights.with_name(f"{weights.stem}.{precision}.onnx")


def _read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` when it is a regular file (not a link) of at most MAX_BYTES, else None;
    checked on the opened file, so nothing swapped in between is read. ValueError when it cannot be read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:  # a symbolic link
            return None
        raise ValueError(f"{path}: the int8 trunk its metadata names cannot be read ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as opened:
        found = os.fstat(opened.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_size > MAX_BYTES:
            return None
        data = opened.read(MAX_BYTES + 1)
    return data if len(data) <= MAX_BYTES else None


def read_trunk(weights: Path, meta: dict[str, Any]) -> tuple[bytes | None, str]:
    """The int8 trunk's bytes for the checkpoint at ``weights`` and a note: None when the metadata
    names none, names one made from other weights (stale), or its file is not there. ValueError when
    the named file is not a regular file or not the metadata's (sha256)."""
    entry = TrunkFile.from_meta(meta)
    if entry is None:
        return None, "no int8 trunk (python -m model.quantize makes it)"
    if entry.made_from != meta.get("weights_sha256"):
        return None, "the int8 trunk was made from other weights: run python -m model.quantize again"
    path = weights.with_name(entry.file)
    if not path.exists() and not path.is_symlink():
        return None, f"its int8 trunk {entry.file} is not beside the weights (copy it, or run python -m model.quantize)"
    model = _read_regular(path)
    if model is None:
        raise ValueError(f"{path}: the int8 trunk its metadata names is not a regular file of at most "
                         f"{MAX_BYTES // 2**20} MiB")
    digest = hashlib.sha256(model).hexdigest()
    if digest != entry.sha256:
        raise ValueError(f"{path}: sha256 {digest[:16]}... does not match its metadata ({entry.sha256[:16]}...)")
    return model, f"int8 trunk {entry.file} ({entry.sha256[:12]})"
