"""The training recipe as one typed object: what ``model.train`` runs and ``model.batch_mix``
builds its data for. Saved with the weights (the checkpoint metadata's ``train_config``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from model.precision import Precision


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 16
    batch_size: int = 128
    lr: float = 2e-3
    final_lr_fraction: float = 0.02  # cosine decay to lr * this
    kl_warmup_epochs: float = 1.0
    augment: bool = True
    max_rotation_deg: float = 10.0
    max_shift_px: float = 2.0
    max_scale: float = 0.1
    seed: int = 0
    eval_samples: int = 10
    uploads: bool = True  # add a batch of training digits rendered as uploads
    # (model/synth/upload_simulator.py) per step
    outlier_weight: float = 0.5  # outlier exposure: weight of the uniform-prediction loss on generated non-digits
    outlier_batch: int = 64  # generated non-digits per step (0: no outlier exposure)
    arrays_as_files: float = 0.5  # share of the arrays batch replaced by the same digits as 28-px PNGs, transformed
    pen: bool = True  # training digits re-inked as pen strokes on the page's pad (model/synth/pen.py) join the uploads
    printed: bool = True  # digits printed in the training fonts (model/synth/families.py) join the uploads
    marks: bool = True  # marks of other scripts, printed and pen-drawn
    # (model/synth/other_scripts.py), join the outliers
    written_variants: tuple[int, ...] = ()  # of these digits (1: a flag or a foot, 7: a bar;
    # model/synth/written_variants.py) MNIST train's re-inked with the stroke added join the uploads
    angular_pen: bool = False  # MNIST train's digits re-inked in straight segments
    # (model/synth/angular_pen.py) join the uploads
    closing_shapes: int = 0  # generated non-digits that close and branch
    # (model/synth/closing_shapes.py) join the outliers
    letters: bool = False  # Latin letters in the training fonts, printed and pen-drawn, that do not read as a
    # digit (model/synth/latin_letters.py), join the outliers
    low_resolution: int = 0  # MNIST train's digits scanned at a few pixels and scaled back up
    # (model/synth/low_resolution.py) join the uploads
    max_batches: int | None = None  # per epoch; dry runs
    reviewed_batch: int = 32  # fine-tuning: reviewers' labelled digits per step (model/fine_tune.py)
    anchor: Literal["prior", "posterior"] = "prior"  # the KL's other side: N(0, prior_sigma^2), or (fine-tuning)
    # the posterior the run starts from, weight by weight (model/layers.py)
    learns: Literal["all", "head", "last"] = "all"  # which weights move: every one; the head's (fine-tuning: the
    # conv trunk stays the parent's); the last layer's only
    distill: float = 0.0  # fine-tuning: weight of KL(parent || net) on the replayed rows (the parent's answers kept)
    device: str = "cpu"
    precision: Precision = "float32"  # the conv trunk's under autocast (weights, optimizer, KL and loss: float32)
