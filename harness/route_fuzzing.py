"""Every route of the app driven with generated requests (hypothesis strategies), sent in process
and checked: no 5xx, within a time and memory budget per request. A short run in
tests/test_fuzz_routes.py; a long one: ``python -m tools.fuzz --routes --examples 2000``.

Each route gets its own kind of body most of the time (multipart images, OIP documents valid or
not, admin paths, review labels) and anything else sometimes; JSON gets hostile texts spliced in
(nesting 20,000 deep, 6,000-digit numbers, NUL bytes, lone surrogates, 100 kB strings); paths name
devices and ``..``; headers, query and path values are generated too, past the key or token three
times in four so that the body is reached.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import strategies as st
from pydantic import SecretStr

from harness.fuzzing import mutate, seed_corpus
from harness.inputs import SHIPPED
from service.settings import Settings

ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"
REVIEWER_TOKEN = "fuzz-review-token-0123456789abcdef"
API_KEY = "fuzz-client-key-0123456789abcdef"
REQUEST_BUDGET_S = 5.0  # one answer, on a shared 2-core machine (a 32-image batch at N = 1000 included)
MEMORY_BUDGET_BYTES = 256 * 1024 * 1024  # growth of this process's resident memory over one request
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def fuzz_settings(directory: Path) -> Settings:
    """An app with every route: admins (candidates from ``directory/models``), reviewers, an API key,
    every answer queued for review (so review items exist), its store in ``directory``."""
    return Settings(model_path=SHIPPED, models_dir=directory / "models", review_db=f"sqlite:///{directory}/review.db",
                    admin_tokens=SecretStr(f"ops:{ADMIN_TOKEN}"), review_tokens=SecretStr(f"ana:{REVIEWER_TOKEN}"),
                    api_key=SecretStr(API_KEY), audit_fraction=1.0)


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route, the schema's and the hidden ones, and the static files."""
    def walk(routes: list[Any]) -> list[APIRoute]:
        found = []
        for route in routes:
            if isinstance(route, APIRoute):
                found.append(route)
            elif hasattr(route, "original_router"):  # FastAPI's included router
                found.extend(walk(route.original_router.routes))
        return found

    table = {(method, route.path) for route in walk(app.routes) for method in route.methods or () if method != "HEAD"}
    return sorted(table | {("GET", "/openapi.json"), ("GET", "/static/{path}")}, key=lambda item: (item[1], item[0]))


@dataclass(frozen=True)
class Known:
    """Values a generated path may name besides random text: a live version, review items, candidates."""

    model_version: str
    item_ids: tuple[str, ...]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class FuzzRequest:
    method: str
    path: str
    headers: dict[str, bytes]
    params: dict[str, str]
    content: bytes | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None

    def describe(self) -> str:
        body = (f"{len(self.content)} bytes {self.content[:120]!r}" if self.content is not None
                else f"files {[(name, part[0], len(part[1]), part[2]) for name, part in self.files or []]}")
        return f"{self.method} {self.path} params={self.params} headers={self.headers} body={body}"


@dataclass(frozen=True)
class Outcome:
    status: int
    seconds: float
    memory_growth: int  # bytes of resident memory gained over the request


TEXT = st.text(max_size=40)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)
PART_TEXT = st.text(st.characters(codec="utf-8", min_codepoint=0x20, exclude_characters="\x7f"),
                    max_size=40)  # what httpx can put in a part's header
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON_VALUES = st.recursive(SCALARS,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                           max_leaves=20)
HOSTILE_JSON = st.one_of(  # texts, spliced where a JSON value goes
    st.integers(10, 20_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(10, 5_000).map(lambda depth: '{"a": ' * depth + "1" + "}" * depth),
    st.integers(20, 6_000).map(lambda digits: "9" * digits),
    st.sampled_from(['"a\\u0000b"', '"\\ud800"', "NaN", "-Infinity", "1e999999", "-0", '"' + "x" * 100_000 + '"']),
)
DEVICE_PATHS = ("/dev/zero", "/dev/urandom", "/dev/stdin", "/proc/self/mem", "/etc/passwd", "a\x00b", "..", "/",
                "", "../../etc/passwd", "checkpoints", "checkpoints/bnn.safetensors", "x" * 5000)
SEEDS: list[bytes] = []
# True three times in four, and what hypothesis starts from and shrinks to (the first element)
USUALLY = st.sampled_from([True, True, True, False])


def json_text(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> str:
    """``value`` as JSON text, sometimes with one of its values (or all of it) a hostile text."""
    document = draw(value)
    hostile = draw(st.none() | HOSTILE_JSON)
    if hostile is None:
        return json.dumps(document)
    marker = "\x00hostile\x00"
    if isinstance(document, dict) and document and draw(st.booleans()):
        document[draw(st.sampled_from(sorted(document)))] = marker
        return json.dumps(document).replace(json.dumps(marker), hostile, 1)
    return hostile


def seeds() -> list[bytes]:
    if not SEEDS:
        SEEDS.extend(seed_corpus())
    return SEEDS


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    """A valid upload of some format, mutated one time in two, or random bytes."""
    kind = draw(st.sampled_from(["seed", "mutated", "random"]))
    if kind == "random":
        return draw(st.binary(max_size=2048))
    seed = draw(st.sampled_from(seeds()))
    return mutate(seed, draw(st.randoms(use_true_random=False))) if kind == "mutated" else seed


@st.composite
def valid_oip_document(draw: st.DrawFn) -> dict[str, Any]:
    """A request the model answers (digits or images), then one of its fields replaced, sometimes."""
    count = draw(st.integers(1, 3))
    if draw(st.booleans()):
        data: list[Any] = [draw(st.integers(0, 255))] * (count * 784)
        tensor: dict[str, Any] = {"name": "digits", "datatype": "UINT8", "shape": [count, 28, 28], "data": data}
    else:
        files = [base64.b64encode(draw(st.sampled_from(seeds()))).decode() for _ in range(count)]
        tensor = {"name": "image", "datatype": "BYTES", "shape": [count], "data": files}
    document: dict[str, Any] = {"inputs": [tensor], "parameters": {"samples": draw(st.integers(1, 200))}}
    target = draw(st.sampled_from([None, None, "parameters", "outputs", "id", "input parameters", "shape"]))
    if target == "input parameters":
        tensor["parameters"] = draw(JSON_VALUES)
    elif target == "shape":
        tensor["shape"] = draw(JSON_VALUES)
    elif target is not None:
        document[target] = draw(JSON_VALUES)
    return document


def oip_document(known: Known) -> st.SearchStrategy[dict[str, Any]]:
    tensor = st.fixed_dictionaries(
        {"name": st.sampled_from(["digits", "image"]) | TEXT,
         "datatype": st.sampled_from(["UINT8", "BYTES"]) | TEXT},
        optional={"shape": st.lists(st.integers(-2, 40) | st.integers(), max_size=4) | JSON_VALUES,
                  "data": st.lists(st.integers(-1, 300), max_size=800) | st.lists(TEXT, max_size=4) | JSON_VALUES,
                  "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers() | JSON_VALUES})
                  | JSON_VALUES})
    return st.fixed_dictionaries({"inputs": st.lists(tensor, max_size=2) | JSON_VALUES}, optional={
        "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["class", "refer"]) | TEXT},
                                                  optional={"parameters": JSON_VALUES}), max_size=3) | JSON_VALUES,
        "parameters": st.fixed_dictionaries({}, optional={
            "samples": st.integers() | JSON_VALUES, "channel": st.sampled_from(["file", "drawn"]) | JSON_VALUES,
            "binary_data_output": JSON_VALUES}) | JSON_VALUES,
        "id": TEXT | JSON_VALUES})


@st.composite
def body(draw: st.DrawFn, method: str, template: str, known: Known) -> tuple[bytes | None, Any]:
    """(content, files) for a route: its own kind of body most of the time, anything else sometimes."""
    if method in ("GET", "DELETE") and draw(st.booleans()):
        return None, None
    if template.startswith("/predict") and draw(USUALLY):
        field = mostly(st.just("files" if template.endswith("batch") else "file"), PART_TEXT)
        part = st.tuples(field, st.tuples(mostly(st.just("digit.png"), PART_TEXT), image_bytes(),
                                          mostly(st.just("image/png"), PART_TEXT)))
        return None, draw(st.lists(part, min_size=1, max_size=3) | st.lists(part, max_size=40))
    if template == "/predict":
        return draw(image_bytes()), None
    if template.endswith("/infer"):
        return json_text(draw, mostly(valid_oip_document(), oip_document(known))).encode(), None
    if template.startswith("/admin/models/"):
        path = st.sampled_from(DEVICE_PATHS + known.paths) | TEXT
        return json_text(draw, st.fixed_dictionaries({}, optional={"path": path | JSON_VALUES})).encode(), None
    if template.endswith("/label"):
        label = st.integers(-1, 11) | st.sampled_from(["not_a_digit", "unreadable", "7"]) | JSON_VALUES
        return json_text(draw, st.fixed_dictionaries({}, optional={"label": label})).encode(), None
    return draw(st.one_of(st.binary(max_size=256), st.just(json_text(draw, JSON_VALUES).encode()))), None


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four: deep enough into a route to reach its body, often enough."""
    return USUALLY.flatmap(lambda pick: usual if pick else other)


def path_value(name: str, known: Known) -> st.SearchStrategy[str]:
    valid = {"model_name": ("bnn-digits",), "model_version": (known.model_version,), "item_id": known.item_ids,
             "path": ("admin.js", "../../service/settings.py", "..%2f..%2fpyproject.toml")}.get(name, ())
    return mostly(st.sampled_from(valid), TEXT) if valid else TEXT


def headers(template: str) -> st.SearchStrategy[dict[str, str]]:
    token = (f"Bearer {ADMIN_TOKEN}" if template.startswith("/admin") else f"Bearer {REVIEWER_TOKEN}")
    return st.fixed_dictionaries({}, optional={
        "Content-Type": st.sampled_from(["application/json", "image/png", "multipart/form-data",
                                         "application/octet-stream", "text/plain"]) | HEADER_TEXT,
        "Authorization": st.sampled_from([token, token, "Bearer", f"Bearer {API_KEY}"]) | HEADER_TEXT,
        "X-API-Key": st.sampled_from([API_KEY, API_KEY, "", "wrong"]) | HEADER_TEXT,
        "Inference-Header-Content-Length": st.integers(-5, 10**6).map(str) | HEADER_TEXT,
        "Accept": st.sampled_from(["*/*", "application/json", "text/html"]) | HEADER_TEXT,
    })


@st.composite
def requests_for(draw: st.DrawFn, method: str, template: str, known: Known) -> FuzzRequest:
    """One request to the route ``method template``: generated path values, query, headers and body."""
    path = template
    for name in re.findall(r"{(\w+)}", template):
        path = path.replace(f"{{{name}}}", urllib.parse.quote(draw(path_value(name, known)), safe=""))
    found = draw(headers(template))
    if draw(USUALLY):  # mostly past the key or token, to reach the body
        if path.startswith(("/predict", "/v2")):
            found["X-API-Key"] = API_KEY
        elif path.startswith(("/admin", "/review")):
            found["Authorization"] = f"Bearer {ADMIN_TOKEN if path.startswith('/admin') else REVIEWER_TOKEN}"
    params = draw(st.fixed_dictionaries({}, optional={
        "samples": mostly(st.integers(1, 1000).map(str), st.integers().map(str) | TEXT),
        "channel": mostly(st.sampled_from(["file", "drawn"]), TEXT),
        "include": mostly(st.sampled_from(["spread", "input", "spread,input"]), TEXT),
        "since": mostly(st.datetimes().map(lambda moment: moment.isoformat()), TEXT)}))
    content, files = draw(body(method, template, known))
    if files is not None:
        found.pop("Content-Type", None) if draw(USUALLY) else None  # mostly httpx's own boundary
    return FuzzRequest(method, path, {key: value.encode("latin-1") for key, value in found.items()}, params,
                       content, files)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def send(client: Any, request: FuzzRequest) -> Outcome:
    """Send ``request`` through ``client`` (a Starlette TestClient); its status, time and memory growth."""
    before, started = resident_bytes(), time.perf_counter()
    response = client.request(request.method, request.path, headers=request.headers, params=request.params,
                              content=request.content, files=request.files)
    return Outcome(response.status_code, time.perf_counter() - started, resident_bytes() - before)


def check(request: FuzzRequest, outcome: Outcome) -> None:
    """No 5xx, within the time and memory budgets; AssertionError naming the request otherwise."""
    assert outcome.status < 500, f"{outcome.status} for {request.describe()}"
    assert outcome.seconds <= REQUEST_BUDGET_S, f"{outcome.seconds:.1f} s for {request.describe()}"
    assert outcome.memory_growth <= MEMORY_BUDGET_BYTES, (
        f"{outcome.memory_growth / 2**20:.0f} MiB more resident memory after {request.describe()}")
