import json

import pytest
import torch

import model.train as train_module
from model.checkpoint import load_checkpoint
from model.data import load_idx_mnist
from model.network import BayesianNet, NetConfig
from model.train import TrainConfig, fit, main

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

    original = train_module.save_train_state

    def save_then_stop(out, net, optimizer, epoch, history):
        original(out, net, optimizer, epoch, history)
        raise _Interrupted  # the process dies after the first epoch's state is on disk

    monkeypatch.setattr(train_module, "save_train_state", save_then_stop)
    with pytest.raises(_Interrupted):
        run(tmp_path / "b" / "bnn.safetensors")
    monkeypatch.setattr(train_module, "save_train_state", original)
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
