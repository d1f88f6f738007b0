"""Rendering a pool of 28-px images in forked processes, with a progress bar.

Each generator of ``model.synth`` puts what its workers need in a module global before calling
:func:`render_all` (a forked worker sees the parent's memory), and gives a module-level job
function of one job's arguments (picklable by name) that returns what the network sees.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from model.data import IMAGE_SIZE

Job = TypeVar("Job")
SERIAL_BELOW = 64  # fewer jobs than this run in this process
CHUNK = 64


def render_all(job: Callable[[Job], np.ndarray], jobs: Sequence[Job], workers: int, desc: str,
               progress: bool) -> np.ndarray:
    """``job`` of every item of ``jobs``, in order, in ``workers`` forked processes (in this one for
    one worker or a few jobs) -> uint8 ``[len(jobs), 28, 28]``."""
    from tqdm import tqdm  # a dev dependency: importing this module (a command's --help) must not need it

    bar = dict(total=len(jobs), desc=desc, disable=not progress, dynamic_ncols=True, mininterval=1.0)
    if workers <= 1 or len(jobs) < SERIAL_BELOW:
        out = [job(item) for item in tqdm(jobs, **bar)]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            out = list(tqdm(pool.imap(job, jobs, chunksize=CHUNK), **bar))
    return np.stack(out) if out else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
