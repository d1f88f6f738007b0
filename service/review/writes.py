"""How a batch of review items reaches the store, so that one bad row cannot hold back the others.

The writer task (``queue.py``) hands a batch to :func:`write_items`: one transaction for all of it;
if that fails, one transaction an item. A row the store refuses (``refused_row``: the store refusing
its values, not the store failing) is reported, to be dropped and counted in
``bnn_review_refused_total``; any other error is raised, and the writer retries the batch whole later.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from service.review.rows import InvalidItem, NewItem, row_problem
from service.review.store import ReviewStore


def refused_row(error: BaseException) -> bool:
    """Whether ``error`` is the store refusing a row's values (data or constraint), not the store failing:
    ``row_problem``'s rules, SQLSTATE class 22 or 23 (asyncpg's errors reach SQLAlchemy as a plain
    DBAPIError carrying it), or a value the driver could not bind."""
    if isinstance(error, InvalidItem | DataError | IntegrityError):
        return True
    if isinstance(error, DBAPIError):
        state = getattr(error.orig, "sqlstate", None)
        cause = error.orig.__cause__ if error.orig is not None else None
        return (isinstance(state, str) and state[:2] in ("22", "23")) or isinstance(cause, ValueError)
    return isinstance(error, StatementError)  # raised before the driver: a parameter it could not take


async def write_items(store: ReviewStore, new: list[NewItem]) -> dict[str, tuple[str, str]]:
    """Write ``new`` in one transaction; if that fails, one item a transaction, so that one bad row
    cannot hold back the others. Returns the items refused, id -> (reason, error): "invalid"
    (``row_problem``, checked first) or "store_refused" (the store refused it alone). An error that
    is not a row's (the store down) is raised: the batch is then retried whole (ids already written
    are skipped)."""
    refused = {item.id: ("invalid", problem) for item in new if (problem := row_problem(item)) is not None}
    rest = [item for item in new if item.id not in refused]
    try:
        await store.add(rest)
    except Exception:
        for item in rest:
            try:
                await store.add([item])
            except Exception as error:
                if not refused_row(error):
                    raise
                refused[item.id] = ("store_refused", f"{type(error).__name__}: {error}"[:500])
    return refused
