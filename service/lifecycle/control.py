"""One model change for every worker, or for none: a two-phase change through a shared directory.

Every worker of one service shares ``BNN_CONTROL_DIR`` (``python -m service`` makes a fresh one
unless it is set; an app built in process makes its own): the committed state, the proposal under
way, one file per worker with its vote, and the coordinator's lock (``proposals.py``: the files
and what each holds). This module is what each worker does with them.

The worker that receives an admin call coordinates (:meth:`ModelControl.change`): it refuses a
path outside the models directory at once (``service/lifecycle/checks.py``'s ``path`` check, a 4xx naming the
rule), takes the lock, writes the proposal, and waits until every worker registered at that moment
(the voters) has voted. Each worker, in its own poll task, loads and verifies every model the
proposal names that it does not hold yet (``service/lifecycle/checks.py``: in a thread of its own, so it keeps
serving) and votes with the sha256 it read, or with the check that failed. A check that raises
anything votes ``crash``; one that takes over ``CHECK_TIMEOUT_S`` votes ``timeout`` (its thread is
abandoned, the poll task goes on, so the next change still reaches the worker). Any refusal,
disagreeing sha256, silent worker, or voter that stops while it checks (the candidate may have
crashed it) aborts the change: nothing is swapped anywhere. A worker started after the proposal
(the supervisor's replacement for one that died) never checks it: it loads what is committed, so
a candidate that kills its checker cannot put the workers in a restart loop. Otherwise the
coordinator commits ``state.json`` and each worker swaps its prepared models in between two passes
(``service/pipeline.py``), then reports its generation; the call returns when every worker serves
the new generation. A worker that starts later (a restart) loads the committed state before it
serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from service.background import cancel
from service.errors import ModelChangeRefused, ModelChangeTimeout
from service.lifecycle.checks import CandidateRefused, checkpoint_digest, confined, load_verified, size_cap
from service.lifecycle.held import HeldModel, ModelSet
from service.lifecycle.proposals import (
    ROLES,
    Changes,
    Roles,
    agreed,
    approval,
    by_role,
    change_lock,
    proposed_roles,
    read_json,
    refusal,
    worker_files,
    write_json,
)
from service.settings import Settings

log = logging.getLogger("service")
POLL_S = 0.05  # how often each worker looks for a proposal or a commit
HEARTBEAT_S = 1.0  # how often it rewrites its file with its shadow's tallies
CHECK_TIMEOUT_S = 20.0  # one worker's checks of a proposal; under proposals.STALE_S (no heartbeat meanwhile)
VOTE_TIMEOUT_S = 60.0  # every worker must have loaded and verified the candidate within this
APPLY_TIMEOUT_S = 10.0  # ... and swapped it in within this of the commit
T = TypeVar("T")


async def in_own_thread(function: Callable[[], T], timeout_s: float) -> T:
    """``function()`` in a daemon thread of its own; TimeoutError after ``timeout_s``, the thread left
    to finish (or not) unwatched: a hung check must hold neither the poll task nor a shared pool."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], object]) -> None:
        if not future.done():  # not timed out meanwhile
            outcome()

    def run() -> None:
        outcome: Callable[[], object]
        try:
            outcome = functools.partial(future.set_result, function())
        except BaseException as error:  # handed to the waiting task, whatever it is
            outcome = functools.partial(future.set_exception, error)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name="candidate-check", daemon=True).start()
    return await asyncio.wait_for(future, timeout_s)


@dataclass
class Prepared:
    generation: int
    models: ModelSet | None  # None: this worker refused the proposal


@dataclass
class ModelControl:
    """One worker's side of the protocol (its poll task), and the coordinator of changes it receives."""

    directory: Path
    settings: Settings
    current: Callable[[], ModelSet]  # what this worker serves now
    swap: Callable[[ModelSet], None]  # serve these from the next pass on
    shadow_tallies: Callable[[], dict[str, Any]] = dict
    pid: int = field(default_factory=os.getpid)
    generation: int = 0
    started: float = 0.0  # Unix time: a proposal older than this was voted without this worker
    _prepared: Prepared | None = None
    _voted: dict[str, Any] | None = None
    _task: asyncio.Task[None] | None = None
    _changes: Changes = field(default_factory=Changes)

    # -- files ------------------------------------------------------------------------------------
    @property
    def workers_dir(self) -> Path:
        return self.directory / "workers"

    def state(self) -> dict[str, Any]:
        """The committed state; generation 0 (what BNN_MODEL_PATH loaded) until a first change."""
        committed = read_json(self.directory / "state.json")
        if committed is not None:
            return committed
        return {"generation": 0, "roles": {role: None if held is None else {"path": str(held.path),
                                                                           "sha256": held.digest}
                                           for role, held in by_role(self.current()).items()}}

    def worker_files(self) -> list[dict[str, Any]]:
        """Every live worker's file (a dead worker's is removed)."""
        return worker_files(self.workers_dir)

    def _publish(self) -> None:
        write_json(self.workers_dir / f"{self.pid}.json", {
            "pid": self.pid, "generation": self.generation, "updated": time.time(), "vote": self._voted,
            **{role: None if held is None else held.version for role, held in by_role(self.current()).items()},
            "shadow_tallies": self.shadow_tallies(),
        })

    # -- this worker ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Serve the committed state (a worker started after a change), register, and poll."""
        self.started = time.time()
        self.workers_dir.mkdir(parents=True, exist_ok=True)
        committed = read_json(self.directory / "state.json")
        if committed is not None:
            models = await asyncio.to_thread(self._load_roles, committed["roles"])
            self.swap(models)
            self.generation = int(committed["generation"])
            log.info("serving the committed models of generation %d: live %s", self.generation, models.live.version)
        self._publish()
        self._task = asyncio.get_running_loop().create_task(self._poll(), name="model-control")

    async def stop(self) -> None:
        await cancel(self._task)
        (self.workers_dir / f"{self.pid}.json").unlink(missing_ok=True)

    async def _poll(self) -> None:
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(POLL_S)
            try:
                if self._changes.changed(self.directory / "proposal.json"):
                    await self._consider(read_json(self.directory / "proposal.json"))
                if self._changes.changed(self.directory / "state.json"):
                    await self._apply(read_json(self.directory / "state.json"))
                if time.monotonic() - last_beat >= HEARTBEAT_S:
                    self._publish()
                    last_beat = time.monotonic()
            except Exception:  # never let the poll task die: the next change must still reach this worker
                log.exception("model control")

    def _load_roles(self, roles: dict[str, Any]) -> ModelSet:
        """The models ``roles`` names: each held one reused (same sha256), the others loaded and verified."""
        models = self.current()
        precision = models.live.predictor.precision.precision
        loaded: dict[str, HeldModel | None] = {}
        for role in ROLES:
            entry = roles.get(role)
            if entry is None:
                loaded[role] = None
                continue
            path = confined(entry["path"], self.settings)
            digest = checkpoint_digest(path, size_cap(path, self.settings))
            if entry.get("sha256") not in (None, digest):
                raise CandidateRefused("file", f"{path}: changed on disk since the other workers verified it")
            loaded[role] = models.find(digest) or load_verified(path, precision, self.settings)
        live = loaded["live"]
        assert live is not None
        return ModelSet(live, loaded["previous"], loaded["shadow"])

    async def _consider(self, proposal: dict[str, Any] | None) -> None:
        if proposal is None or proposal.get("status") != "pending" or proposal["generation"] <= self.generation:
            if proposal is not None and proposal.get("status") == "aborted":
                self._prepared = None
            return
        if float(proposal.get("created", 0.0)) < self.started:
            return  # made before this worker started (it may replace one this check killed): not a voter
        generation = int(proposal["generation"])
        roles = {role: None if path is None else {"path": path} for role, path in proposal["roles"].items()}
        try:
            models = await in_own_thread(lambda: self._load_roles(roles), CHECK_TIMEOUT_S)
        except Exception as error:  # any failure is this worker's vote against: never a silent worker
            if not isinstance(error, CandidateRefused):
                log.exception("candidate check of proposal %s", proposal["id"])
            self._prepared = Prepared(generation, None)
            self._voted = refusal(proposal, error, CHECK_TIMEOUT_S)
        else:
            self._prepared = Prepared(generation, models)
            self._voted = approval(proposal, models)
        self._publish()

    async def _apply(self, committed: dict[str, Any] | None) -> None:
        if committed is None or int(committed["generation"]) <= self.generation:
            return
        generation = int(committed["generation"])
        prepared = self._prepared
        if prepared is not None and prepared.generation == generation and prepared.models is not None:
            models = prepared.models
        else:  # started, or restarted, while the change was voted: load what was committed
            models = await asyncio.to_thread(self._load_roles, committed["roles"])
        self.swap(models)
        self.generation, self._prepared = generation, None
        self._publish()
        log.info("generation %d: live %s, previous %s, shadow %s", generation, models.live.version,
                 models.previous.version if models.previous else None, models.shadow.version if models.shadow else None)

    # -- the coordinator --------------------------------------------------------------------------
    async def change(self, action: str, path: str | None = None) -> dict[str, Any]:
        """Make ``action`` on every worker or on none; what every worker serves after it.
        ModelChangeConflict, ModelChangeRefused or ModelChangeTimeout otherwise."""
        with change_lock(self.directory):
            started = time.monotonic()
            state = self.state()
            current: Roles = {role: None if entry is None else entry["path"] for role, entry in state["roles"].items()}
            if path is not None:
                path = str(confined(path, self.settings))  # CandidateRefused("path"): nothing proposed
            roles = proposed_roles(action, current, path)
            generation = int(state["generation"]) + 1
            proposal_id = uuid.uuid4().hex
            voters = [int(worker["pid"]) for worker in self.worker_files()]
            proposal: dict[str, Any] = {"id": proposal_id, "generation": generation, "action": action, "roles": roles,
                        "status": "pending", "created": time.time()}
            write_json(self.directory / "proposal.json", proposal)
            try:
                votes = await self._votes(proposal_id, voters)
            except BaseException:
                write_json(self.directory / "proposal.json", {**proposal, "status": "aborted"})
                raise
            write_json(self.directory / "state.json", {"generation": generation, "roles": {
                role: None if target is None else {"path": target, "sha256": votes[0]["sha256"][role]}
                for role, target in roles.items()}})
            write_json(self.directory / "proposal.json", {**proposal, "status": "committed"})
            workers = await self._applied(generation)
            return {"action": action, "generation": generation, "elapsed_s": round(time.monotonic() - started, 3),
                    "live": workers[0]["live"], "workers": workers}

    async def _votes(self, proposal: str, voters: list[int]) -> list[dict[str, Any]]:
        """The vote of every worker in ``voters`` on ``proposal`` (its id), once all have voted; refusals,
        disagreements and a voter that stopped meanwhile raise."""
        deadline = time.monotonic() + VOTE_TIMEOUT_S
        while True:
            found = {int(worker["pid"]): worker for worker in self.worker_files()}
            gone = [pid for pid in voters if pid not in found]
            if gone:
                raise ModelChangeRefused("crash", f"worker(s) {gone} stopped while checking the candidate (it may "
                                                  "have crashed them); nothing was changed",
                                         [{"pid": pid, "check": "crash"} for pid in gone])
            workers = [found[pid] for pid in voters]
            votes = [w.get("vote") or {} for w in workers]
            if workers and all(vote.get("proposal") == proposal for vote in votes):
                break
            if time.monotonic() > deadline:
                silent = [w["pid"] for w, vote in zip(workers, votes, strict=True) if vote.get("proposal") != proposal]
                raise ModelChangeTimeout(f"worker(s) {silent} did not verify the candidate within "
                                         f"{VOTE_TIMEOUT_S:.0f} s; nothing was changed", workers)
            await asyncio.sleep(POLL_S)
        agreed(workers, votes)
        return votes

    async def _applied(self, generation: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + APPLY_TIMEOUT_S
        while True:
            workers = self.worker_files()
            if all(int(w["generation"]) >= generation for w in workers):
                return workers
            if time.monotonic() > deadline:
                raise ModelChangeTimeout(f"committed, but not every worker serves generation {generation} after "
                                         f"{APPLY_TIMEOUT_S:.0f} s (see workers)", workers)
            await asyncio.sleep(POLL_S)

