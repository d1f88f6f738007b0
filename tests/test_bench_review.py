"""The review queue's benchmark measures what it says: every submit queued (not refused), and the store's
steps run on a real SQLite file (its figures are in docs/review.md)."""

import asyncio

from bench.review import store_costs, submit_cost


def test_every_timed_submit_is_queued():
    assert 0 < submit_cost(500) < 10_000  # µs; raises when a submit was refused (the cheaper path)


def test_the_store_steps_run_and_each_has_a_cost(tmp_path):
    costs = asyncio.run(store_costs(f"sqlite:///{tmp_path}/review.db", 20))
    assert set(costs) == {"insert, batch 1", "insert, batch 16", "insert, batch 256", "claim + label"}
    assert all(cost > 0 for cost in costs.values())
