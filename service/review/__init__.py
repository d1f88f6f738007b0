"""The review queue: referred and audit-sampled answers become items a human labels.

The store: ``schema.py`` (the tables and the migration step), ``store.py`` (the one module that
speaks SQL: enqueue, claim with a lease, label, skip, stats, export, retention; SQLite and PostgreSQL
through the same SQLAlchemy Core statements, the dialect's differences in ``schema.engine_for``),
``rows.py`` (items going in and out of it), ``retention_policy.py`` (what retention keeps).

The write-behind queue that keeps the store off the prediction's path: ``buffer.py`` (the
prediction's side, no I/O) within ``bounds.py`` (items, bytes, one source's share), ``queue.py``
(the writer task), ``writes.py`` (a batch into the store), ``health.py`` (the store's errors),
``retention.py`` (the retention pass and the export before it, ``export.py``), ``gauges.py`` and
``queue_metrics.py`` (what it publishes and counts).

The labels: ``access.py`` (reviewer tokens), ``live.py`` (the arithmetic of the labels: the accepted
error and its Clopper-Pearson interval, what the referrals cost), ``stats.py`` (the store's counts
added up: where the queue stands, each channel's live accepted error).
"""
