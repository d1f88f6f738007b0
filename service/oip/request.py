"""An OIP infer request's body -> :class:`InferRequest`, refusing hostile bodies with a 400 (the package's
docstring says which, and why nothing is parsed per element before the batch limit is known)."""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

import numpy as np

from model.calibration import CHANNELS, Channel, channel_of
from model.data import IMAGE_SIZE
from service.errors import ProtocolError
from service.oip.spec import (
    HEADER_LENGTH,
    INPUTS,
    MAX_DEPTH,
    MAX_DIMENSION,
    MAX_FRAMING_COMMAS,
    OUTPUT_NAMES,
    InferRequest,
    RequestedOutput,
)


def _depth_over(document: Any, limit: int) -> bool:
    """Whether ``document`` nests arrays and objects more than ``limit`` deep (level by level, no recursion)."""
    level, frontier = 0, [document]
    while frontier:
        level += 1
        if level > limit:
            return True
        nested: list[Any] = []
        for value in frontier:
            children = value.values() if type(value) is dict else value
            nested.extend([child for child in children if type(child) is dict or type(child) is list])
        frontier = nested
    return False


def _shown(value: Any, limit: int = 60) -> str:
    """A client's value in an error message, cut to ``limit`` characters (it may be megabytes)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _object(value: Any, what: str) -> dict[str, Any]:
    """An optional ``parameters`` object (absent or null: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be an object, got {type(value).__name__}")
    return value


def _flag(parameters: dict[str, Any], key: str, what: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"{what} '{key}' must be true or false, got {type(value).__name__}")
    return value


def _flatten(data: Any) -> list[Any]:
    """The protocol's ``data``: row-major, flat or nested lists."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIMENSION
                                              for d in value):
        raise ProtocolError(f"input '{name}': shape must be a list of non-negative int64 integers")
    return tuple(value)


def _split_bytes_tensor(raw: bytes, name: str, count: int) -> list[bytes]:
    """BYTES in binary form: each element a 4-byte little-endian length, then its bytes; exactly
    ``count`` of them (the shape's), split no further than that."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if len(items) == count:
            raise ProtocolError(f"input '{name}': shape says {count} elements, the data holds more")
        if offset + 4 > len(raw):
            raise ProtocolError(f"input '{name}': binary BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ProtocolError(f"input '{name}': element {len(items)} claims {length} bytes, past the end of the data")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def _image_items(tensor: dict[str, Any], shape: tuple[int, ...], raw: bytes | None) -> list[bytes]:
    if len(shape) != 1:
        raise ProtocolError(f"input 'image': shape must be [B], got {list(shape)}")
    if raw is not None:
        items = _split_bytes_tensor(raw, "image", shape[0])
    else:
        elements = _flatten(tensor.get("data"))
        if len(elements) != shape[0]:  # before decoding any of them
            raise ProtocolError(f"input 'image': shape says {shape[0]} elements, the data holds {len(elements)}")
        items = []
        for index, element in enumerate(elements):
            if not isinstance(element, str):
                raise ProtocolError(f"input 'image': element {index} must be a base64 string in JSON "
                                    "(or send raw bytes with the binary tensor data extension)")
            try:
                items.append(base64.b64decode(element, validate=True))
            except (binascii.Error, ValueError):
                raise ProtocolError(f"input 'image': element {index} is not valid base64") from None
    if len(items) != shape[0]:
        raise ProtocolError(f"input 'image': shape says {shape[0]} elements, the data holds {len(items)}")
    return items


def _digit_items(tensor: dict[str, Any], shape: tuple[int, ...], raw: bytes | None) -> list[np.ndarray]:
    if len(shape) != 3 or shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ProtocolError(f"input 'digits': shape must be [B, {IMAGE_SIZE}, {IMAGE_SIZE}], got {list(shape)}")
    expected = shape[0] * IMAGE_SIZE * IMAGE_SIZE
    if raw is not None:
        if len(raw) != expected:
            raise ProtocolError(f"input 'digits': {len(raw)} bytes of binary data for shape {list(shape)}, "
                                f"expected {expected}")
        array = np.frombuffer(raw, dtype=np.uint8)
    else:
        values = _flatten(tensor.get("data"))
        if len(values) != expected:
            raise ProtocolError(f"input 'digits': {len(values)} values for shape {list(shape)}, expected {expected}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in values):
            raise ProtocolError("input 'digits': values must be integers from 0 to 255 (UINT8)")
        array = np.asarray(values, dtype=np.uint8)
    return list(array.reshape(shape).copy())


def _samples(parameters: dict[str, Any], max_samples: int) -> int | None:
    samples = parameters.get("samples")
    if samples is None:
        return None
    if not isinstance(samples, int) or isinstance(samples, bool) or not 1 <= samples <= max_samples:
        raise ProtocolError(f"parameter 'samples' must be an integer from 1 to {max_samples}, got {_shown(samples)}")
    return samples


def _channel(parameters: dict[str, Any]) -> Channel:
    channel = parameters.get("channel", "file")
    try:
        return channel_of(channel)
    except ValueError:
        raise ProtocolError(f"parameter 'channel' must be one of {', '.join(CHANNELS)}, "
                            f"got {_shown(channel)}") from None


def _requested_outputs(document: dict[str, Any], binary_by_default: bool) -> tuple[RequestedOutput, ...]:
    requested = document.get("outputs")
    if requested is None:
        return tuple(RequestedOutput(name, binary_by_default) for name in OUTPUT_NAMES)
    if not isinstance(requested, list) or not requested:
        raise ProtocolError("'outputs' must be a non-empty list of {\"name\": ...} objects")
    outputs, seen = [], set()
    for item in requested:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in OUTPUT_NAMES:
            raise ProtocolError(f"unknown output {_shown(name)}; the model has {', '.join(OUTPUT_NAMES)}")
        if name in seen:
            raise ProtocolError(f"output '{name}' requested twice")
        seen.add(name)
        parameters = _object(item.get("parameters"), f"output '{name}': 'parameters'")
        outputs.append(RequestedOutput(name, _flag(parameters, "binary_data", f"output '{name}': parameter",
                                                   binary_by_default)))
    return tuple(outputs)


def _read_document(text: bytes, max_batch: int) -> dict[str, Any]:
    """The request's JSON object, bounded before it is parsed (values) and after (depth)."""
    max_commas = max_batch * IMAGE_SIZE * IMAGE_SIZE + MAX_FRAMING_COMMAS
    if text.count(b",") > max_commas:  # ~10 ms for 32 MiB; parsing that many values takes seconds
        raise ProtocolError(f"the request's JSON holds more than {max_commas} values; it takes 1 to {max_batch} "
                            f"images ({IMAGE_SIZE * IMAGE_SIZE} values each as digits) per request")
    try:
        document = json.loads(text)
    except RecursionError:
        raise ProtocolError(f"the request nests arrays or objects deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"the request is not valid JSON ({error})") from None
    except ValueError as error:  # an integer past Python's digit limit (sys.get_int_max_str_digits)
        raise ProtocolError(f"the request holds a number too long to read ({error})") from None
    if not isinstance(document, dict):
        raise ProtocolError("the request must be a JSON object")
    if _depth_over(document, MAX_DEPTH):
        raise ProtocolError(f"the request nests arrays or objects deeper than {MAX_DEPTH} levels")
    return document


def parse_infer_request(body: bytes, header_length: int | None, max_batch: int, max_samples: int) -> InferRequest:
    """An inference request's body (JSON, or JSON + binary data when ``header_length`` is given)."""
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} is {header_length} but the body has {len(body)} bytes")
        text, binary = body[:header_length], body[header_length:]
    else:
        text, binary = body, b""
    document = _read_document(text, max_batch)
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError("'inputs' must hold exactly one input: 'image' (BYTES [B]) or 'digits' (UINT8 [B, 28, 28])")
    tensor = inputs[0]
    spec = next((spec for spec in INPUTS if spec.name == tensor.get("name")), None)
    if spec is None:
        raise ProtocolError(f"unknown input {_shown(tensor.get('name'))}; the model takes 'image' (BYTES [B]) or "
                            "'digits' (UINT8 [B, 28, 28])")
    name = spec.name
    if tensor.get("datatype") != spec.datatype:
        raise ProtocolError(f"input '{name}' must have datatype {spec.datatype}, got {_shown(tensor.get('datatype'))}")
    shape = _shape(tensor.get("shape"), name)
    if shape and not 1 <= shape[0] <= max_batch:  # before any of its data is read
        raise ProtocolError(f"input '{name}': {shape[0]} images; send 1 to {max_batch} per request")
    size = _object(tensor.get("parameters"), f"input '{name}': 'parameters'").get("binary_data_size")
    raw = None
    if size is not None:
        if header_length is None:
            raise ProtocolError(f"input '{name}' has binary_data_size but the request has no {HEADER_LENGTH} header")
        if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
            raise ProtocolError(f"input '{name}': binary_data_size {_shown(size)}, "
                                f"but {len(binary)} bytes follow the JSON")
        raw = binary
    elif binary:
        raise ProtocolError(f"{len(binary)} bytes follow the JSON but no input declares binary_data_size")
    elif "data" not in tensor:
        raise ProtocolError(f"input '{name}' has no data")
    items: list[bytes] | list[np.ndarray] = (_image_items(tensor, shape, raw) if name == "image"
                                             else _digit_items(tensor, shape, raw))
    if not 1 <= len(items) <= max_batch:
        raise ProtocolError(f"input '{name}': {len(items)} images; send 1 to {max_batch} per request")
    parameters = _object(document.get("parameters"), "'parameters'")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string, got {type(request_id).__name__}")
    return InferRequest(request_id, name, items, _samples(parameters, max_samples),
                        _requested_outputs(document, _flag(parameters, "binary_data_output", "parameter", False)),
                        _channel(parameters))
