"""Where labelled items go before retention drops them: NDJSON files, one a day, in the export
directory (``BNN_REVIEW_EXPORT_DIR``; by default ``review-export`` beside the SQLite store).

A retention pass deletes a labelled item only after :func:`append_records` has returned: the
lines are appended in one ``write`` loop on an ``O_APPEND`` descriptor (workers sharing the
directory never interleave lines) and ``fsync``'d, so a crash after the delete cannot lose them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class ExportFailed(Exception):
    """Writing labelled items to the export directory failed (the retention pass then keeps them)."""


def writable(directory: Path) -> bool:
    """Whether ``directory``, or the nearest existing folder above it (where it would be made), can be written."""
    existing = next((folder for folder in (directory, *directory.parents) if folder.exists()), directory)
    return os.access(existing, os.W_OK)


def day_file(directory: Path, when: float) -> Path:
    """``directory/review-YYYY-MM-DD.ndjson`` for the UTC day of ``when`` (Unix seconds)."""
    return directory / time.strftime("review-%Y-%m-%d.ndjson", time.gmtime(when))


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Append ``records`` to ``path`` as NDJSON, on disk when it returns; ExportFailed if not (blocking:
    run it in a thread)."""
    data = "".join(json.dumps(record) + "\n" for record in records).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise ExportFailed(f"{path}: {error}") from error
