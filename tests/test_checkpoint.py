import json

import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint, metadata_path, save_checkpoint
from model.network import BayesianNet, NetConfig

SMALL = NetConfig(conv_blocks=((4,),), hidden=(8,))


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = BayesianNet(SMALL)
    path = tmp_path / "bnn.safetensors"
    save_checkpoint(net, path, {"name": "tiny"})
    return net, path


def test_round_trip_is_exact(saved):
    net, path = saved
    loaded, meta = load_checkpoint(path)
    assert meta["config"] == SMALL.to_dict() or NetConfig.from_dict(meta["config"]) == SMALL
    for (name, a), (_, b) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert meta["model_version"].startswith("tiny-")


def test_corrupted_weights_are_refused_naming_the_file(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path.name}.*does not match"):
        load_checkpoint(path)


def test_truncated_weights_are_refused(saved):
    _, path = saved
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated, corrupted"):
        load_checkpoint(path)


def test_mismatched_architecture_is_refused(saved):
    _, path = saved
    meta = json.loads(metadata_path(path).read_text())
    meta["config"]["hidden"] = [16]
    metadata_path(path).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_checkpoint(path)


def test_missing_files_are_named(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointError, match=r"other\.json: metadata file is missing"):
        load_checkpoint(tmp_path / "other.safetensors")
    path.unlink()
    with pytest.raises(CheckpointError, match="weights file is missing"):
        load_checkpoint(path)


def test_garbage_metadata_is_refused(saved):
    _, path = saved
    metadata_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)


def test_format_1_metadata_is_refused_naming_the_migration(saved):
    _, path = saved
    meta = json.loads(metadata_path(path).read_text())
    assert meta["format_version"] == 2
    metadata_path(path).write_text(json.dumps({**meta, "format_version": 1}))
    with pytest.raises(CheckpointError, match=r"format-1 metadata .* python -m model\.migrate_records "):
        load_checkpoint(path)
    metadata_path(path).write_text(json.dumps({**meta, "format_version": 3}))
    with pytest.raises(CheckpointError, match="not a format-2 checkpoint metadata file"):
        load_checkpoint(path)


def test_no_pickle_in_the_weights_file(saved):
    _, path = saved
    head = path.read_bytes()[:8]
    header_length = int.from_bytes(head, "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_length])  # safetensors: JSON header + raw tensors
    assert "__metadata__" in header
