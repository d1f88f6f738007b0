"""Tools a user runs against the service (``python -m tools.<name>``), not benchmarks: ``fuzz`` throws
generated uploads and requests at it and keeps what crashes it; ``drawn_digits`` draws the drawing battery
on the real page in Chromium and tallies what the page answers (the README's figure for drawings)."""
