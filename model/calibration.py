"""The refer rule as a checkpoint stores it: one record per precision the trunk can run in
(``model/precision.py``) and per channel, written by ``model.calibrate`` into the checkpoint's
metadata and read by the service (:func:`served_channels`), which serves a precision only with its
own record.

A channel is how an image reached the service, each held to its own promise on its own data:
``file``, anything a client posts (the default; ``calibrations``, fitted on the validation mix's
uploads and PNG files) and ``drawn``, a drawing on the try-it page's pad (``drawn_calibrations``,
fitted on its pen drawings). A record fitted on a channel's reviewed audits (what was really
sent: ``reviewed_calibrations``, ``reviewed_drawn_calibrations``) serves that channel of its
precision in place of the validation mix's.

Refer when the predictive entropy over the ten digits exceeds ``threshold`` (nats). Why: a
referred image whose two most probable classes hold at least ``familiar_mass`` of the mass is
"uncertain" (a digit, unsure which of those); below it, "unfamiliar" (the mass is spread:
probably not a digit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

# a second signal, removed (docs/experiments.md); kept readable, unset, because the checkpoints the docs
# compare with this checkout's report (head-752d929f3e4f, head-6eb5d47885b8) carry them as null
RETIRED_KEYS = ("unfamiliar_threshold", "unfamiliar_budget")


Channel = Literal["file", "drawn"]
CHANNELS: tuple[Channel, ...] = ("file", "drawn")


def channel_of(raw: object) -> Channel:
    """``raw`` (a request's or an export's value) as a channel; ValueError for anything else."""
    for channel in CHANNELS:
        if raw == channel:
            return channel
    raise ValueError(f"unknown channel {raw!r} (one of {', '.join(CHANNELS)})")


@dataclass(frozen=True)
class Calibration:
    """The refer rule and what it promised on its calibration data."""

    mode: str  # "guarantee" or "referral_rate"
    threshold: float  # nats: refer when entropy > threshold
    samples: int  # N used to compute the validation entropies
    alpha: float | None
    delta: float | None
    target_referral_rate: float | None
    validation_size: int
    validation_coverage: float  # fraction accepted
    validation_accepted_accuracy: float
    accepted_error_upper_bound: float | None  # Clopper-Pearson, confidence 1 - delta
    data: str  # what the threshold was chosen on
    # why a referral is made: below this top-two mass a referral is "unfamiliar". None: always "uncertain".
    familiar_mass: float | None = None
    reason_fit: dict[str, Any] | None = None  # what familiar_mass was chosen on and what it gave there
    precision: str = "float32"  # the trunk's precision the scores were computed in (older records: float32)
    temperature: float | None = None  # the logits' temperature the rule was fitted at; None: the config's
    # where the labels came from when fitted on reviewed audits (source, items, dates, export hash); None: the
    # validation mix named in ``data``
    provenance: dict[str, Any] | None = None
    channel: Channel = "file"  # the images it holds for (older records, fitted on the whole mix: "file")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibration:
        """The record from metadata; keys a later version added may be absent, unknown keys are
        errors. A record of a second "unfamiliar" signal is refused: the service has none."""
        if any(raw.get(key) is not None for key in RETIRED_KEYS):
            raise ValueError("calibrated with a second 'unfamiliar' signal, which this version does not have; "
                             "recalibrate (python -m model.calibrate)")
        values = {k: v for k, v in raw.items() if k not in RETIRED_KEYS}
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown calibration keys: {sorted(unknown)}")
        return cls(**values)


REVIEWED = "reviewed_calibrations"  # the metadata key of the file channel's records fitted on reviewed audits
DRAWN = "drawn_calibrations"  # the metadata key of the drawn channel's records
REVIEWED_DRAWN = "reviewed_drawn_calibrations"  # the drawn channel's, fitted on its reviewed audits
REVIEWED_KEYS: dict[Channel, str] = {"file": REVIEWED, "drawn": REVIEWED_DRAWN}


def calibrations(meta: dict[str, Any]) -> dict[str, Calibration]:
    """Every precision's record fitted on the validation mix: ``calibrations`` {precision: record},
    or an older checkpoint's one ``calibration`` as the float32 record. ValueError when one is
    malformed or filed under another precision than its own."""
    raw = meta.get("calibrations")
    if raw is None:
        legacy = meta.get("calibration")
        raw = {} if legacy is None else {"float32": legacy}
    return _records(raw, "calibrations")


def reviewed_calibrations(meta: dict[str, Any], channel: Channel = "file") -> dict[str, Calibration]:
    """The records ``python -m model.calibrate --reviewed`` fitted on ``channel``'s labelled audits, by
    precision. (A file record written before channels was fitted on every audit: it is the file channel's.)"""
    key = REVIEWED_KEYS[channel]
    return _records(meta.get(key, {}), key, channel)


def drawn_calibrations(meta: dict[str, Any]) -> dict[str, Calibration]:
    """The drawn channel's records by precision (none in a checkpoint calibrated before channels)."""
    return _records(meta.get(DRAWN, {}), DRAWN, "drawn")


def served_calibrations(meta: dict[str, Any]) -> dict[str, Calibration]:
    """What the service serves each precision's file channel with: the record fitted on reviewed
    audits where there is one (what was really sent), else the validation mix's."""
    return {**calibrations(meta), **reviewed_calibrations(meta)}


def served_channels(meta: dict[str, Any], precision: str) -> dict[Channel, Calibration]:
    """Each channel's record for ``precision`` as the service serves it: the one fitted on that
    channel's reviewed audits where there is one, else the validation mix's; a checkpoint without
    drawn records (older) serves drawings with the file channel's. Empty when the precision has no
    file record."""
    file = served_calibrations(meta).get(precision)
    if file is None:
        return {}
    drawn = drawn_calibrations(meta).get(precision, file)
    return {"file": file, "drawn": reviewed_calibrations(meta, "drawn").get(precision, drawn)}


def _records(raw: Any, key: str, channel: Channel | None = None) -> dict[str, Calibration]:
    """The records under ``key`` by precision; each must be its precision's (and ``channel``'s, when given)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{key!r} is not a mapping of precision to record")
    records = {}
    for precision, record in raw.items():
        if not isinstance(record, dict):
            raise ValueError(f"the {precision} record is not a mapping")
        calibration = Calibration.from_dict({"precision": precision, **record})
        if calibration.precision != precision:
            raise ValueError(f"a {calibration.precision} record is filed under {precision}")
        if channel is not None and calibration.channel != channel:
            raise ValueError(f"a record of the {calibration.channel} channel is filed under {key}")
        records[precision] = calibration
    return records


def with_calibrations(meta: dict[str, Any], records: Mapping[str, Calibration]) -> dict[str, Any]:
    """``meta`` with these records added (replacing those of the same precisions; an older single
    ``calibration`` becomes the float32 record first)."""
    if any(record.channel != "file" for record in records.values()):
        raise ValueError("a record of another channel filed as the file channel's")
    merged = {**calibrations(meta), **records}
    updated = {key: value for key, value in meta.items() if key != "calibration"}
    updated["calibrations"] = {precision: record.to_dict() for precision, record in sorted(merged.items())}
    return updated


def with_drawn_calibrations(meta: dict[str, Any], records: Mapping[str, Calibration]) -> dict[str, Any]:
    """``meta`` with these drawn-channel records (replacing those of the same precisions)."""
    return _with_records(meta, DRAWN, "drawn", records)


def with_reviewed_calibrations(meta: dict[str, Any], records: Mapping[str, Calibration],
                               channel: Channel = "file") -> dict[str, Any]:
    """``meta`` with these records fitted on ``channel``'s reviewed audits beside the validation mix's
    (replacing those of the same precisions)."""
    return _with_records(meta, REVIEWED_KEYS[channel], channel, records)


def _with_records(meta: dict[str, Any], key: str, channel: Channel, records: Mapping[str, Calibration]) -> dict[str, Any]:
    """``meta`` with ``channel``'s ``records`` merged into those under ``key`` (by precision)."""
    if any(record.channel != channel for record in records.values()):
        raise ValueError(f"a record of another channel filed under {key}")
    merged = {**_records(meta.get(key, {}), key, channel), **records}
    return {**meta, key: {precision: record.to_dict() for precision, record in sorted(merged.items())}}
