"""Simulated-upload data sets, built once and cached: digits rendered as uploads per split, and
generated outliers.

Seeds are fixed per role so that training, calibration and evaluation never share a draw:

| role | source | seed |
|---|---|---|
| training digits as uploads | MNIST train | 11 |
| calibration digits as uploads | MNIST validation | 12 |
| report digits as uploads | MNIST test | 13 |
| training outliers | generated (``model.outliers``), pairs from MNIST train | 21 |

The report's families (``model/report_uploads.py``) draw with seeds of their own (31 and up).

Each set is cached as ``.npz`` under ``~/.cache/bnn-digits/pools`` keyed by its role, size,
seed, the data's sha256 and the simulator's version, so a change to any of them rebuilds it.
Uploads the transform found blank (never a visible digit) are dropped and counted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.data import DEFAULT_CACHE, Split
from model.outliers import OUTLIER_VERSION, outlier_source
from model.sketches import SKETCH_VERSION, sketch_source
from model.sketches import labels as sketch_labels
from model.transform import NoInk, to_digit
from model.uploads import SIMULATOR_VERSION, decode, digit_source, encode, simulate_many

SEEDS = {"train": 11, "validation": 12, "test": 13, "outliers-train": 21, "sketches-train": 31}


@dataclass(frozen=True)
class Pool:
    images: np.ndarray  # uint8 [N, 28, 28], what the network sees
    labels: np.ndarray  # int64 [N]; -1 for outliers
    dropped: int  # uploads the transform found blank

    def split(self) -> Split:
        return Split(self.images, self.labels)


def cached_pool(name: str, key: dict[str, object], build: Callable[[], Pool], cache_dir: Path) -> Pool:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / "pools" / f"{name}-{digest}.npz"
    if path.exists():
        with np.load(path) as stored:
            return Pool(stored["images"], stored["labels"], int(stored["dropped"]))
    pool = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(partial, images=pool.images, labels=pool.labels, dropped=np.int64(pool.dropped))
    partial.replace(path)
    return pool


def visible_only(images: np.ndarray, labels: np.ndarray) -> Pool:
    visible = images.reshape(len(images), -1).max(1) > 0
    return Pool(images[visible], labels[visible], int((~visible).sum()))


def digit_uploads(split: Split, role: str, source_sha256: str, workers: int = 2,
                  cache_dir: Path = DEFAULT_CACHE, progress: bool = True) -> Pool:
    """Every digit of ``split`` rendered once as a random upload and transformed."""
    seed = SEEDS[role]
    key = {"role": role, "size": len(split), "seed": seed, "data": source_sha256, "simulator": SIMULATOR_VERSION}

    def build() -> Pool:
        images = simulate_many(digit_source(split.images), len(split), seed, workers, f"{role} uploads", progress)
        return visible_only(images, split.labels.astype(np.int64))

    return cached_pool(f"digits-{role}", key, build, cache_dir)


def arrays_as_files(split: Split, role: str, source_sha256: str, cache_dir: Path = DEFAULT_CACHE) -> Pool:
    """Every image of ``split`` saved as the 28-px PNG it is, decoded, and run through the
    transform: the plainest upload there is (the simulator re-renders every glyph)."""
    key = {"role": f"{role}-as-files", "size": len(split), "data": source_sha256, "simulator": SIMULATOR_VERSION}

    def build() -> Pool:
        images = []
        for image in split.images:
            try:
                images.append(to_digit(decode(encode(Image.fromarray(image), "PNG"))))
            except NoInk:
                images.append(np.zeros_like(image))
        return visible_only(np.stack(images), split.labels.astype(np.int64))

    return cached_pool(f"arrays-{role}", key, build, cache_dir)


def sketch_uploads(count: int, role: str, workers: int = 2, cache_dir: Path = DEFAULT_CACHE,
                   progress: bool = True) -> Pool:
    """``count`` sketched digits (``model.sketches``, digit ``index % 10``) rendered as uploads."""
    seed = SEEDS[role]
    key = {"role": role, "size": count, "seed": seed, "simulator": SIMULATOR_VERSION, "sketches": SKETCH_VERSION}

    def build() -> Pool:
        images = simulate_many(sketch_source(), count, seed, workers, f"{role}", progress)
        return visible_only(images, sketch_labels(count))

    return cached_pool(f"sketches-{role}", key, build, cache_dir)


def outlier_uploads(count: int, role: str, digits: np.ndarray, source_sha256: str, workers: int = 2,
                    cache_dir: Path = DEFAULT_CACHE, progress: bool = True) -> Pool:
    """``count`` generated non-digits rendered as uploads (``model.outliers``)."""
    seed = SEEDS[role]
    key = {"role": role, "size": count, "seed": seed, "data": source_sha256, "simulator": SIMULATOR_VERSION,
           "outliers": OUTLIER_VERSION}

    def build() -> Pool:
        images = simulate_many(outlier_source(digits), count, seed, workers, f"{role}", progress)
        return visible_only(images, np.full(count, -1, dtype=np.int64))

    return cached_pool(f"outliers-{role}", key, build, cache_dir)
