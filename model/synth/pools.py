"""Simulated-upload data sets, built once and cached: digits rendered as uploads per split, and
generated outliers.

Seeds are fixed per role so that training, calibration and evaluation never share a draw:

| role | source | seed |
|---|---|---|
| training digits as uploads | MNIST train | 11 |
| calibration digits as uploads | MNIST validation | 12 |
| report digits as uploads | MNIST test | 13 |
| training digits drawn with a pen (``model.synth.pen``) | MNIST train | 14 |
| calibration digits drawn with a pen | MNIST validation | 15 |
| report digits drawn with a pen | MNIST test | 17 |
| training printed digits (training fonts only, ``model.synth.families``) | fonts | 16 |
| training outliers | generated (``model.synth.outliers``), pairs from MNIST train | 21 |
| training marks of other scripts, printed / pen-drawn (``model.synth.other_scripts``) | training fonts | 23 / 24 |
| training 1s with a flag or a foot, 7s with a bar (``model.synth.written_variants``) | MNIST train | 25 |
| training closing shapes, as uploads / pen-drawn (``model.synth.closing_shapes``) | generated | 26 / 27 |
| training digits drawn in straight segments (``model.synth.angular_pen``) | MNIST train | 28 |
| training digits scanned at low resolution (``model.synth.low_resolution``) | MNIST train | 18 |
| training Latin letters, printed / pen-drawn (``model.synth.latin_letters``) | training fonts | 29 / 30 |
| validation outliers (the refer reason's rule) | generated, pairs from MNIST validation | 22 |

The report's families (``model/report/uploads.py``) draw with seeds of their own (31 and up).

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
from typing import cast

import numpy as np
from PIL import Image

from model.calibration import Channel
from model.data import DEFAULT_CACHE, Split
from model.synth.outliers import OUTLIER_VERSION, outlier_source
from model.synth.pen import PEN_VERSION, draw_many
from model.synth.upload_simulator import SIMULATOR_VERSION, decode, digit_source, encode, simulate_many
from model.transform import NoInk, to_digit

SEEDS = {"train": 11, "validation": 12, "test": 13, "pen-train": 14, "pen-validation": 15, "printed-train": 16,
         "pen-test": 17, "outliers-train": 21, "outliers-validation": 22, "marks-train": 23, "pen-marks-train": 24,
         "variants-train": 25, "closing-train": 26, "pen-closing-train": 27, "angular-train": 28,
         "low-resolution-train": 18, "letters-train": 29, "pen-letters-train": 30}
PRINTED_RENDERS = 30  # each training-font digit glyph rendered this many times
MARK_RENDERS = 6  # each training-font mark of another script printed, and pen-drawn, this many times


@dataclass(frozen=True)
class Pool:
    images: np.ndarray  # uint8 [N, 28, 28], what the network sees
    labels: np.ndarray  # int64 [N]; -1 for outliers
    dropped: int  # uploads the transform found blank

    def split(self) -> Split:
        return Split(self.images, self.labels)

    def join(self, other: Pool) -> Pool:
        """This pool followed by ``other`` (images, labels, and the blanks both dropped)."""
        return Pool(np.concatenate([self.images, other.images]), np.concatenate([self.labels, other.labels]),
                    self.dropped + other.dropped)


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


def outlier_uploads(count: int, role: str, digits: np.ndarray, source_sha256: str, workers: int = 2,
                    cache_dir: Path = DEFAULT_CACHE, progress: bool = True) -> Pool:
    """``count`` generated non-digits rendered as uploads (``model.synth.outliers``)."""
    seed = SEEDS[role]
    key = {"role": role, "size": count, "seed": seed, "data": source_sha256, "simulator": SIMULATOR_VERSION,
           "outliers": OUTLIER_VERSION}

    def build() -> Pool:
        images = simulate_many(outlier_source(digits), count, seed, workers, f"{role}", progress)
        return visible_only(images, np.full(count, -1, dtype=np.int64))

    return cached_pool(f"outliers-{role}", key, build, cache_dir)


def pen_drawings(split: Split, role: str, source_sha256: str, workers: int = 2, cache_dir: Path = DEFAULT_CACHE,
                 progress: bool = True) -> Pool:
    """Every digit of ``split`` re-inked as pen strokes and drawn on the page's pad by a random hand
    (``model.synth.pen``), saved as PNG and transformed."""
    seed = SEEDS[role]
    key = {"role": role, "size": len(split), "seed": seed, "data": source_sha256, "pen": PEN_VERSION}

    def build() -> Pool:
        return visible_only(draw_many(split.images, seed, workers, f"{role} drawings", progress),
                            split.labels.astype(np.int64))

    return cached_pool(f"pen-{role}", key, build, cache_dir)


def printed_digits(workers: int = 2, cache_dir: Path = DEFAULT_CACHE, progress: bool = True,
                   renders: int = PRINTED_RENDERS) -> Pool:
    """Digits printed in the training fonts only (``model.synth.families.TRAIN_FONTS``), each glyph
    rendered ``renders`` times as a random upload."""
    from model.synth.families import DIGITS, cycling, printed

    glyphs, chars = printed(DIGITS, "train")
    seed = SEEDS["printed-train"]
    count = renders * len(glyphs)
    key = {"role": "printed-train", "size": count, "seed": seed, "simulator": SIMULATOR_VERSION,
           "glyphs": len(glyphs)}

    def build() -> Pool:
        labels = np.array([int(c) for c in chars] * renders, dtype=np.int64)
        return visible_only(simulate_many(cycling(glyphs), count, seed, workers, "printed-train", progress), labels)

    return cached_pool("printed-train", key, build, cache_dir)


def other_script_marks(workers: int = 2, cache_dir: Path = DEFAULT_CACHE, progress: bool = True,
                       renders: int = MARK_RENDERS, limit: int | None = None) -> Pool:
    """Non-digits that look like writing (``model.synth.other_scripts``): every mark in the training
    fonts (the first ``limit`` glyphs, for a dry run), ``renders`` times printed as a random
    upload and ``renders`` times re-inked as pen strokes on the page's pad by a random hand."""
    from model.synth.other_scripts import MARKS, NEAR_DIGIT, printed_marks

    glyphs = printed_marks()[:limit]
    count = renders * len(glyphs)
    key = {"role": "marks-train", "size": count, "seeds": [SEEDS["marks-train"], SEEDS["pen-marks-train"]],
           "simulator": SIMULATOR_VERSION, "pen": PEN_VERSION, "marks": MARKS, "glyphs": len(glyphs),
           "near": NEAR_DIGIT}

    return cached_pool("marks-train", key, lambda: printed_and_pen_drawn(glyphs, renders, "marks-train", workers,
                                                                         progress), cache_dir)


def printed_and_pen_drawn(glyphs: list[np.ndarray], renders: int, role: str, workers: int, progress: bool) -> Pool:
    """Non-digits from glyphs (ink ``[H, W]`` in [0, 1]): each ``renders`` times printed as a random upload
    (seed ``SEEDS[role]``) and ``renders`` times re-inked as pen strokes on the page's pad by a random hand
    (seed ``SEEDS["pen-" + role]``). A rendering near a named digit skeleton (``NEAR_DIGIT``) is dropped."""
    from model.synth.families import cycling
    from model.synth.other_scripts import near_a_digit, squared

    count = renders * len(glyphs)
    printed = simulate_many(cycling(glyphs), count, SEEDS[role], workers, role, progress)
    pen_ready = np.stack([squared(glyph) for glyph in glyphs] * renders)
    drawn = draw_many(pen_ready, SEEDS[f"pen-{role}"], workers, f"pen-{role}", progress)
    images = np.concatenate([printed, drawn])
    images[near_a_digit(images)] = 0  # dropped and counted with the blank ones
    return visible_only(images, np.full(2 * count, -1, dtype=np.int64))


def written_variants(split: Split, digits: tuple[int, ...], source_sha256: str, workers: int = 2,
                     cache_dir: Path = DEFAULT_CACHE, progress: bool = True) -> Pool:
    """Of ``digits``, the 1s of ``split`` with a flag or a foot and its 7s with a bar, re-inked and drawn
    on the page's pad by a random hand (``model.synth.written_variants``); digits with no variant are dropped."""
    from model.synth.written_variants import VARIANT_DIGITS, VARIANTS_VERSION, draw_variants

    if not set(digits) <= set(VARIANT_DIGITS):
        raise ValueError(f"written variants exist for {VARIANT_DIGITS} only, "
                         f"not {sorted(set(digits) - set(VARIANT_DIGITS))}")
    chosen = np.flatnonzero(np.isin(split.labels, digits))
    seed = SEEDS["variants-train"]
    key = {"role": "variants-train", "size": len(chosen), "seed": seed, "data": source_sha256, "pen": PEN_VERSION,
           "variants": VARIANTS_VERSION, **({"digits": list(digits)} if tuple(digits) != VARIANT_DIGITS else {})}

    def build() -> Pool:
        images = draw_variants(split.images[chosen], split.labels[chosen], seed, workers, "variants-train", progress)
        return visible_only(images, split.labels[chosen].astype(np.int64))

    return cached_pool("variants-train", key, build, cache_dir)


def angular_drawings(split: Split, source_sha256: str, workers: int = 2, cache_dir: Path = DEFAULT_CACHE,
                     progress: bool = True) -> Pool:
    """Every digit of ``split`` re-inked, its strokes simplified to straight segments, and drawn on
    the page's pad by a random hand (``model.synth.angular_pen``), saved as PNG and transformed."""
    from model.synth.angular_pen import ANGULAR_VERSION, draw_angular

    seed = SEEDS["angular-train"]
    key = {"role": "angular-train", "size": len(split), "seed": seed, "data": source_sha256, "pen": PEN_VERSION,
           "angular": ANGULAR_VERSION}

    def build() -> Pool:
        return visible_only(draw_angular(split.images, seed, workers, "angular-train drawings", progress),
                            split.labels.astype(np.int64))

    return cached_pool("angular-train", key, build, cache_dir)


def low_resolution_scans(split: Split, count: int, source_sha256: str, workers: int = 2,
                         cache_dir: Path = DEFAULT_CACHE, progress: bool = True) -> Pool:
    """``count`` digits of ``split`` (cycling through it) scanned at a few pixels, scaled back up and
    blurred (``model.synth.low_resolution``), each rendered as a random upload."""
    from model.synth.low_resolution import BLUR, RESAMPLING_NAMES, SIDES, UP, low_resolution_source

    seed = SEEDS["low-resolution-train"]
    key = {"role": "low-resolution-train", "size": count, "seed": seed, "data": source_sha256,
           "simulator": SIMULATOR_VERSION, "sides": SIDES, "up": UP, "blur": BLUR,
           "resampling": RESAMPLING_NAMES}

    def build() -> Pool:
        images = simulate_many(low_resolution_source(split.images), count, seed, workers, "low-resolution-train",
                               progress)
        return visible_only(images, split.labels[np.arange(count) % len(split)].astype(np.int64))

    return cached_pool("low-resolution-train", key, build, cache_dir)


def latin_letters(handwritten: np.ndarray, source_sha256: str, workers: int = 2, cache_dir: Path = DEFAULT_CACHE,
                  progress: bool = True, renders: int = MARK_RENDERS, limit: int | None = None) -> Pool:
    """Latin letters in the training fonts that do not read as a digit (``model.synth.latin_letters``;
    ``handwritten``: the MNIST train digits they are compared with), the first ``limit`` glyphs for a
    dry run, ``renders`` times printed as a random upload and ``renders`` times re-inked as pen strokes
    on the page's pad. A rendering near a named digit skeleton (``NEAR_DIGIT``, the marks' bound) is dropped."""
    from model.synth.latin_letters import DIGIT_LIKE, HANDWRITTEN, LETTERS_VERSION, letter_glyphs
    from model.synth.other_scripts import NEAR_DIGIT

    glyphs = letter_glyphs(handwritten)[0][:limit]
    count = renders * len(glyphs)
    key = {"role": "letters-train", "size": count, "seeds": [SEEDS["letters-train"], SEEDS["pen-letters-train"]],
           "simulator": SIMULATOR_VERSION, "pen": PEN_VERSION, "letters": LETTERS_VERSION, "glyphs": len(glyphs),
           "digit_like": DIGIT_LIKE, "handwritten": min(HANDWRITTEN, len(handwritten)), "data": source_sha256,
           "near": NEAR_DIGIT}

    return cached_pool("letters-train", key, lambda: printed_and_pen_drawn(glyphs, renders, "letters-train", workers,
                                                                           progress), cache_dir)


CLOSING_SHAPES = 8_000  # half as uploads, half drawn on the pad


def closing_shapes(count: int = CLOSING_SHAPES, workers: int = 2, cache_dir: Path = DEFAULT_CACHE,
                   progress: bool = True) -> Pool:
    """``count`` generated non-digits that close and branch (``model.synth.closing_shapes``): half
    rendered as random uploads, half drawn on the page's pad by a random hand. A rendered one that
    lands near a named digit skeleton (``DIGIT_DISTANCE``, the generators' own bound) is dropped."""
    from model.synth.closing_shapes import CLOSING_VERSION, closing_source, draw_closing
    from model.synth.other_scripts import near_a_digit
    from model.synth.sketches import DIGIT_DISTANCE

    uploads, drawn = count // 2, count - count // 2
    key = {"role": "closing-train", "size": count, "seeds": [SEEDS["closing-train"], SEEDS["pen-closing-train"]],
           "simulator": SIMULATOR_VERSION, "pen": PEN_VERSION, "closing": CLOSING_VERSION, "near": DIGIT_DISTANCE}

    def build() -> Pool:
        images = np.concatenate([
            simulate_many(closing_source(), uploads, SEEDS["closing-train"], workers, "closing-train", progress),
            draw_closing(drawn, SEEDS["pen-closing-train"], workers, "pen-closing-train", progress)])
        images[near_a_digit(images, DIGIT_DISTANCE)] = 0  # dropped and counted with the blank ones
        return visible_only(images, np.full(count, -1, dtype=np.int64))

    return cached_pool("closing-train", key, build, cache_dir)


VALIDATION_MIX = ("uploads", "pen drawings", "plain PNG files")
# the channel each part is served as (``model/calibration.py``): files a client posts, or drawings on the pad;
# the test split's parts of the same names too (``model/report/served.py``)
PART_CHANNELS: dict[str, Channel] = {"uploads": "file", "pen drawings": "drawn", "plain PNG files": "file"}


def channel_parts(channel: Channel) -> tuple[str, ...]:
    """The parts of :data:`VALIDATION_MIX` served as ``channel`` (:data:`PART_CHANNELS`), in the mix's order."""
    return tuple(name for name in VALIDATION_MIX if PART_CHANNELS[name] == channel)


def validation_mix(split: Split, source_sha256: str, workers: int = 2, cache_dir: Path = DEFAULT_CACHE,
                   progress: bool = True) -> tuple[Split, dict[str, object]]:
    """The MNIST validation digits as the service sees them, each digit three ways: a simulated
    upload (seed 12), a pen drawing on the page's pad (seed 15) and the plain 28-px PNG file.
    What the temperature and the threshold are fitted on; the composition goes to the metadata."""
    parts = {
        "uploads": digit_uploads(split, "validation", source_sha256, workers, cache_dir, progress),
        "pen drawings": pen_drawings(split, "pen-validation", source_sha256, workers, cache_dir, progress),
        "plain PNG files": arrays_as_files(split, "validation", source_sha256, cache_dir),
    }
    images = np.concatenate([pool.images for pool in parts.values()])
    labels = np.concatenate([pool.labels for pool in parts.values()])
    composition: dict[str, object] = {
        "data": "MNIST validation digits as the service sees them, after its transform: "
                + ", ".join(f"{len(pool.images)} {name}" for name, pool in parts.items())
                + f" (seeds {SEEDS['validation']} and {SEEDS['pen-validation']})",
        **{name: len(pool.images) for name, pool in parts.items()},
    }
    return Split(images, labels), composition


def mix_parts(composition: dict[str, object]) -> np.ndarray:
    """Which part of :data:`VALIDATION_MIX` each image of :func:`validation_mix` is: its index, ``[N]``."""
    return np.repeat(np.arange(len(VALIDATION_MIX)), [cast(int, composition[name]) for name in VALIDATION_MIX])


def mix_files(composition: dict[str, object]) -> np.ndarray:
    """bool ``[N]``: which images of :func:`validation_mix` are files the API receives (uploads and
    PNG files), not drawings on the page's pad."""
    files = np.array([PART_CHANNELS[name] == "file" for name in VALIDATION_MIX])
    return files[mix_parts(composition)]


VALIDATION_NON_DIGITS = 5_000


def validation_non_digits(split: Split, source_sha256: str, workers: int = 2, cache_dir: Path = DEFAULT_CACHE,
                          progress: bool = True, count: int = VALIDATION_NON_DIGITS) -> tuple[np.ndarray, str]:
    """Generated non-digits (training's generator, its own seed; pairs from MNIST validation) as
    uploads: what the refer reason's rule is chosen on. Never a reported family."""
    pool = outlier_uploads(count, "outliers-validation", split.images, source_sha256, workers, cache_dir, progress)
    return pool.images, (f"{len(pool.images)} generated non-digits as uploads (model/synth/outliers.py, seed "
                         f"{SEEDS['outliers-validation']}, pairs from MNIST validation)")
