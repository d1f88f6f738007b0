"""A bounded closed-loop HTTP load generator on raw asyncio streams (keep-alive, HTTP/1.1).

Each of C workers keeps one connection and sends the next request as soon as the previous
answer has arrived, for a fixed duration. The client does almost no work per request (the
multipart body is built once), so on a 2-core machine the numbers measure the server.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


def multipart_request(host: str, port: int, path: str, image: bytes, field_name: str = "file") -> bytes:
    boundary = "benchboundary7d3f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # connection failures and timeouts

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def failures(self) -> int:
        return self.errors + sum(count for status, count in self.statuses.items() if status != 200)


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, request: bytes, stop_at: float, result: LoadResult, timeout: float) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            assert reader is not None
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status = await asyncio.wait_for(_read_response(reader), timeout)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
        except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            result.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def run_load(host: str, port: int, request: bytes, concurrency: int, seconds: float,
                   timeout: float = 30.0) -> LoadResult:
    result = LoadResult(concurrency, seconds)
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(_worker(host, port, request, stop_at, result, timeout) for _ in range(concurrency)))
    return result
