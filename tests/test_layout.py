"""The architecture as imports: the service loads only the served core of ``model/``, the core
needs nothing else of ``model/``, and ``model/`` and ``bench/`` never import what they must not."""

from __future__ import annotations

import ast
from pathlib import Path

from model import SERVED_CORE

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Each Python file under ``folder`` -> the absolute module names it imports (at any depth)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "model"}
        found[str(path.relative_to(ROOT))] = names
    return found


def model_modules(names: set[str]) -> set[str]:
    """``model.x.y`` -> ``x`` for every import of ``model`` (the package itself is not a module here)."""
    return {name.split(".")[1] for name in names if name.startswith("model.")}


def test_the_service_imports_only_the_served_core():
    reached = {path: model_modules(names) - set(SERVED_CORE) for path, names in imported_modules("service").items()}
    assert {path: sorted(extra) for path, extra in reached.items() if extra} == {}


def test_the_served_core_imports_nothing_else_of_model():
    core = {path: names for path, names in imported_modules("model").items()
            if Path(path).parent.name == "model" and Path(path).stem in SERVED_CORE}
    assert len(core) == len(SERVED_CORE)
    assert {path: sorted(model_modules(names) - set(SERVED_CORE)) for path, names in core.items()
            if model_modules(names) - set(SERVED_CORE)} == {}


# what each folder must never import: the model knows no service, benchmark, tool or demo; nothing but the
# tests imports the tests; the service imports none of the folders that drive it
NEVER_IMPORTS = {
    "model": ("service", "harness", "bench", "tools", "examples", "tests"),
    "service": ("harness", "bench", "tools", "examples", "tests"),
    "harness": ("bench", "tools", "examples", "tests"),
    "bench": ("tools", "examples", "tests"),
    "tools": ("bench", "examples", "tests"),
    "examples": ("bench", "tools", "tests"),
}


def test_no_folder_imports_what_it_must_not():
    offenders = {(path, forbidden) for folder, forbidden_all in NEVER_IMPORTS.items()
                 for path, names in imported_modules(folder).items() for forbidden in forbidden_all
                 if any(name == forbidden or name.startswith(forbidden + ".") for name in names)}
    assert offenders == set()


def test_no_function_is_longer_than_a_screen():
    too_long = {}
    for folder in ("model", "service", "bench", "harness", "tools", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > 50:
                        too_long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = lines
    assert too_long == {}


def module_graph(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """Each module under ``folders`` (dotted name) -> the modules of those folders it imports, at any
    depth (a deferred import inside a function still ties two files together)."""
    paths = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
             for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {target for target in targets if target in paths and target != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles of ``graph`` (strongly connected components of more than one module), Tarjan's."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_a_circle_and_passes_a_line():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_in_model_or_service():
    graph = module_graph(("model", "service"))
    assert "model.synth.canvas" in graph["model.synth.sketches"]  # the graph sees real imports
    assert import_cycles(graph) == []


# The service's floors, lowest first: a module imports only its own floor and those below (and, on its
# floor, no circle: the test above). A room is a folder of service/; the top level's modules sit by name.
SERVICE_FLOORS = (
    {"errors", "schemas", "background", "inference"},  # what every answer is made of
    {"review"},  # the review queue: what it counts is named by its own protocol (QueueMetrics)
    {"settings", "metrics", "lifecycle", "edge"},  # configuration, counters, the models held, the HTTP edge
    {"pipeline", "oip", "deps", "error_handlers"},  # uploads -> answers; what routes depend on
    {"routes"},  # the HTTP routes
    {"app", "runtime", "workers", "__main__"},  # composition: the app, a worker's runtime, the processes
)


def service_room(module: str) -> str:
    """``service.inference.batcher`` -> ``inference``; ``service.app`` -> ``app``."""
    return module.split(".")[1]


def floor_of(room: str) -> int:
    return next(index for index, rooms in enumerate(SERVICE_FLOORS) if room in rooms)


def test_every_room_of_the_service_has_a_floor():
    rooms = {path.stem if path.is_file() else path.name for path in (ROOT / "service").iterdir()
             if (path.suffix == ".py" and path.stem != "__init__")
             or (path.is_dir() and (path / "__init__.py").exists())}
    assert rooms == set().union(*SERVICE_FLOORS)


def test_no_import_runs_up_a_floor_of_the_service():
    upward = {}
    for path, names in imported_modules("service").items():
        parts = Path(path).with_suffix("").parts
        if parts[1] == "__init__":
            continue
        here = floor_of(parts[1])
        above = sorted(name for name in names if name.startswith("service.") and floor_of(service_room(name)) > here)
        if above:
            upward[path] = above
    assert upward == {}
