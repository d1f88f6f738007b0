"""The trunk's precision: chosen by the CPU (forced in these tests), int8 made reproducibly from the
trained weights and close to float32 on the fixtures, the vectorized predictive still the loop of N
in int8, and a checkpoint served only in a precision it has a calibration record (and for int8 its
int8 trunk) for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.predictive_pass import agreement
from harness.inputs import SHIPPED, load_digit, mnist_fixtures
from model import precision as precision_module
from model.calibration import CHANNELS, read_records, with_records
from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.data import to_input
from model.int8_trunk import KEY, Int8Trunk, trunk_path
from model.network import BayesianNet, NetConfig
from model.precision import choose_precision, cpu_flags, trunk_precision, units
from model.predictive import predictive
from model.quantize import quantize_trunk, with_trunk
from service.inference.predictor import Predictor


def test_auto_serves_int8_only_where_the_cpu_has_int8_units() -> None:
    assert choose_precision("auto", ["avx512_vnni"]).precision == "int8"
    without = choose_precision("auto", [])
    assert without.precision == "float32" and "no int8 units" in without.note and not without.warn
    assert choose_precision("float32", ["avx512_vnni"]).precision == "float32"
    forced = choose_precision("int8", [])
    assert forced.precision == "int8" and forced.warn and forced.runtime == "onnxruntime"
    with pytest.raises(ValueError, match="'bfloat16' is not supported for serving: one of auto, float32, int8"):
        choose_precision("bfloat16", [])
    # training: bfloat16 autocast where the CPU has bfloat16 units; int8 is never trained in
    assert choose_precision("auto", ["avx512_bf16"], purpose="training").precision == "bfloat16"
    assert choose_precision("auto", [], purpose="training").precision == "float32"
    with pytest.raises(ValueError, match="for training: one of auto, float32, bfloat16"):
        choose_precision("int8", [], purpose="training")


def test_the_units_are_read_from_the_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8\n")
    flags = cpu_flags(cpuinfo)
    assert {"avx512_bf16", "amx_int8", "avx2"} <= flags
    assert units("int8", flags) == ["amx_int8", "avx512_vnni"]
    assert units("bfloat16", flags) == ["avx512_bf16"]
    assert units("int8", {"avx2", "fma"}) == [] and units("float32", flags) == []
    assert cpu_flags(tmp_path / "missing") == set()


def test_training_autocasts_bfloat16_and_the_int8_trunk_stays_close() -> None:
    net, _ = load_checkpoint(SHIPPED)
    x = to_input(np.stack([load_digit(path) for path, _ in mnist_fixtures()]))
    with torch.inference_mode():
        plain = net.features(x)
        with trunk_precision("float32"):
            assert not torch.is_autocast_enabled("cpu")
        with trunk_precision("bfloat16"):
            assert net.trunk(x).dtype == torch.bfloat16
        int8 = net.in_precision("int8")
        low = int8.features(x)
        assert low.dtype == torch.float32 and low.shape == plain.shape
        deviation = (low - plain).abs().max().item()
        assert 0 < deviation < 0.03 * plain.abs().max().item()  # really int8, and close
        assert int8(x, 3).dtype == torch.float32  # the head in float32
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        trunk_precision("int8")


def test_int8_and_float32_agree_on_the_fixtures() -> None:
    net, _ = load_checkpoint(SHIPPED)
    x = to_input(np.stack([load_digit(path) for path, _ in mnist_fixtures()]))
    labels = [label for _, label in mnist_fixtures()]
    torch.manual_seed(0)
    high = predictive(net, x, 400)
    torch.manual_seed(0)
    low = predictive(net.in_precision("int8"), x, 400)
    assert high.mean_probs.argmax(-1).tolist() == labels == low.mean_probs.argmax(-1).tolist()
    # the same draws: what differs is the trunk's rounding
    gap = (high.mean_probs - low.mean_probs).abs().amax(-1)  # [B]
    assert gap.max().item() < 0.05 and gap.median().item() < 2e-3
    assert (high.entropy - low.entropy).abs().max().item() < 0.1


def test_the_vectorized_predictive_is_the_loop_of_n_in_int8() -> None:
    torch.manual_seed(0)
    net, _ = load_checkpoint(SHIPPED)
    images = torch.rand(6, 1, 28, 28) * (torch.rand(6, 1, 1, 1) > 0.5)
    z_max, z_share, entropy_gap = agreement(net.in_precision("int8"), images, 600)
    assert z_max < 5 and z_share < 0.02 and entropy_gap < 0.1


def test_quantizing_is_reproducible_and_a_trunk_is_checked_against_its_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = BayesianNet(NetConfig(conv_blocks=((4,), (8,)), hidden=(16,))).eval()
    weights = tmp_path / "tiny.safetensors"
    meta = save_checkpoint(net, weights, {"name": "tiny"})
    images = (np.random.default_rng(0).random((40, 28, 28)) * 255).astype(np.uint8)
    model = quantize_trunk(net, images)
    assert quantize_trunk(net, images) == model  # the same inputs, the same bytes
    trunk_path(weights).write_bytes(model)
    (tmp_path / "tiny.json").write_text(json.dumps(with_trunk(meta, trunk_path(weights).name, model, "noise")))
    loaded, _ = load_checkpoint(weights)
    assert loaded.runs_in("int8") and loaded.int8_trunk is not None
    x = to_input(images[:8])
    with torch.inference_mode():
        close = (loaded.in_precision("int8").features(x) - loaded.features(x)).abs().max()
        assert close.item() < 0.05 * loaded.features(x).abs().max().item()
    # a trunk that is not its metadata's, a link, or not a mapping: no int8, said why; float32 still loads
    trunk_path(weights).write_bytes(model[:-1] + bytes([model[-1] ^ 1]))
    tampered, _ = load_checkpoint(weights)
    assert not tampered.runs_in("int8") and "does not match its metadata" in tampered.int8_note
    trunk_path(weights).unlink()
    (tmp_path / "elsewhere.onnx").write_bytes(model)
    trunk_path(weights).symlink_to(tmp_path / "elsewhere.onnx")
    assert "not a regular file" in load_checkpoint(weights)[0].int8_note
    trunk_path(weights).unlink()
    trunk_path(weights).write_bytes(model)
    retrained = save_checkpoint(net, weights, json.loads((tmp_path / "tiny.json").read_text()))
    stale = {**retrained, KEY: {"int8": {**retrained[KEY]["int8"], "made_from": "0" * 64}}}
    (tmp_path / "tiny.json").write_text(json.dumps(stale))
    assert not load_checkpoint(weights)[0].runs_in("int8")  # made from other weights: float32 only
    with pytest.raises(ValueError, match="int8 needs"):
        BayesianNet(net.config, "int8")
    escaping = {**retrained, KEY: {"int8": {**retrained[KEY]["int8"], "file": "../bnn.int8.onnx"}}}
    (tmp_path / "tiny.json").write_text(json.dumps(escaping))
    assert "a file name beside the weights" in load_checkpoint(weights)[0].int8_note
    (tmp_path / "tiny.json").write_text(json.dumps({**retrained, KEY: ["int8"]}))
    assert "not a mapping" in load_checkpoint(weights)[0].int8_note
    assert isinstance(Int8Trunk(model, threads=1)(x), torch.Tensor)


def copy_shipped(tmp_path: Path, keep: tuple[str, ...], channels: tuple[str, ...] = CHANNELS,
                 int8_trunk: bool = True) -> Path:
    """The shipped checkpoint with only the calibration records of the precisions ``keep`` (of
    ``channels``), with or without its int8 trunk."""
    weights = tmp_path / "bnn.safetensors"
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHIPPED, weights)
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    if int8_trunk:
        shutil.copy(trunk_path(SHIPPED), trunk_path(weights))
    else:
        meta.pop(KEY)
    validation = read_records(meta)["validation"]
    kept = {channel: {name: record for name, record in validation[channel].items()
                      if name in keep or channel not in channels} for channel in CHANNELS}
    weights.with_suffix(".json").write_text(json.dumps(with_records({**meta, "calibrations": {}}, "validation", kept)))
    return weights


def test_the_shipped_checkpoint_serves_each_precision_with_its_own_record() -> None:
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    validation = meta["calibrations"]["validation"]
    assert {channel: set(by_precision) for channel, by_precision in validation.items()} == \
        {channel: {"float32", "int8"} for channel in CHANNELS}
    assert meta[KEY]["int8"]["made_from"] == meta["weights_sha256"]
    # one temperature, fitted in float32 (make calibrate); the thresholds fitted in each precision and channel
    assert {record["temperature"] for by_precision in validation.values() for record in by_precision.values()} == \
        {meta["config"]["temperature"]}
    for name in ("float32", "int8"):
        predictor = Predictor.from_checkpoint(SHIPPED, precision=name)
        for channel in CHANNELS:
            record = validation[channel][name]
            assert predictor.precision.precision == predictor.net.precision == name == record["precision"]
            assert predictor.rules[channel].threshold == record["threshold"]
            assert predictor.rules[channel].familiar_mass == record["familiar_mass"]
            assert predictor.net.config.temperature == record["temperature"]


def test_a_precision_without_its_record_or_trunk_is_refused_or_falls_back(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    only_float32 = copy_shipped(tmp_path / "a", ("float32",))
    with pytest.raises(CheckpointError, match=r"no int8 calibration record \(has: float32\)"):
        Predictor.from_checkpoint(only_float32, precision="int8")
    monkeypatch.setattr(precision_module, "units", lambda precision, flags=None: ["avx512_vnni"])  # the units
    fallen = Predictor.from_checkpoint(only_float32, precision="auto")
    assert fallen.precision.precision == "float32" and fallen.precision.warn
    assert "no int8 calibration record" in fallen.precision.note
    assert Predictor.from_checkpoint(SHIPPED, precision="auto").precision.precision == "int8"
    no_trunk = copy_shipped(tmp_path / "b", ("float32", "int8"), int8_trunk=False)
    untrunked = Predictor.from_checkpoint(no_trunk, precision="auto")
    assert untrunked.precision.precision == "float32" and "no int8 trunk" in untrunked.precision.note
    with pytest.raises(CheckpointError, match="no int8 trunk made from its weights"):
        Predictor.from_checkpoint(no_trunk, precision="int8")
    only_int8 = copy_shipped(tmp_path / "c", ("int8",))
    with pytest.raises(CheckpointError, match=r"no float32 calibration record \(has: int8\)"):
        Predictor.from_checkpoint(only_int8, precision="float32")
    # a precision lacking one channel's record is not served either: its drawings were promised nothing
    no_drawn_int8 = copy_shipped(tmp_path / "d", ("float32",), channels=("drawn",))
    with pytest.raises(CheckpointError, match=r"no int8 calibration record \(has: float32\)"):
        Predictor.from_checkpoint(no_drawn_int8, precision="int8")


def test_the_service_says_what_it_runs_and_refuses_what_it_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient
    from pydantic import ValidationError

    from service.app import create_app
    from service.settings import Settings

    monkeypatch.setattr(precision_module, "units", lambda precision, flags=None: [])  # a CPU without the units
    caplog.set_level("INFO", logger="service")
    with TestClient(create_app(Settings(precision="int8", review=False))) as client:
        ready = client.get("/readyz").json()
        assert (ready["precision"], ready["runtime"]) == ("int8", "onnxruntime")
        parameters = client.get("/v2/models/bnn-digits").json()["parameters"]
        assert parameters == {"precision": "int8", "runtime": "onnxruntime"}
        assert 'precision="int8",runtime="onnxruntime"' in client.get("/metrics").text
        assert client.post("/predict", content=mnist_fixtures()[0][0].read_bytes(),
                           headers={"content-type": "image/png"}).json()["class"] == 7
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("may be slower than float32" in message for message in warnings)
    assert any("precision int8 (runtime onnxruntime" in record.getMessage() for record in caplog.records)
    refused = Settings(precision="int8", review=False, model_path=copy_shipped(tmp_path, ("float32",)))
    with pytest.raises(CheckpointError, match="no int8 calibration record"), TestClient(create_app(refused)):
        pass
    for unserved in ("float16", "bfloat16"):
        with pytest.raises(ValidationError, match="precision"):
            Settings(precision=unserved)  # type: ignore[arg-type]


def test_an_int8_trunk_that_reads_files_is_not_loaded(tmp_path: Path) -> None:
    """A candidate's trunk whose weights are "external data" (a file the runtime would read) is not
    run: ONNX Runtime refuses external data in a model loaded from bytes, as the service loads it."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros(4, np.float32), "W")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "requirements.txt"), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["images", "W"], ["features"])], "reads", [
        helper.make_tensor_value_info("images", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    weights = copy_shipped(tmp_path, ("float32", "int8"))
    trunk_path(weights).write_bytes(model)
    meta = json.loads(weights.with_suffix(".json").read_text())
    weights.with_suffix(".json").write_text(json.dumps(with_trunk(meta, trunk_path(weights).name, model, "files")))
    net, _ = load_checkpoint(weights)
    assert not net.runs_in("int8") and "ONNX Runtime cannot load its int8 trunk" in net.int8_note
    assert Predictor.from_checkpoint(weights, precision="float32").precision.precision == "float32"
