"""The files through which every worker of one service agrees on a model change (``control.py`` runs it).

Every worker shares ``BNN_CONTROL_DIR``. In it:

* ``state.json``: the committed models by role (``live``, ``previous``, ``shadow``), each a path
  and the sha256 the workers verified, and its ``generation`` (none yet: generation 0, the
  checkpoint in ``BNN_MODEL_PATH``);
* ``proposal.json``: the change under way (generation, action, the roles it would commit, status
  ``pending``, ``committed`` or ``aborted``);
* ``workers/<pid>.json``: what each worker holds and serves, and its vote on the proposal (a file
  not rewritten for ``STALE_S``, or whose process is gone, is a dead worker's and is removed);
* ``lock``: held (``flock``) by the one worker coordinating a change.

A file is replaced whole (``write_json``: readers see the old one or the new one, never half), and
a worker notices a change by the file's modification time and inode (:class:`Changes`), so that
polling costs a ``stat``, not a read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ModelChangeConflict, ModelChangeRefused
from service.lifecycle.checks import CandidateRefused
from service.lifecycle.held import HeldModel, ModelSet

STALE_S = 30.0  # a worker file not rewritten for this long is a dead worker's (its pid may be reused)
ROLES = ("live", "previous", "shadow")
ACTIONS = ("promote", "rollback", "shadow", "unshadow")
Roles = dict[str, str | None]  # role -> checkpoint path (None: the role is empty)


def write_json(path: Path, document: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(document))
    os.replace(partial, path)  # readers see the old file or the new one, never half


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


def worker_files(workers_dir: Path) -> list[dict[str, Any]]:
    """Every live worker's file (a dead worker's is removed)."""
    found = []
    for path in sorted(workers_dir.glob("*.json")):
        document = read_json(path)
        if document is None:
            continue
        if not alive(int(document.get("pid", 0))) or time.time() - float(document.get("updated", 0)) > STALE_S:
            path.unlink(missing_ok=True)
            continue
        found.append(document)
    return found


@dataclass
class Changes:
    """Which files changed since this worker last looked (by modification time and inode)."""

    _seen: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def changed(self, path: Path) -> bool:
        """Whether ``path`` exists and differs from when this was last asked (the first time: it exists)."""
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return False
        stamp = (info.st_mtime_ns, info.st_ino)
        if self._seen.get(path) == stamp:
            return False
        self._seen[path] = stamp
        return True


@contextlib.contextmanager
def change_lock(directory: Path) -> Iterator[None]:
    """The coordinator's lock for one change; ModelChangeConflict at once when another worker holds it."""
    handle = open(directory / "lock", "a+")  # noqa: SIM115 -- held for the whole change
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ModelChangeConflict("another model change is in progress; retry when it ends") from None
        yield
    finally:
        handle.close()  # releases the lock


def by_role(models: ModelSet) -> dict[str, HeldModel | None]:
    return dict(zip(ROLES, (models.live, models.previous, models.shadow), strict=True))


def proposed_roles(action: str, current: Roles, path: str | None) -> Roles:
    """The roles ``action`` commits from ``current``, or ModelChangeConflict when it cannot apply."""
    live, previous, shadow = current["live"], current["previous"], current["shadow"]
    if action == "promote":
        target = path or shadow
        if target is None:
            raise ModelChangeConflict("nothing to promote: give a checkpoint path, or load a shadow first")
        if target == live:
            raise ModelChangeConflict(f"{target} is live already")
        return {"live": target, "previous": live, "shadow": None if target == shadow else shadow}
    if action == "rollback":
        if previous is None:
            raise ModelChangeConflict("nothing to roll back to: no model was live before this one")
        return {"live": previous, "previous": live, "shadow": shadow}
    if action == "shadow":
        if path is None:
            raise ModelChangeConflict("a shadow needs a checkpoint path")
        return {"live": live, "previous": previous, "shadow": path}
    if action == "unshadow":
        return {"live": live, "previous": previous, "shadow": None}
    raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")


def approval(proposal: dict[str, Any], models: ModelSet) -> dict[str, Any]:
    """This worker's vote for ``proposal``: the sha256 of each model it loaded and verified for it."""
    return {"proposal": proposal["id"], "generation": int(proposal["generation"]), "ok": True,
            "sha256": {role: None if held is None else held.digest for role, held in by_role(models).items()}}


def refusal(proposal: dict[str, Any], error: BaseException, timeout_s: float) -> dict[str, Any]:
    """This worker's vote against ``proposal``: the check that failed (``timeout``, after ``timeout_s``;
    ``crash`` for any other exception), the rule for a refused path, and why."""
    if isinstance(error, CandidateRefused):
        check, rule, reason = error.check, error.rule, error.reason
    elif isinstance(error, TimeoutError):
        check, rule, reason = "timeout", None, f"the checks took over {timeout_s:.0f} s"
    else:
        check, rule, reason = "crash", None, f"the checks failed: {type(error).__name__}: {error}"
    return {"proposal": proposal["id"], "generation": int(proposal["generation"]), "ok": False, "check": check,
            "rule": rule, "reason": reason}


def agreed(workers: list[dict[str, Any]], votes: list[dict[str, Any]]) -> None:
    """Nothing when every vote (``votes[k]``, of ``workers[k]``) is for the proposal with the same sha256
    of each model; ModelChangeRefused naming the first refusal, or the workers' differing reads."""
    refused = [vote for vote in votes if not vote.get("ok")]
    if refused:
        raise ModelChangeRefused(refused[0]["check"], refused[0]["reason"],
                                 [{"pid": w["pid"], "check": v.get("check"), "rule": v.get("rule"),
                                   "reason": v.get("reason")} for w, v in zip(workers, votes, strict=True)])
    if len({json.dumps(vote["sha256"], sort_keys=True) for vote in votes}) > 1:
        raise ModelChangeRefused("file", "the workers read different files at the same path (it changed while "
                                         "they loaded it); nothing was changed",
                                 [{"pid": w["pid"], "sha256": v["sha256"]}
                                  for w, v in zip(workers, votes, strict=True)])
