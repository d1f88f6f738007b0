"""The review store on both backends (SQLite and a real PostgreSQL): claims, leases, order, labels,
conflicts, stats against a hand count, export, retention, restart. Two claimers at once on
PostgreSQL: no item given twice, none lost."""

from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select, update

from service.review import store as store_module
from service.review.retention_policy import RetentionPolicy
from service.review.rows import InvalidItem, NewItem
from service.review.schema import MIGRATIONS, images, items
from service.review.schema import metadata as schema_metadata
from service.review.store import ItemConflict, ItemNotFound, ReviewStore
from service.runtime import retention_policy
from service.settings import Settings

T = TypeVar("T")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(step: Callable[[ReviewStore], Awaitable[T]], url: str, clock: Clock | None = None,
        rng: random.Random | None = None) -> T:
    async def go() -> T:
        store = ReviewStore.open(url, clock or Clock(), rng)
        try:
            await store.migrate()
            return await step(store)
        finally:
            await store.close()

    return asyncio.run(go())


def new_item(number: int, reason: str = "referred", entropy: float = 1.0, predicted: int = 3, created: float = 0.0,
             refer_reason: str | None = "uncertain", file: bytes | None = b"\x89PNG fake", refer: bool | None = None,
             audit_fraction: float = 0.05, channel: str = "file") -> NewItem:
    seen = np.full((28, 28), number % 256, np.uint8)
    return NewItem(id=f"item{number:04d}", created=created or 1_800_000_000.0 + number, reason=reason,
                   refer_reason=refer_reason if reason == "referred" else None, predicted=predicted, entropy=entropy,
                   answer={"class": predicted, "entropy": entropy, "n": number}, model_version="test",
                   file=file, input=seen.tobytes(), refer=reason == "referred" if refer is None else refer,
                   audit_fraction=audit_fraction if reason == "audit" else None, channel=channel)


class AlwaysReferred(random.Random):
    def random(self) -> float:
        return 0.999  # the claim's draw never picks an audit while referred items wait


def test_claims_in_order_with_leases_and_labels(store_url: str) -> None:
    clock = Clock()

    async def scenario(store: ReviewStore) -> dict[str, Any]:
        await store.add([new_item(1, entropy=0.5), new_item(2, entropy=2.0), new_item(3, entropy=1.0),
                         new_item(4, reason="audit", entropy=0.0)])
        seen: dict[str, Any] = {}
        first = await store.claim("ana", lease_s=300)
        second = await store.claim("ben", lease_s=300)
        seen["order"] = [first.id, second.id]  # type: ignore[union-attr]
        # ben may not label ana's item while her lease runs; the message names the holder
        with pytest.raises(ItemConflict, match="claimed by ana"):
            await store.label("item0002", "ben", "7")
        # ana vanishes: after her lease, the item waits again and is next for anyone (most doubtful)
        clock.now += 301
        seen["after_lease"] = (await store.claim("ben", lease_s=300)).id  # type: ignore[union-attr]
        labelled = await store.label("item0002", "ben", "7")
        seen["labelled"] = (labelled.label, labelled.labelled_by, labelled.lease_expires)
        with pytest.raises(ItemConflict, match="already labelled '7' by ben"):
            await store.label("item0002", "ana", "3")
        with pytest.raises(ItemNotFound):
            await store.label("nope", "ana", "3")
        with pytest.raises(ValueError, match="unknown label"):
            await store.label("item0003", "ana", "seven")
        # a skipped item waits behind the others
        skipped = await store.skip("item0003", "ben")
        seen["skips"] = skipped.skips
        rest = []
        while (item := await store.claim("ana", lease_s=300)) is not None:
            rest.append(item.id)
        seen["rest"] = rest
        return seen

    seen = run(scenario, store_url, clock, AlwaysReferred())
    assert seen["order"] == ["item0002", "item0003"]  # highest entropy first
    assert seen["after_lease"] == "item0002"
    assert seen["labelled"] == ("7", "ben", None)
    assert seen["skips"] == 1
    assert seen["rest"] == ["item0001", "item0003", "item0004"]  # unskipped referred, the skipped one, then the audit


def test_audits_are_interleaved_at_their_share(store_url: str) -> None:
    """20 referred and 5 audits waiting: about a fifth of the first claims are audits, oldest first."""
    async def scenario(store: ReviewStore) -> list[str]:
        await store.add([new_item(k, entropy=1.0 + k / 100) for k in range(20)]
                        + [new_item(100 + k, reason="audit") for k in range(5)])
        order = []
        while (item := await store.claim("ana", 300)) is not None:
            order.append(item.reason)
        return order

    order = run(scenario, store_url, rng=random.Random(4))
    assert len(order) == 25
    assert 1 <= order[:10].count("audit") <= 5  # drawn at the share (seeded: not all at the end)


def test_stats_against_a_hand_count(store_url: str) -> None:
    clock = Clock()

    async def scenario(store: ReviewStore) -> Any:
        await store.add([new_item(1, reason="audit", predicted=3), new_item(2, reason="audit", predicted=3),
                         new_item(3, reason="audit", predicted=5), new_item(4, reason="audit", predicted=5),
                         new_item(5, predicted=1, refer_reason="uncertain"),
                         new_item(6, predicted=1, refer_reason="uncertain"),
                         new_item(7, predicted=0, refer_reason="unfamiliar"), new_item(8, predicted=0)])
        for item_id, label in (("item0001", "3"), ("item0002", "8"), ("item0003", "not_a_digit"),
                               ("item0004", "unreadable"), ("item0005", "1"), ("item0006", "7"),
                               ("item0007", "not_a_digit")):
            await store.label(item_id, "ana", label)
        await store.claim("ben", 300)  # the one left: claimed, not waiting
        return await store.stats()

    stats = run(scenario, store_url, clock)
    # audits: item1 right, item2 wrong (8 for 3), item3 wrong (not a digit, accepted), item4 unreadable (left out)
    error = stats.accepted_errors["file"]
    assert (error.audited, error.wrong, error.unreadable) == (3, 2, 1)
    assert error.ratio == pytest.approx(2 / 3)
    from scipy.stats import beta
    assert error.lower == pytest.approx(beta.ppf(0.025, 2, 2), abs=1e-9)
    assert error.upper == pytest.approx(beta.ppf(0.975, 3, 1), abs=1e-9)
    assert stats.referrals["uncertain"] == {"right": 1, "wrong": 1, "not_a_digit": 0, "unreadable": 0}
    assert stats.referrals["unfamiliar"] == {"right": 0, "wrong": 0, "not_a_digit": 1, "unreadable": 0}
    assert stats.referrals["all"] == {"right": 1, "wrong": 1, "not_a_digit": 1, "unreadable": 0}
    assert stats.labelled == {"audit": {"3": 1, "8": 1, "not_a_digit": 1, "unreadable": 1},
                              "referred": {"1": 1, "7": 1, "not_a_digit": 1}}
    assert stats.waiting == {"referred": 0, "audit": 0} and stats.claimed == 1
    assert stats.done_today == {"ana": 7}
    assert stats.agreement == pytest.approx(2 / 6)  # right: item1, item5; judged: all but the unreadable
    assert stats.stored_items == 8
    assert stats.stored_bytes == 8 * (784 + len(b"\x89PNG fake"))


def test_the_live_error_is_the_files_and_accepted_drawings_are_counted_apart(store_url: str) -> None:
    """The live accepted error is checked against the file channel's alpha: accepted audits of drawings on
    the page's pad (promised another alpha) are left out of it, and counted."""
    async def scenario(store: ReviewStore) -> Any:
        await store.add([new_item(1, reason="audit", predicted=3), new_item(2, reason="audit", predicted=3),
                         new_item(3, reason="audit", predicted=5, channel="drawn"),
                         new_item(4, reason="audit", predicted=5, channel="drawn")])
        for item_id, label in (("item0001", "3"), ("item0002", "8"), ("item0003", "9"), ("item0004", "9")):
            await store.label(item_id, "ana", label)
        return await store.stats()

    stats = run(scenario, store_url)
    error = stats.accepted_errors["file"]
    assert (error.audited, error.wrong, error.other_channels) == (2, 1, 2)  # both drawings wrong, neither counted
    assert error.ratio == pytest.approx(1 / 2)
    drawn = stats.accepted_errors["drawn"]  # the drawings' own estimate, against their own promise
    assert (drawn.audited, drawn.wrong, drawn.other_channels, drawn.ratio) == (2, 2, 0, 1.0)
    assert stats.labelled["audit"] == {"3": 1, "8": 1, "9": 2}  # every label is still counted as a label


def test_export_pages_through_every_label_with_its_images(store_url: str) -> None:
    clock = Clock()

    async def scenario(store: ReviewStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        await store.add([new_item(k, file=None if k == 2 else b"file%d" % k) for k in range(5)])
        for k in range(5):
            clock.now += 1
            await store.label(f"item{k:04d}", "ana", str(k))
        first = await store.export_page(0.0, None, 3)
        last = first[-1]
        second = await store.export_page(0.0, (last["labelled_at"], last["id"]), 3)
        return first, second

    first, second = run(scenario, store_url, clock)
    records = first + second
    assert [record["label"] for record in records] == ["0", "1", "2", "3", "4"]
    assert len(second) == 2
    assert np.frombuffer(base64.b64decode(records[3]["input"]), np.uint8).reshape(28, 28)[0, 0] == 3
    assert base64.b64decode(records[1]["file"]) == b"file1" and records[2]["file"] is None
    assert records[0]["answer"] == {"class": 3, "entropy": 1.0, "n": 0}


def test_retention_drops_unlabelled_first_and_labelled_only_into_the_export(store_url: str) -> None:
    clock = Clock(2_000_000_000.0)
    exported: list[dict[str, Any]] = []

    async def keep(records: list[dict[str, Any]]) -> None:
        exported.extend(records)

    async def scenario(store: ReviewStore) -> tuple[Any, ...]:
        day = 86_400.0
        old = [new_item(k, created=clock.now - 40 * day + k) for k in range(3)]
        recent = [new_item(10 + k, created=clock.now - 100 + k) for k in range(6)]
        await store.add(old + recent)
        await store.label("item0001", "ana", "4")  # an old labelled item: exported before it goes
        await store.label("item0010", "ana", "5")  # the oldest recent one, labelled: kept over newer unlabelled ones
        size = 784 + len(b"\x89PNG fake")
        by_age = await store.enforce_retention(RetentionPolicy(30 * day, 100, 10**9), keep)
        by_rows = await store.enforce_retention(RetentionPolicy(30 * day, 5, 10**9), keep)
        by_bytes = await store.enforce_retention(RetentionPolicy(30 * day, 5, 3 * size), keep)
        after_caps = sorted(await stored_ids(store))
        for item_id in ("item0014", "item0015"):
            await store.label(item_id, "ben", "1")
        # three labelled, a cap of two: without an export nothing labelled goes; with one, the oldest label goes there
        unexported = await store.enforce_retention(RetentionPolicy(30 * day, 2, 10**9))
        labelled_over = await store.enforce_retention(RetentionPolicy(30 * day, 2, 10**9), keep)
        return by_age, by_rows, by_bytes, after_caps, unexported, labelled_over, sorted(await stored_ids(store))

    by_age, by_rows, by_bytes, after_caps, unexported, labelled_over, left = run(scenario, store_url, clock)
    assert by_age == {"age": 3, "source": 0, "rows": 0, "bytes": 0}
    assert by_rows == {"age": 0, "source": 0, "rows": 1, "bytes": 0}  # item0011, not the labelled item0010
    assert by_bytes == {"age": 0, "source": 0, "rows": 0, "bytes": 2}  # item0012, item0013
    assert after_caps == ["item0010", "item0014", "item0015"]
    assert unexported == {"age": 0, "source": 0, "rows": 0, "bytes": 0}
    assert labelled_over == {"age": 0, "source": 0, "rows": 1, "bytes": 0}
    assert left == ["item0014", "item0015"]
    assert [(record["id"], record["label"]) for record in exported] == [("item0001", "4"), ("item0010", "5")]


def test_a_flood_over_the_byte_cap_never_drops_a_label(store_url: str) -> None:
    """One labelled item, then 30 unlabelled items of 100 KB each from one source, ten times a 300 KB cap
    (the issue's 60 padded uploads at a 64 MiB cap, scaled down): the pass drops only unlabelled items,
    the label stays in the export, with no export directory at all."""
    async def scenario(store: ReviewStore) -> tuple[dict[str, int], list[str], int]:
        await store.add([new_item(0, file=b"\x89PNG small")])
        await store.label("item0000", "ana", "7")
        await store.add([new_item(k, file=bytes(100_000)) for k in range(1, 31)])
        dropped = await store.enforce_retention(RetentionPolicy(30 * 86_400.0, 100_000, 300_000))
        labels = [record["id"] for record in await store.export_page(0.0, None, 100)]
        return dropped, labels, (await store.stats()).stored_bytes

    dropped, labels, stored_bytes = run(scenario, store_url)
    assert dropped == {"age": 0, "source": 0, "rows": 0, "bytes": 28}
    assert labels == ["item0000"]
    assert stored_bytes == (784 + len(b"\x89PNG small")) + 2 * (784 + 100_000) <= 300_000


def test_one_sources_flood_cannot_evict_what_others_sent(store_url: str) -> None:
    """A source may hold 5 unlabelled items: the flooder's 19 unlabelled beyond its newest 5 go first (cause
    "source"), so a row cap of 11 then drops nothing of the other source's 5 (the oldest items, which the
    cap alone would drop first); the flooder's labelled item stays."""
    def from_source(number: int, source: str) -> NewItem:
        return replace(new_item(number), source=source)

    async def scenario(store: ReviewStore) -> tuple[dict[str, int], list[str]]:
        others = [from_source(k, "b" * 16) for k in range(5)]  # the oldest: a plain cap would drop them first
        flood = [from_source(100 + k, "a" * 16) for k in range(20)]
        await store.add(others + flood)
        await store.label("item0100", "ana", "2")
        dropped = await store.enforce_retention(RetentionPolicy(30 * 86_400.0, 11, 10**9, source_max_items=5))
        return dropped, sorted(await stored_ids(store))

    dropped, left = run(scenario, store_url)
    assert dropped == {"age": 0, "source": 14, "rows": 0, "bytes": 0}
    assert left == [*(f"item{k:04d}" for k in range(5)), "item0100", *(f"item{k:04d}" for k in range(115, 120))]


def test_one_source_alone_keeps_the_whole_store(store_url: str) -> None:
    """Behind a proxy every client is one source: under the caps nothing goes, and over them the oldest
    beyond the cap go, as without a source bound (not everything past a tenth)."""
    async def scenario(store: ReviewStore, cap: int) -> tuple[dict[str, int], int]:
        await store.add([replace(new_item(k), source="a" * 16) for k in range(20)])
        dropped = await store.enforce_retention(RetentionPolicy(30 * 86_400.0, cap, 10**9, source_max_items=2))
        return dropped, len(await stored_ids(store))

    assert run(lambda store: scenario(store, 100), store_url) == ({"age": 0, "source": 0, "rows": 0, "bytes": 0}, 20)
    assert run(lambda store: scenario(store, 15), store_url) == ({"age": 0, "source": 0, "rows": 5, "bytes": 0}, 15)


def test_a_text_longer_than_its_column_is_refused_alike_on_both_backends(store_url: str) -> None:
    """PostgreSQL refuses a 65-character model version (String(64)) and SQLite would keep it: the store
    refuses it itself, before writing, on both; nothing of the batch is written."""
    async def scenario(store: ReviewStore) -> int:
        with pytest.raises(InvalidItem, match="model_version is 65 characters, over 64"):
            await store.add([new_item(1), replace(new_item(2), model_version="v" * 65)])
        await store.add([replace(new_item(3), model_version="v" * 64)])
        return (await store.stats()).stored_items

    assert run(scenario, store_url) == 1


def test_queue_and_labels_survive_a_restart(store_url: str) -> None:
    async def first(store: ReviewStore) -> None:
        await store.add([new_item(1), new_item(2)])
        await store.label("item0001", "ana", "2")

    async def second(store: ReviewStore) -> tuple[int, str | None, str]:
        stats = await store.stats()
        item = await store.item("item0001")
        claimed = await store.claim("ben", 300)
        return stats.stored_items, item.label, claimed.id  # type: ignore[union-attr]

    run(first, store_url)
    assert run(second, store_url) == (2, "2", "item0002")


def test_migration_is_idempotent_and_concurrent(store_url: str) -> None:
    async def scenario(store: ReviewStore) -> list[int]:
        others = [ReviewStore.open(store_url) for _ in range(3)]
        try:
            return list(await asyncio.gather(*(other.migrate() for other in others)))
        finally:
            for other in others:
                await other.close()

    assert run(scenario, store_url) == [len(MIGRATIONS)] * 3 == [5, 5, 5]


def migrate_once(url: str, start: Any, outcomes: Any) -> None:
    """One worker's first migration of ``url`` once every process is ready: its outcome, not a retry."""
    async def first_try() -> str:
        store = ReviewStore.open(url)
        try:
            return str(await store.migrate())
        except Exception as error:
            return f"{type(error).__name__}: {str(error).splitlines()[0]}"
        finally:
            await store.close()

    start.wait()
    outcomes.put(asyncio.run(first_try()))


def test_workers_opening_a_new_sqlite_file_at_once_each_migrate_at_the_first_try(tmp_path: Path) -> None:
    """Before: two processes switching a new file to WAL together, one failed at once with "database is
    locked" (14 starts in 20), and a fresh `make serve` logged a failed migration at ERROR."""
    context = multiprocessing.get_context("fork")
    outcomes = []
    for start in range(8):
        url, ready, answers = f"sqlite:///{tmp_path}/start{start}/review.db", context.Barrier(2), context.Queue()
        workers = [context.Process(target=migrate_once, args=(url, ready, answers)) for _ in range(2)]
        for worker in workers:
            worker.start()
        outcomes += [answers.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(60)
    assert outcomes == [str(len(MIGRATIONS))] * 16


def test_a_schema_1_store_migrates_to_audits_of_all_traffic_keeping_its_items(store_url: str) -> None:
    """A store made by schema 1 (no refer, no audit_fraction) with a referred item and a labelled
    accepted audit: after the migration both are there, refer follows the old reason, the old audit
    has no fraction (legacy: left out of the weighted live error), and new items store theirs."""
    v1 = MetaData()
    old_items = Table("review_items", v1, *(column._copy() for column in items.c
                                            if column.name not in ("refer", "audit_fraction", "shadow")))
    old_images = Table("review_images", v1, *(column._copy() for column in images.c))
    old_version = Table("review_schema_version", v1, Column("version", Integer, nullable=False))

    async def scenario(store: ReviewStore) -> tuple[Any, ...]:
        async with store.engine.begin() as connection:
            await connection.run_sync(schema_metadata.drop_all)  # run() migrated it: back to nothing, then to 1
            await connection.run_sync(v1.create_all)
            await connection.execute(old_version.insert().values(version=1))
            for number, reason, label in ((1, "referred", None), (2, "audit", "4")):
                row = {key: value for key, value in _row(new_item(number, reason, predicted=3)).items()
                       if key in old_items.c}
                await connection.execute(old_items.insert().values(**row, label=label, labelled_by="r",
                                                                   labelled_at=1.0 if label else None))
                await connection.execute(old_images.insert().values(id=row["id"], file=None, input=b"0" * 784))
        assert await store.migrate() == len(MIGRATIONS)
        await store.add([new_item(3, "audit", predicted=4, refer=True, audit_fraction=0.1)])
        await store.label("item0003", "r", "4")
        first, second, third = [await store.item(f"item000{n}") for n in (1, 2, 3)]
        stats = await store.stats()
        return ((first.refer, first.audit_fraction), (second.refer, second.audit_fraction),
                (third.reason, third.refer, third.audit_fraction), stats.accepted_errors["file"].legacy,
                stats.accepted_errors["file"].audited, stats.referrals["all"]["right"])

    old, audit, new, legacy, audited, referred_right = run(scenario, store_url)
    assert old == (True, None) and audit == (False, None) and new == ("audit", True, 0.1)
    assert (legacy, audited) == (1, 0)  # the old accepted audit is legacy; the new one was referred
    assert referred_right == 1  # the referred audit counts among what referrals were


def _row(item: NewItem) -> dict[str, Any]:
    return {"id": item.id, "created": item.created, "reason": item.reason, "refer_reason": item.refer_reason,
            "predicted": item.predicted, "entropy": item.entropy, "answer": json.dumps(item.answer),
            "model_version": item.model_version, "has_file": False, "file_bytes": 784, "skips": 0}


def test_two_claimers_at_once_never_share_an_item(store_url: str) -> None:
    """Two stores (two connection pools: as two workers or pods) claim 120 items as fast as they can."""
    async def scenario(store: ReviewStore) -> tuple[list[str], list[str]]:
        await store.add([new_item(k, entropy=random.random()) for k in range(120)])
        ana, ben = ReviewStore.open(store_url), ReviewStore.open(store_url)

        async def drain(claimer: ReviewStore, who: str) -> list[str]:
            got = []
            while (item := await claimer.claim(who, 300)) is not None:
                got.append(item.id)
            return got

        try:
            async def both() -> list[list[str]]:
                return list(await asyncio.gather(*(drain(ana, "ana") for _ in range(3)),
                                                 *(drain(ben, "ben") for _ in range(3))))
            results = await both()
        finally:
            await ana.close()
            await ben.close()
        flat = [item for got in results for item in got]
        return flat, sorted({item for got in results for item in got})

    flat, unique = run(scenario, store_url)
    assert len(flat) == len(unique) == 120  # none given twice, none lost


def test_a_batch_written_again_keeps_one_copy(store_url: str) -> None:
    """The writer retries a batch whose commit it did not hear back from: the rows already there stay one."""
    async def scenario(store: ReviewStore) -> int:
        await store.add([new_item(1), new_item(2)])
        await store.add([new_item(2), new_item(3)])
        return (await store.stats()).stored_items

    assert run(scenario, store_url) == 3


def default_policy() -> RetentionPolicy:
    """The retention limits of a service started with no setting changed (``Settings()``)."""
    return retention_policy(Settings())


def test_retention_at_the_shipped_defaults_runs_and_keeps_everything(store_url: str) -> None:
    """The default byte cap (2 GiB) is above 2**31: bound as a 32-bit integer it failed every pass on PostgreSQL."""
    assert default_policy().max_bytes >= 2**31

    async def scenario(store: ReviewStore) -> tuple[dict[str, int], int]:
        await store.add([new_item(k) for k in range(4)])
        dropped = await store.enforce_retention(default_policy())
        return dropped, (await store.stats()).stored_items

    assert run(scenario, store_url) == ({"age": 0, "source": 0, "rows": 0, "bytes": 0}, 4)


def test_retention_by_bytes_deletes_past_a_cap_above_2_to_the_31(store_url: str) -> None:
    """Sizes faked to 1 GiB an item: the running sum crosses the default 2 GiB cap (and 2**31) at the third
    newest item, so the oldest two go; the sums and the stats count past 32 bits. (The default per-source
    bound, a tenth of the cap, is left out here: it would drop every 1 GiB item of the one source.)"""
    async def scenario(store: ReviewStore) -> tuple[dict[str, int], int, list[int], int]:
        await store.add([new_item(k) for k in range(4)])
        async with store.engine.begin() as connection:
            await connection.execute(update(items).values(file_bytes=2**30))
        before = (await store.stats()).stored_bytes
        dropped = await store.enforce_retention(replace(default_policy(), source_max_items=None, source_max_bytes=None))
        left = await store.stats()
        kept = sorted(int(item_id[4:]) for item_id in await stored_ids(store))
        return dropped, before, kept, left.stored_bytes

    dropped, before, kept, after = run(scenario, store_url)
    assert before == 4 * 2**30
    assert dropped == {"age": 0, "source": 0, "rows": 0, "bytes": 2}
    assert kept == [2, 3] and after == 2**31


def test_the_default_source_bound_past_2_to_the_31(store_url: str) -> None:
    """A per-source byte bound past 2**31 (a 32 GiB cap, two sources: each may keep half, 16 GiB) with
    items of 1 GiB, the store over its cap: the flooding source's running sum crosses its bound at its
    17th newest item, and its 14 oldest go by source; the other source's 4 stay."""
    policy = retention_policy(Settings(review_max_bytes=32 * 2**30))

    async def scenario(store: ReviewStore) -> tuple[dict[str, int], int]:
        await store.add([replace(new_item(k), source="b" * 16) for k in range(4)]
                        + [replace(new_item(100 + k), source="a" * 16) for k in range(30)])
        async with store.engine.begin() as connection:
            await connection.execute(update(items).values(file_bytes=2**30))
        dropped = await store.enforce_retention(policy)
        return dropped, sum(item.startswith("item000") for item in await stored_ids(store))

    assert policy.source_max_bytes == int(0.1 * 32 * 2**30) > 2**31 and policy.source_max_items == 10_000
    assert run(scenario, store_url) == ({"age": 0, "source": 14, "rows": 0, "bytes": 0}, 4)


def test_retention_row_cap_above_2_to_the_31(store_url: str) -> None:
    async def scenario(store: ReviewStore) -> dict[str, int]:
        await store.add([new_item(k) for k in range(3)])
        return await store.enforce_retention(RetentionPolicy(30 * 86_400.0, 2**40, 2**40))

    assert run(scenario, store_url) == {"age": 0, "source": 0, "rows": 0, "bytes": 0}


async def stored_ids(store: ReviewStore) -> list[str]:
    async with store.engine.connect() as connection:
        return list((await connection.execute(select(items.c.id))).scalars())


def test_a_drop_larger_than_one_chunk_of_ids_takes_every_image(store_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids go to the database in chunks (the drivers take at most 32,767 parameters); with chunks of 2,
    five labelled, a cap of two: the four unlabelled and the three oldest labelled go (seven in all), every
    image with them, the three exported with their pictures."""
    monkeypatch.setattr(store_module, "ID_CHUNK", 2)
    exported: list[dict[str, Any]] = []

    async def keep(records: list[dict[str, Any]]) -> None:
        exported.extend(records)

    async def scenario(store: ReviewStore) -> tuple[dict[str, int], int]:
        await store.add([new_item(k) for k in range(9)])
        for k in (0, 1, 3, 5, 7):
            await store.label(f"item{k:04d}", "ana", "7")
        dropped = await store.enforce_retention(RetentionPolicy(30 * 86_400.0, 2, 10**9), keep)
        async with store.engine.connect() as connection:
            pictures = len((await connection.execute(select(images.c.id))).all())
        return dropped, pictures

    assert run(scenario, store_url) == ({"age": 0, "source": 0, "rows": 7, "bytes": 0}, 2)
    assert sorted(record["id"] for record in exported) == ["item0000", "item0001", "item0003"]
    assert all(len(base64.b64decode(record["input"])) == 784 for record in exported)


def test_a_shadows_answers_judge_both_models_on_the_same_labelled_audits(store_url: str) -> None:
    """Three accepted audits (one labelled wrong) and one referred; the shadow accepts the referred one,
    refers the wrong one, and is wrong on a third; another shadow version and unshadowed items stay out."""
    async def step(store: ReviewStore) -> Any:
        audits = [new_item(n, reason="audit", predicted=3, refer=False) for n in range(3)]
        audits.append(new_item(3, reason="audit", predicted=5, refer=True))
        await store.add([*audits, new_item(4, reason="audit", predicted=3, refer=False)])
        for number, label in enumerate(["3", "8", "3", "5", "3"]):
            await store.label(f"item{number:04d}", "ana", label)
        shadow = {"model_version": "cand"}
        await store.attach_shadow([
            ("item0000", {**shadow, "class": 3, "refer": False, "refer_reason": None}),
            ("item0001", {**shadow, "class": 8, "refer": True, "refer_reason": "uncertain"}),
            ("item0002", {**shadow, "class": 2, "refer": False, "refer_reason": None}),
            ("item0003", {**shadow, "class": 5, "refer": False, "refer_reason": None}),
            ("item0004", {"model_version": "other", "class": 3, "refer": False, "refer_reason": None}),
            ("gone", {**shadow, "class": 1, "refer": False, "refer_reason": None}),  # no such item: ignored
        ])
        return await store.shadow_on_audits("cand")

    found = run(step, store_url)
    assert found.items == 4
    assert (found.live.wrong, found.live.audited) == (1, 3)  # item0001 accepted as 3, labelled 8
    assert (found.shadow.wrong, found.shadow.audited) == (1, 3)  # item0002 read as 2; item0003 accepted right
