"""Demos of the whole system at work (``python -m examples.<name>``): not benchmarks, not tests."""
