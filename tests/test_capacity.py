"""bench.capacity: the size it gives an architecture is the size of the file a checkpoint of it
takes, and every variant of the sweep builds within the checkpoint bound."""

from dataclasses import replace

from bench.capacity import VARIANTS, checkpoint_mb
from harness.inputs import SHIPPED
from model.checkpoint import read_metadata
from model.network import NetConfig


def test_the_size_of_the_shipped_architecture_is_the_shipped_file():
    architecture = NetConfig.from_dict(read_metadata(SHIPPED)["config"])
    _, megabytes = checkpoint_mb(architecture)
    assert abs(megabytes * 1e6 - SHIPPED.stat().st_size) < 0.001 * SHIPPED.stat().st_size  # the header aside
    shipped = replace(architecture, temperature=VARIANTS["third-block"].temperature)
    assert shipped == VARIANTS["third-block"]  # the sweep's third block is what ships (temperature aside)


def test_every_variant_builds_and_fits_the_checkpoint_bound():
    sizes = {name: checkpoint_mb(architecture) for name, architecture in VARIANTS.items()}
    assert len({count for count, _ in sizes.values()}) == len(VARIANTS)  # no two are the same network
    assert all(megabytes <= 40 for _, megabytes in sizes.values()), sizes  # the bound on a checkpoint
    # a third block pools to 3 x 3: its head takes 1,152 features, not 3,136, and the network is smaller
    assert sizes["third-block"][0] < sizes["two-blocks"][0] < sizes["2x-channels"][0] < sizes["4x-channels"][0]
