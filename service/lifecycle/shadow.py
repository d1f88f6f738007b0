"""The shadow: a candidate answering a sample of live traffic off the response path.

After the live model has answered (the client's answer is final), a fraction
(``BNN_SHADOW_FRACTION``) of the answered images, and every audited one, is offered here with the
live answer (an audit's shadow answer is stored with its review item, so that its label judges
both models: ``ReviewStore.shadow_on_audits``); the
network's own ``[28, 28]`` input is kept, so the shadow sees exactly what the live model saw.
A task of the worker's event loop gathers what has been offered into batches (``BATCH`` images,
or what came within ``GATHER_S``) and runs the shadow on each in one pass; nothing it does
reaches a client.
What it compares, by version pair: class agreement, refer agreement, both models' refer rates
and reasons (``bnn_shadow_*`` metrics, and tallies in ``GET /admin/models``). When more than
``MAX_WAITING`` images wait (the worker cannot keep up), further offers are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model.calibration import Channel
from service.background import cancel
from service.inference.predictor import Prediction
from service.lifecycle.held import HeldModel
from service.metrics import Metrics

log = logging.getLogger("service")
MAX_WAITING = 1024
# the shadow's images wait to be answered BATCH at a time (at most GATHER_S): one image costs 2.17 ms
# alone and 0.81 ms in a pass of 32 (N = 100, one thread, measured here); nobody waits for these
BATCH = 32
GATHER_S = 1.0


def reason_of(prediction: Prediction) -> str:
    return prediction.refer_reason or "accepted"


@dataclass
class Shadow:
    fraction: float
    metrics: Metrics
    attach: Callable[[str, dict[str, Any]], None] | None = None  # store its answer to a review item (the queue's)
    rng: random.Random = field(default_factory=random.Random)
    _waiting: deque[tuple[Prediction, str | None, HeldModel]] = field(
        default_factory=lambda: deque(maxlen=MAX_WAITING))
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    tallies: Counter[str] = field(default_factory=Counter)
    tallied_version: str | None = None

    def offer(self, answered: list[tuple[Prediction, str | None]], shadow: HeldModel | None) -> None:
        """Called after the live answers are final, with each answer's review id when it is an audit
        (audits are always shadowed: their labels compare the two models); cheap (a random draw each).
        ``shadow``: the shadow held now (None: off)."""
        if shadow is None:
            return
        for prediction, audit_id in answered:
            if prediction.seen is None or (audit_id is None and self.rng.random() >= self.fraction):
                continue
            if len(self._waiting) == MAX_WAITING:
                self.metrics.shadow_dropped.inc()
                self.tallies["dropped"] += 1
                continue
            self._waiting.append((prediction, audit_id, shadow))
        if self._waiting:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shadow")

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            deadline = loop.time() + GATHER_S
            while len(self._waiting) < BATCH and loop.time() < deadline:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
            self._wake.clear()
            while self._waiting:
                batch = [self._waiting.popleft() for _ in range(min(BATCH, len(self._waiting)))]
                try:
                    self._compare(batch)
                except Exception:  # a shadow's failure is the shadow's: log it, never reach a client
                    log.exception("shadow pass")
                await asyncio.sleep(0)  # let requests in between batches

    def _compare(self, batch: list[tuple[Prediction, str | None, HeldModel]]) -> None:
        by_shadow: dict[tuple[str, Channel], list[tuple[Prediction, str | None, HeldModel]]] = {}
        for entry in batch:  # each channel's answers judged by the shadow's rule for that channel
            by_shadow.setdefault((entry[2].digest, entry[0].channel), []).append(entry)
        for (_, channel), group in by_shadow.items():
            shadow = group[0][2]
            answers = shadow.predictor.predict([live.seen for live, _, _ in group if live.seen is not None],
                                               channel=channel)
            for (live, audit_id, _), answer in zip(group, answers, strict=True):
                self._count(live, answer)
                if audit_id is not None and self.attach is not None:
                    self.attach(audit_id, {"model_version": answer.model_version, "class": answer.digit,
                                           "refer": answer.refer, "refer_reason": answer.refer_reason})

    def _count(self, live: Prediction, shadow: Prediction) -> None:
        if self.tallied_version != shadow.model_version:
            self.tallies.clear()
            self.tallied_version = shadow.model_version
        class_agree, refer_agree = live.digit == shadow.digit, live.refer == shadow.refer
        self.metrics.record_shadow(live.model_version, shadow.model_version, class_agree, refer_agree,
                                   reason_of(live), reason_of(shadow))
        self.tallies["compared"] += 1
        self.tallies["class_agree"] += class_agree
        if not live.refer:  # the kinds of input the live model already reads: a candidate must keep them
            self.tallies["live_accepted_class_agree"] += class_agree
        self.tallies["refer_agree"] += refer_agree
        self.tallies[f"live_{reason_of(live)}"] += 1
        self.tallies[f"shadow_{reason_of(shadow)}"] += 1

    def summary(self) -> dict[str, Any]:
        """This worker's tallies for the shadow in place (``GET /admin/models`` adds up the workers')."""
        return {"shadow_version": self.tallied_version, **self.tallies}
