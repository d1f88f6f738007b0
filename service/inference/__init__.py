"""Uploads -> predictions, with no HTTP types and nothing of the rest of the service: what a file's
structure costs before parsing, decoding within budgets, the transform to the network's digit, micro-batching,
the calibrated predictor and audit sampling. ``service/pipeline.py`` composes them into the one path every
predicting route calls."""
