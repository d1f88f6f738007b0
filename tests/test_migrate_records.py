"""python -m model.migrate_records: format 1's five keys into the one map, every value kept; a dry
run writes nothing; a checkpoint without drawn records is told it will not be served."""

import json
import shutil
from pathlib import Path

import pytest

from harness.inputs import SHIPPED
from model.calibration import read_records, served
from model.checkpoint import CheckpointError, load_checkpoint, read_metadata
from model.migrate_records import main, migrate


def format_one(meta: dict) -> dict:
    """The shipped metadata as format 1 wrote it, with a reviewed record for each channel added."""
    validation = meta["calibrations"]["validation"]
    reviewed = {channel: {"float32": {**validation[channel]["float32"], "threshold": 0.2, "data": "reviewed audits",
                                      "provenance": {"source": "export", "audits_used": 1600}}}
                for channel in validation}
    old = {key: value for key, value in meta.items() if key != "calibrations"}
    return {**old, "format_version": 1, "calibrations": validation["file"], "drawn_calibrations": validation["drawn"],
            "reviewed_calibrations": reviewed["file"], "reviewed_drawn_calibrations": reviewed["drawn"]}


def old_checkpoint(tmp_path: Path, meta: dict) -> Path:
    weights = tmp_path / "bnn.safetensors"
    shutil.copy(SHIPPED, weights)
    weights.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return weights


def test_the_five_keys_move_into_the_map_with_every_value_kept(tmp_path: Path, capsys) -> None:
    shipped = read_metadata(SHIPPED)
    old = format_one(shipped)
    checkpoint = old_checkpoint(tmp_path, old)
    with pytest.raises(CheckpointError, match=r"python -m model\.migrate_records"):
        load_checkpoint(checkpoint)  # format 1 is refused, naming the command
    assert main([str(checkpoint)]) == 0
    new = read_metadata(checkpoint)
    places = {"calibrations": ("validation", "file"), "drawn_calibrations": ("validation", "drawn"),
              "reviewed_calibrations": ("reviewed", "file"), "reviewed_drawn_calibrations": ("reviewed", "drawn")}
    for key, (fitted_on, channel) in places.items():
        assert new["calibrations"][fitted_on][channel] == old[key]  # the same values, only their place changed
    assert {k: v for k, v in new.items() if k not in ("calibrations", "format_version")} == \
        {k: v for k, v in old.items() if k not in (*places, "format_version")}
    assert (new["format_version"], new["model_version"], new["weights_sha256"]) == \
        (2, shipped["model_version"], shipped["weights_sha256"])
    assert served(new, "float32")["drawn"].threshold == 0.2 and served(new, "bfloat16") == served(shipped, "bfloat16")
    load_checkpoint(checkpoint)  # format 2 now
    said = capsys.readouterr().out
    assert "moved 6 record(s) into format 2" in said
    assert "reviewed_drawn_calibrations.float32 -> calibrations.reviewed.drawn.float32" in said
    assert main([str(checkpoint)]) == 0 and "format 2 already: nothing to do" in capsys.readouterr().out


def test_a_dry_run_writes_nothing(tmp_path: Path, capsys) -> None:
    checkpoint = old_checkpoint(tmp_path, format_one(read_metadata(SHIPPED)))
    before = checkpoint.with_suffix(".json").read_bytes()
    assert main(["--dry-run", str(checkpoint)]) == 0
    assert checkpoint.with_suffix(".json").read_bytes() == before
    said = capsys.readouterr().out
    assert "would move 6 record(s) into format 2 (dry run: nothing written)" in said
    assert "calibrations.float32 -> calibrations.validation.file.float32" in said


def test_the_oldest_single_record_is_the_float32_file_record_and_drawings_go_unserved(tmp_path: Path, capsys) -> None:
    """A checkpoint calibrated before precisions and channels: its one record becomes the float32 file
    record (its place's precision and channel written into it); with no drawn record, nothing is served."""
    shipped = read_metadata(SHIPPED)
    record = {k: v for k, v in shipped["calibrations"]["validation"]["file"]["float32"].items()
              if k not in ("precision", "channel", "provenance")}
    old = {**{k: v for k, v in shipped.items() if k != "calibrations"}, "format_version": 1,
           "calibration": {**record, "unfamiliar_threshold": None, "unfamiliar_budget": None}}
    migration = migrate(old)
    migrated = read_records(migration.meta)
    assert migrated["validation"]["file"]["float32"].to_dict() == {**record, "precision": "float32", "channel": "file",
                                                                  "provenance": None}
    assert migrated["validation"]["drawn"] == {} and served(migration.meta, "float32") == {}
    assert migration.moves == ["calibration.float32 -> calibrations.validation.file.float32"]
    assert any(note.startswith("no drawn record for float32") for note in migration.notes)
    checkpoint = old_checkpoint(tmp_path, old)
    assert main([str(checkpoint)]) == 0
    assert "note: no drawn record for float32 (calibrated before channels?): the service refuses float32" in \
        capsys.readouterr().out


def test_what_cannot_be_kept_as_it_is_is_refused_and_left_unwritten(tmp_path: Path, capsys) -> None:
    shipped = read_metadata(SHIPPED)
    old = format_one(shipped)
    retired = {**old, "calibrations": {p: {**r, "unfamiliar_threshold": 3.0} for p, r in old["calibrations"].items()}}
    misplaced = {**old, "drawn_calibrations": old["calibrations"]}  # file records under the drawn key
    for bad, why in ((retired, "second 'unfamiliar' signal"), (misplaced, "a record of the file channel is filed "
                                                                         "under drawn")):
        checkpoint = old_checkpoint(tmp_path, bad)
        before = checkpoint.with_suffix(".json").read_bytes()
        assert main([str(checkpoint)]) == 1
        assert why in capsys.readouterr().err
        assert checkpoint.with_suffix(".json").read_bytes() == before


def test_the_shipped_checkpoint_is_format_2_and_its_records_validate() -> None:
    meta = read_metadata(SHIPPED)
    assert meta["format_version"] == 2 and set(meta["calibrations"]) == {"validation", "reviewed"}
    assert main(["--dry-run", str(SHIPPED)]) == 0  # nothing to do


def test_help_prints(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "python -m model.migrate_records" in printed and "--dry-run" in printed and "CHECKPOINT" in printed


def test_a_format_1_file_without_records_is_rewritten_all_the_same(tmp_path, capsys):
    """A training run whose fits were all refused left ``calibrations: {}``: the file must still become
    format 2, or the service keeps sending its user back to this command."""
    path = tmp_path / "bnn.json"
    path.write_text(json.dumps({"format_version": 1, "name": "refused", "calibrations": {}}))
    assert main([str(path)]) == 0
    after = json.loads(path.read_text())
    assert after["format_version"] == 2
    assert read_records(after)["validation"] == {"file": {}, "drawn": {}}
    printed = capsys.readouterr().out
    assert "moved 0 record(s) into format 2" in printed and "no calibration record" in printed
