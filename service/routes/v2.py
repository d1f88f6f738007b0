"""The Open Inference Protocol v2 REST routes (``/v2``), for Triton's and KServe's clients.

Health, server and model metadata, readiness and inference for the model ``bnn-digits``
(``service/oip/`` parses and encodes; this module only reads the body and headers and shapes
the HTTP answer). Inference goes through the same :class:`service.pipeline.Inference` as
``/predict/batch``: the same micro-batching, limits, API key, shedding, audit and metrics. An
element the service would refuse fails the whole request with that image's status and its index
in the message. Errors are ``{"error": ...}`` (the protocol's shape). Health and readiness are
200 for true and 400 for false, as the protocol says, with ``{"live": ...}`` or ``{"ready": ...}``
as the body (KServe's client reads it; Triton's reads the status only).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from service.deps import InferenceDep, SettingsDep, client_source, require_api_key
from service.error_handlers import OIP_ERROR_RESPONSES
from service.errors import ImageRejected, ModelNotFound, ProtocolError, RejectedElement
from service.oip.request import parse_infer_request
from service.oip.response import encode_infer_response
from service.oip.spec import HEADER_LENGTH, MODEL_NAME, OUTPUT_NAMES, model_metadata, server_metadata
from service.pipeline import Inference
from service.settings import Settings

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"], responses=OIP_ERROR_RESPONSES)
HEALTH: dict[int | str, dict[str, Any]] = {200: {"description": "true: {\"live\" or \"ready\": true}"},
                                           400: {"description": "false: {\"ready\": false}"}}
MAX_LENGTH_DIGITS = 18  # an Inference-Header-Content-Length of more digits cannot be a body's
MODEL = "/models/{model_name}"
VERSION = "/models/{model_name}/versions/{model_version}"
INFER_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["inputs"],
        "description": "An OIP inference request with one input: 'image' (BYTES [B], each element a base64-encoded "
                       "image file in JSON) or 'digits' (UINT8 [B, 28, 28], MNIST-style). Optional 'outputs' (names: "
                       + ", ".join(OUTPUT_NAMES) + "), 'parameters' {'samples': N, 'binary_data_output': bool, "
                       "'channel': 'file' (default) or 'drawn'}, 'id'.",
        "properties": {"id": {"type": "string"}, "parameters": {"type": "object"},
                       "inputs": {"type": "array", "items": {"type": "object"}},
                       "outputs": {"type": "array", "items": {"type": "object"}}}},
        "example": {"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}],
                    "parameters": {"samples": 100}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "description": f"binary tensor data extension: {HEADER_LENGTH} bytes of "
                                                           "JSON, then the inputs' raw data"}}}}}


def loaded(request: Request) -> Inference | None:
    inference: Inference | None = request.app.state.inference
    return inference


def check_model(model_name: str, model_version: str | None, inference: Inference | None) -> None:
    if model_name != MODEL_NAME:
        raise ModelNotFound(f"unknown model '{model_name}'; this server serves '{MODEL_NAME}'")
    if model_version is not None and inference is not None and model_version != inference.model_version:
        raise ModelNotFound(f"model '{MODEL_NAME}' has no version '{model_version}'; it serves "
                            f"'{inference.model_version}'")


def health(key: str, ok: bool) -> JSONResponse:
    return JSONResponse({key: ok}, status_code=200 if ok else 400)


@router.get("", summary="Server metadata")
async def server(request: Request) -> dict[str, object]:
    return server_metadata(request.app.version)


@router.get("/health/live", summary="Server live: 200",
            responses=HEALTH)
async def live() -> JSONResponse:
    return health("live", True)


@router.get("/health/ready", summary="Server ready: 200 once the model is loaded, else 400",
            responses=HEALTH)
async def ready(request: Request) -> JSONResponse:
    return health("ready", loaded(request) is not None)


@router.get(MODEL, summary="Model metadata: inputs, outputs, datatypes, shapes")
async def metadata(inference: InferenceDep, model_name: str) -> dict[str, object]:
    check_model(model_name, None, inference)
    return model_metadata(inference.model_version, inference.precision, inference.runtime)


@router.get(VERSION, summary="Model metadata of a version")
async def version_metadata(inference: InferenceDep, model_name: str, model_version: str) -> dict[str, object]:
    check_model(model_name, model_version, inference)
    return model_metadata(inference.model_version, inference.precision, inference.runtime)


@router.get(MODEL + "/ready", summary="Model ready: 200 once loaded, else 400",
            responses=HEALTH)
async def model_ready(request: Request, model_name: str) -> JSONResponse:
    return version_ready(request, model_name, None)


@router.get(VERSION + "/ready", summary="Model version ready: 200 once loaded, else 400",
            responses=HEALTH)
async def model_version_ready(request: Request, model_name: str, model_version: str) -> JSONResponse:
    return version_ready(request, model_name, model_version)


def version_ready(request: Request, model_name: str, model_version: str | None) -> JSONResponse:
    inference = loaded(request)
    check_model(model_name, model_version, inference)
    return health("ready", inference is not None)


def reject_element(name: str, index: int, error: ImageRejected) -> ImageRejected:
    """The refusal of one element, naming it, with the status that image alone would get."""
    return type(error)(f"input '{name}' element {index}: {error}")


@router.post(MODEL + "/infer", summary="Inference (JSON, or the binary tensor data extension)",
             dependencies=[Depends(require_api_key)], openapi_extra=INFER_DOC)
async def infer(request: Request, inference: InferenceDep, settings: SettingsDep, model_name: str) -> Response:
    return await run_inference(request, inference, settings, model_name, None)


@router.post(VERSION + "/infer", summary="Inference on a version", dependencies=[Depends(require_api_key)],
             openapi_extra=INFER_DOC)
async def version_infer(request: Request, inference: InferenceDep, settings: SettingsDep, model_name: str,
                        model_version: str) -> Response:
    return await run_inference(request, inference, settings, model_name, model_version)


async def run_inference(request: Request, inference: Inference, settings: Settings, model_name: str,
                        model_version: str | None) -> Response:
    check_model(model_name, model_version, inference)
    header = request.headers.get(HEADER_LENGTH)
    # ASCII digits only ("²".isdigit() is true, and int() refuses it), and few of them
    if header is not None and not (header.isascii() and header.isdigit() and len(header) <= MAX_LENGTH_DIGITS):
        raise ProtocolError(f"{HEADER_LENGTH} must be a byte count, got {header[:40]!r}")
    parsed = parse_infer_request(await request.body(), int(header) if header is not None else None,
                                 settings.max_batch_files, settings.max_samples)
    try:
        answers = await inference.answer_all(parsed.items, parsed.samples, channel=parsed.channel,
                                             source=client_source(request))
    except RejectedElement as rejected:
        raise reject_element(parsed.input_name, rejected.index, rejected.error) from None
    first = answers[0].prediction
    parameters = {"threshold": first.threshold, "samples": first.samples, "channel": first.channel}
    body, json_length = encode_infer_response(parsed, answers, first.model_version, parameters)
    if json_length is None:
        return Response(body, media_type="application/json")
    return Response(body, media_type="application/octet-stream", headers={HEADER_LENGTH: str(json_length)})
