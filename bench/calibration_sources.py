"""Which part of the validation mix binds a refer threshold?

The thresholds are certified on MNIST validation seen three ways (simulated uploads, pen drawings
on the page's pad, plain 28-px PNG files): the file channel's on the uploads and PNG files, the
drawn channel's on the pen drawings. This prints, for a checkpoint, each part's error, its share
referred and the error of its accepted answers at its channel's shipped threshold, and the
loosest threshold each part would certify on its own (the same fixed-sequence test and delta, at
each alpha asked for), with the share that threshold refers; the same for the files the API
receives (uploads and PNG files together) and for the whole mix (one threshold shared, as before
the channels); then what each part would get at the threshold the files certify alone (why the
drawings do not share it). The entropies are one pass over the whole mix, so the thresholds
certified here differ from ``make calibrate``'s (each channel's own draws) by Monte Carlo noise:

    python -m bench.calibration_sources [--checkpoint checkpoints/bnn.safetensors] [--alpha 0.002 0.005]

Validation data only (what the threshold is fitted on); nothing here reads the test split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from model.calibrate import CalibrationError, draws_seed, guarantee_threshold, validation_scores
from model.calibration import Calibration, served_channels
from model.checkpoint import load_checkpoint
from model.mnist import load_mnist
from model.synth.pools import VALIDATION_MIX, mix_files, mix_parts, validation_mix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.002, 0.005])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    net, meta = load_checkpoint(args.checkpoint)
    channels = served_channels(meta, "float32")
    calibration = channels["file"]
    data = load_mnist()
    mix, composition = validation_mix(data.validation, data.source_sha256, progress=False)
    torch.manual_seed(draws_seed(None, meta))
    entropy, correct, _ = validation_scores(net, mix, calibration.samples)
    part = mix_parts(composition)
    files = mix_files(composition)
    shipped = np.where(files, channels["file"].threshold, channels["drawn"].threshold)  # each image's channel's
    print(f"{meta['model_version']}: " + ", ".join(
        f"{channel} channel's threshold {record.threshold:.4f} nats (alpha {record.alpha})"
        for channel, record in channels.items()) + f"; delta {calibration.delta}, N {calibration.samples}")
    print("| part | error | referred at its channel's threshold | accepted error there | " + " | ".join(
        f"alone at alpha {a:.1%}: threshold / referred" for a in args.alpha) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(args.alpha))
    groups = {**{name: part == index for index, name in enumerate(VALIDATION_MIX)},
              "uploads and PNG files": files, "the mix": np.ones_like(files)}
    for name, members in groups.items():
        e, c = entropy[members], correct[members]
        cells = [f"{1 - c.mean():.2%}", *_at(e, c, shipped[members])]
        for alpha in args.alpha:
            alone = _alone(e, c, alpha, calibration)
            cells.append("none certified" if alone is None else f"{alone[0]:.4f} / {1 - alone[1]:.2%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    files_alone = _alone(entropy[files], correct[files], calibration.alpha or args.alpha[0], calibration)
    if files_alone is not None:
        print(f"\nCalibrated on uploads and PNG files alone (alpha {calibration.alpha}): threshold {files_alone[0]:.4f} nats")
        print("| part | referred | accepted error |\n|---|---:|---:|")
        for index, name in enumerate(VALIDATION_MIX):
            members = part == index
            print(f"| {name} | " + " | ".join(_at(entropy[members], correct[members], files_alone[0])) + " |")
    return 0


def _at(entropy: np.ndarray, correct: np.ndarray, threshold: float | np.ndarray) -> list[str]:
    """Referred share and the accepted answers' error at ``threshold`` (one, or each image's), as table cells."""
    accepted = entropy <= threshold
    return [f"{1 - accepted.mean():.2%}", f"{1 - correct[accepted].mean():.2%}"]


def _alone(entropy: np.ndarray, correct: np.ndarray, alpha: float, calibration: Calibration) -> tuple[float, float] | None:
    """The loosest threshold these answers certify alone at ``alpha`` and its coverage; None if none does."""
    try:
        alone = guarantee_threshold(entropy, correct, alpha, calibration.delta or 0.05, calibration.samples)
    except CalibrationError:
        return None
    return alone.threshold, alone.validation_coverage


if __name__ == "__main__":
    raise SystemExit(main())
