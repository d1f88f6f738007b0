"""Tools a user runs against the service (``python -m tools.<name>``); not benchmarks: they check,
and exit non-zero on what they find."""
