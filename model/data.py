"""What a network input is: the image constants, the split types and the uint8 -> float32 step.

Everything that decides what a network input looks like lives here, so training and the
service cannot drift apart: image size, digit box, and the intensity scale. Where MNIST and
Fashion-MNIST come from (the pinned wheel, the restricted unpickler, IDX files) is
``model.mnist``, which only the pipeline uses.

Images are kept as uint8 ``[N, 28, 28]`` (ink = high values, MNIST polarity) and turned into
float32 network inputs by :func:`to_input` only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SIZE = 28  # pixels per side of a network input
DIGIT_BOX = 20  # MNIST fits each digit's bounding box into 20x20, then centres by mass in 28x28
CENTRE_OF_MASS = 14.0  # row and column (pixel indices) where MNIST puts each digit's centre of mass
INTENSITY_SCALE = 256.0  # the pickled split stores float32 = uint8 / 256; we keep that scale

DEFAULT_CACHE = Path.home() / ".cache" / "bnn-digits"  # what the pipeline downloads and renders, cached


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, 28, 28], ink high
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int) -> Split:
        return Split(self.images[:count], self.labels[:count])


@dataclass(frozen=True)
class Mnist:
    train: Split
    validation: Split
    test: Split
    source_sha256: str


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float32 network input ``[N, 1, 28, 28]`` on the training scale."""
    tensor = torch.as_tensor(images)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {tensor.dtype}")
    return tensor.unsqueeze(1).float() / INTENSITY_SCALE


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
