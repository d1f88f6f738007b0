"""Podman for the container check (``tests/test_container.py``): the engine's configuration for a
sandboxed machine, base images made from Debian packages, and the image build.

No Docker engine and no Docker Hub here: Debian's ``podman`` runs the containers, with a
``containers.conf`` (``CONTAINERS_CONF``) for a VM without systemd (``runc``, ``cgroupfs``, file
events, ulimits at the VM's hard limits). The Dockerfile's base image is stood in for by one
bootstrapped from Debian's packages (``mmdebstrap``: bookworm's python3.11, as the official
``python:3.11-slim``), and Prometheus' image by one with Debian's ``prometheus`` package; both are
built once and kept by tag. The build gets this machine's pip configuration (its wheel folder,
local indexes, constraints and CA bundle) mounted read-only, never copied into the image.

Missing tools skip the check, unless ``BNN_REQUIRE_PODMAN=1`` (``.ci/run`` sets it after
installing them): then they fail it.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.server import ROOT

REQUIRED = os.environ.get("BNN_REQUIRE_PODMAN") == "1"
TOOLS = ("podman", "mmdebstrap", "podman-compose")
SUITE = "bookworm"
BASE = "localhost/bnn-base-python:bookworm"  # stands in for python:3.11-slim
PROMETHEUS = "localhost/bnn-prometheus:bookworm"  # stands in for prom/prometheus
IMAGE = "localhost/bnn-digits:check"
BASE_PACKAGES = "python3,python3-venv,python-is-python3,ca-certificates,passwd"
PROMETHEUS_PACKAGES = "prometheus,ca-certificates"


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (apt-get install podman buildah runc mmdebstrap podman-compose)"
        if REQUIRED:
            pytest.fail(message + " but BNN_REQUIRE_PODMAN=1")
        pytest.skip(message)


def containers_conf(directory: Path) -> Path:
    """The engine's settings for this VM; ulimits within its hard limits (podman's defaults are higher;
    a build step starts with at most 32,768 processes here, and may not raise that)."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    processes = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32_768)
    path = directory / "containers.conf"
    path.write_text(f"""[containers]
default_ulimits = ["nofile={files}:{files}", "nproc={processes}:{processes}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
""")
    return path


def environment(conf: Path) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def run(command: list[str], env: dict[str, str], timeout: float = 600, check: bool = True,
        cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command[:4])} ... exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


def image_exists(name: str, env: dict[str, str]) -> bool:
    return run(["podman", "image", "exists", name], env, check=False).returncode == 0


def debian_image(name: str, packages: str, changes: list[str], env: dict[str, str]) -> None:
    """A minimal Debian image with ``packages``, made once: mmdebstrap to a tarball, podman import."""
    if image_exists(name, env):
        return
    with tempfile.TemporaryDirectory(prefix="bnn-rootfs-") as scratch:
        tarball = Path(scratch) / "root.tar"
        run(["mmdebstrap", "--variant=minbase", f"--include={packages}", "--quiet", SUITE, str(tarball)], env,
            timeout=900)
        run(["podman", "import", *(part for change in changes for part in ("--change", change)), str(tarball), name],
            env, timeout=600)


def base_images(env: dict[str, str]) -> None:
    debian_image(BASE, BASE_PACKAGES, ['CMD ["python3"]'], env)
    debian_image(PROMETHEUS, PROMETHEUS_PACKAGES,
                 ['ENTRYPOINT ["/usr/bin/prometheus"]', "WORKDIR /prometheus", "EXPOSE 9090"], env)


def pip_configuration(directory: Path) -> list[str]:
    """``podman build -v`` arguments that give the build this machine's pip configuration: one
    generated pip.conf with every setting pip reports (files and environment), and each local path
    it names (wheel folders, file:// indexes, the constraints file, the CA bundle), all read-only."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=False).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        match = re.match(r"^[\w:.-]*?\.?([\w-]+)='(.*)'$", line.strip())
        if match and match.group(1) not in ("disable-pip-version-check",):
            settings[match.group(1)] = match.group(2)
    paths: set[str] = set()
    for value in settings.values():
        for part in value.split():
            local = part.removeprefix("file://")
            if part.startswith("file://") and local.rstrip("/").endswith("/simple"):
                local = str(Path(local).parent)  # a local index: its pages link to files beside 'simple'
            if local.startswith("/") and Path(local).exists():
                paths.add(str(Path(local).resolve()) if Path(local).is_symlink() else local)
    conf = directory / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{key} = {value}\n" for key, value in sorted(settings.items())))
    mounts = ["-v", f"{conf}:/etc/pip.conf:ro"]
    for path in sorted(paths):
        mounts += ["-v", f"{path}:{path}:ro"]
    return mounts


def build_image(env: dict[str, str], directory: Path) -> None:
    """The repository's Dockerfile, as a user behind a package mirror builds it (README "Docker")."""
    run(["podman", "build", "--format", "docker", "--pull=never", "--isolation=chroot", "--network=host",
         "--build-arg", f"BASE_IMAGE={BASE}", "--build-arg", "TORCH_INDEX_URL=", *pip_configuration(directory),
         "-t", IMAGE, "."], env, timeout=1500)
