"""The Open Inference Protocol v2 routes, driven by Triton's own HTTP client (binary and JSON)
against the app served by uvicorn in this process, so that a torch seed set here fixes the
server's draws: answers are compared with /predict's exactly, not within Monte Carlo noise."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as tritonclient
from prometheus_client import CollectorRegistry
from tritonclient.utils import InferenceServerException

from harness.inputs import SHIPPED, expected_precision, mnist_fixtures, shipped_calibration
from harness.server import serving
from model.precision import KINDS
from service.app import create_app
from service.errors import ProtocolError
from service.inference.preprocess import preprocess
from service.oip.request import parse_infer_request
from service.oip.spec import MAX_FRAMING_COMMAS, OUTPUT_NAMES
from service.settings import Settings
from tests.metrics_text import parse_samples, value

DIGITS = mnist_fixtures()
FILES = [path.read_bytes() for path, _ in DIGITS[:6]]
LABELS = [label for _, label in DIGITS[:6]]
MODEL = "bnn-digits"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The app on uvicorn in a thread of this process; yields host:port."""
    settings = Settings(model_path=SHIPPED, max_batch_files=8, max_request_bytes=4_000_000, max_upload_bytes=2_000_000)
    with serving(create_app(settings, registry=CollectorRegistry()), settings) as uv:
        yield f"127.0.0.1:{uv.config.port}"


@pytest.fixture(scope="module")
def client(server):
    with tritonclient.InferenceServerClient(server) as triton:
        yield triton


def image_input(files: list[bytes], binary: bool):
    tensor = tritonclient.InferInput("image", [len(files)], "BYTES")
    if binary:
        tensor.set_data_from_numpy(np.array(files, dtype=object), binary_data=True)
    else:  # JSON cannot carry raw bytes: the elements are base64, as the model's metadata documents
        tensor.set_data_from_numpy(np.array([base64.b64encode(f) for f in files], dtype=object), binary_data=False)
    return tensor


def predict_answers(server: str, files: list[bytes], samples: int) -> list[dict]:
    """/predict/batch's answers for the same files, under the same seed."""
    torch.manual_seed(7)
    response = httpx.post(f"http://{server}/predict/batch", params={"samples": samples},
                          files=[("files", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)])
    assert response.status_code == 200
    return response.json()


def test_health_and_metadata(client, server):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    metadata = client.get_model_metadata(MODEL)
    version = metadata["versions"][0]
    assert metadata["name"] == MODEL and version.startswith("head-")
    assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in metadata["inputs"]} == {
        ("image", "BYTES", (-1,)), ("digits", "UINT8", (-1, 28, 28))}
    assert [t["name"] for t in metadata["outputs"]] == list(OUTPUT_NAMES)
    assert metadata["parameters"] == {"precision": expected_precision(), "runtime": KINDS[expected_precision()].runtime}
    assert client.is_model_ready(MODEL, version) and not client.is_model_ready("other")
    for bad in ("other", "/".join((MODEL, "versions", "nope"))):
        response = httpx.get(f"http://{server}/v2/models/{bad}")
        assert response.status_code == 404 and "error" in response.json()
    live = httpx.get(f"http://{server}/v2/health/live")
    assert live.status_code == 200 and live.json() == {"live": True}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_image_input_agrees_with_predict(client, server, binary):
    expected = predict_answers(server, FILES, 300)
    torch.manual_seed(7)
    result = client.infer(MODEL, [image_input(FILES, binary)], parameters={"samples": 300},
                          outputs=[tritonclient.InferRequestedOutput(name, binary_data=binary)
                                   for name in OUTPUT_NAMES])
    assert list(result.as_numpy("class")) == [a["class"] for a in expected] == LABELS
    assert result.as_numpy("class").dtype == np.int64 and result.as_numpy("probabilities").shape == (6, 10)
    np.testing.assert_allclose(result.as_numpy("probabilities"), [a["probabilities"] for a in expected], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("entropy"), [a["entropy"] for a in expected], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.as_numpy("mutual_information"), [a["mutual_information"] for a in expected],
                               rtol=1e-4, atol=1e-7)
    assert list(result.as_numpy("refer")) == [a["refer"] for a in expected]
    reasons = [r.decode() if isinstance(r, bytes) else r for r in result.as_numpy("refer_reason")]
    assert reasons == [a["refer_reason"] or "" for a in expected]
    candidates = result.as_numpy("candidates")  # [B, 3], -1 padded
    assert candidates.shape == (6, 3) and candidates.dtype == np.int64
    assert [[c for c in row if c >= 0] for row in candidates.tolist()] == [a["candidates"] for a in expected]
    parameters = result.get_response()["parameters"]
    assert parameters["samples"] == 300 and parameters["threshold"] == expected[0]["threshold"]
    assert parameters["channel"] == "file"


def test_the_drawn_channel_is_a_parameter(client, server):
    """parameters.channel 'drawn' judges the images by the drawn channel's rule, as /predict?channel=drawn."""
    drawn = shipped_calibration(channel="drawn")
    result = client.infer(MODEL, [image_input(FILES, True)], parameters={"samples": 50, "channel": "drawn"})
    parameters = result.get_response()["parameters"]
    assert parameters["channel"] == "drawn" and parameters["threshold"] == drawn["threshold"]
    assert list(result.as_numpy("refer")) == list(result.as_numpy("entropy") > drawn["threshold"])


def test_digits_input_is_the_preprocessed_image(client, server):
    """'digits' skips preprocessing: the preprocessed files give exactly the files' answers."""
    digits = np.stack([preprocess(data, 40_000_000) for data in FILES])
    answers = {}
    as_digits = tritonclient.InferInput("digits", list(digits.shape), "UINT8")
    as_digits.set_data_from_numpy(digits, binary_data=False)  # JSON: a list of 0-255 integers
    for name, tensor in (("image", image_input(FILES, True)), ("digits", as_digits)):
        torch.manual_seed(3)
        answers[name] = client.infer(MODEL, [tensor]).as_numpy("probabilities")  # default: all outputs, binary
    np.testing.assert_array_equal(answers["image"], answers["digits"])


def test_outputs_are_selected_and_default_to_binary(server):
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(FILES[0]).decode()]}],
            "outputs": [{"name": "refer"}, {"name": "class"}], "id": "abc"}
    response = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200 and "inference-header-content-length" not in response.headers
    answer = response.json()
    assert answer["id"] == "abc" and answer["model_name"] == MODEL
    assert [(o["name"], o["datatype"], o["shape"], o["data"]) for o in answer["outputs"]] == [
        ("refer", "BOOL", [1], [False]), ("class", "INT64", [1], [LABELS[0]])]


def binary_request(payload: dict, raw: bytes) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(payload).encode()
    return text + raw, {"Inference-Header-Content-Length": str(len(text))}


def element(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


@pytest.mark.parametrize(("payload", "raw", "status", "message"), [
    ({"inputs": []}, b"", 400, "exactly one input"),
    ({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [0.0]}]}, b"", 400,
     "unknown input 'pixels'"),
    ({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1], "data": [1]}]}, b"", 400, "datatype BYTES"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]}, b"", 400,
     "shape says 2 elements, the data holds 1"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["***"]}]}, b"", 400, "not valid base64"),
    ({"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 10}]}, b"", 400,
     "10 values for shape [1, 28, 28], expected 784"),
    ({"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [300] * 784}]}, b"", 400,
     "integers from 0 to 255"),
    ({"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}],
      "outputs": [{"name": "logits"}]}, b"", 400, "unknown output 'logits'"),
    ({"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}],
      "parameters": {"samples": 0}}, b"", 400, "'samples' must be an integer from 1 to 1000"),
    ({"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}],
      "parameters": {"channel": "pad"}}, b"", 400, "parameter 'channel' must be one of file, drawn, got 'pad'"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [9], "data": ["aGk="] * 9}]}, b"", 400,
     "9 images; send 1 to 8"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 0}}]}, None,
     400, "binary_data_size"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 8}}]},
     struct.pack("<I", 100) + b"abcd", 400, "claims 100 bytes, past the end"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 0}}]},
     b"", 400, "shape says 2 elements, the data holds 0"),
])
def test_bad_requests_get_clean_400s(server, payload, raw, status, message):
    if raw is None:  # binary_data_size without the header
        response = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", json=payload)
    elif raw or any("parameters" in t for t in payload.get("inputs", [])):
        content, headers = binary_request(payload, raw)
        response = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", content=content, headers=headers)
    else:
        response = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", json=payload)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


DIGIT_INPUT = '{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [' + ",".join(["0"] * 784) + "]"
HOSTILE = [  # issue 42: the first three were 500s with a traceback
    ("deeply nested", '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}", {}, "deeper than 16 levels"),
    ("nested 17 deep", '{"inputs": [' + DIGIT_INPUT + "}], \"id\": \"x\", \"parameters\": {\"a\": "
     + "[" * 15 + "]" * 15 + "}}", {}, "deeper than 16 levels"),
    ("a 5000-digit integer", '{"inputs": [' + DIGIT_INPUT + "}], \"parameters\": {\"samples\": " + "9" * 5000 + "}}",
     {}, "a number too long to read"),
    ("an input's parameters a string", '{"inputs": [' + DIGIT_INPUT + ', "parameters": "x"}]}', {},
     "input 'digits': 'parameters' must be an object, got str"),
    ("an output's parameters a list", '{"inputs": [' + DIGIT_INPUT + '}], "outputs": [{"name": "class", '
     '"parameters": [1]}]}', {}, "output 'class': 'parameters' must be an object, got list"),
    ("binary_data_output a string", '{"inputs": [' + DIGIT_INPUT + '}], "parameters": {"binary_data_output": "yes"}}',
     {}, "parameter 'binary_data_output' must be true or false, got str"),
    ("id an object", '{"inputs": [' + DIGIT_INPUT + '}], "id": {"a": 1}}', {}, "'id' must be a string, got dict"),
    ("a shape past int64", '{"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [' + str(2**64 * 3)
     + ', 28, 28], "data": [0]}]}', {}, "shape must be a list of non-negative int64 integers"),
    ("a shape of 4000 digits", '{"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [' + "9" * 4000
     + ', 28, 28], "data": [0]}]}', {}, "shape must be a list of non-negative int64 integers"),
    ("a long unknown name", '{"inputs": [{"name": "' + "n" * 100_000 + '"}]}', {}, "unknown input 'nnnnnnnn"),
    ("a superscript header length", '{"inputs": []}', {"Inference-Header-Content-Length": b"\xb2"},  # "²" in latin-1

     "must be a byte count"),
    ("a 30-digit header length", '{"inputs": []}', {"Inference-Header-Content-Length": "9" * 30},
     "must be a byte count"),
]


@pytest.mark.parametrize(("body", "headers", "message"), [case[1:] for case in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_bodies_get_a_400_in_the_protocols_shape_never_a_500(server, body, headers, message):
    response = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", content=body.encode(),
                          headers={"Content-Type": "application/json", **headers})
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert message in error and len(error) < 400  # a client's megabytes are never echoed back


MANY = 999_000  # elements in a body near the module server's 4,000,000-byte limit
MAX_VALUES = 8 * 784 + MAX_FRAMING_COMMAS  # its max_batch_files is 8
FLOOD = [  # each was parsed element by element before its count was checked: 2.5 to 3 s at 32 MiB
    ("binary: a million elements, as the shape says", {"name": "image", "datatype": "BYTES", "shape": [MANY]},
     b"\x00" * 4 * MANY + b"\x00\x00", f"input 'image': {MANY} images; send 1 to 8 per request"),
    ("binary: a million elements, the shape says 2", {"name": "image", "datatype": "BYTES", "shape": [2]},
     b"\x00" * 4 * MANY, "input 'image': shape says 2 elements, the data holds more"),
    ("JSON: 1.9 million zeros as digits", {"name": "digits", "datatype": "UINT8", "shape": [8, 28, 28],
                                           "data": [0] * 1_900_000}, None,
     f"the request's JSON holds more than {MAX_VALUES} values"),
    ("JSON: 1.3 million empty strings as images", {"name": "image", "datatype": "BYTES", "shape": [8],
                                                   "data": [""] * 1_300_000}, None,
     f"the request's JSON holds more than {MAX_VALUES} values"),
    ("JSON: a shape of 100,000 digits", {"name": "digits", "datatype": "UINT8", "shape": [100_000, 28, 28],
                                         "data": [0]}, None, "input 'digits': 100000 images; send 1 to 8 per request"),
]


@pytest.mark.parametrize(("tensor", "raw", "message"), [case[1:] for case in FLOOD], ids=[c[0] for c in FLOOD])
def test_a_body_of_many_elements_is_refused_before_they_are_parsed(server, tensor, raw, message):
    if raw is None:
        content, headers = json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode(), {}
    else:
        content, headers = binary_request({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}, raw)
    assert len(content) < 4_000_000
    response = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", content=content,
                          headers={"Content-Type": "application/json", **headers})
    assert response.status_code == 400 and response.json()["error"].startswith(message)


def test_the_value_bound_admits_the_largest_valid_request_and_refuses_a_flood_at_once():
    """At the defaults (32 images, 32 MiB): 32 digits as nested lists, every output named with its
    parameters, parse; a 32 MiB body of 11 million "" is refused in milliseconds, not 2.5 s."""
    digits = np.arange(32 * 784, dtype=np.uint8).reshape(32, 28, 28)
    largest = {"id": "a,b", "inputs": [{"name": "digits", "datatype": "UINT8", "shape": [32, 28, 28],
                                        "data": digits.tolist(), "parameters": {}}],
               "outputs": [{"name": name, "parameters": {"binary_data": False}} for name in OUTPUT_NAMES],
               "parameters": {"samples": 100, "channel": "drawn", "binary_data_output": False}}
    parsed = parse_infer_request(json.dumps(largest).encode(), None, max_batch=32, max_samples=1000)
    assert len(parsed.items) == 32 and np.array_equal(np.stack(parsed.items), digits)
    count = (32 * 1024 * 1024 - 100) // 3
    flood = (b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[32],"data":['
             + b",".join([b'""'] * count) + b"]}]}")
    started = time.monotonic()
    with pytest.raises(ProtocolError, match=f"holds more than {32 * 784 + MAX_FRAMING_COMMAS} values"):
        parse_infer_request(flood, None, max_batch=32, max_samples=1000)
    assert time.monotonic() - started < 0.5


def test_a_bad_element_fails_the_request_naming_its_index(client, server):
    files = [FILES[0], b"not an image at all", FILES[1]]
    with pytest.raises(InferenceServerException, match=r"input 'image' element 1: not a decodable image"):
        client.infer(MODEL, [image_input(files, True)])
    tiff = b"II*\x00" + b"\x00" * 64
    content, headers = binary_request({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                                   "parameters": {"binary_data_size": 8 + len(FILES[0]) + len(tiff)}}]},
                                      element(FILES[0]) + element(tiff))
    response = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", content=content, headers=headers)
    assert response.status_code == 415 and response.json()["error"].startswith("input 'image' element 1: TIFF")


def test_other_errors_keep_their_status_in_the_protocol_shape(server):
    assert httpx.post(f"http://{server}/v2/models/other/infer", json={}).json() == {
        "error": "unknown model 'other'; this server serves 'bnn-digits'"}
    not_json = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["error"].startswith("the request is not valid JSON")
    too_big = httpx.post(f"http://{server}/v2/models/{MODEL}/infer", content=b"x" * 4_000_001)
    assert too_big.status_code == 413 and too_big.json() == {"error": "request body exceeds the limit of 4000000 bytes"}
    assert httpx.get(f"http://{server}/v2/nowhere").json() == {"error": "Not Found"}


def test_predictions_are_counted_in_the_same_metrics(client, server):
    def answered() -> float:
        samples = parse_samples(httpx.get(f"http://{server}/metrics").text)
        return sum(value(samples, "bnn_predictions_total", referred=r, **{"class": str(d)})
                   for r in ("true", "false") for d in range(10))

    before = answered()
    client.infer(MODEL, [image_input(FILES[:3], True)])
    assert answered() == before + 3


def test_the_api_key_and_shedding_apply_to_inference(monkeypatch):
    from fastapi.testclient import TestClient

    from service.inference.batcher import QueueFull

    settings = Settings(model_path=SHIPPED, api_key="s3cret-0123456789")
    body = {"inputs": [{"name": "digits", "datatype": "UINT8", "shape": [1, 28, 28], "data": [0] * 784}]}
    with TestClient(create_app(settings, registry=CollectorRegistry())) as local:
        refused = local.post(f"/v2/models/{MODEL}/infer", json=body)
        assert refused.status_code == 401 and refused.json() == {"error": "missing or wrong X-API-Key header"}
        assert local.get(f"/v2/models/{MODEL}").status_code == 200  # metadata and health stay open
        assert local.post(f"/v2/models/{MODEL}/infer", json=body,
                          headers={"X-API-Key": "s3cret-0123456789"}).status_code == 200

        async def full(*args, **kwargs):
            raise QueueFull("256 requests already waiting")

        monkeypatch.setattr(local.app.state.inference.batcher, "submit", full)
        shed = local.post(f"/v2/models/{MODEL}/infer", json=body, headers={"X-API-Key": "s3cret-0123456789"})
        assert shed.status_code == 503 and shed.headers["Retry-After"] == "1"
        assert shed.json() == {"error": "overloaded: 256 requests already waiting; retry shortly"}


def test_kserves_client_checks_health_and_infers_in_binary_and_json(server):
    """KServe's own REST client (v2): binary image input and JSON digits input, same answers."""
    import asyncio

    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    digits = np.stack([preprocess(data, 40_000_000) for data in FILES])

    async def scenario():
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        base = f"http://{server}"
        try:
            health = (await client.is_server_live(base), await client.is_server_ready(base),
                      await client.is_model_ready(base, MODEL))
            image = InferInput("image", [len(FILES)], "BYTES")
            image.set_data_from_numpy(np.array(FILES, dtype=object), binary_data=True)
            torch.manual_seed(11)
            binary = await client.infer(base, InferRequest(MODEL, [image], parameters={"samples": 200}), MODEL)
            as_digits = InferInput("digits", list(digits.shape), "UINT8")
            as_digits.set_data_from_numpy(digits, binary_data=False)
            torch.manual_seed(11)
            json_answer = await client.infer(base, InferRequest(MODEL, [as_digits], parameters={"samples": 200}), MODEL)
        finally:
            await client.close()
        return health, binary, json_answer

    health, binary, json_answer = asyncio.run(scenario())
    assert health == (True, True, True)
    outputs = {name: {o.name: o.as_numpy() for o in answer.outputs} for name, answer in
               (("binary", binary), ("json", json_answer))}
    assert list(outputs["binary"]["class"]) == list(outputs["json"]["class"]) == LABELS
    np.testing.assert_array_equal(outputs["binary"]["probabilities"], outputs["json"]["probabilities"])
