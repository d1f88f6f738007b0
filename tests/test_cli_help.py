"""Every command's ``--help`` prints (argparse formats each help string only then)."""

import importlib

import pytest

COMMANDS = ["model.calibrate", "model.evaluate", "model.train", "model.synth.upload_simulator", "bench.calibration_sources",
            "bench.compare_designs", "bench.drawn_digits", "bench.fuzz", "bench.interleaved", "bench.precision_agreement",
            "bench.predictive_pass", "bench.profile_predict", "bench.review", "bench.review_defaults", "bench.service",
            "bench.soak", "bench.train_speed", "bench.model_swap", "bench.capacity", "bench.printed_glyphs",
            "bench.beyond_entropy", "bench.hostile", "service.lifecycle.admin", "service.__main__"]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_prints(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert f"python -m {module.removesuffix('.__main__')}" in printed
    if module == "service.__main__":  # the settings, and nothing started
        assert "BNN_MAX_REQUEST_DECODE_BYTES (default: 536870912)" in printed
