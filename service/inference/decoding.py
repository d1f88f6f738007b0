"""Uploads -> the network's digits, so that no request holds a worker: a budget per request, and
the heavy work off the event loop, each image within a deadline.

What an image costs to decode is known from its header (``preprocess.decode_cost``: the canvas,
a GIF's logical screen included, x bytes per pixel), and decoding time follows it (1-2 ns a byte
on this project's 2-core EPYC). Decoded on the event loop without bounds, one ``/predict/batch``
of 32 GIFs of 43 bytes each, declaring a 6324 x 6324 screen, would hold its worker, ``/healthz``
included, for 10-18 s (``python -m bench.hostile``). So:

1. **a budget per request**: a request's images may together allocate at most ``budget_bytes``
   (BNN_MAX_REQUEST_DECODE_BYTES); an image that would take it past is refused (413) without
   being decoded (a smaller one after it may still fit);
2. **small work stays where it was**: up to ``inline_bytes`` of a request's work (a 28 x 28 PNG
   costs 1.6 KB, a 280 x 280 canvas export 0.9 MB), from files of at most ``INLINE_FILE_BYTES``,
   is left opened for the micro-batcher's pass to decode on the event loop, a pass's worth at
   once: decoded per request instead, on the loop or in the pool, passes grew smaller and
   ``/predict`` cost 1.27-1.60 ms of CPU a request instead of 1.10-1.17 (side by side with wrk);
3. **the rest in a bounded pool** (BNN_DECODE_THREADS), each image answered within
   ``timeout_s`` of its submission (BNN_DECODE_TIMEOUT_S): one not started by then is withdrawn
   (503, the decoder is busy), one still decoding is refused (422) while its thread finishes.
   Pillow and numpy release the GIL while they work, so the event loop, and the probes, go on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service.errors import DecoderBusy, DecodeTimeout, ImageRejected, ImageTooLarge
from service.inference.preprocess import Opened, Prepared, open_image, prepare

Upload = bytes | np.ndarray  # an encoded image file, or a prepared uint8 [28, 28] digit
INLINE_BYTES = 1024 * 1024  # a request's work left to the pass on the event loop: at most ~2 ms
# ...and only from files this small: reading a file costs besides its pixels (a 64 x 64 PNG whose
# 8 MiB are thousands of IDAT chunks took 0.4 s, Pillow walking them in Python)
INLINE_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int  # largest single file
    max_pixels: int  # largest width x height, checked from the header before decoding
    budget_bytes: int  # most bytes a request's images may allocate to decode, all together


class Decoder:
    """Prepares a request's uploads within its limits; owns the decoding pool."""

    def __init__(self, limits: UploadLimits, threads: int = 1, timeout_s: float = 2.0,
                 inline_bytes: int = INLINE_BYTES):
        self.limits = limits
        self.timeout_s = timeout_s
        self.inline_bytes = inline_bytes
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")

    def close(self) -> None:
        """Withdraw what waits; a decode under way finishes in its thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def open(self, data: Upload) -> Opened | Prepared | ImageRejected:
        """The header checks of one upload (byte limit, format, pixel count); a digit passes as it is."""
        if isinstance(data, np.ndarray):
            return Prepared(data, None)
        try:
            if len(data) > self.limits.max_upload_bytes:
                raise ImageTooLarge(f"file exceeds the limit of {self.limits.max_upload_bytes} bytes")
            return open_image(data, self.limits.max_pixels)
        except ImageRejected as error:
            return error

    async def admit(self, uploads: Sequence[Upload]) -> list[Opened | Prepared | ImageRejected]:
        """One request's uploads, in order: each refused (its header, or past the request's budget),
        decoded in the pool (large work, awaited here), or opened and left for the inference pass to
        decode on the event loop (the request's first ``inline_bytes`` of work)."""
        results: list[Opened | Prepared | ImageRejected] = []
        pooled: dict[int, Future[Prepared | ImageRejected]] = {}
        spent = inline = 0
        for index, (data, item) in enumerate(zip(uploads, map(self.open, uploads), strict=True)):
            if isinstance(item, Opened):
                if spent + item.cost > self.limits.budget_bytes:  # a smaller image after it may still fit
                    item = ImageTooLarge(
                        f"decoding this request's images would take more than {self.limits.budget_bytes} bytes; this "
                        f"image alone {item.cost} (width x height x bytes per pixel): send fewer or smaller images")
                else:
                    spent += item.cost
                    if len(data) <= INLINE_FILE_BYTES and inline + item.cost <= self.inline_bytes:
                        inline += item.cost
                    else:
                        pooled[index] = self._pool.submit(prepare, item)
            results.append(item)
        if pooled:
            decoded = await asyncio.gather(*(self._within_deadline(future) for future in pooled.values()))
            for index, outcome in zip(pooled, decoded, strict=True):
                results[index] = outcome
        return results

    async def _within_deadline(self, future: Future[Prepared | ImageRejected]) -> Prepared | ImageRejected:
        waiting = asyncio.wrap_future(future)
        done, _ = await asyncio.wait({waiting}, timeout=self.timeout_s)
        if done and not waiting.cancelled():
            return waiting.result()
        if done or future.cancel():  # never started: the pool is busy with other requests' images
            return DecoderBusy(f"the decoder is busy: this image did not start within {self.timeout_s:g} s; "
                               "retry shortly")
        return DecodeTimeout(f"the image took longer than {self.timeout_s:g} s to decode; send a smaller one")
