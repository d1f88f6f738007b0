"""The refer rule as a checkpoint stores it: one record per place it was fitted on, channel and
precision, in one map, read by one reader (:func:`read_records`) and written by one writer
(:func:`with_records`); the service serves each precision's channels with :func:`served` and
refuses a precision that lacks a record for any channel (what is served is what was calibrated).

The metadata's ``calibrations`` is ``{fitted_on: {channel: {precision: record}}}``:

* ``fitted_on``: ``validation`` (the validation mix, ``python -m model.calibrate``) or
  ``reviewed`` (a channel's labelled audits, ``python -m model.calibrate --reviewed``: what was
  really sent). A reviewed record serves its channel and precision in place of the validation one.
* ``channel`` (:data:`CHANNELS`): how an image reached the service, each held to its own promise on
  its own data: ``file``, anything a client posts (fitted on the mix's uploads and PNG files), and
  ``drawn``, a drawing on the try-it page's pad (fitted on its pen drawings).
* ``precision``: the trunk's (``model/precision.py``) the scores were computed in.

Each record also names its channel and precision, and the reader checks that they are its place's.
Metadata written before this map (format 1, five keys) is rewritten by ``python -m
model.migrate_records``, the only code that reads the old keys.

Refer when the predictive entropy over the ten digits exceeds ``threshold`` (nats). Why: a
referred image whose two most probable classes hold at least ``familiar_mass`` of the mass is
"uncertain" (a digit, unsure which of those); below it, "unfamiliar" (the mass is spread:
probably not a digit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Literal

from model.precision import SERVED

Channel = Literal["file", "drawn"]
CHANNELS: tuple[Channel, ...] = ("file", "drawn")
FittedOn = Literal["validation", "reviewed"]
FITTED_ON: tuple[FittedOn, ...] = ("validation", "reviewed")
KEY = "calibrations"  # the metadata key of the map


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
    precision: str = field(kw_only=True)  # the trunk's precision the scores were computed in
    temperature: float | None = None  # the logits' temperature the rule was fitted at; None: the config's
    # where the labels came from when fitted on reviewed audits (source, items, dates, export hash); None: the
    # validation mix named in ``data``
    provenance: dict[str, Any] | None = None
    channel: Channel = field(kw_only=True)  # the images it holds for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibration:
        """The record from metadata; unknown keys are errors (a key this version does not know is a
        promise it cannot keep), and so are missing ones that have no default: a record names its
        channel and precision (metadata older than that: ``python -m model.migrate_records``)."""
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown calibration keys: {sorted(unknown)}")
        missing = [f.name for f in fields(cls)
                   if f.default is MISSING and f.default_factory is MISSING and f.name not in raw]
        if missing:
            raise ValueError(f"incomplete calibration record: missing {', '.join(map(repr, missing))}")
        return cls(**raw)


ByChannel = dict[Channel, dict[str, Calibration]]  # {channel: {precision: record}}
Records = dict[FittedOn, ByChannel]  # {fitted_on: {channel: {precision: record}}}: every key present


def empty_records() -> Records:
    """The map with every place and channel present and no record."""
    return {fitted_on: {channel: {} for channel in CHANNELS} for fitted_on in FITTED_ON}


def read_records(meta: Mapping[str, Any]) -> Records:
    """Every record of ``meta``'s ``calibrations`` in its place (absent: none). ValueError when the
    map has a key that is not a place, channel or mapping, or a record is malformed or filed under
    another channel, precision or place than its own."""
    raw = meta.get(KEY, {})
    records = empty_records()
    for fitted_on, by_channel in _mapping(raw, KEY, FITTED_ON).items():
        for channel, by_precision in _mapping(by_channel, f"{KEY}.{fitted_on}", CHANNELS).items():
            for precision, record in _mapping(by_precision, f"{KEY}.{fitted_on}.{channel}").items():
                if not isinstance(record, dict):
                    raise ValueError(f"{KEY}.{fitted_on}.{channel}.{precision} is not a mapping")
                calibration = Calibration.from_dict(record)
                _check_place(calibration, fitted_on, channel, precision)
                records[fitted_on][channel][precision] = calibration
    return records


def with_records(meta: Mapping[str, Any], fitted_on: FittedOn,
                 records: Mapping[Channel, Mapping[str, Calibration]]) -> dict[str, Any]:
    """``meta`` with ``records`` (``{channel: {precision: record}}``) filed under ``fitted_on``,
    replacing those of the same channel and precision; every other record kept. ValueError, nothing
    written, when a record is not its place's."""
    merged = read_records(meta)
    for channel, by_precision in records.items():
        for precision, record in by_precision.items():
            _check_place(record, fitted_on, channel, precision)
            merged[fitted_on][channel][precision] = record
    return {**meta, KEY: _as_metadata(merged)}


def without_precision(meta: Mapping[str, Any], precision: str) -> dict[str, Any]:
    """``meta`` with no record of ``precision`` (every place's and channel's); every other record kept."""
    records = read_records(meta)
    for by_channel in records.values():
        for by_precision in by_channel.values():
            by_precision.pop(precision, None)
    return {**meta, KEY: _as_metadata(records)}


def _as_metadata(records: Records) -> dict[str, Any]:
    """The map as the metadata holds it (precisions sorted: stable JSON)."""
    return {place: {channel: {precision: record.to_dict() for precision, record in sorted(by_precision.items())}
                    for channel, by_precision in by_channel.items()}
            for place, by_channel in records.items()}


def serve(records: Records, precision: str) -> dict[Channel, Calibration]:
    """Each channel's record for ``precision`` as the service serves it: the one fitted on that
    channel's reviewed audits where there is one, else the validation mix's. Empty when any channel
    lacks a validation record for ``precision``: a reviewed record starts from its validation one
    (temperature, reason rule), and a channel without a record has no promise to serve."""
    validation, reviewed = records["validation"], records["reviewed"]
    if any(precision not in validation[channel] for channel in CHANNELS):
        return {}
    return {channel: reviewed[channel].get(precision, validation[channel][precision]) for channel in CHANNELS}


def served(meta: Mapping[str, Any], precision: str) -> dict[Channel, Calibration]:
    """:func:`serve` on ``meta``'s records."""
    return serve(read_records(meta), precision)


def served_precisions(meta: Mapping[str, Any]) -> dict[str, dict[Channel, Calibration]]:
    """Every precision the service may run ``meta``'s checkpoint in, with each channel's record (a
    record of a precision the service does not serve, such as bfloat16 from older checkpoints, is kept
    in the metadata and not served)."""
    records = read_records(meta)
    precisions = sorted({precision for by_precision in records["validation"].values() for precision in by_precision
                         if precision in SERVED})
    return {precision: channels for precision in precisions if (channels := serve(records, precision))}


def _mapping(raw: Any, where: str, allowed: tuple[str, ...] | None = None) -> dict[Any, Any]:
    """``raw`` as a mapping whose keys are all in ``allowed`` (any, when None); ValueError naming ``where``."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not a mapping")
    unknown = [key for key in raw if allowed is not None and key not in allowed]
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(map(str, unknown))} (one of {', '.join(allowed or ())})")
    return raw


def _check_place(record: Calibration, fitted_on: str, channel: str, precision: str) -> None:
    """A record filed under ``fitted_on``/``channel``/``precision`` must be that place's: its own
    channel and precision, and labels from reviewed audits (``provenance``) exactly when filed as
    ``reviewed``."""
    where = f"{KEY}.{fitted_on}.{channel}.{precision}"
    if fitted_on not in FITTED_ON or channel not in CHANNELS:
        raise ValueError(f"{where}: no such place (fitted on {' or '.join(FITTED_ON)}; "
                         f"channel {' or '.join(CHANNELS)})")
    if record.channel != channel:
        raise ValueError(f"{where}: a record of the {record.channel} channel is filed under {channel}")
    if record.precision != precision:
        raise ValueError(f"{where}: a {record.precision} record is filed under {precision}")
    if (record.provenance is not None) != (fitted_on == "reviewed"):
        fitted = "reviewed audits" if record.provenance is not None else "the validation mix"
        raise ValueError(f"{where}: a record fitted on {fitted} is filed under {fitted_on}")
