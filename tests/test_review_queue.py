"""The write-behind buffer's bounds and its writer, against real stores (SQLite and a real PostgreSQL):
a byte bound beside the count, one source's share, a bounded size per stored item, and one bad row
dropped and counted while the rest of its batch is written. Names and versions longer than the store
keeps are refused where they enter."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import select

from harness.postgres import PostgresServer
from harness.server import free_port
from model.checkpoint import CheckpointError, read_metadata
from service.inference.predictor import Prediction
from service.metrics import Metrics
from service.review.bounds import item_size, source_key
from service.review.queue import ReviewQueue
from service.review.retention_policy import RetentionPolicy
from service.review.schema import images, items
from service.review.store import ReviewStore
from service.settings import Settings
from tests.metrics_text import parse_samples, value
from tests.review_client import TOKEN

ROOT = Path(__file__).resolve().parent.parent
KEEP_ALL = RetentionPolicy(1e9, 10**9, 10**12)


def referred(digit: int = 3) -> Prediction:
    return Prediction(digit=digit, probabilities=[0.1] * 10, entropy=2.3, expected_entropy=2.2,
                      mutual_information=0.1, refer=True, refer_reason="unfamiliar", candidates=[digit],
                      threshold=0.1, samples=10, model_version="test", seen=np.zeros((28, 28), np.uint8))


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    return value(parse_samples(metrics.exposition()[0].decode()), name, **labels)


def down_queue(**bounds: object) -> ReviewQueue:
    """A queue whose store does not answer (PostgreSQL on a port nobody listens on): what it admits stays."""
    store = ReviewStore.open(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    return ReviewQueue(store, Metrics(CollectorRegistry()), 10_000, KEEP_ALL, **bounds)  # type: ignore[arg-type]


def test_the_buffer_is_bounded_in_bytes_as_well_as_in_items() -> None:
    """Before: 10,000 items whatever their size (40 uploads of 8 MiB were all held: 320 MiB; 10,000 would be
    80 GiB). Now 1 MiB of images: five 200 KB uploads fit (5 x 200,784 bytes), the sixth on is refused and
    counted as lost, from any source."""
    queue = down_queue(buffer_bytes=2**20, max_item_bytes=300_000, source_share=1.0)
    upload = bytes(200_000)
    ids = [queue.submit(referred(), upload, False, "test", source=f"client {k}") for k in range(8)]
    assert [bool(review_id) for review_id in ids] == [True] * 5 + [False] * 3
    assert (queue.budget.items, queue.budget.bytes) == (5, 5 * (200_000 + 784))
    assert metric(queue.metrics, "bnn_review_enqueue_failures_total") == 3


def test_one_source_holds_at_most_its_share_of_the_buffer() -> None:
    """A share of 0.25 of 8 items: the flooder gets 2 queued and 4 refused (counted apart from losses);
    two other sources and the anonymous one still get theirs."""
    queue = down_queue(source_share=0.25)
    queue.budget.max_items = 8
    flood = [queue.submit(referred(), b"png", False, "test", source="203.0.113.9") for _ in range(6)]
    others = [queue.submit(referred(), b"png", False, "test", source=who) for who in ("key:ana", "key:ben", None)]
    assert [bool(review_id) for review_id in flood] == [True, True, False, False, False, False]
    assert all(others)
    assert queue.budget.held(source_key("203.0.113.9")) == (2, 2 * item_size(b"png"))
    assert metric(queue.metrics, "bnn_review_refused_total", reason="source_share") == 4
    assert metric(queue.metrics, "bnn_review_enqueue_failures_total") == 0
    assert [pending.source for pending in queue._buffer][-1] == source_key(None) == source_key("")


def test_an_image_over_the_item_cap_is_left_out_and_the_item_kept(store_url: str) -> None:
    """Before: the upload as sent, trailing bytes and all (7.5 MB per item). Now at most max_item_bytes (1 MiB
    by default): a 2 MiB one is left out (counted), the item keeps its answer and its 28 x 28."""
    async def scenario() -> tuple[str | None, str | None, list[tuple[str, bytes | None, int]], float]:
        store = ReviewStore.open(store_url)
        queue = ReviewQueue(store, Metrics(CollectorRegistry()), 10_000, KEEP_ALL)
        try:
            await store.migrate()
            big = queue.submit(referred(), b"\x89PNG" + bytes(2 * 2**20), False, "test")
            small = queue.submit(referred(), b"\x89PNG small", False, "test")
            await queue.flush()
            async with store.engine.connect() as connection:
                rows = (await connection.execute(select(images.c.id, images.c.file, items.c.file_bytes)
                                                 .join(items, items.c.id == images.c.id))).all()
            stored = sorted((("big" if row.id == big else "small"), row.file, row.file_bytes) for row in rows)
            return big, small, stored, metric(queue.metrics, "bnn_review_refused_total", reason="file_too_large")
        finally:
            await store.close()

    big, small, stored, refused = asyncio.run(scenario())
    assert big and small
    assert stored == [("big", None, 784), ("small", b"\x89PNG small", 784 + 10)]
    assert refused == 1


REFUSE_NINE = {
    "sqlite": ["CREATE TRIGGER refuse_nine BEFORE INSERT ON review_items WHEN NEW.predicted = 9 "
               "BEGIN SELECT RAISE(ABORT, 'refused: predicted 9'); END"],
    "postgresql": ["CREATE FUNCTION refuse_nine() RETURNS trigger AS $$ BEGIN IF NEW.predicted = 9 THEN RAISE "
                   "EXCEPTION 'refused: predicted 9' USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ "
                   "LANGUAGE plpgsql",
                   "CREATE TRIGGER refuse_nine BEFORE INSERT ON review_items FOR EACH ROW "
                   "EXECUTE FUNCTION refuse_nine()"],
}


def test_one_bad_row_is_dropped_and_counted_and_the_rest_written(store_url: str) -> None:
    """A batch of six: one with a 65-character model version (PostgreSQL's String(64) refused it, and the
    writer retried the whole batch forever: every later item lost; SQLite kept it), one the database
    refuses (a trigger, on both backends: a row the store will not take, whatever the reason). Now: one
    flush writes the other four, drops those two (counted by reason), and the next batch goes through."""
    async def scenario() -> tuple[int, int, int, float, float, float]:
        store = ReviewStore.open(store_url)
        queue = ReviewQueue(store, Metrics(CollectorRegistry()), 10_000, KEEP_ALL)
        try:
            await store.migrate()
            async with store.engine.begin() as connection:
                for statement in REFUSE_NINE[store.dialect]:
                    await connection.exec_driver_sql(statement)
            for k in range(6):
                queue.submit(referred(9 if k == 4 else 3), b"png", False, "v" * 65 if k == 1 else "test")
            await queue.flush()
            first = (await store.stats()).stored_items
            queue.submit(referred(), b"png", False, "test")
            await queue.flush()
            m = queue.metrics
            return (first, (await store.stats()).stored_items, queue.backlog,
                    metric(m, "bnn_review_refused_total", reason="invalid"),
                    metric(m, "bnn_review_refused_total", reason="store_refused"),
                    metric(m, "bnn_review_enqueued_total", reason="referred"))
        finally:
            await store.close()

    assert asyncio.run(scenario()) == (4, 5, 0, 1, 1, 5)


def test_a_store_that_is_down_is_not_taken_for_a_bad_row() -> None:
    """The fallback to one row at a time drops only what the store refuses: with the store down, the batch
    stays buffered whole (and nothing is counted as refused)."""
    queue = down_queue()
    for _ in range(3):
        queue.submit(referred(), b"png", False, "test")

    async def flush() -> None:
        try:
            await queue.flush()
        finally:
            await queue.store.close()

    with pytest.raises(OSError, match=r"Connect call failed|connection refused"):
        asyncio.run(flush())
    assert queue.backlog == 3 and (queue.budget.items, queue.budget.bytes) == (3, 3 * item_size(b"png"))
    assert metric(queue.metrics, "bnn_review_refused_total", reason="store_refused") == 0


@pytest.mark.parametrize("setting", ["review_tokens", "admin_tokens"])
def test_a_name_longer_than_the_store_keeps_stops_the_start(setting: str) -> None:
    """Before: a reviewer named with 65 characters started, and each of their claims was a 503 on PostgreSQL
    (claimed_by is String(64))."""
    with pytest.raises(ValidationError, match="entry 1: a name has at most 64 characters \\(this one has 65\\)"):
        Settings(**{setting: f"{'n' * 65}:{TOKEN}"})  # type: ignore[arg-type]
    assert Settings(review_tokens=f"{'n' * 64}:{TOKEN}")  # type: ignore[arg-type]


def test_a_checkpoint_whose_version_the_store_cannot_keep_is_refused(tmp_path: Path) -> None:
    shutil.copy(ROOT / "checkpoints" / "bnn.safetensors", tmp_path / "bnn.safetensors")
    meta = json.loads((ROOT / "checkpoints" / "bnn.json").read_text())
    for version, refused in (("v" * 64, False), ("v" * 65, True)):
        (tmp_path / "bnn.json").write_text(json.dumps({**meta, "model_version": version}))
        if refused:
            with pytest.raises(CheckpointError, match="model_version is 65 characters, over 64"):
                read_metadata(tmp_path / "bnn.safetensors")
        else:
            assert read_metadata(tmp_path / "bnn.safetensors")["model_version"] == version


def test_the_writer_tells_a_refused_value_from_a_store_that_is_down(postgres: PostgresServer) -> None:
    """PostgreSQL's own refusal of a 65-character version (what every batch met before the store's check) is a
    refused row; a connection refused is not (its batch waits and is retried)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from service.review.schema import async_url
    from service.review.writes import refused_row

    url = postgres.create_database("refusals")

    async def errors() -> tuple[BaseException, BaseException]:
        store = ReviewStore.open(url)
        gone = create_async_engine(async_url(f"postgresql://postgres@127.0.0.1:{free_port()}/none"))
        try:
            await store.migrate()
            with pytest.raises(Exception) as too_long:
                async with store.engine.begin() as connection:
                    await connection.execute(items.insert().values(
                        id="x", created=1.0, reason="referred", predicted=3, entropy=1.0, answer="{}",
                        model_version="v" * 65, has_file=False, file_bytes=784, skips=0))
            with pytest.raises(Exception) as down:
                async with gone.connect():
                    pass
            return too_long.value, down.value
        finally:
            await store.close()
            await gone.dispose()

    too_long, down = asyncio.run(errors())
    assert "value too long for type character varying(64)" in str(too_long) and refused_row(too_long)
    assert not refused_row(down)


def test_items_a_hanging_store_never_took_are_logged_at_shutdown_with_the_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    """A store that accepts connections and never answers has not failed when the service stops:
    the log said the items were lost for "None"."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes connections; nobody ever answers them
        store = ReviewStore.open(f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/none")
        queue = ReviewQueue(store, Metrics(CollectorRegistry()), 10_000, KEEP_ALL)

        async def scenario() -> None:
            queue.start()
            for _ in range(3):
                assert queue.submit(referred(), b"png", False, "test", source="client")
            await queue.stop(timeout_s=0.5)

        with caplog.at_level(logging.ERROR, logger="service"):
            asyncio.run(scenario())
    lost = [record.getMessage() for record in caplog.records if "lost at shutdown" in record.getMessage()]
    assert lost == ["3 review items lost at shutdown: the store did not take them (no answer within 0.5 s)"]
