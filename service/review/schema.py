"""The review store's schema and its one migration step, and the engine for a database URL.

Two tables: ``review_items``, an item created by the service (a referred answer, or any answer
the audit sample drew), claimed by one reviewer for a lease, and labelled once; and
``review_images``, its upload and 28 x 28 (kept apart, so that claims and stats never read them). Times are
Unix seconds (float): the same in SQLite and PostgreSQL, no time-zone conversions.

Migrations: ``MIGRATIONS[k]`` takes the schema from version ``k`` to ``k + 1``; ``migrate`` runs
the missing ones at start, in one transaction, under PostgreSQL's advisory lock (several pods or
workers starting together) or SQLite's write lock (``BEGIN IMMEDIATE``). A later version appends
a step; nothing else changes.

The dialects differ in three places, all here: the URL's driver (``postgresql://`` is served by
asyncpg, ``sqlite:///`` by aiosqlite), SQLite's connection pragmas (WAL, a busy timeout,
``BEGIN IMMEDIATE`` so that two workers' claims never race on a stale snapshot), and the
advisory lock. ``FOR UPDATE SKIP LOCKED`` is in ``store.py``'s claim and renders as nothing on
SQLite, whose single writer already serialises claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from model.checkpoint import MAX_VERSION_LENGTH
from service.review.access import MAX_NAME_LENGTH as NAME_LENGTH  # access.Reviewers.parse refuses longer names

SOURCE_LENGTH = 16  # hex digits of a source's hash (queue.source_key)
metadata = MetaData()

items = Table(
    "review_items", metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex, made by the service before the write
    Column("created", Float, nullable=False),  # Unix seconds
    Column("reason", String(16), nullable=False),  # "audit" (drawn; maybe referred too) or "referred" (not drawn)
    Column("refer_reason", String(16)),  # the answer's refer_reason ("uncertain", "unfamiliar"); null for audits
    Column("predicted", Integer, nullable=False),  # the answer's class
    Column("entropy", Float, nullable=False),  # nats: the claim order of referred items
    Column("answer", Text, nullable=False),  # the full answer, JSON
    Column("model_version", String(MAX_VERSION_LENGTH), nullable=False),  # checkpoint.py refuses longer
    Column("has_file", Boolean, nullable=False),  # false when sent as a 28 x 28 array (OIP 'digits')
    Column("file_bytes", Integer, nullable=False),  # len(file) + len(input): what the byte cap counts
    Column("skips", Integer, nullable=False, default=0),  # times a reviewer skipped it: skipped items wait behind
    Column("claimed_by", String(NAME_LENGTH)),
    Column("lease_expires", Float),  # Unix seconds; a claim past it is free again
    Column("label", String(16)),  # "0".."9", "not_a_digit", "unreadable"; null until labelled
    Column("labelled_by", String(NAME_LENGTH)),
    Column("labelled_at", Float),
    # schema 2: the answer said refer (an audit may be referred too), and an audit's draw fraction (its
    # weight is 1 / fraction; null for a referred item not drawn, and for audits stored before schema 2)
    Column("refer", Boolean),
    Column("audit_fraction", Float),
    # schema 3: a shadow's answer to the same image (JSON: model_version, class, refer, refer_reason), when
    # one answered it (service/lifecycle/shadow.py: every audit while a shadow is held)
    Column("shadow", Text),
    # schema 4: the answer's channel ("file", or "drawn": the page's pad, promised another alpha); null for
    # items stored before channels, which were all judged by the one rule files keep
    Column("channel", String(8)),
    # schema 5: who sent it (a hash of the client's address; null for items stored
    # before, and "anonymous"'s hash when the service could not tell): retention bounds each source's unlabelled
    # items, so that one client's flood cannot evict what others sent
    Column("source", String(SOURCE_LENGTH)),
    # the claim's walk: unlabelled items in claim order (a partial index: labelled ones never slow it)
    Index("review_items_queue", "reason", "skips", text("entropy DESC"), "created",
          sqlite_where=text("label IS NULL"), postgresql_where=text("label IS NULL")),
    Index("review_items_created", "created"),
    Index("review_items_labelled", "labelled_at"),
)

# the images apart from the queue's rows: a scan of the queue (claims, stats) never reads them
images = Table(
    "review_images", metadata,
    Column("id", String(32), primary_key=True),  # the item's id
    Column("file", LargeBinary),  # the upload as sent; null when sent as a 28 x 28 array
    Column("input", LargeBinary, nullable=False),  # the 28 x 28 uint8 the network saw, 784 bytes row-major
)

schema_version = Table("review_schema_version", metadata, Column("version", Integer, nullable=False))


def _create_v1(connection: Connection) -> None:
    items.create(connection, checkfirst=True)
    images.create(connection, checkfirst=True)


def _audits_of_all_traffic_v2(connection: Connection) -> None:
    """Audits drawn from every answer: ``refer`` and ``audit_fraction``. Items stored before were
    audits of accepted answers (refer false) or referred ones; their fraction was not kept."""
    present = {column["name"] for column in inspect(connection).get_columns("review_items")}
    for column in ("refer BOOLEAN", "audit_fraction FLOAT"):
        if column.split()[0] not in present:  # a store made by this version's _create_v1 has them already
            connection.exec_driver_sql(f"ALTER TABLE review_items ADD COLUMN {column}")
    connection.execute(items.update().where(items.c.refer.is_(None)).values(refer=items.c.reason == "referred"))


def _shadow_answers_v3(connection: Connection) -> None:
    """The shadow's answer beside the live one (null for items no shadow answered)."""
    present = {column["name"] for column in inspect(connection).get_columns("review_items")}
    if "shadow" not in present:
        connection.exec_driver_sql("ALTER TABLE review_items ADD COLUMN shadow TEXT")


def _channels_v4(connection: Connection) -> None:
    """The answer's channel (null for items stored before channels: counted as files)."""
    present = {column["name"] for column in inspect(connection).get_columns("review_items")}
    if "channel" not in present:
        connection.exec_driver_sql("ALTER TABLE review_items ADD COLUMN channel VARCHAR(8)")


def _sources_v5(connection: Connection) -> None:
    """Who sent each item (null for items stored before sources: retention counts them as one source)."""
    present = {column["name"] for column in inspect(connection).get_columns("review_items")}
    if "source" not in present:
        connection.exec_driver_sql(f"ALTER TABLE review_items ADD COLUMN source VARCHAR({SOURCE_LENGTH})")


MIGRATIONS: list[Callable[[Connection], None]] = [_create_v1, _audits_of_all_traffic_v2, _shadow_answers_v3,
                                                  _channels_v4, _sources_v5]
ADVISORY_LOCK = 7_319_019  # any fixed number: the key of PostgreSQL's migration lock
SQLITE_BUSY_TIMEOUT_MS = 5000
# Two workers that open a new file at once both read it, then both ask to switch it to WAL: SQLite refuses one
# at once with "database is locked", without its busy handler (that wait could deadlock). ``migrate`` switches
# the file first, in a thread, asking again after a short random pause until one wins; every pooled connection
# opens after it (the stats and the review routes wait for the migration), on a file already in WAL mode.
WAL_PAUSE_S = (0.005, 0.025)
CONNECT_TIMEOUT_S, COMMAND_TIMEOUT_S = 5.0, 10.0  # PostgreSQL: a store that does not answer is down, not slow


def async_url(url: str) -> str:
    """The user's URL with the async driver: ``postgresql://`` -> asyncpg, ``sqlite:///`` -> aiosqlite."""
    parsed = make_url(url)
    drivers = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}
    if parsed.drivername in drivers:
        parsed = parsed.set(drivername=drivers[parsed.drivername])
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise ValueError(f"BNN_REVIEW_DB: {parsed.get_backend_name()!r} is not supported (sqlite:/// or postgresql://)")
    return parsed.render_as_string(hide_password=False)


def local_directory(url: str) -> Path:
    """Where the service keeps the review queue's files on this host (the default export of labelled items
    that retention drops, the generated reviewer token): beside an SQLite store, else ``data/``."""
    parsed = make_url(url)
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    return Path(database).parent if database and database != ":memory:" else Path("data")


def engine_for(url: str) -> AsyncEngine:
    """An async engine for ``url`` (connects lazily); on SQLite every connection runs in WAL mode with
    a busy timeout, and every transaction starts with ``BEGIN IMMEDIATE``."""
    full = async_url(url)
    parsed = make_url(full)
    if parsed.get_backend_name() != "sqlite":
        # no pre-ping (a round trip per transaction): a connection the server dropped fails its first use,
        # SQLAlchemy discards the pool, and the writer retries
        return create_async_engine(full, pool_size=5, max_overflow=5, pool_timeout=5,
                                   connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": COMMAND_TIMEOUT_S})
    engine = create_async_engine(full, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, begins transactions (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # already so after migrate's switch_to_wal: no lock to take
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _migrate(connection: Connection) -> int:
    schema_version.create(connection, checkfirst=True)
    current = connection.execute(select(schema_version.c.version)).scalar()
    if current is None:
        connection.execute(schema_version.insert().values(version=0))
        current = 0
    for step in MIGRATIONS[current:]:
        step(connection)
    if current < len(MIGRATIONS):
        connection.execute(schema_version.update().values(version=len(MIGRATIONS)))
    return len(MIGRATIONS)


def switch_to_wal(database: str) -> None:
    """Put an SQLite file in WAL mode (it stays so), waiting out another process doing the same: a
    first connection of each of two workers did not (14 fresh starts in 20, and still under load)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    with contextlib.closing(sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)) as connection:
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "database is locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(*WAL_PAUSE_S))  # a thread of its own: the other's switch takes ms


async def migrate(engine: AsyncEngine) -> int:
    """Bring the schema to the latest version (idempotent; safe with several processes); returns it.
    An SQLite file's directory is made, and the file put in WAL mode, here (in the writer task,
    retried: never at start-up)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(switch_to_wal, database)
    async with engine.begin() as connection:
        await _lock(connection)
        return await connection.run_sync(_migrate)


async def _lock(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
