"""What training sees: the pools one run trains on, and the batch of each step drawn from them.

Each step sees ``batch_size`` MNIST train arrays (a share as the same digits' plain 28-px PNG
files through the transform; augmented), as many digits of the upload stream (MNIST train as
simulated uploads, re-inked as pen drawings, and printed digits in the training fonts), and
``outlier_batch`` generated non-digits (with the marks of other scripts) for outlier exposure.
The order of an epoch depends on the seed and the epoch only, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.data import IMAGE_SIZE, Mnist, Split, to_input
from model.predictive import DEFAULT_SAMPLES
from model.synth.pools import (
    MARK_RENDERS,
    PRINTED_RENDERS,
    VALIDATION_NON_DIGITS,
    Pool,
    angular_drawings,
    arrays_as_files,
    closing_shapes,
    digit_uploads,
    latin_letters,
    low_resolution_scans,
    other_script_marks,
    outlier_uploads,
    pen_drawings,
    printed_digits,
    written_variants,
)
from model.train_config import TrainConfig


@dataclass(frozen=True)
class PoolSizes:
    """How much of each pool a run renders (a dry run renders a little of each)."""

    outliers: int = 40_000
    printed_renders: int = PRINTED_RENDERS
    mark_renders: int = MARK_RENDERS
    mark_limit: int | None = None  # the first marks only
    validation_non_digits: int = VALIDATION_NON_DIGITS
    calibration_samples: int = DEFAULT_SAMPLES  # N of the refer rule's calibration


DRY_RUN_SIZES = PoolSizes(outliers=256, printed_renders=1, mark_renders=1, mark_limit=64, validation_non_digits=256,
                          calibration_samples=4)
DRY_RUN_GENERATED = 64  # closing shapes and low-resolution scans of a dry run


@dataclass(frozen=True)
class TrainingData:
    """What one run trains on (uint8 ``[N, 28, 28]``, after the service's transform)."""

    arrays: Split  # MNIST train
    uploads: Split | None = None  # the upload stream's labelled digits
    outliers: np.ndarray | None = None  # generated non-digits and marks of other scripts
    arrays_as_files: np.ndarray | None = None  # the arrays, image for image, as 28-px PNGs after the transform
    parts: dict[str, int] | None = None  # how many of each positive pool joined (the checkpoint's metadata)
    negatives: dict[str, int] | None = None  # how many of the outliers each negative pool gave (the metadata)
    # fine-tuning (model/fine_tune.py): the reviewers' labelled digits, a batch of their own each step, and
    # their not_a_digit / unreadable items beside the outliers; what the KL is spread over (the parent run's)
    reviewed: Split | None = None
    reviewed_outliers: np.ndarray | None = None
    labelled_total: int | None = None

    def describe(self) -> dict[str, Any]:
        return {"mnist_train_arrays": len(self.arrays),
                "upload_stream_positives": 0 if self.uploads is None else len(self.uploads),
                "generated_outliers": 0 if self.outliers is None else len(self.outliers), **(self.parts or {})}


def _joined(pools: dict[str, Pool | None]) -> tuple[Pool | None, dict[str, int]]:
    """The pools that were built, one after another, and how many images each gave."""
    built = [pool for pool in pools.values() if pool is not None]
    joined = None
    for pool in built:
        joined = pool if joined is None else joined.join(pool)
    return joined, {name: 0 if pool is None else len(pool.images) for name, pool in pools.items()}


def build_training_data(data: Mnist, config: TrainConfig, sizes: PoolSizes, workers: int, cache_dir: Path,
                        progress: bool, handwritten: np.ndarray | None = None) -> TrainingData:
    """Render (or read from the cache) every pool ``config`` asks for. ``handwritten``: the MNIST train digits
    Latin letters are kept apart from (default ``data.train``'s; a fine-tune passes the whole set, not its replay)."""
    train, sha = data.train, data.source_sha256
    uploads, positives = _joined({
        "mnist_train_uploads": digit_uploads(train, "train", sha, workers, cache_dir, progress)
        if config.uploads else None,
        "mnist_train_pen_drawings": pen_drawings(train, "pen-train", sha, workers, cache_dir, progress)
        if config.uploads and config.pen else None,
        "printed_digits_training_fonts": printed_digits(workers, cache_dir, progress, sizes.printed_renders)
        if config.uploads and config.printed else None,
        **({"mnist_train_written_variants": written_variants(train, config.written_variants, sha, workers, cache_dir,
                                                             progress)}
           if config.uploads and config.written_variants else {}),  # named only when asked for
        **({"mnist_train_angular_drawings": angular_drawings(train, sha, workers, cache_dir, progress)}
           if config.uploads and config.angular_pen else {}),
        **({"mnist_train_low_resolution_scans": low_resolution_scans(train, config.low_resolution, sha, workers,
                                                                     cache_dir, progress)}
           if config.uploads and config.low_resolution > 0 else {}),
    })
    exposure = config.outlier_batch > 0
    outliers, negatives = _joined({
        "generated": outlier_uploads(sizes.outliers, "outliers-train", train.images, sha, workers, cache_dir, progress)
        if exposure else None,
        "other_script_marks": other_script_marks(workers, cache_dir, progress, sizes.mark_renders, sizes.mark_limit)
        if exposure and config.marks else None,
        **({"closing_shapes": closing_shapes(config.closing_shapes, workers, cache_dir, progress)}
           if exposure and config.closing_shapes > 0 else {}),
        **({"latin_letters": latin_letters(train.images if handwritten is None else handwritten, sha, workers,
                                           cache_dir, progress, sizes.mark_renders, sizes.mark_limit)}
           if exposure and config.letters else {}),
    })
    as_files = arrays_as_files(train, "train", sha, cache_dir) if config.arrays_as_files > 0 else None
    if as_files is not None and len(as_files.images) != len(train):
        raise ValueError("a training array has no visible ink as a file; --arrays-as-files needs every one")
    return TrainingData(train, None if uploads is None else uploads.split(),
                        None if outliers is None else outliers.images, None if as_files is None else as_files.images,
                        positives, negatives)


def augment(images: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """Small random rotations, scalings and shifts of ``[B, 1, 28, 28]``, bilinear, zero fill."""
    batch = images.shape[0]
    rand = torch.rand((batch, 4), generator=generator).to(images.device) * 2 - 1  # [B, 4] in [-1, 1]
    angle = rand[:, 0] * math.radians(config.max_rotation_deg)
    scale = 1.0 + rand[:, 1] * config.max_scale
    shift = rand[:, 2:] * (2.0 * config.max_shift_px / IMAGE_SIZE)  # normalised coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _index_batches(count: int, batch: int, steps: int, generator: torch.Generator) -> list[Tensor]:
    """``steps`` index batches of size ``batch`` over ``count`` items, reshuffled each pass."""
    order = torch.cat([torch.randperm(count, generator=generator) for _ in range(-(-steps * batch // count))])
    return [order[i * batch : (i + 1) * batch] for i in range(steps)]


@dataclass(frozen=True)
class Batch:
    images: Tensor  # [B_all, 1, 28, 28]: the labelled digits first, then the outliers
    labels: Tensor  # [B_labelled]
    replayed: Tensor | None = None  # fine-tuning: [B_all] bool, the rows of the parent's recipe (not reviewed items)


class BatchMix:
    """The batches of an epoch, on the config's device: ``for batch in mix.epoch(e)``."""

    def __init__(self, data: TrainingData, config: TrainConfig):
        device = config.device
        self.config = config
        self.images = to_input(data.arrays.images).to(device)
        self.labels = torch.as_tensor(data.arrays.labels, device=device)
        self.as_files = None if data.arrays_as_files is None or config.arrays_as_files <= 0 else \
            to_input(data.arrays_as_files).to(device)
        uploads = data.uploads if config.uploads else None
        self.uploads = None if uploads is None else \
            (to_input(uploads.images).to(device), torch.as_tensor(uploads.labels, device=device))
        self.outliers = None if data.outliers is None or config.outlier_batch <= 0 else \
            to_input(data.outliers).to(device)
        self.reviewed = None if data.reviewed is None or not len(data.reviewed) else \
            (to_input(data.reviewed.images).to(device), torch.as_tensor(data.reviewed.labels, device=device))
        self.reviewed_outliers = None if data.reviewed_outliers is None or not len(data.reviewed_outliers) else \
            to_input(data.reviewed_outliers).to(device)
        # what the KL is spread over
        self.labelled = data.labelled_total or len(self.labels) + (0 if uploads is None else len(uploads))
        steps = math.ceil(len(self.labels) / config.batch_size)
        self.steps_per_epoch = steps if config.max_batches is None else min(steps, config.max_batches)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        config, device, steps = self.config, self.labels.device, self.steps_per_epoch
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)  # resumable order
        order = torch.randperm(len(self.labels), generator=generator).to(device)
        upload_order = None if self.uploads is None else \
            _index_batches(len(self.uploads[0]), config.batch_size, steps, generator)
        outlier_order = None if self.outliers is None else \
            _index_batches(len(self.outliers), config.outlier_batch, steps, generator)
        reviewed_order = None if self.reviewed is None else \
            _index_batches(len(self.reviewed[0]), config.reviewed_batch, steps, generator)
        # the reviewed non-digits: as many per step as their share of the reviewed items (at least one)
        negatives = 0 if self.reviewed_outliers is None else max(1, round(
            config.reviewed_batch * len(self.reviewed_outliers)
            / (len(self.reviewed_outliers) + (0 if self.reviewed is None else len(self.reviewed[0])))))
        negative_order = None if self.reviewed_outliers is None else \
            _index_batches(len(self.reviewed_outliers), negatives, steps, generator)
        for step in range(steps):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, y = self.images[index], self.labels[index]
            if self.as_files is not None:  # some digits as the service sees a plain 28-px upload of them
                chosen = (torch.rand(len(index), generator=generator) < config.arrays_as_files).to(device)
                x = torch.where(chosen[:, None, None, None], self.as_files[index], x)
            if config.augment:
                x = augment(x, config, generator)
            parts, targets, reviewed_rows = [x], [y], []
            if self.uploads is not None and upload_order is not None:
                parts.append(self.uploads[0][upload_order[step].to(device)])
                targets.append(self.uploads[1][upload_order[step].to(device)])
            if self.reviewed is not None and reviewed_order is not None:
                chosen_reviewed = reviewed_order[step].to(device)
                reviewed = self.reviewed[0][chosen_reviewed]
                reviewed_rows.append(len(parts))
                parts.append(augment(reviewed, config, generator) if config.augment else reviewed)
                targets.append(self.reviewed[1][chosen_reviewed])
            if self.outliers is not None and outlier_order is not None:
                parts.append(self.outliers[outlier_order[step].to(device)])
            if self.reviewed_outliers is not None and negative_order is not None:
                reviewed_rows.append(len(parts))
                parts.append(self.reviewed_outliers[negative_order[step].to(device)])
            replayed = None if not reviewed_rows else torch.cat(
                [torch.full((len(part),), index not in reviewed_rows, device=device)
                 for index, part in enumerate(parts)])
            yield Batch(torch.cat(parts), torch.cat(targets), replayed)
