"""The review store: every SQL statement of the review queue, over SQLAlchemy Core (async).

One interface for SQLite (the default: one file in a data directory) and PostgreSQL (several
workers or pods): ``add`` (a batch of new items), ``claim`` (the next item for a reviewer, held
for a lease), ``label``, ``skip``, ``stats``, ``export_page`` and ``enforce_retention`` (unlabelled
items first; a labelled one only into an export).

Claims: one ``UPDATE ... WHERE id = (SELECT id ... LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING``,
so that two reviewers (in two workers or pods) never get the same item: PostgreSQL skips the row
another transaction holds; SQLite runs every transaction under its one write lock (``BEGIN
IMMEDIATE``: ``schema.py``). An item is free when unlabelled and unclaimed or its lease has
passed: a reviewer who vanishes mid-item gives it back when the lease ends.

Order: each claim first draws which kind of item to give, an audit with probability equal to the
audits' share of the waiting items (so audits are interleaved at their share, and the live error
estimate keeps up with the traffic), else a referred one; referred items go most doubtful first
(highest entropy), audits oldest first; items someone skipped wait behind the others.

What the rows are outside the store (``NewItem``, ``Item``, the export record) is ``rows.py``; what
retention keeps, ``retention_policy.py``: this module holds the statements, and only them.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, case, delete, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from service.errors import ItemConflict, ItemNotFound
from service.review.live import LABELS, REASONS, AcceptedError, ShadowOnAudits, accepted_strata
from service.review.retention_policy import CAUSES, RetentionPolicy
from service.review.rows import InvalidItem, Item, NewItem, export_record, row_problem
from service.review.schema import engine_for, images, items, migrate
from service.review.stats import Stats, tally

SECONDS_PER_DAY = 86_400.0
ID_CHUNK = 10_000  # ids in one IN (...): asyncpg and SQLite take at most 32,767 parameters in a statement

ITEM_COLUMNS = (items.c.id, items.c.reason, items.c.refer_reason, items.c.predicted, items.c.entropy, items.c.answer,
                items.c.model_version, items.c.created, items.c.has_file, items.c.skips,
                items.c.claimed_by, items.c.lease_expires, items.c.label, items.c.labelled_by, items.c.labelled_at,
                items.c.refer, items.c.audit_fraction)
EXPORT_COLUMNS = (*(column for column in items.c if column.name != "has_file"), images.c.file, images.c.input)


def insert_new(dialect: str, table: Any) -> Any:
    """INSERT that skips rows whose id is already stored (both dialects' ON CONFLICT DO NOTHING)."""
    statement = postgresql_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    return statement.on_conflict_do_nothing(index_elements=["id"])


def _free(now: float) -> Any:
    return and_(items.c.label.is_(None), or_(items.c.lease_expires.is_(None), items.c.lease_expires <= now))


Exporter = Callable[[list[dict[str, Any]]], Awaitable[None]]


class ReviewStore:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time, rng: random.Random | None = None):
        self.engine = engine
        self.clock = clock
        self._rng = rng or random.Random()

    @classmethod
    def open(cls, url: str, clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> ReviewStore:
        """A store on ``url`` (``sqlite:///path`` or ``postgresql://...``); connects lazily."""
        return cls(engine_for(url), clock, rng)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def migrate(self) -> int:
        return await migrate(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def add(self, new: Sequence[NewItem]) -> None:
        """Insert a batch of items in one transaction; InvalidItem (nothing written) if one breaks
        ``row_problem``'s rules."""
        if not new:
            return
        for item in new:
            if (problem := row_problem(item)) is not None:
                raise InvalidItem(f"review item {item.id}: {problem}")
        async with self.engine.begin() as connection:
            # ids already there are skipped: a batch the writer retries after a commit whose answer was
            # lost (the store went down mid-write) must not fail forever on its own rows
            await connection.execute(insert_new(connection.dialect.name, items), [item.row() for item in new])
            await connection.execute(insert_new(connection.dialect.name, images), [item.picture() for item in new])

    async def attach_shadow(self, answers: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Store a shadow's answer beside each item's (an id no longer stored is left alone)."""
        if not answers:
            return
        statement = update(items).where(items.c.id == bindparam("item_id")).values(shadow=bindparam("shadow_answer"))
        async with self.engine.begin() as connection:
            await connection.execute(statement, [{"item_id": item_id, "shadow_answer": json.dumps(answer)}
                                                 for item_id, answer in answers])

    async def shadow_on_audits(self, shadow_version: str) -> ShadowOnAudits:
        """The live model's and ``shadow_version``'s accepted error on the labelled audits both answered."""
        async with self.engine.connect() as connection:
            rows = (await connection.execute(
                select(items.c.refer, items.c.predicted, items.c.label, items.c.audit_fraction, items.c.shadow)
                .where(items.c.reason == "audit", items.c.label.is_not(None), items.c.shadow.is_not(None),
                       items.c.audit_fraction.is_not(None)))).all()
        live, shadow = [], []
        for refer, predicted, label, fraction, answer in rows:
            theirs = json.loads(answer)
            if theirs.get("model_version") != shadow_version:
                continue
            live.append((bool(refer), predicted, label, fraction))
            shadow.append((bool(theirs["refer"]), int(theirs["class"]), label, fraction))
        errors = [AcceptedError.weighted(*accepted_strata(side)) for side in (live, shadow)]
        return ShadowOnAudits(shadow_version, len(live), errors[0], errors[1])

    async def claim(self, reviewer: str, lease_s: float) -> Item | None:
        """The next item for ``reviewer``, held until now + ``lease_s``; None when nothing waits."""
        now = self.clock()
        async with self.engine.begin() as connection:
            # the share of audits among the unlabelled (claimed ones included: few, and counting them
            # keeps this an index-only count)
            waiting: dict[str, int] = dict((await connection.execute(
                select(items.c.reason, func.count()).where(items.c.label.is_(None)).group_by(items.c.reason))).all())
            total = sum(waiting.values())
            if total == 0:
                return None
            first = "audit" if self._rng.random() < waiting.get("audit", 0) / total else "referred"
            for reason in (first, *(other for other in REASONS if other != first)):
                order = (items.c.skips, items.c.entropy.desc(), items.c.created) if reason == "referred" \
                    else (items.c.skips, items.c.created)
                chosen = (select(items.c.id).where(_free(now), items.c.reason == reason).order_by(*order).limit(1)
                          .with_for_update(skip_locked=True).scalar_subquery())
                row = (await connection.execute(
                    update(items).where(items.c.id == chosen, _free(now))
                    .values(claimed_by=reviewer, lease_expires=now + lease_s).returning(*ITEM_COLUMNS))).first()
                if row is not None:
                    return Item.from_row(row)
        return None

    async def item(self, item_id: str) -> Item:
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(*ITEM_COLUMNS).where(items.c.id == item_id))).first()
        if row is None:
            raise ItemNotFound(f"no review item {item_id}")
        return Item.from_row(row)

    async def images(self, item_id: str) -> tuple[bytes | None, bytes]:
        """The upload as sent (None for an array) and the 28 x 28 the network saw."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(images.c.file, images.c.input)
                                            .where(images.c.id == item_id))).first()
        if row is None:
            raise ItemNotFound(f"no review item {item_id}")
        return row.file, row.input

    async def _why_not(self, connection: Any, item_id: str) -> Exception:
        row = (await connection.execute(select(*ITEM_COLUMNS).where(items.c.id == item_id))).first()
        if row is None:
            return ItemNotFound(f"no review item {item_id}")
        if row.label is not None:
            return ItemConflict(f"already labelled {row.label!r} by {row.labelled_by}")
        return ItemConflict(f"claimed by {row.claimed_by} until {row.lease_expires:.0f} (Unix seconds)")

    def _mine_or_free(self, reviewer: str, now: float) -> Any:
        return and_(items.c.label.is_(None), or_(items.c.claimed_by.is_(None), items.c.claimed_by == reviewer,
                                                 items.c.lease_expires <= now))

    async def label(self, item_id: str, reviewer: str, label: str) -> Item:
        """Label an item that is free or held by ``reviewer``. Raises ItemNotFound, or ItemConflict
        when another reviewer holds it or it is labelled already."""
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}")
        now = self.clock()
        async with self.engine.begin() as connection:
            row = (await connection.execute(
                update(items).where(items.c.id == item_id, self._mine_or_free(reviewer, now))
                .values(label=label, labelled_by=reviewer, labelled_at=now, claimed_by=reviewer, lease_expires=None)
                .returning(*ITEM_COLUMNS))).first()
            if row is None:
                raise await self._why_not(connection, item_id)
        return Item.from_row(row)

    async def skip(self, item_id: str, reviewer: str) -> Item:
        """Give an item back unlabelled; it then waits behind the items nobody skipped."""
        now = self.clock()
        async with self.engine.begin() as connection:
            row = (await connection.execute(
                update(items).where(items.c.id == item_id, self._mine_or_free(reviewer, now))
                .values(claimed_by=None, lease_expires=None, skips=items.c.skips + 1).returning(*ITEM_COLUMNS))).first()
            if row is None:
                raise await self._why_not(connection, item_id)
        return Item.from_row(row)

    async def stats(self) -> Stats:
        """The queue's state and what its labels say (``stats.py``), from one snapshot."""
        now = self.clock()
        day_start = now - now % SECONDS_PER_DAY
        held = and_(items.c.label.is_(None), items.c.lease_expires > now).label("held")
        async with self.engine.connect() as connection:
            # every count from one statement, so one snapshot: separate queries could see a batch another
            # worker committed between them (stored_items 10 while waiting added up to 9)
            groups = (await connection.execute(
                select(items.c.reason, items.c.refer, items.c.audit_fraction, items.c.refer_reason, items.c.predicted,
                       items.c.label, items.c.channel, held, func.count(),
                       func.sum(items.c.file_bytes, type_=BigInteger))
                .group_by(items.c.reason, items.c.refer, items.c.audit_fraction, items.c.refer_reason,
                          items.c.predicted, items.c.label, items.c.channel, "held"))).all()
            today: dict[str, int] = dict((await connection.execute(
                select(items.c.labelled_by, func.count()).where(items.c.labelled_at >= day_start)
                .group_by(items.c.labelled_by))).all())
        return tally(groups, today, now)

    async def export_page(self, since: float, after: tuple[float, str] | None, limit: int) -> list[dict[str, Any]]:
        """Labelled items with ``labelled_at >= since``, in (labelled_at, id) order, after the key ``after``."""
        where = [items.c.label.is_not(None), items.c.labelled_at >= since]
        if after is not None:
            where.append(or_(items.c.labelled_at > after[0],
                             and_(items.c.labelled_at == after[0], items.c.id > after[1])))
        async with self.engine.connect() as connection:
            page = (select(*EXPORT_COLUMNS).join(images, images.c.id == items.c.id).where(*where)
                    .order_by(items.c.labelled_at, items.c.id).limit(limit))
            rows = (await connection.execute(page)).all()
        return [export_record(row) for row in rows]

    async def enforce_retention(self, policy: RetentionPolicy, exporter: Exporter | None = None) -> dict[str, int]:
        """Drop unlabelled items first (``drop_unlabelled``), then, only with ``exporter``, labelled ones into
        it (``drop_labelled``). Returns how many each cause dropped.

        The caps, the rank and the running sum are 64-bit on both backends: the default byte cap
        (2 GiB) is 2**31, one past PostgreSQL's ``integer``."""
        dropped = await self.drop_unlabelled(policy)
        if exporter is not None:
            for cause, count in (await self.drop_labelled(policy, exporter)).items():
                dropped[cause] += count
        return dropped

    async def drop_unlabelled(self, policy: RetentionPolicy) -> dict[str, int]:
        """Unlabelled items older than the age limit, beyond their source's share, beyond the row cap,
        beyond the byte cap (oldest first; every labelled item counts as kept ahead of them), in one
        transaction. Returns how many each cause dropped."""
        dropped = dict.fromkeys(CAUSES, 0)
        async with self.engine.begin() as connection:
            policy = await _source_bound_now(connection, policy)
            for cause, chosen in _over_limits(policy, self.clock()).items():
                gone = list((await connection.execute(
                    delete(items).where(items.c.id.in_(chosen), items.c.label.is_(None)).returning(items.c.id)))
                    .scalars())
                for chunk in _chunks(gone):  # a drop of 90,000 items must not exceed the drivers' 32,767 parameters
                    await connection.execute(delete(images).where(images.c.id.in_(chunk)))
                dropped[cause] += len(gone)
        return dropped

    async def drop_labelled(self, policy: RetentionPolicy, exporter: Exporter) -> dict[str, int]:
        """Labelled items older than the age limit, or beyond a cap that the labelled alone exceed (the
        oldest first), given to ``exporter`` in the transaction that deletes them: an export that fails
        keeps them (and raises). Returns how many each cause dropped."""
        dropped = dict.fromkeys(CAUSES, 0)
        async with self.engine.begin() as connection:
            for cause, chosen in _over_limits(policy, self.clock()).items():
                labelled = (await connection.execute(delete(items).where(items.c.id.in_(chosen),
                                                                         items.c.label.is_not(None))
                                                     .returning(*items.c))).all()
                pictures: dict[str, Any] = {}
                for chunk in _chunks([row.id for row in labelled]):
                    pictures.update((row.id, row) for row in (await connection.execute(
                        delete(images).where(images.c.id.in_(chunk))
                        .returning(images.c.id, images.c.file, images.c.input))).all())
                records = [export_record(row, pictures[row.id]) for row in labelled if row.id in pictures]
                if records:
                    await exporter(records)
                dropped[cause] += len(labelled)
        return dropped


async def _source_bound_now(connection: Any, policy: RetentionPolicy) -> RetentionPolicy:
    """The per-source bound as it applies in this pass (``RetentionPolicy.in_pass``), from the store's
    counts: items, bytes, and the sources holding unlabelled items."""
    if not policy.bounds_sources:
        return policy
    stored, size, sources = (await connection.execute(select(
        func.count(), func.coalesce(func.sum(items.c.file_bytes), 0),
        func.count(items.c.source.distinct()).filter(items.c.label.is_(None))))).one()
    return policy.in_pass(stored, size, sources)


def _over_limits(policy: RetentionPolicy, now: float) -> dict[str, Any]:
    """For each cause, the ids it would drop (callers pick the labelled or the unlabelled among them).
    The caps keep items in one order: labelled first, then newest first; so the unlabelled go first,
    oldest first, and a labelled item goes only when the labelled alone exceed a cap."""
    kept_first = (case((items.c.label.is_(None), 1), else_=0), items.c.created.desc(), items.c.id.desc())
    rank = func.row_number(type_=BigInteger).over(order_by=kept_first).label("rank")
    running = func.sum(items.c.file_bytes, type_=BigInteger).over(order_by=kept_first).label("running")
    ranked = select(items.c.id, rank, running).subquery()
    newest_first = (items.c.created.desc(), items.c.id.desc())
    source_rank = func.row_number(type_=BigInteger).over(partition_by=items.c.source,
                                                         order_by=newest_first).label("rank")
    source_running = func.sum(items.c.file_bytes, type_=BigInteger).over(partition_by=items.c.source,
                                                                         order_by=newest_first).label("running")
    by_source = select(items.c.id, source_rank, source_running).where(items.c.label.is_(None)).subquery()
    huge = 2**62  # no per-source bound
    return {
        "age": select(items.c.id).where(items.c.created < now - policy.max_age_s),
        "source": select(by_source.c.id).where(or_(
            by_source.c.rank > literal(policy.source_max_items or huge, BigInteger),
            by_source.c.running > literal(policy.source_max_bytes or huge, BigInteger))),
        "rows": select(ranked.c.id).where(ranked.c.rank > literal(policy.max_items, BigInteger)),
        "bytes": select(ranked.c.id).where(ranked.c.running > literal(policy.max_bytes, BigInteger)),
    }


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), ID_CHUNK):
        yield ids[start:start + ID_CHUNK]
