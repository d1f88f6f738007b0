"""The model's tensors in the Open Inference Protocol, the request as parsed, and the metadata documents."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.calibration import Channel
from model.data import IMAGE_SIZE
from model.refer_rule import MAX_CANDIDATES

MODEL_NAME = "bnn-digits"
PLATFORM = "pytorch"
BINARY_EXTENSION = "binary_tensor_data"
HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_DEPTH = 16  # nested arrays and objects; a valid request needs 6
MAX_DIMENSION = 2**63 - 1  # shapes are int64 in the protocol
MAX_FRAMING_COMMAS = 1024  # commas a valid request needs besides its data: outputs, parameters, keys (~50)
NUMPY = {"BOOL": np.dtype(bool), "UINT8": np.dtype(np.uint8), "INT64": np.dtype("<i8"), "FP32": np.dtype("<f4")}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


INPUTS = (TensorSpec("image", "BYTES", (-1,)), TensorSpec("digits", "UINT8", (-1, IMAGE_SIZE, IMAGE_SIZE)))
OUTPUTS = (
    TensorSpec("class", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 10)),
    TensorSpec("entropy", "FP32", (-1,)), TensorSpec("mutual_information", "FP32", (-1,)),
    TensorSpec("refer", "BOOL", (-1,)), TensorSpec("refer_reason", "BYTES", (-1,)),
    TensorSpec("candidates", "INT64", (-1, MAX_CANDIDATES)), TensorSpec("audit", "BOOL", (-1,)),
    TensorSpec("review_id", "BYTES", (-1,)),
)
OUTPUT_NAMES = tuple(spec.name for spec in OUTPUTS)


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    input_name: str  # "image" or "digits"
    items: list[bytes] | list[np.ndarray]  # encoded files, or uint8 [28, 28] digits
    samples: int | None
    outputs: tuple[RequestedOutput, ...]  # in the order to answer them
    channel: Channel = "file"


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "bnn-digits-service", "version": version, "extensions": [BINARY_EXTENSION]}


def model_metadata(model_version: str, precision: str, runtime: str) -> dict[str, Any]:
    """The model's metadata; ``parameters`` (an extension the protocol allows) says the precision
    its conv trunk runs in and the runtime."""
    return {"name": MODEL_NAME, "versions": [model_version], "platform": PLATFORM,
            "inputs": [spec.metadata() for spec in INPUTS], "outputs": [spec.metadata() for spec in OUTPUTS],
            "parameters": {"precision": precision, "runtime": runtime}}
