"""The calibration records' one map: its reader refuses a record out of its place, its writer files
and merges, and each precision is served per channel (reviewed over validation), or not at all."""

from dataclasses import replace

import numpy as np
import pytest

from harness.inputs import SHIPPED
from model.calibration import (
    CHANNELS,
    FITTED_ON,
    Calibration,
    empty_records,
    read_records,
    served,
    served_precisions,
    with_records,
)
from model.checkpoint import read_metadata
from model.fitting.guarantee import guarantee_threshold

FILE = guarantee_threshold(np.linspace(0, 1, 5000), np.ones(5000, bool), alpha=0.01, grid=np.linspace(0.01, 1, 10),
                           data="validation files")
DRAWN = replace(FILE, threshold=0.05, alpha=0.004, channel="drawn", data="validation drawings")
REVIEWED = replace(FILE, threshold=0.2, data="reviewed audits: export", provenance={"source": "export"})
REVIEWED_DRAWN = replace(DRAWN, threshold=0.07, data="reviewed audits: export", provenance={"source": "export"})


def validation(*precisions: str) -> dict:
    """Metadata with a validation record for every channel of each precision."""
    return with_records({}, "validation", {"file": {p: replace(FILE, precision=p) for p in precisions},
                                           "drawn": {p: replace(DRAWN, precision=p) for p in precisions}})


def test_the_writer_files_each_record_in_its_place_and_the_reader_reads_them_back():
    meta = with_records({"name": "kept"}, "validation", {"file": {"float32": FILE}, "drawn": {"float32": DRAWN}})
    assert meta["name"] == "kept"
    assert meta["calibrations"] == {"validation": {"file": {"float32": FILE.to_dict()},
                                                   "drawn": {"float32": DRAWN.to_dict()}},
                                    "reviewed": {"file": {}, "drawn": {}}}
    assert read_records(meta) == {"validation": {"file": {"float32": FILE}, "drawn": {"float32": DRAWN}},
                                  "reviewed": {"file": {}, "drawn": {}}}
    # a second write merges by channel and precision: the int8 file record joins, the float32 ones stay
    low = replace(FILE, precision="int8", threshold=0.3)
    merged = with_records(meta, "validation", {"file": {"int8": low}})
    assert read_records(merged)["validation"] == {"file": {"float32": FILE, "int8": low},
                                                  "drawn": {"float32": DRAWN}}
    assert list(merged["calibrations"]["validation"]["file"]) == ["float32", "int8"]  # sorted: stable JSON
    replaced = with_records(merged, "validation", {"file": {"float32": replace(FILE, threshold=0.9)}})
    assert read_records(replaced)["validation"]["file"]["float32"].threshold == 0.9
    assert read_records({}) == empty_records() == {place: {channel: {} for channel in CHANNELS} for place in FITTED_ON}


@pytest.mark.parametrize(("place", "records", "why"), [
    ("validation", {"drawn": {"float32": FILE}}, "a record of the file channel is filed under drawn"),
    ("validation", {"file": {"int8": FILE}}, "a float32 record is filed under int8"),
    ("validation", {"file": {"float32": REVIEWED}}, "a record fitted on reviewed audits is filed under validation"),
    ("reviewed", {"file": {"float32": FILE}}, "a record fitted on the validation mix is filed under reviewed"),
])
def test_a_record_out_of_its_place_is_refused_by_the_writer_and_the_reader(place, records, why):
    with pytest.raises(ValueError, match=why):
        with_records({}, place, records)
    channel, by_precision = next(iter(records.items()))
    precision, record = next(iter(by_precision.items()))
    written = {"calibrations": {place: {channel: {precision: record.to_dict()}}}}
    with pytest.raises(ValueError, match=why):
        read_records(written)


@pytest.mark.parametrize(("raw", "why"), [
    ({"calibrations": {"float32": FILE.to_dict()}}, r"calibrations has unknown keys \['float32'\]"),
    ({"calibrations": {"validation": {"pen": {}}}}, r"calibrations.validation has unknown keys \['pen'\]"),
    ({"calibrations": {"validation": {"file": {"float32": {**FILE.to_dict(), "extra": 1}}}}},
     r"unknown calibration keys: \['extra'\]"),
    ({"calibrations": {"validation": {"file": {"float32": FILE.to_dict(), "int8": 0.3}}}},
     "calibrations.validation.file.int8 is not a mapping"),
    ({"calibrations": []}, "calibrations is not a mapping"),
])
def test_the_reader_refuses_what_is_not_the_map(raw, why):
    with pytest.raises(ValueError, match=why):
        read_records(raw)


def test_each_channel_is_served_its_reviewed_record_over_its_validation_one():
    meta = validation("float32")
    assert served(meta, "float32") == {"file": FILE, "drawn": DRAWN}
    assert served(meta, "int8") == {}  # no record for it: not served
    meta = with_records(meta, "reviewed", {"file": {"float32": REVIEWED}})
    assert served(meta, "float32") == {"file": REVIEWED, "drawn": DRAWN}  # files' audits judge files only
    meta = with_records(meta, "reviewed", {"drawn": {"float32": REVIEWED_DRAWN}})
    assert served(meta, "float32") == {"file": REVIEWED, "drawn": REVIEWED_DRAWN}
    assert read_records(meta)["validation"] == {"file": {"float32": FILE}, "drawn": {"float32": DRAWN}}  # kept


def test_a_precision_lacking_any_channels_validation_record_is_not_served():
    files_only = with_records({}, "validation", {"file": {"float32": FILE}})
    assert served(files_only, "float32") == {}  # drawings were never promised anything
    # a reviewed record alone serves nothing: it starts from its channel's validation record
    reviewed_only = with_records(files_only, "reviewed", {"drawn": {"float32": REVIEWED_DRAWN}})
    assert served(reviewed_only, "float32") == {}
    both = validation("float32", "int8")
    without_drawn_int8 = with_records({}, "validation", {"file": read_records(both)["validation"]["file"],
                                                         "drawn": {"float32": DRAWN}})
    assert list(served_precisions(both)) == ["float32", "int8"]
    assert list(served_precisions(without_drawn_int8)) == ["float32"]
    # an older checkpoint's bfloat16 records are read and kept, and not served (no longer a served precision)
    older = validation("float32", "bfloat16")
    assert set(read_records(older)["validation"]["file"]) == {"float32", "bfloat16"}
    assert list(served_precisions(older)) == ["float32"]


def test_the_shipped_checkpoint_serves_both_precisions_with_its_validation_records():
    meta = read_metadata(SHIPPED)
    records = read_records(meta)
    assert records["reviewed"] == {"file": {}, "drawn": {}}
    for precision in ("float32", "int8"):
        channels = served(meta, precision)
        assert set(channels) == set(CHANNELS)
        for channel, record in channels.items():
            assert (record.channel, record.precision, record.provenance) == (channel, precision, None)
            assert record.alpha == {"file": 0.002, "drawn": 0.004}[channel]
            assert record == Calibration.from_dict(meta["calibrations"]["validation"][channel][precision])


def test_a_record_missing_what_it_cannot_do_without_is_refused():
    record = {k: v for k, v in FILE.to_dict().items() if k != "threshold"}
    with pytest.raises(ValueError, match=r"incomplete calibration record: .*'threshold'"):
        read_records({"calibrations": {"validation": {"file": {"float32": record}}}})
    # every record names its channel and precision (python -m model.migrate_records fills them in older metadata)
    for place in ("channel", "precision"):
        record = {k: v for k, v in FILE.to_dict().items() if k != place}
        with pytest.raises(ValueError, match=f"incomplete calibration record: missing '{place}'"):
            Calibration.from_dict(record)
