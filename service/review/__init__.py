"""The review queue: referred and audit-sampled answers become items a human labels.

``schema.py`` (the tables and the migration step), ``store.py`` (the one module that speaks SQL:
enqueue, claim with a lease, label, skip, stats, export, retention; SQLite and PostgreSQL through
the same SQLAlchemy Core statements, the dialect's differences in ``schema.engine_for``),
``queue.py`` (the write-behind buffer that keeps the store off the prediction's path), ``bounds.py``
(what that buffer admits: items, bytes, one source's share),
``access.py`` (reviewer tokens), ``live.py`` (the arithmetic of the labels: the accepted error
and its Clopper-Pearson interval, what the referrals cost), ``stats.py`` (the store's counts added
up: where the queue stands, each channel's live accepted error).
"""
