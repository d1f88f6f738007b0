"""Every module that is a command (``python -m X``: a ``main`` and a ``__main__`` guard, or a package's
``__main__.py``) answers ``--help`` and does nothing else: exit 0, its usage printed, no file written, no
server started. The pipeline's and the service's commands do so in the serving environment too
(``make serve`` installs only requirements.txt): nothing of requirements-dev.txt is imported for ``--help``."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("model", "service", "bench", "tools", "examples", "harness")
SERVING = ("model", "service")  # their commands answer --help with the runtime's requirements alone


def command_modules() -> list[str]:
    """Every command module under FOLDERS (a package's as its ``__main__``)."""
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            guarded = any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)
            if path.name == "__main__.py" or guarded:
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def dev_only_imports() -> set[str]:
    """The top-level import names of what requirements-dev.txt adds to requirements.txt."""
    from importlib.metadata import packages_distributions

    def names(file: str) -> set[str]:
        lines = (ROOT / file).read_text().splitlines()
        return {re.split(r"[=<>\[ ]", line.strip())[0].lower().replace("_", "-") for line in lines
                if line.strip() and not line.startswith(("#", "-r"))}

    dev = names("requirements-dev.txt") - names("requirements.txt")
    return {module for module, dists in packages_distributions().items()
            if any(dist.lower().replace("_", "-") in dev for dist in dists) and not module.startswith("_")}


# Run in a fresh interpreter: each command's main(["--help"]), its output and exit status, as JSON.
PROBE = r"""
import contextlib, importlib, io, json, sys
blocked = set(json.loads(sys.argv[1]))

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is not in the serving environment")
        return None

results = {}
for module in json.loads(sys.argv[2]):
    serving = module.split(".")[0] in ("model", "service")
    if serving:
        sys.meta_path.insert(0, Block())
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                importlib.import_module(module).main(["--help"])
                code = "returned"
            except SystemExit as exit_:
                code = exit_.code
    except Exception as error:
        code = f"{type(error).__name__}: {error}"
    finally:
        if serving:
            sys.meta_path.pop(0)
    results[module] = {"code": code, "out": out.getvalue()}
print(json.dumps(results))
"""


def test_the_commands_are_found():
    assert {"service.__main__", "model.train", "model.calibrate", "model.evaluate", "model.promote", "model.learn",
            "model.migrate_records", "service.lifecycle.admin", "tools.fuzz", "tools.drawn_digits", "examples.flywheel",
            "bench.hostile"} <= set(command_modules())


def test_every_command_answers_help_and_does_nothing_else(tmp_path):
    modules = command_modules()
    blocked = sorted(dev_only_imports())
    assert {"tqdm", "scipy", "matplotlib", "httpx", "playwright"} <= set(blocked)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(blocked), json.dumps(modules)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    failed = {module: (result["code"], result["out"][-300:]) for module, result in results.items()
              if result["code"] != 0 or f"python -m {module.removesuffix('.__main__')}" not in result["out"]}
    assert failed == {}
    assert "BNN_MAX_REQUEST_DECODE_BYTES (default: 536870912)" in results["service.__main__"]["out"]  # the settings
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing written where it ran
