"""The precision the conv trunk runs in, one map (:data:`KINDS`): what each is for, what runs it, and
the CPU units that make it pay.

* ``float32``: PyTorch's own kernels (oneDNN), everywhere; training and serving.
* ``int8``: served where the CPU has int8 dot-product units (``avx512_vnni``, ``avx_vnni``,
  ``amx_int8``): the trunk quantized statically from the trained weights (``python -m
  model.quantize``), run by ONNX Runtime (``model/int8_trunk.py``). Serving only.
* ``bfloat16``: ``torch.autocast`` in training steps where the CPU has bfloat16 units
  (``avx512_bf16``, ``amx_bf16``); not served (on these CPUs it gave ``/predict`` 1.03x float32,
  int8 more than that at every batch size: docs/model.md).

Only the trunk changes precision: its features come back as float32, and the Gaussian head (the
N-sample draw, its moments and the softmax) always runs in float32. A trunk in another precision
moves each image's features a little, enough to move an answer that sits at the referral
threshold: that is why every served precision has its own calibration record
(``model/calibration.py``) and the service refuses a precision it has no record for.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

import torch

Precision = Literal["float32", "bfloat16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
ServingRequest = Literal["auto", "float32", "int8"]  # what BNN_PRECISION accepts


@dataclass(frozen=True)
class Kind:
    """What a precision is for and what it needs."""

    runtime: str  # what runs the trunk in it (reported in the start-up log, /readyz, OIP metadata, bnn_model_info)
    units: tuple[str, ...]  # the CPU flags of the units that make it pay (none: it pays everywhere)
    served: bool  # the service runs it (with its own calibration record)
    trained: bool  # training steps run in it


KINDS: dict[Precision, Kind] = {
    "float32": Kind("pytorch", (), served=True, trained=True),
    "int8": Kind("onnxruntime", ("amx_int8", "avx512_vnni", "avx_vnni"), served=True, trained=False),
    "bfloat16": Kind("pytorch", ("amx_bf16", "avx512_bf16"), served=False, trained=True),
}
SERVED: tuple[Precision, ...] = tuple(p for p, kind in KINDS.items() if kind.served)
TRAINED: tuple[Precision, ...] = tuple(p for p, kind in KINDS.items() if kind.trained)
assert get_args(ServingRequest)[1:] == SERVED, "ServingRequest names auto and every served precision"
# what BNN_PRECISION and the service's commands accept; what model.train --precision accepts
SERVING_REQUESTS: tuple[str, ...] = get_args(ServingRequest)
TRAINING_REQUESTS: tuple[str, ...] = ("auto", *TRAINED)
FAST = {"serving": "int8", "training": "bfloat16"}  # what auto picks where the CPU has its units


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (Linux); empty where ``cpuinfo`` cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


def units(precision: Precision, flags: set[str] | None = None) -> list[str]:
    """The units of this CPU that make ``precision`` pay (e.g. ``["avx512_vnni"]`` for int8); empty
    where there are none (bfloat16 also needs oneDNN)."""
    found = sorted(set(KINDS[precision].units) & (cpu_flags() if flags is None else flags))
    if precision == "bfloat16" and not torch.backends.mkldnn.is_available():
        return []
    return found


@dataclass(frozen=True)
class PrecisionChoice:
    precision: Precision
    note: str  # why, for the start-up log
    warn: bool = False  # the note is a warning: emulated, or not the precision auto picked

    @property
    def runtime(self) -> str:
        return KINDS[self.precision].runtime


def choose_precision(requested: str, found: list[str] | None = None, purpose: str = "serving") -> PrecisionChoice:
    """``auto`` or a precision -> the precision to run and why, for ``purpose`` (``serving``: auto
    is int8 where the CPU has int8 units, else float32; ``training``: bfloat16 where it has bfloat16
    units). ``found``: the CPU's units for that fast precision (None: read them). A request the
    purpose does not accept is a ValueError naming the choices."""
    accepted = SERVING_REQUESTS if purpose == "serving" else TRAINING_REQUESTS
    if requested not in accepted:
        raise ValueError(f"precision {requested!r} is not supported for {purpose}: one of {', '.join(accepted)}")
    fast = cast(Precision, FAST[purpose])
    found = units(fast) if found is None else found
    have = (f"this CPU has {' and '.join(found)}" if found
            else f"this CPU has no {fast} units ({', '.join(KINDS[fast].units)})")
    if requested == "auto":
        return PrecisionChoice(fast if found else "float32", f"auto: {have}")
    if requested == fast and not found:
        return PrecisionChoice(fast, f"{fast} as asked, but {have}: without them it may be slower than float32", True)
    return PrecisionChoice(cast(Precision, requested), f"{requested} as asked ({have})")


def trunk_precision(precision: Precision, device_type: str = "cpu") -> contextlib.AbstractContextManager[object]:
    """The context PyTorch runs the trunk in: bfloat16 autocast, or nothing at all for float32 (int8
    is not PyTorch's: ``BayesianNet`` hands it to its int8 trunk)."""
    if precision == "bfloat16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision != "float32":
        raise ValueError(f"precision {precision!r} is not one PyTorch runs the trunk in: float32 or bfloat16")
    return contextlib.nullcontext()
