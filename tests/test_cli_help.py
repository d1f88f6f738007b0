"""Every command's ``--help`` prints (argparse formats each help string only then)."""

import importlib

import pytest

COMMANDS = ["model.calibrate", "model.evaluate", "model.train", "model.synth.upload_simulator", "bench.calibration_sources",
            "bench.compare_designs", "bench.drawn_digits", "bench.fuzz", "bench.interleaved", "bench.precision_agreement",
            "bench.predictive_pass", "bench.profile_predict", "bench.review", "bench.review_defaults", "bench.service",
            "bench.soak", "bench.train_speed", "bench.model_swap", "bench.capacity", "bench.printed_glyphs",
            "bench.beyond_entropy", "service.admin"]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_prints(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    assert exit_.value.code == 0
    assert f"python -m {module}" in capsys.readouterr().out
