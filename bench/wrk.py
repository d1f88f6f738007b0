"""Drive an HTTP server with ``wrk`` (Debian package ``wrk``): a C load generator, so the load
takes little of the CPU it measures (a Python generator on the same 2 cores took a large share).

``run_wrk`` writes a Lua script that sends one fixed request (method, headers, body: the body is
built once, binary-safe) and reports, from wrk's own ``done`` hook, the requests, the errors by
kind, the non-2xx answers and the latency percentiles as one JSON line, which it parses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRK = "wrk"
INSTALL_HINT = "wrk is not installed: apt-get install wrk (Debian package)"


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    images: int = 1  # images answered per request, for images/s
    tally: str | None = None  # a JSON string field of the answers to count by value (e.g. "model_version")


@dataclass(frozen=True)
class WrkResult:
    connections: int
    seconds: float
    requests: int
    non_2xx: int
    socket_errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p99_ms: float
    images: int
    tallies: dict[str, int] | None = None  # answers by the value of Request.tally

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def images_per_s(self) -> float:
        """Images answered with a 2xx per second."""
        return (self.requests - self.non_2xx) / self.seconds * self.images

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def multipart(image: bytes, field: str = "file", filename: str = "d.png", count: int = 1) -> tuple[bytes, str]:
    """A multipart/form-data body with ``count`` copies of the image; (body, content type)."""
    boundary = "wrkboundary7d3f"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + b"\r\n"
    return part * count + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _lua_string(data: bytes) -> str:
    """Bytes as a Lua string literal (decimal escapes: binary-safe)."""
    return '"' + "".join(f"\\{byte}" for byte in data) + '"'


def _tally(field: str) -> str:
    """Lua that counts the answers by their ``field``'s value in each thread, and a JSON object of the sums."""
    return f"""
local threads = {{}}
setup = function(thread) table.insert(threads, thread) end
init = function(args) tallies = {{}} end
response = function(status, headers, body)
  local value = string.match(body, '"{field}":"([^"]*)"')
  if value then tallies[value] = (tallies[value] or 0) + 1 end
end
local function tallied()
  local sums = {{}}
  for _, thread in ipairs(threads) do
    for value, count in pairs(thread:get("tallies")) do sums[value] = (sums[value] or 0) + count end
  end
  local parts = {{}}
  for value, count in pairs(sums) do table.insert(parts, string.format('"%s": %d', value, count)) end
  return "{{" .. table.concat(parts, ", ") .. "}}"
end
"""


def _script(request: Request) -> str:
    headers = "\n".join(f"wrk.headers[{_lua_string(k.encode())}] = {_lua_string(v.encode())}"
                        for k, v in request.headers)
    tally = _tally(request.tally) if request.tally else "local function tallied() return 'null' end"
    return f"""
wrk.method = "{request.method}"
wrk.path = {_lua_string(request.path.encode())}
wrk.body = {_lua_string(request.body)}
{headers}
{tally}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {{"requests": %d, "duration_us": %d, "status": %d, "socket": %d, '
    .. '"p50_us": %d, "p99_us": %d, "tallies": %s}}\\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99), tallied()))
end
"""


def run_wrk(url: str, request: Request, connections: int, seconds: float, threads: int = 1,
            timeout_s: float = 5.0) -> WrkResult:
    """``wrk`` against ``url`` for ``seconds`` with ``connections`` keep-alive connections."""
    if shutil.which(WRK) is None:
        raise RuntimeError(INSTALL_HINT)
    with tempfile.TemporaryDirectory() as directory:
        script = Path(directory) / "request.lua"
        script.write_text(_script(request))
        command = [WRK, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s",
                   f"--timeout={timeout_s:g}s", "-s", str(script), url]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next((row for row in output.splitlines() if row.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    numbers = json.loads(line.removeprefix("WRKJSON "))
    return WrkResult(connections, numbers["duration_us"] / 1e6, numbers["requests"], numbers["status"],
                     numbers["socket"], numbers["p50_us"] / 1000.0, numbers["p99_us"] / 1000.0, request.images,
                     numbers["tallies"])
