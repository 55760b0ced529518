"""The named random streams keep the numbers and keys earlier runs used (same config, same arrays)."""

from __future__ import annotations

import pytest

from popdl import seeds

# Values the streams gave before they were named (popdl 0.1.0's hand-numbered streams).
PINNED = {
    "priors": [183, 378, 411, 69],
    "snp_selection": [501, 998, 820, 221],
    "split": [355, 63, 582, 472],
    "shuffle": [587, 410, 621, 11],
    "missingness": [447, 354, 803, 498],
    "observed": [688, 872, 841, 989],
}


@pytest.mark.parametrize("stream", sorted(PINNED))
def test_each_stream_draws_what_it_drew_before(stream):
    args = {"split": ("isolation",), "shuffle": ("train",), "observed": ("obs", 1)}.get(stream, ("isolation", 3))
    rng = getattr(seeds, stream)(42, *args)
    assert rng.integers(0, 1000, 4).tolist() == PINNED[stream]


def test_simulator_seeds_and_hash_weights_are_unchanged():
    assert seeds.simulator_seeds(42, "isolation", 3) == (82460066, 518604682, 915249)
    assert seeds.haplotype_hash_weights(2).tolist() == [2096804712593481935, 2921580012919480943]


def test_streams_differ_by_root_seed_name_index_and_stream():
    first = seeds.priors(1, "s", 7).integers(0, 2**62, 2).tolist()
    assert seeds.priors(1, "s", 7).integers(0, 2**62, 2).tolist() == first
    for other in (seeds.priors(2, "s", 7), seeds.priors(1, "t", 7), seeds.priors(1, "s", 8),
                  seeds.snp_selection(1, "s", 7), seeds.report(1, "s", 7)):
        assert other.integers(0, 2**62, 2).tolist() != first
    assert len({int(s) for s in seeds.Stream}) == len(seeds.Stream)
