"""Micro-batching: concurrent requests arriving within a short window share one vectorized pass.

Requests put their preprocessed digits on a bounded queue and await a future. One worker task
takes the first waiting request, gathers more for up to ``max_wait_s`` or until ``max_images``
images are collected (it waits only while other requests are still being decoded, see
:meth:`MicroBatcher.expect`, so a lone request pays no batching delay), runs the network once
per distinct N (in a dedicated inference thread so the event loop stays free), and answers each
request with its own slice.
A full queue raises :class:`QueueFull` at once: the route answers 503 with Retry-After instead
of letting the backlog, and every client's latency, grow without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.predictor import Prediction

PredictFn = Callable[[list[np.ndarray], int | None], list[Prediction]]


class QueueFull(Exception):
    """The pending-request queue is at its bound; shed this request."""


@dataclass
class _Pending:
    digits: list[np.ndarray]
    samples: int | None
    future: asyncio.Future[list[Prediction]]
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(self, predict: PredictFn, max_images: int = 64, max_wait_s: float = 0.002, max_queue: int = 256):
        self._predict = predict
        self.max_images = max_images
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._worker: asyncio.Task[None] | None = None
        self.batches_run = 0  # passes executed, for tests and benchmarks
        self._expected = 0  # requests being decoded that will submit soon

    @contextlib.contextmanager
    def expect(self) -> Iterator[None]:
        """Wrap a request's decoding: while any request is inside, a gathering pass waits for it."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """Answer everything already queued, then stop."""
        if self._worker is not None:
            await self._queue.join()
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, digits: list[np.ndarray], samples: int | None) -> list[Prediction]:
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(digits, samples, future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self._queue.maxsize} requests already waiting") from None
        return await future

    async def _gather(self) -> list[_Pending]:
        first = await self._queue.get()
        batch, images = [first], len(first.digits)
        deadline = time.perf_counter() + self.max_wait_s
        while images < self.max_images:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or (self._queue.empty() and self._expected == 0):
                break
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                break
            batch.append(item)
            images += len(item.digits)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            try:
                by_samples: dict[int | None, list[_Pending]] = {}
                for item in batch:
                    by_samples.setdefault(item.samples, []).append(item)
                for samples, items in by_samples.items():
                    digits = [digit for item in items for digit in item.digits]
                    try:
                        predictions = await loop.run_in_executor(self._executor, self._predict, digits, samples)
                    except Exception as error:  # answer the waiters; never kill the worker
                        for item in items:
                            if not item.future.done():
                                item.future.set_exception(error)
                        continue
                    self.batches_run += 1
                    start = 0
                    for item in items:
                        if not item.future.done():
                            item.future.set_result(predictions[start : start + len(item.digits)])
                        start += len(item.digits)
            finally:
                for _ in batch:
                    self._queue.task_done()
