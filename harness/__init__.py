"""What the tests, the benchmarks and the tools drive: the real service in a subprocess (``server``), a
real PostgreSQL in a temporary directory (``postgres``), the committed MNIST files and images of known
kinds (``inputs``, ``images``), candidate checkpoints (``candidates``) and the fuzzing corpus and routes
(``fuzzing``, ``route_fuzzing``). Imports nothing from ``tests/``, so ``bench/``, ``tools/`` and
``examples/`` can use it."""
