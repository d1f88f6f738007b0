"""Rewrite a checkpoint's calibration records from the five keys of format 1 into the one map of
format 2 (``model/calibration.py``); the only code that knows the old keys.

    python -m model.migrate_records checkpoints/bnn.safetensors [MORE ...] [--dry-run]

Format 1 kept the records under five parallel keys, each ``{precision: record}`` (the oldest
checkpoints, one float32 record under ``calibration``); format 2 keeps them in ``calibrations``
as ``{fitted_on: {channel: {precision: record}}}``. Each record keeps its values; only its place
changes. Where a record lacks the ``precision`` or ``channel`` that its old key implied (records
written before those fields), its place's is written into it, so that the reader can check it.
Retired keys of a removed second signal (``unfamiliar_threshold``, ``unfamiliar_budget``) go when
unset; a record that sets them is refused (this version has no such signal: recalibrate).

A checkpoint without drawn records (calibrated before channels) gets none: the service refuses
it until ``python -m model.calibrate`` fits them, since a drawing judged by the files' rule was
never promised anything. The command says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.calibration import CHANNELS, FITTED_ON, KEY, Calibration, Channel, FittedOn, read_records, with_records
from model.checkpoint import FORMAT_VERSION, metadata_path, write_metadata

# format 1's keys, each {precision: record}, and the place each holds in format 2
OLD_KEYS: dict[str, tuple[FittedOn, Channel]] = {
    "calibrations": ("validation", "file"),
    "drawn_calibrations": ("validation", "drawn"),
    "reviewed_calibrations": ("reviewed", "file"),
    "reviewed_drawn_calibrations": ("reviewed", "drawn"),
}
SINGLE = "calibration"  # the oldest: one record, float32, the file channel, fitted on the validation mix
RETIRED_KEYS = ("unfamiliar_threshold", "unfamiliar_budget")  # a second signal, removed (docs/experiments.md)
OLD_FORMAT = 1


class MigrationError(ValueError):
    """Metadata this command cannot rewrite (not format 1, or a record that cannot be kept as it is)."""


@dataclass
class Migration:
    """What migrating one metadata file does: the metadata after, each record's move and what to tell."""

    meta: dict[str, Any]
    moves: list[str] = field(default_factory=list)  # "old.key.precision -> calibrations.fitted_on.channel.precision"
    notes: list[str] = field(default_factory=list)
    rewritten: bool = False  # format 1 made format 2 (even with no record to move)


def migrate(meta: dict[str, Any]) -> Migration:
    """``meta`` (format 1) in format 2: its records moved into the one map, every other key kept.
    MigrationError when it is not format 1 or a record cannot be kept."""
    if meta.get("format_version") == FORMAT_VERSION:
        try:
            read_records(meta)
        except ValueError as error:
            raise MigrationError(f"format {FORMAT_VERSION} already, but its records are not readable: "
                                 f"{error}") from None
        return Migration(meta, [], [f"format {FORMAT_VERSION} already: nothing to do"])
    if meta.get("format_version") != OLD_FORMAT:
        raise MigrationError(f"format_version is {meta.get('format_version')!r}: "
                             f"neither {OLD_FORMAT} nor {FORMAT_VERSION}")
    migration = Migration({})
    placed: dict[tuple[FittedOn, Channel], dict[str, Calibration]] = {}
    for key, precision, raw in _old_records(meta, migration.notes):
        fitted_on, channel = OLD_KEYS.get(key, ("validation", "file"))
        placed.setdefault((fitted_on, channel), {})[precision] = _record(raw, key, precision, channel)
        migration.moves.append(f"{key}.{precision} -> {KEY}.{fitted_on}.{channel}.{precision}")
    kept = {k: v for k, v in meta.items() if k not in (*OLD_KEYS, SINGLE)}
    migrated: dict[str, Any] = {**kept, "format_version": FORMAT_VERSION}
    for fitted_on in FITTED_ON:
        records = {channel: placed.get((fitted_on, channel), {}) for channel in CHANNELS}
        try:
            migrated = with_records(migrated, fitted_on, records)
        except ValueError as error:
            raise MigrationError(str(error)) from None
    migration.meta, migration.rewritten = migrated, True
    migration.notes += _unserved(migrated)
    return migration


def _old_records(meta: dict[str, Any], notes: list[str]) -> list[tuple[str, str, Any]]:
    """``(old key, precision, record)`` for every record under format 1's keys (the single
    ``calibration`` as the float32 file record when there is no ``calibrations``, as format 1 read it)."""
    found = []
    for key in OLD_KEYS:
        by_precision = meta.get(key)
        if by_precision is None:
            continue
        if not isinstance(by_precision, dict):
            raise MigrationError(f"{key} is not a mapping of precision to record")
        found += [(key, precision, record) for precision, record in by_precision.items()]
    single = meta.get(SINGLE)
    if single is not None and "calibrations" in meta:
        notes.append(f"'{SINGLE}' dropped: format 1 read 'calibrations' in its place (it was never served)")
    elif single is not None:
        found.append((SINGLE, "float32", single))
    return found


def _record(raw: Any, key: str, precision: str, channel: Channel) -> Calibration:
    """One old record as it is, its place's precision and channel written in where it lacked them."""
    if not isinstance(raw, dict):
        raise MigrationError(f"{key}.{precision} is not a mapping")
    if any(raw.get(retired) is not None for retired in RETIRED_KEYS):
        raise MigrationError(f"{key}.{precision} was calibrated with a second 'unfamiliar' signal, which this "
                             "version does not have; recalibrate (python -m model.calibrate)")
    values = {"precision": precision, "channel": channel,
              **{k: v for k, v in raw.items() if k not in RETIRED_KEYS}}
    try:
        return Calibration.from_dict(values)
    except (TypeError, ValueError) as error:
        raise MigrationError(f"{key}.{precision}: {error}") from None


def _unserved(meta: dict[str, Any]) -> list[str]:
    """What the service will refuse after the migration: a precision lacking a channel's validation record."""
    validation = read_records(meta)["validation"]
    precisions = sorted({precision for by_precision in validation.values() for precision in by_precision})
    if not precisions:
        return ["no calibration record: the service refuses this checkpoint until python -m model.calibrate fits one"]
    notes = []
    for channel in CHANNELS:
        lacking = [precision for precision in precisions if precision not in validation[channel]]
        if lacking:
            notes.append(f"no {channel} record for {', '.join(lacking)} (calibrated before channels?): the service "
                         f"refuses {', '.join(lacking)} until python -m model.calibrate fits every channel")
    return notes


def migrate_file(checkpoint: Path, dry_run: bool) -> Migration:
    """Migrate ``checkpoint``'s metadata file (the weights are never touched); with ``dry_run``, write nothing."""
    path = metadata_path(checkpoint)
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MigrationError(f"cannot read {path}: {error}") from None
    if not isinstance(meta, dict):
        raise MigrationError(f"{path} is not a JSON object")
    migration = migrate(meta)
    if migration.rewritten and not dry_run:  # format 1, with or without records to move
        write_metadata(path, migration.meta)
    return migration


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.migrate_records", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, metavar="CHECKPOINT",
                        help="a checkpoint's weights (.safetensors) or its metadata (.json)")
    parser.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Migrate each checkpoint named; exit 1 when any could not be (the others are still migrated)."""
    args = build_parser().parse_args(argv)
    failed = 0
    for checkpoint in args.checkpoints:
        try:
            migration = migrate_file(checkpoint, args.dry_run)
        except MigrationError as error:
            print(f"{checkpoint}: not migrated: {error}", file=sys.stderr)
            failed += 1
            continue
        if migration.rewritten:
            verb = "would move" if args.dry_run else "moved"
            print(f"{metadata_path(checkpoint)}: {verb} {len(migration.moves)} record(s) into format {FORMAT_VERSION}"
                  f"{' (dry run: nothing written)' if args.dry_run else ''}")
        else:
            print(f"{metadata_path(checkpoint)}:")
        for line in migration.moves:
            print(f"  {line}")
        for note in migration.notes:
            print(f"  note: {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
