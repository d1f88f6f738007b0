"""The trunk's precision: chosen by the CPU (forced in these tests), bfloat16 close to float32 on the
fixtures, the vectorized predictive still the loop of N in bfloat16, and a checkpoint served only in
a precision it has a calibration record for."""

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
from model.checkpoint import CheckpointError, load_checkpoint
from model.data import to_input
from model.precision import bf16_units, choose_precision, cpu_flags, trunk_precision
from model.predictive import predictive
from service.inference.predictor import Predictor


def test_auto_picks_bfloat16_only_where_the_cpu_has_units() -> None:
    assert choose_precision("auto", ["amx_bf16", "avx512_bf16"]).precision == "bfloat16"
    without = choose_precision("auto", [])
    assert without.precision == "float32" and "no bfloat16 units" in without.note and not without.warn
    assert choose_precision("float32", ["amx_bf16"]).precision == "float32"
    emulated = choose_precision("bfloat16", [])
    assert emulated.precision == "bfloat16" and emulated.warn and "emulated" in emulated.note
    with pytest.raises(ValueError, match="'float16' is not supported: one of auto, float32, bfloat16"):
        choose_precision("float16", [])


def test_the_units_are_read_from_the_cpu_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile amx_bf16\n")
    flags = cpu_flags(cpuinfo)
    assert {"avx512_bf16", "amx_bf16", "avx2"} <= flags
    assert bf16_units(flags) == ["amx_bf16", "avx512_bf16"]
    assert bf16_units({"avx2", "fma"}) == []
    assert cpu_flags(tmp_path / "missing") == set()


def test_float32_runs_no_autocast_and_bfloat16_features_stay_close() -> None:
    net, _ = load_checkpoint(SHIPPED)
    x = to_input(np.stack([load_digit(path) for path, _ in mnist_fixtures()]))
    with torch.inference_mode():
        plain = net.trunk(x)
        with trunk_precision("float32"):
            assert not torch.is_autocast_enabled("cpu")
            assert torch.equal(net.trunk(x), plain)
        with trunk_precision("bfloat16"):
            low = net.trunk(x)
        assert low.dtype == torch.bfloat16
        deviation = (low.float() - plain).abs().max().item()
        assert 0 < deviation < 0.1 * plain.abs().max().item()  # really bfloat16, and close
        logits = net.in_precision("bfloat16")(x, 3)
        assert logits.dtype == torch.float32  # the head in float32
    with pytest.raises(ValueError, match="float16"):
        trunk_precision("float16")  # type: ignore[arg-type]


def test_bfloat16_and_float32_agree_on_the_fixtures() -> None:
    net, _ = load_checkpoint(SHIPPED)
    x = to_input(np.stack([load_digit(path) for path, _ in mnist_fixtures()]))
    labels = [label for _, label in mnist_fixtures()]
    torch.manual_seed(0)
    high = predictive(net, x, 400)
    torch.manual_seed(0)
    low = predictive(net.in_precision("bfloat16"), x, 400)
    assert high.mean_probs.argmax(-1).tolist() == labels == low.mean_probs.argmax(-1).tolist()
    # the same draws: what differs is the trunk's rounding, a few hundredths at most on the fixtures'
    # two borderline digits (14 and 18), far less on the rest
    gap = (high.mean_probs - low.mean_probs).abs().amax(-1)  # [B]
    assert gap.max().item() < 0.05 and gap.median().item() < 1e-3
    assert (high.entropy - low.entropy).abs().max().item() < 0.1


def test_the_vectorized_predictive_is_the_loop_of_n_in_bfloat16() -> None:
    torch.manual_seed(0)
    net, _ = load_checkpoint(SHIPPED)
    images = torch.rand(6, 1, 28, 28) * (torch.rand(6, 1, 1, 1) > 0.5)
    z_max, z_share, entropy_gap = agreement(net.in_precision("bfloat16"), images, 600)
    assert z_max < 5 and z_share < 0.02 and entropy_gap < 0.1


def copy_shipped(tmp_path: Path, keep: tuple[str, ...], channels: tuple[str, ...] = CHANNELS) -> Path:
    """The shipped checkpoint with only the calibration records of the precisions ``keep`` (of ``channels``)."""
    weights = tmp_path / "bnn.safetensors"
    shutil.copy(SHIPPED, weights)
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    validation = read_records(meta)["validation"]
    kept = {channel: {name: record for name, record in validation[channel].items()
                      if name in keep or channel not in channels} for channel in CHANNELS}
    weights.with_suffix(".json").write_text(json.dumps(with_records({**meta, "calibrations": {}}, "validation", kept)))
    return weights


def test_the_shipped_checkpoint_serves_each_precision_with_its_own_record() -> None:
    meta = json.loads(SHIPPED.with_suffix(".json").read_text())
    validation = meta["calibrations"]["validation"]
    assert {channel: set(by_precision) for channel, by_precision in validation.items()} == \
        {channel: {"float32", "bfloat16"} for channel in CHANNELS}
    # one temperature, fitted in float32 (make calibrate); the thresholds fitted in each precision and channel
    assert {record["temperature"] for by_precision in validation.values() for record in by_precision.values()} == \
        {meta["config"]["temperature"]}
    for name in ("float32", "bfloat16"):
        predictor = Predictor.from_checkpoint(SHIPPED, precision=name)
        for channel in CHANNELS:
            record = validation[channel][name]
            assert predictor.precision.precision == predictor.net.precision == name == record["precision"]
            assert predictor.rules[channel].threshold == record["threshold"]
            assert predictor.rules[channel].familiar_mass == record["familiar_mass"]
            assert predictor.net.config.temperature == record["temperature"]


def test_a_precision_without_its_record_is_refused_or_falls_back(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    only_float32 = copy_shipped(tmp_path, ("float32",))
    with pytest.raises(CheckpointError, match=r"no calibration record for bfloat16 .*\(has: float32\)"):
        Predictor.from_checkpoint(only_float32, precision="bfloat16")
    monkeypatch.setattr(precision_module, "bf16_units", lambda flags=None: ["amx_bf16"])  # a CPU with the units
    fallen = Predictor.from_checkpoint(only_float32, precision="auto")
    assert fallen.precision.precision == "float32" and fallen.precision.warn
    assert "no bfloat16 calibration record" in fallen.precision.note
    assert Predictor.from_checkpoint(SHIPPED, precision="auto").precision.precision == "bfloat16"
    only_bfloat16 = copy_shipped(tmp_path, ("bfloat16",))
    with pytest.raises(CheckpointError, match=r"no calibration record for float32 .*\(has: bfloat16\)"):
        Predictor.from_checkpoint(only_bfloat16, precision="float32")
    # a precision lacking one channel's record is not served either: its drawings were promised nothing
    no_drawn_bfloat16 = copy_shipped(tmp_path, ("float32",), channels=("drawn",))
    with pytest.raises(CheckpointError, match=r"no calibration record for bfloat16 .*\(has: float32\)"):
        Predictor.from_checkpoint(no_drawn_bfloat16, precision="bfloat16")


def test_the_service_says_what_it_runs_and_refuses_what_it_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient
    from pydantic import ValidationError

    from service.app import create_app
    from service.settings import Settings

    monkeypatch.setattr(precision_module, "bf16_units", lambda flags=None: [])  # a CPU without the units
    caplog.set_level("INFO", logger="service")
    with TestClient(create_app(Settings(precision="bfloat16", review=False))) as client:
        assert client.get("/readyz").json()["precision"] == "bfloat16"
        assert client.post("/predict", content=mnist_fixtures()[0][0].read_bytes(),
                           headers={"content-type": "image/png"}).json()["class"] == 7
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("emulated, slower than float32" in message for message in warnings)
    assert any("precision bfloat16 (runtime pytorch" in record.getMessage() for record in caplog.records)
    refused = Settings(precision="bfloat16", review=False, model_path=copy_shipped(tmp_path, ("float32",)))
    with pytest.raises(CheckpointError, match="no calibration record for bfloat16"), TestClient(create_app(refused)):
        pass
    with pytest.raises(ValidationError, match="precision"):
        Settings(precision="float16")  # type: ignore[arg-type]
