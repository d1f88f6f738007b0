"""The precision the conv trunk runs in: bfloat16 on CPUs with matrix units for it, else float32.

Only the trunk (the convolutions: most of a pass's arithmetic) runs under
``torch.autocast("cpu", torch.bfloat16)``; its features come back as float32, and the Gaussian
head (the N-sample draw, its moments and the softmax) always runs in float32. So the sampling is
the same in both precisions; what moves is each image's features, by a few hundredths on a scale
of about 6, enough to move an answer that sits at the referral threshold. That is why every
precision has its own calibration record (``model/calibration.py``) and the service refuses a
precision it has no record for.

``auto`` picks bfloat16 when the CPU has bfloat16 instructions (``avx512_bf16`` or ``amx_bf16`` in
``/proc/cpuinfo``) and oneDNN can use them, else float32. Forcing bfloat16 elsewhere works (oneDNN
or PyTorch then emulate it) but is slower than float32: ``choose_precision`` says so.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

import torch

Precision = Literal["float32", "bfloat16"]
PrecisionRequest = Literal["auto", "float32", "bfloat16"]  # what BNN_PRECISION and --precision accept
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
REQUESTS: tuple[PrecisionRequest, ...] = get_args(PrecisionRequest)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # AVX512-BF16 (dot products), AMX-BF16 (tile matrix multiply)
# what runs the pass: PyTorch's own eager kernels (oneDNN convolutions), bfloat16 by autocast; no other
# runtime is a dependency (bench/README.md: what was measured, and what was not)
RUNTIME = "pytorch"


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


def bf16_units(flags: set[str] | None = None) -> list[str]:
    """The bfloat16 matrix units of this CPU that oneDNN can use (e.g. ``["amx_bf16", "avx512_bf16"]``);
    empty where there are none."""
    found = sorted(set(BF16_FLAGS) & (cpu_flags() if flags is None else flags))
    return found if found and torch.backends.mkldnn.is_available() else []


@dataclass(frozen=True)
class PrecisionChoice:
    precision: Precision
    note: str  # why, for the start-up log
    warn: bool = False  # the note is a warning: bfloat16 emulated, or not the precision auto picked


def choose_precision(requested: str, units: list[str] | None = None) -> PrecisionChoice:
    """``auto``, ``float32`` or ``bfloat16`` -> the precision to run and why. ``units``: the CPU's
    bfloat16 units (None: read them). An unknown request is a ValueError naming the choices."""
    if requested not in REQUESTS:
        raise ValueError(f"precision {requested!r} is not supported: one of {', '.join(REQUESTS)}")
    units = bf16_units() if units is None else units
    have = f"this CPU has {' and '.join(units)}" if units else "this CPU has no bfloat16 units (avx512_bf16, amx_bf16)"
    if requested == "auto":
        return PrecisionChoice("bfloat16" if units else "float32", f"auto: {have}")
    if requested == "bfloat16" and not units:
        return PrecisionChoice("bfloat16", f"bfloat16 as asked, but {have}: emulated, slower than float32", True)
    return PrecisionChoice(cast(Precision, requested), f"{requested} as asked ({have})")


def trunk_precision(precision: Precision, device_type: str = "cpu") -> contextlib.AbstractContextManager[object]:
    """The context the trunk runs in: bfloat16 autocast, or nothing at all for float32."""
    if precision == "bfloat16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision != "float32":
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return contextlib.nullcontext()
