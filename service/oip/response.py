"""Answers -> an OIP infer response body: JSON outputs, or binary ones after the JSON part."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from model.refer_rule import MAX_CANDIDATES
from service.oip.spec import (
    MODEL_NAME,
    NUMPY,
    OUTPUTS,
    InferRequest,
)
from service.pipeline import Answer


def _columns(answers: Sequence[Answer]) -> dict[str, np.ndarray]:
    predictions = [answer.prediction for answer in answers]
    return {
        "class": np.array([p.digit for p in predictions], dtype=NUMPY["INT64"]),
        "probabilities": np.array([p.probabilities for p in predictions], dtype=NUMPY["FP32"]).reshape(-1, 10),
        "entropy": np.array([p.entropy for p in predictions], dtype=NUMPY["FP32"]),
        "mutual_information": np.array([p.mutual_information for p in predictions], dtype=NUMPY["FP32"]),
        "refer": np.array([p.refer for p in predictions], dtype=bool),
        "refer_reason": np.array([(p.refer_reason or "").encode() for p in predictions], dtype=object),
        "candidates": np.array([p.candidates + [-1] * (MAX_CANDIDATES - len(p.candidates)) for p in predictions],
                               dtype=NUMPY["INT64"]).reshape(-1, MAX_CANDIDATES),
        "audit": np.array([a.audit for a in answers], dtype=bool),
        "review_id": np.array([(a.review_id or "").encode() for a in answers], dtype=object),
    }


def _binary(values: np.ndarray) -> bytes:
    if values.dtype == object:
        return b"".join(struct.pack("<I", len(item)) + item for item in values.tolist())
    return values.tobytes()


def encode_infer_response(request: InferRequest, answers: Sequence[Answer],
                          model_version: str, parameters: dict[str, Any]) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when outputs follow it in binary (the
    ``Inference-Header-Content-Length`` to send), else None."""
    columns = _columns(answers)
    specs = {spec.name: spec for spec in OUTPUTS}
    outputs, chunks = [], []
    for requested in request.outputs:
        values = columns[requested.name]
        tensor: dict[str, Any] = {"name": requested.name, "datatype": specs[requested.name].datatype,
                                  "shape": list(values.shape)}
        if requested.binary:
            chunk = _binary(values)
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif values.dtype == object:
            tensor["data"] = [item.decode() for item in values.tolist()]
        else:
            tensor["data"] = values.reshape(-1).tolist()
        outputs.append(tensor)
    document: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": model_version, "outputs": outputs,
                                "parameters": parameters}
    if request.id is not None:
        document["id"] = request.id
    text = json.dumps(document).encode()
    if not chunks:
        return text, None
    return text + b"".join(chunks), len(text)
