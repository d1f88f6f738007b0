"""What every bench prints first: machine, date, torch version and threads."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime

import torch


def header(title: str) -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"# {title}\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpu}; {os.cpu_count()} cores; "
            f"Python {platform.python_version()}; torch {torch.__version__}; {torch.get_num_threads()} threads\n")


def best_ms(function: Callable[[], object], repeat: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``repeat`` calls, in ms, after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1000.0 * times[len(times) // 2]
