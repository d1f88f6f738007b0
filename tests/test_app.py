"""The API on the shipped checkpoint: real digits, every error path, exact metrics, start-up."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import CollectorRegistry

from harness.images import (
    canvas_export,
    encode,
    enlarged_dark_on_light,
    off_centre_on_canvas,
    on_lined_paper,
    png_claiming,
    unevenly_lit_photo,
)
from harness.inputs import (
    ROOT,
    SHIPPED,
    blended_digits,
    expected_precision,
    load_digit,
    mnist_fixtures,
    shipped_calibration,
)
from harness.server import free_port, post_image
from model.checkpoint import CheckpointError
from model.precision import KINDS
from service.app import create_app
from service.inference.predictor import Predictor
from service.settings import Settings
from tests.metrics_text import parse_samples, value

DIGITS = mnist_fixtures()


@pytest.fixture(scope="module")
def client():
    # no audit draw: answers are compared field by field (audits have their own tests: test_audit, test_review_api)
    app = create_app(Settings(model_path=SHIPPED, max_upload_bytes=2_000_000, max_request_bytes=4_000_000,
                              max_pixels=5_000_000, max_batch_files=8, audit_fraction=0.0),
                     registry=CollectorRegistry())
    with TestClient(app) as test_client:
        yield test_client


def metric(client: TestClient, name: str, **labels: str) -> float:
    return value(parse_samples(client.get("/metrics").text), name, **labels)


@pytest.mark.parametrize(("path", "label"), DIGITS, ids=[p.stem for p, _ in DIGITS])
def test_real_mnist_digits_are_right_when_accepted(client, path, label):
    response = post_image(client, path.read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["class"] == label or body["refer"]  # a referred digit is allowed to be read wrong
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-9
    assert body["class"] == int(np.argmax(body["probabilities"]))
    assert 0 <= body["mutual_information"] <= body["entropy"]
    assert body["refer"] == (body["entropy"] > body["threshold"])
    assert body["samples"] == 100 and body["model_version"].startswith("head-")


VARIANTS = {
    "inverted_enlarged_scan": lambda d: encode(enlarged_dark_on_light(d)),
    "off_centre_on_dark_canvas": lambda d: encode(off_centre_on_canvas(d)),
    "rgba_canvas_export": lambda d: encode(canvas_export(d)),
    "white_strokes_on_transparent": lambda d: encode(canvas_export(d, (255, 255, 255))),
    "jpeg_photo_like": lambda d: encode(enlarged_dark_on_light(d, 600).convert("RGB"), "JPEG", quality=70),
    "webp": lambda d: encode(enlarged_dark_on_light(d), "WEBP", quality=80),
    "bmp": lambda d: encode(Image.fromarray(d), "BMP"),
    "gif_palette": lambda d: encode(enlarged_dark_on_light(d).convert("P"), "GIF"),
    "one_bit": lambda d: encode(enlarged_dark_on_light(d).point(lambda v: 255 if v > 128 else 0).convert("1")),
    "sixteen_bit": lambda d: encode(Image.fromarray(np.asarray(enlarged_dark_on_light(d)).astype(np.uint16) * 257)),
    "cmyk_jpeg": lambda d: encode(enlarged_dark_on_light(d).convert("CMYK"), "JPEG", quality=90),
    "photo_light_gradient": lambda d: encode(unevenly_lit_photo(d, "gradient"), "JPEG", quality=80),
    "photo_vignette": lambda d: encode(unevenly_lit_photo(d, "vignette"), "JPEG", quality=80),
    "lined_paper": lambda d: encode(on_lined_paper(d), "JPEG", quality=85),
    "squared_paper": lambda d: encode(on_lined_paper(d, 0.5, squared=True), "JPEG", quality=85),
}


def test_real_mnist_digits_are_mostly_accepted(client):
    """Plain 28-px PNGs of MNIST test digits are referred 3.5 % of the time (README): of these 20, at
    most three are, and only for their entropy."""
    answers = [post_image(client, path.read_bytes()).json() for path, _ in DIGITS]
    referred = [a for a in answers if a["refer"]]
    assert len(referred) <= 3, [(a["class"], a["entropy"]) for a in referred]
    assert all(a["refer_reason"] == "uncertain" and a["entropy"] > a["threshold"] for a in referred)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_real_upload_variants_are_classified(client, variant):
    correct = 0
    chosen = DIGITS[:10]
    for path, label in chosen:
        response = post_image(client, VARIANTS[variant](load_digit(path)), content_type="application/octet-stream")
        assert response.status_code == 200, response.text
        correct += response.json()["class"] == label
    assert correct >= 9, f"{variant}: {correct}/10"


def test_noise_and_shapes_are_mostly_referred(client):
    rng = np.random.default_rng(0)
    uploads = [encode(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8))) for _ in range(5)]
    square = Image.new("L", (100, 100), 0)
    square.paste(255, (20, 20, 80, 80))
    uploads.append(encode(square))
    referred = sum(post_image(client, data).json()["refer"] for data in uploads)
    assert referred >= 4


def test_pixel_limit_is_the_configured_one(client):
    """Every other bad upload (empty, truncated, text, refused formats, blank, bombs, bad samples) is in
    tests/test_hostile.py; this one depends on this client's BNN_MAX_PIXELS."""
    response = post_image(client, png_claiming(3000, 3000))
    assert response.status_code == 413
    assert "9000000 pixels" in response.json()["detail"]


def test_samples_parameter_is_used(client):
    body = post_image(client, DIGITS[0][0].read_bytes(), samples=7).json()
    assert body["samples"] == 7 and body["class"] == DIGITS[0][1]


def test_missing_file_field_is_422(client):
    response = client.post("/predict", files={"image": ("a.png", DIGITS[0][0].read_bytes(), "image/png")})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body.file: Field required: send the image as multipart/form-data "
                                                "field 'file', or as the whole body")


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "application/octet-stream"])
def test_raw_body_upload_answers_like_multipart(client, content_type):
    """The format is read from the bytes: a PNG sent as image/jpeg is still read as the PNG it is."""
    for path, label in DIGITS[:5]:
        data = path.read_bytes()
        torch.manual_seed(0)  # the same draws for both: the answers must then be identical
        raw = client.post("/predict?samples=1000", content=data, headers={"content-type": content_type})
        torch.manual_seed(0)
        form = post_image(client, data, samples=1000)
        assert raw.status_code == form.status_code == 200, raw.text
        raw_body, form_body = raw.json(), form.json()
        assert raw_body["class"] == label and raw_body["samples"] == 1000
        assert raw_body == form_body


def test_raw_body_errors_are_the_multipart_ones(client):
    too_big = client.post("/predict", content=b"\x89PNG" + b"\x00" * 2_100_000, headers={"content-type": "image/png"})
    assert too_big.status_code == 413 and too_big.json()["detail"] == (
        "request body exceeds the limit of 2000000 bytes (the file exceeds the limit of 2000000 bytes)")
    empty = client.post("/predict", content=b"", headers={"content-type": "image/png"})
    assert empty.status_code == 400 and empty.json()["detail"] == "the file is empty"
    tiff = client.post("/predict", content=b"II*\x00" + b"\x00" * 64,
                       headers={"content-type": "application/octet-stream"})
    assert tiff.status_code == 415 and tiff.json()["detail"].startswith("TIFF is not accepted")
    text = client.post("/predict", content=b"hello", headers={"content-type": "text/plain"})
    assert text.status_code == 422 and text.json()["detail"].startswith("body.file: Field required")


def test_file_over_the_byte_limit_is_413(client):
    response = post_image(client, b"\x89PNG" + b"\x00" * 2_100_000)
    assert response.status_code == 413
    assert "2000000 bytes" in response.json()["detail"]


def test_body_over_the_route_limit_is_413_without_reading_it(client):
    """Each route's own limit: the request's for a batch, one file and its form for /predict, 64 KiB
    for JSON commands."""
    batch = client.post("/predict/batch", files=[("files", ("a.png", b"\x00" * 4_100_000, "image/png"))])
    assert batch.status_code == 413
    assert batch.json()["detail"] == "request body exceeds the limit of 4000000 bytes"
    single = post_image(client, b"\x00" * 2_100_000)
    assert single.status_code == 413
    assert single.json()["detail"] == ("request body exceeds the limit of 2065536 bytes (the file exceeds the limit of "
                                       "2000000 bytes)")
    command = client.post("/review/items/x/label", content=b"{" * 70_000, headers={"content-type": "application/json"})
    assert command.status_code == 413
    assert command.json()["detail"] == "request body exceeds the limit of 65536 bytes"


def test_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(50):
            yield b"x" * 100_000

    response = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=abc"})
    assert response.status_code == 413


def test_batch_answers_in_order_with_per_image_errors(client):
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p, _ in DIGITS[:3]]
    files.insert(1, ("files", ("notes.txt", b"not an image at all", "text/plain")))
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200
    body = response.json()
    assert [item.get("class") for item in body] == [DIGITS[0][1], None, DIGITS[1][1], DIGITS[2][1]]
    assert body[1] == {"filename": "notes.txt", "status": 400, "reason": "undecodable",
                       "detail": "not a decodable image (expected PNG, JPEG, WebP, BMP or GIF)"}
    assert body[0]["filename"] == DIGITS[0][0].name


def test_batch_over_the_file_count_is_422(client):
    files = [("files", (f"{i}.png", DIGITS[0][0].read_bytes(), "image/png")) for i in range(9)]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 422
    assert response.json()["detail"] == "9 files sent; at most 8 per request"


def test_metrics_count_exactly_what_requests_did(client):
    accepted = {"class": "7", "referred": "false"}
    before_accepted = metric(client, "bnn_predictions_total", **accepted)
    before_referred = sum(metric(client, "bnn_predictions_total", **{"class": str(c)}, referred="true")
                          for c in range(10))
    before_rejected = metric(client, "bnn_rejected_requests_total", reason="unsupported_format")
    before_latency = metric(client, "bnn_request_latency_seconds_count", route="/predict")
    seven = DIGITS[0][0].read_bytes()
    for _ in range(3):
        assert post_image(client, seven).json()["refer"] is False
    noise = encode(Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8)))
    noisy = post_image(client, noise).json()
    post_image(client, encode(Image.new("L", (40, 40), 200), "TIFF"))
    noise_accepted_as_7 = noisy["class"] == 7 and not noisy["refer"]
    assert metric(client, "bnn_predictions_total", **accepted) == before_accepted + 3 + noise_accepted_as_7
    after_referred = sum(metric(client, "bnn_predictions_total", **{"class": str(c)}, referred="true")
                         for c in range(10))
    assert after_referred == before_referred + noisy["refer"]
    assert metric(client, "bnn_rejected_requests_total", reason="unsupported_format") == before_rejected + 1
    assert metric(client, "bnn_request_latency_seconds_count", route="/predict") == before_latency + 5


def test_refer_reason_is_stated_and_counted(client):
    before = {reason: metric(client, "bnn_referrals_total", reason=reason) for reason in ("uncertain", "unfamiliar")}
    seven = post_image(client, DIGITS[0][0].read_bytes()).json()
    assert seven["refer"] is False and seven["refer_reason"] is None
    rng = np.random.default_rng(4)
    answers = [post_image(client, encode(Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)))).json()
               for _ in range(4)]
    mass = Predictor.from_checkpoint(SHIPPED).rule.familiar_mass
    assert mass is not None
    for answer in [*answers, seven]:
        top = sorted(answer["probabilities"], reverse=True)
        referred = answer["entropy"] > answer["threshold"]
        expected = None if not referred else "unfamiliar" if top[0] + top[1] < mass else "uncertain"
        assert answer["refer_reason"] == expected
        assert answer["refer"] == referred
        assert answer["candidates"][0] == answer["class"] and len(answer["candidates"]) <= 3
    assert seven["candidates"] == [7]
    assert all(a["refer"] for a in answers)  # uniform noise is never a digit
    assert all(a["refer_reason"] == "unfamiliar" for a in answers)  # ... and is said to be none
    for reason in ("uncertain", "unfamiliar"):
        counted = sum(a["refer_reason"] == reason for a in answers)
        assert metric(client, "bnn_referrals_total", reason=reason) == before[reason] + counted


def test_probes_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"].startswith("head-")
    assert ready["precision"] == expected_precision() and ready["runtime"] == KINDS[expected_precision()].runtime
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(responses)
    assert "class" in schema["components"]["schemas"]["PredictionOut"]["properties"]


def test_readyz_is_503_until_the_model_is_loaded():
    app = create_app(Settings(model_path=SHIPPED), registry=CollectorRegistry())
    client = TestClient(app)  # no context manager: lifespan has not run
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert post_image(client, DIGITS[0][0].read_bytes()).status_code == 503


def test_startup_fails_cleanly_on_a_corrupted_checkpoint(tmp_path):
    weights = tmp_path / "bnn.safetensors"
    shutil.copy(SHIPPED, weights)
    shutil.copy(SHIPPED.with_suffix(".json"), tmp_path / "bnn.json")
    weights.write_bytes(weights.read_bytes()[:1000])
    app = create_app(Settings(model_path=weights), registry=CollectorRegistry())
    with pytest.raises(CheckpointError, match=r"bnn\.safetensors.*truncated"), TestClient(app):
        pass


def test_server_process_exits_non_zero_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "BNN_MODEL_PATH": str(missing),
                                 "BNN_PORT": str(free_port())})
    assert result.returncode != 0
    assert "nowhere.json: metadata file is missing" in result.stderr


def test_two_files_in_the_single_file_field_are_422(client):
    png = DIGITS[0][0].read_bytes()
    response = client.post("/predict", files=[("file", ("a.png", png, "image/png")),
                                              ("file", ("b.png", png, "image/png"))])
    assert response.status_code == 422
    assert response.json()["detail"] == "2 files sent in field 'file'; send one, or use /predict/batch for several"


def test_a_full_inference_queue_sheds_with_503(client, monkeypatch):
    from service.inference.batcher import QueueFull

    async def full(digits, samples):
        raise QueueFull("256 requests already waiting")

    monkeypatch.setattr(client.app.state.inference.batcher, "submit", full)
    before = metric(client, "bnn_rejected_requests_total", reason="overloaded")
    response = post_image(client, DIGITS[0][0].read_bytes())
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["detail"] == "overloaded: 256 requests already waiting; retry shortly"
    assert metric(client, "bnn_rejected_requests_total", reason="overloaded") == before + 1


def test_the_service_imports_without_the_dev_packages():
    """`make serve` installs requirements.txt only: scipy, tqdm, matplotlib are for training and reports."""
    blocked = "import sys\nfor name in ('scipy', 'tqdm', 'matplotlib'): sys.modules[name] = None\n"
    result = subprocess.run([sys.executable, "-c", blocked + "import service.app, service.workers, service.__main__"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_opt_in_fields_are_absent_by_default_and_right_when_asked(client):
    from service.inference.preprocess import preprocess

    data = DIGITS[3][0].read_bytes()
    torch.manual_seed(5)
    plain = post_image(client, data, samples=200).json()
    assert not {"spread", "votes", "input"} & set(plain)
    torch.manual_seed(5)  # the same draws: the extras describe exactly the answer given without them
    rich = client.post("/predict?samples=200&include=spread&include=input", content=data,
                       headers={"content-type": "image/png"}).json()
    assert {k: v for k, v in rich.items() if k not in ("spread", "votes", "input")} == plain
    assert len(rich["votes"]) == 10 and sum(rich["votes"]) == 200 and rich["votes"][rich["class"]] == max(rich["votes"])
    assert len(rich["spread"]) == 10 and all(0.0 <= s <= 0.5 for s in rich["spread"])
    assert np.array_equal(np.array(rich["input"], dtype=np.uint8), preprocess(data, 5_000_000))
    only_input = client.post("/predict?include=input", content=data, headers={"content-type": "image/png"}).json()
    assert "input" in only_input and "spread" not in only_input


def test_an_unknown_include_is_422(client):
    response = client.post("/predict?include=spread,logits", content=DIGITS[0][0].read_bytes(),
                           headers={"content-type": "image/png"})
    assert response.status_code == 422
    assert response.json()["detail"] == "query.include: unknown field(s) logits; expected spread and/or input"


def test_batch_answers_carry_the_opt_in_fields_too(client):
    files = [("files", (f"{i}.png", path.read_bytes(), "image/png")) for i, (path, _) in enumerate(DIGITS[:3])]
    answers = client.post("/predict/batch?include=spread&samples=50", files=files).json()
    assert [sum(a["votes"]) for a in answers] == [50, 50, 50] and all("input" not in a for a in answers)


def test_a_drawing_is_judged_by_the_drawn_channels_rule(client):
    """channel=drawn (what the page sends for its pad) answers with the drawn channel's threshold and
    rule; the default is the file channel; an unknown channel is a 422 naming the choices."""
    file, drawn = shipped_calibration(channel="file"), shipped_calibration(channel="drawn")
    assert drawn["threshold"] < file["threshold"]
    images = [encode(Image.fromarray(image)) for image in blended_digits(21)]
    referred = {"file": 0, "drawn": 0}
    counted = {channel: metric(client, "bnn_predictions_total", channel=channel) for channel in referred}
    for data in images:
        answers = {"file": post_image(client, data).json(), "drawn": post_image(client, data, channel="drawn").json()}
        for channel, record in (("file", file), ("drawn", drawn)):
            answer = answers[channel]
            assert answer["channel"] == channel and answer["threshold"] == record["threshold"]
            assert answer["refer"] == (answer["entropy"] > record["threshold"])
            referred[channel] += answer["refer"]
    assert referred["drawn"] > referred["file"]  # the blends between the two thresholds
    for channel in referred:  # each answer counted under its channel, the referred ones as referred
        assert metric(client, "bnn_predictions_total", channel=channel) == counted[channel] + len(images)
    batch = client.post("/predict/batch?channel=drawn", files=[("files", ("a.png", images[0], "image/png"))]).json()
    assert batch[0]["channel"] == "drawn" and batch[0]["threshold"] == drawn["threshold"]
    response = post_image(client, images[0], channel="pad")
    assert response.status_code == 422 and "'file' or 'drawn'" in response.json()["detail"]
