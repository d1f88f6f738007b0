"""What a worker's write-behind buffer admits: bounds in items and in bytes, and one source's share.

The buffer holds answers while the store is slow or down (``buffer.py``). Without a byte bound,
10,000 items of 8 MiB uploads are 80 GiB in one worker; without a share per source, one client's
flood fills the buffer and every other client's answers are refused. An item's size is what it
holds in memory of the images: the stored upload plus the 784-byte 28 x 28.

A source is who sent the answer (the client's address as its connection gives it, passed by the
service; None when it cannot tell: one anonymous source). It is kept only as a 16-hex-digit hash
(``source_key``): enough to bound a source, not an address in the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from model.data import IMAGE_SIZE

INPUT_BYTES = IMAGE_SIZE * IMAGE_SIZE  # the network's input, stored with every item
# the defaults of BNN_REVIEW_BUFFER_BYTES, BNN_REVIEW_MAX_ITEM_BYTES, BNN_REVIEW_SOURCE_SHARE (settings.py), and
# of BNN_REVIEW_STATS_INTERVAL_S (how often the gauges are read from the store)
DEFAULT_BUFFER_BYTES = 256 * 2**20
DEFAULT_ITEM_BYTES = 2**20
DEFAULT_SOURCE_SHARE = 0.1
DEFAULT_STATS_INTERVAL_S = 15.0


def source_key(source: str | None) -> str:
    """A source as stored: 16 hex digits of its BLAKE2b hash (None, the unknown source, hashes as "")."""
    return hashlib.blake2b((source or "").encode(), digest_size=8).hexdigest()


def share_of(share: float, bound: int) -> int:
    """One source's part of ``bound`` (at least 1): of the buffer's bounds here, of the store's caps in retention."""
    return max(1, int(share * bound))


def item_size(file: bytes | None) -> int:
    """Bytes of images an item holds (the buffer's and the store's unit: ``file_bytes``)."""
    return INPUT_BYTES + (len(file) if file is not None else 0)


@dataclass
class BufferBudget:
    """Items and bytes held, in all and by source, against the bounds; ``refusal`` says whether one more fits."""

    max_items: int
    max_bytes: int
    source_share: float  # (0, 1]: the part of both bounds one source may hold
    items: int = 0
    bytes: int = 0
    _by_source: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (items, bytes)

    @property
    def source_max_items(self) -> int:
        return share_of(self.source_share, self.max_items)

    @property
    def source_max_bytes(self) -> int:
        return share_of(self.source_share, self.max_bytes)

    def refusal(self, source: str, size: int) -> str | None:
        """None when an item of ``size`` bytes from ``source`` fits; else "buffer_full" (every source's
        items or bytes at the bound) or "source_share" (this source's)."""
        if self.items + 1 > self.max_items or self.bytes + size > self.max_bytes:
            return "buffer_full"
        held_items, held_bytes = self._by_source.get(source, (0, 0))
        if held_items + 1 > self.source_max_items or held_bytes + size > self.source_max_bytes:
            return "source_share"
        return None

    def take(self, source: str, size: int) -> None:
        held_items, held_bytes = self._by_source.get(source, (0, 0))
        self._by_source[source] = (held_items + 1, held_bytes + size)
        self.items += 1
        self.bytes += size

    def release(self, source: str, size: int) -> None:
        held_items, held_bytes = self._by_source.pop(source, (0, 0))
        if held_items > 1:
            self._by_source[source] = (held_items - 1, held_bytes - size)
        self.items -= 1
        self.bytes -= size

    def held(self, source: str) -> tuple[int, int]:
        """(items, bytes) held for ``source``."""
        return self._by_source.get(source, (0, 0))

    def clear(self) -> None:
        self._by_source.clear()
        self.items = self.bytes = 0
