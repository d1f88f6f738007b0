"""What the tests and the benchmarks both drive: the real service in a subprocess (``server``), a
real PostgreSQL in a temporary directory (``postgres``), the committed MNIST files and images of
known kinds (``inputs``, ``images``) and the fuzzing corpus (``fuzzing``). Imports nothing from
``tests/``, so ``bench/`` can use it."""
