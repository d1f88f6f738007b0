"""What an upload's bytes say about its cost before Pillow parses them: how many segments precede
the image data, and how many scans a JPEG has. Pillow's parsers read every segment before the
first frame in Python, keeping each (a JPEG's APP markers in ``applist``, a GIF's comments joined
into one), and libjpeg decodes every scan of a progressive JPEG at full size, however small the
draft it is asked for. An 8 MiB JPEG of 2.1 million empty APP3 markers took 2 s and 283 MB to
open, on the event loop; a 1 MB progressive JPEG of 7,000 repeated scans 8.8 s to decode, 8 MiB
of them 76 s (the attacker's catalogue of issue 42). Real files have a few dozen segments and at
most a few dozen scans, so both are bounded here, by walking at most :data:`MAX_SEGMENTS`
segment headers (microseconds) and counting start-of-scan markers (``bytes.count``: a scan's
entropy-coded data cannot hold one, its 0xFF bytes being stuffed).
"""

from __future__ import annotations

import struct

MAX_SEGMENTS = 512  # segments before the first image data: JPEG markers, PNG chunks, GIF extension blocks
MAX_JPEG_SCANS = 100  # start-of-scan markers in a JPEG (a progressive one has about 10; baseline 1)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8"
START_OF_SCAN = b"\xff\xda"
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length


def excess(data: bytes) -> str | None:
    """Why the upload's structure costs too much to parse, or None. Only PNG, JPEG and GIF have
    unbounded segment lists before their pixels; a truncated file is left for Pillow to name."""
    if data.startswith(PNG_SIGNATURE):
        return _over("PNG chunks", _png_chunks(data))
    if data.startswith(JPEG_START):
        scans = data.count(START_OF_SCAN)
        if scans > MAX_JPEG_SCANS:
            return f"{scans} JPEG scans; the limit is {MAX_JPEG_SCANS} (a progressive JPEG has about 10)"
        return _over("JPEG marker segments", _jpeg_segments(data))
    if data.startswith((b"GIF87a", b"GIF89a")):
        return _over("GIF extension blocks", _gif_extensions(data))
    return None


def _over(what: str, count: int) -> str | None:
    return f"more than {MAX_SEGMENTS} {what} before the image data" if count > MAX_SEGMENTS else None


def _png_chunks(data: bytes) -> int:
    """Chunks before the first IDAT (stops counting past the limit)."""
    at, count = len(PNG_SIGNATURE), 0
    while at + 8 <= len(data) and count <= MAX_SEGMENTS:
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind == b"IDAT":
            break
        count += 1
        at += 12 + length
    return count


def _jpeg_segments(data: bytes) -> int:
    """Marker segments between SOI and the first SOS (stops counting past the limit)."""
    at, count = 2, 0
    while at + 4 <= len(data) and count <= MAX_SEGMENTS:
        if data[at] != 0xFF:
            break  # not a marker: corrupt, Pillow will say so
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xDA:
            break
        count += 1
        at += 2 if marker in _JPEG_STANDALONE else 2 + struct.unpack_from(">H", data, at + 2)[0]
    return count


def _gif_extensions(data: bytes) -> int:
    """Extension blocks before the first image descriptor (stops counting past the limit)."""
    if len(data) < 13:
        return 0
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    count = 0
    while at < len(data) and data[at] == 0x21 and count <= MAX_SEGMENTS:
        count += 1
        at += 2  # introducer and label
        while at < len(data) and data[at] != 0:  # its sub-blocks
            at += 1 + data[at]
        at += 1
    return count
