import json
import math
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

import model.train as train_module
import model.train_loop as loop_module
from harness.server import ROOT
from model.calibration import Calibration, read_records, with_records
from model.checkpoint import load_checkpoint, write_metadata
from model.data import to_input
from model.mnist import load_idx_mnist
from model.network import BayesianNet, NetConfig
from model.precision import choose_precision
from model.predictive import predictive
from model.train import main
from model.train_config import TrainConfig
from model.train_loop import fit

TINY = NetConfig(conv_blocks=((8,),), hidden=(32,))


def test_fit_reduces_the_loss_on_a_tiny_subset(tiny_idx_dir):
    torch.manual_seed(0)
    data = load_idx_mnist(tiny_idx_dir)
    net = BayesianNet(TINY)
    config = TrainConfig(epochs=6, batch_size=32, lr=3e-3, kl_warmup_epochs=0.0, augment=False, eval_samples=2)
    result = fit(net, data, config, progress=False)
    losses = [record["nll"] for record in result["history"]]
    assert losses[-1] < 0.7 * losses[0]
    assert result["history"][-1]["train_accuracy"] > result["history"][0]["train_accuracy"]


def test_a_fine_tune_with_a_frozen_trunk_moves_only_the_head_and_starts_at_no_kl(tiny_idx_dir):
    """The fine-tune's recipe (model/fine_tune.py): the trunk's weights stay the parent's bit for bit, the head
    learns, and with the KL to the parent's posterior the first step pays no KL."""
    torch.manual_seed(0)
    data = load_idx_mnist(tiny_idx_dir)
    net = BayesianNet(TINY)
    trunk_before = {name: value.clone() for name, value in net.trunk.state_dict().items()}
    head_before = {name: value.clone() for name, value in net.state_dict().items() if not name.startswith("trunk.")}
    config = TrainConfig(epochs=1, batch_size=32, lr=3e-3, kl_warmup_epochs=0.0, augment=False, eval_samples=2,
                         max_batches=1, anchor="posterior", learns="head")
    result = fit(net, data, config, progress=False)
    assert result["history"][0]["kl"] == 0.0  # one step: the KL is measured before the step moves anything
    assert all(torch.equal(value, trunk_before[name]) for name, value in net.trunk.state_dict().items())
    assert any(not torch.equal(value, head_before[name]) for name, value in net.state_dict().items()
               if name in head_before)


class _Interrupted(Exception):
    pass


def test_training_is_deterministic_and_resumable(tiny_idx_dir, tmp_path, monkeypatch):
    data = load_idx_mnist(tiny_idx_dir)
    config = TrainConfig(epochs=2, batch_size=32, max_batches=3, eval_samples=2)

    def run(out, resume=False):
        torch.manual_seed(0)
        net = BayesianNet(TINY)
        fit(net, data, config, out=out, resume=resume, progress=False)
        return net

    straight = run(tmp_path / "a" / "bnn.safetensors")
    again = run(tmp_path / "c" / "bnn.safetensors")
    for (name, a), (_, b) in zip(straight.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name

    original = loop_module.save_train_state

    def save_then_stop(out, net, optimizer, epoch, history):
        original(out, net, optimizer, epoch, history)
        raise _Interrupted  # the process dies after the first epoch's state is on disk

    monkeypatch.setattr(loop_module, "save_train_state", save_then_stop)
    with pytest.raises(_Interrupted):
        run(tmp_path / "b" / "bnn.safetensors")
    monkeypatch.setattr(loop_module, "save_train_state", original)
    resumed = run(tmp_path / "b" / "bnn.safetensors", resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_dry_run_cli_writes_a_checkpoint(tiny_idx_dir, capsys):
    assert main(["--dry-run", "--data-dir", str(tiny_idx_dir), "--no-progress", "--hidden", "16"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _net, meta = load_checkpoint(summary["checkpoint"])
    assert meta["config"]["hidden"] == [16]
    assert meta["train_size"] == 200 and meta["seed"] == 0
    assert {"git_commit", "versions", "data_sha256"} <= set(meta)
    seen = meta["training_data"]  # every train digit as an upload and as a pen drawing, and printed digits
    assert seen["mnist_train_uploads"] == seen["mnist_train_pen_drawings"] == 200
    assert seen["printed_digits_training_fonts"] > 100 and "sketched_digits" not in seen
    assert seen["upload_stream_positives"] == 400 + seen["printed_digits_training_fonts"]
    marks = seen["other_script_marks"]  # 64 marks printed once and pen-drawn once, among the outliers
    assert 100 <= marks["count"] <= 128 and 200 <= seen["generated_outliers"] - marks["count"] <= 256
    mix = seen["selection_and_calibration"]  # the validation split as the service sees it, three ways
    assert mix["uploads"] == mix["pen drawings"] == mix["plain PNG files"] == 40  # the tiny validation split


def test_dry_run_fails_when_the_loss_does_not_fall(tiny_idx_dir, monkeypatch, capsys):
    real_fit = train_module.fit

    def flat_fit(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        for record in result["history"]:
            record["loss"] = 1.0  # as if nothing was learnt
        return result

    monkeypatch.setattr(train_module, "fit", flat_fit)
    assert main(["--dry-run", "--data-dir", str(tiny_idx_dir), "--no-progress", "--hidden", "16"]) == 1
    assert "loss did not fall" in capsys.readouterr().err


def test_outlier_losses_have_their_known_minimum():
    uniform = torch.zeros(5, 10)
    assert torch.isclose(loop_module.outlier_exposure_loss(uniform), torch.tensor(math.log(10.0)))
    confident = torch.tensor([[10.0] + [0.0] * 9])
    assert loop_module.outlier_exposure_loss(confident) > math.log(10.0) + 1  # a confident outlier costs more


@pytest.fixture
def trained_tiny(tiny_idx_dir):
    """A tiny network fitted for 3 epochs on the tiny data, and the data."""
    torch.manual_seed(0)
    data = load_idx_mnist(tiny_idx_dir)
    net = BayesianNet(TINY)
    fit(net, data, TrainConfig(epochs=3, batch_size=32, kl_warmup_epochs=0.0, augment=False, eval_samples=2),
        progress=False)
    return net, data


def test_temperature_scaling_never_raises_the_validation_ece(trained_tiny):
    from model.scoring import expected_calibration_error

    net, data = trained_tiny
    from model.fitting.temperature import with_temperature

    tuned = with_temperature(net, data.validation, samples=8)
    assert tuned.config.temperature != 1.0

    def ece(model):
        torch.manual_seed(0)  # the draws with_temperature made
        probs = predictive(model, to_input(data.validation.images), 8).mean_probs.double()
        return expected_calibration_error(probs.max(1).values.numpy(),
                                          (probs.argmax(1).numpy() == data.validation.labels))[0]

    assert ece(tuned) <= 1.05 * ece(net) + 1e-9  # the rule: within 5 % of the lowest ECE on its grid (T = 1 is on it)
    for (name, a), (_, b) in zip(net.state_dict().items(), tuned.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # only the config changed


def test_arrays_can_also_be_seen_as_plain_28px_uploads(tiny_idx_dir, tmp_path, capsys):
    from model.synth.pools import arrays_as_files

    data = load_idx_mnist(tiny_idx_dir)
    pool = arrays_as_files(data.train, "train", data.source_sha256, tmp_path)
    assert pool.images.shape == data.train.images.shape and np.array_equal(pool.labels, data.train.labels)
    ys, xs = np.mgrid[0:28, 0:28]
    mass = pool.images.astype(float).sum((1, 2))
    centre_y = (pool.images * ys).sum((1, 2)) / mass
    centre_x = (pool.images * xs).sum((1, 2)) / mass
    assert np.abs(centre_y - 14).max() < 1 and np.abs(centre_x - 14).max() < 1  # re-centred as uploads are
    assert main(["--dry-run", "--data-dir", str(tiny_idx_dir), "--no-progress", "--hidden", "16",
                 "--arrays-as-files", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert load_checkpoint(summary["checkpoint"])[1]["train_config"]["arrays_as_files"] == 0.5


def make_train_arguments() -> list[str]:
    """The flags ``make train`` passes to ``python -m model.train`` (the Makefile's recipe,
    continuation lines joined; its first command: the second is ``$(MAKE) calibrate``)."""
    recipe = (ROOT / "Makefile").read_text().split("\ntrain:")[1].split("\n\n")[0]
    commands = recipe.split("\n", 1)[1].replace("\\\n", " ").splitlines()
    assert commands[1].strip() == "$(MAKE) calibrate"
    words = shlex.split(commands[0])
    return words[words.index("model.train") + 1:]


def test_make_train_is_the_recipe_of_the_shipped_checkpoint():
    from dataclasses import asdict, replace

    from harness.inputs import SHIPPED
    from model.checkpoint import read_metadata

    meta = read_metadata(SHIPPED)
    arguments = make_train_arguments()
    assert arguments[arguments.index("--out") + 1] == "checkpoints/bnn.safetensors"
    args = train_module.build_parser().parse_args(arguments)
    # trained with the trunk in bfloat16 on a CPU with the units; `auto` trains it in float32 where bfloat16
    # would be emulated (several times slower): the recipe otherwise
    assert meta["train_config"]["precision"] == "bfloat16" and args.precision == "auto"
    # a field added to TrainConfig after the checkpoint was trained is off in it: its default
    later = {k: v for k, v in json.loads(json.dumps(asdict(TrainConfig()))).items() if k not in meta["train_config"]}
    recipe = {**later, **meta["train_config"], "precision": choose_precision("auto", purpose="training").precision}
    assert json.loads(json.dumps(asdict(train_module.train_config(args)))) == recipe
    assert train_module.net_config(args) == replace(NetConfig.from_dict(meta["config"]), temperature=1.0)
    assert meta["seed"] == args.seed and meta["epochs"] == args.epochs and meta["torch_threads"] == args.threads
    # `python -m model.train` with no flags keeps TrainConfig's defaults, the trunk's precision auto
    bare = train_module.build_parser().parse_args([])
    trained_in = choose_precision("auto", purpose="training").precision
    assert train_module.train_config(bare) == replace(TrainConfig(), precision=trained_in)


def test_refit_keeps_the_weights_and_the_training_record(tiny_idx_dir, capsys):
    common = ["--dry-run", "--data-dir", str(tiny_idx_dir), "--no-progress", "--hidden", "16"]
    assert main(common) == 0
    path = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["checkpoint"])
    net, before = load_checkpoint(path)
    seen = before["training_data"]  # a run without the sweep's data records none of it
    assert not {"written_variants", "closing_shapes", "angular_pen", "mnist_train_angular_drawings", "latin_letters",
                "low_resolution_scans"} & set(seen)
    assert not {"variants-train", "closing-train", "pen-closing-train", "angular-train", "letters-train",
                "pen-letters-train", "low-resolution-train"} & set(seen["seeds"])
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    # a rule fitted on audits: it states its own temperature
    reviewed = Calibration("guarantee", 0.2, 10, 0.002, 0.05, None, 1600, 0.9, 0.999, 0.001, "reviewed audits: x",
                           provenance={"source": "x"}, precision="float32", channel="file")
    write_metadata(path, with_records(before, "reviewed", {"file": {"float32": reviewed}}))
    assert main([*common[:-2], "--refit", "--out", str(path)]) == 0  # its own architecture, not the CLI's default
    refitted, after = load_checkpoint(path)
    assert all(torch.equal(weights[k], v) for k, v in refitted.state_dict().items())
    assert (after["training_data"] == before["training_data"]
            and after["metrics"]["history"] == before["metrics"]["history"])
    assert after["config"]["hidden"] == [16]
    assert read_records(after)["reviewed"] == {"file": {"float32": reviewed}, "drawn": {}}  # kept by the refit
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["thresholds"] == {channel: {precision: record.threshold for precision, record in records.items()}
                                     for channel, records in read_records(after)["validation"].items()}


def test_the_trunk_can_be_set_from_the_command_line():
    from model.network import NetConfig

    args = train_module.build_parser().parse_args(["--conv-blocks", "32,32", "64,64", "128,128", "--hidden", "512"])
    assert train_module.net_config(args) == NetConfig(conv_blocks=((32, 32), (64, 64), (128, 128)), hidden=(512,))
    with pytest.raises(SystemExit):
        train_module.build_parser().parse_args(["--conv-blocks", "32,x"])


def test_the_sweeps_data_joins_training_and_is_recorded(tiny_idx_dir, capsys):
    """--written-variants, --angular-pen, --closing-shapes, --letters and --low-resolution: their pools join the
    streams, and the checkpoint says how many of each, of which digits and kinds, and their generators' versions
    and seeds."""
    from model.synth.angular_pen import ANGULAR_VERSION, TOLERANCE
    from model.synth.closing_shapes import CLOSING_VERSION, KINDS
    from model.synth.families import TRAIN_FONTS
    from model.synth.written_variants import VARIANTS_VERSION

    assert main(["--dry-run", "--data-dir", str(tiny_idx_dir), "--no-progress", "--hidden", "16",
                 "--written-variants", "1", "7", "--closing-shapes", "40", "--angular-pen", "--letters",
                 "--low-resolution", "24"]) == 0
    meta = load_checkpoint(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["checkpoint"])[1]
    assert meta["train_config"]["written_variants"] == [1, 7] and meta["train_config"]["closing_shapes"] == 40
    seen = meta["training_data"]
    assert meta["train_config"]["angular_pen"] is True
    assert seen["angular_pen"] == {"count": seen["mnist_train_angular_drawings"], "tolerance": list(TOLERANCE),
                                   "version": ANGULAR_VERSION}
    # every digit re-inked once more
    assert seen["mnist_train_angular_drawings"] == seen["mnist_train_pen_drawings"] > 0
    variants = seen["written_variants"]
    assert variants["digits"] == [1, 7] and variants["version"] == VARIANTS_VERSION
    assert 0 < variants["count"] == seen["mnist_train_written_variants"]
    assert seen["closing_shapes"]["kinds"] == list(KINDS) and seen["closing_shapes"]["version"] == CLOSING_VERSION
    assert 30 <= seen["closing_shapes"]["count"] <= 40  # the few near a named digit dropped
    assert {"variants-train", "closing-train", "pen-closing-train", "angular-train", "letters-train",
            "pen-letters-train", "low-resolution-train"} <= set(seen["seeds"])
    # a dry run's letters: the first 64 glyphs, once printed and once drawn, the few near a named digit dropped
    assert 110 <= seen["latin_letters"]["count"] <= 128 and seen["latin_letters"]["fonts"] == list(TRAIN_FONTS)
    assert seen["low_resolution_scans"]["count"] == seen["mnist_train_low_resolution_scans"] == 24
    assert "Latin letters in the held-out fonts" in " ".join(seen["never_seen"])
    with pytest.raises(SystemExit):
        train_module.build_parser().parse_args(["--written-variants", "4"])  # no variant of a 4

