"""A short, bounded fuzz of decode-and-preprocess for CI: only documented rejections may escape.
The long run is ``python -m tools.fuzz --inputs 100000``."""

import random
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.fuzzing import mutate, run_one, seed_corpus

SEEDS = seed_corpus()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(seed=st.sampled_from(range(len(SEEDS))), mutation_seed=st.integers(0, 2**32 - 1))
def test_mutated_uploads_only_raise_documented_rejections(seed, mutation_seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow may warn about odd metadata; only exceptions matter here
        run_one(mutate(SEEDS[seed], random.Random(mutation_seed)))


@settings(max_examples=200, deadline=None, database=None)
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes_only_raise_documented_rejections(data):
    assert run_one(data) in {"ok", "undecodable", "unsupported_format", "too_large", "no_ink"}


def test_every_seed_is_a_valid_upload():
    assert [run_one(seed) for seed in SEEDS] == ["ok"] * len(SEEDS)
