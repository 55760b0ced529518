"""The simulator interface and registry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popdl.errors import ConfigError

__all__ = ["Genotypes", "Simulator", "SIMULATORS", "register", "get_simulator"]


@dataclass
class Genotypes:
    """One simulated data set.

    ``genotypes``: uint8 array (sites, haplotypes), 0 = ancestral, 1 = derived;
    haplotypes are ordered by population as in ``config['samples']``, the two
    haplotypes of a diploid individual next to each other.
    ``positions``: float64 (sites,), position in bp within its locus.
    ``locus``: int32 (sites,), locus index (0 for a contiguous sequence).
    """

    genotypes: np.ndarray
    positions: np.ndarray
    locus: np.ndarray

    def __post_init__(self):
        g = np.asarray(self.genotypes)
        if g.dtype == np.int8:
            g = g.view(np.uint8)  # tskit's 0/1 int8 matrix, without a copy (as the cast would)
        self.genotypes = np.ascontiguousarray(g, dtype=np.uint8)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.locus = np.asarray(self.locus, dtype=np.int32)


class Simulator:
    """Base class: subclasses implement :meth:`simulate`.

    ``genome`` is the config's ``genome`` section; ``samples`` maps population
    to diploid individuals.
    """

    name = "base"

    def __init__(self, *, genome: dict, samples: dict[str, int], **settings):
        self.genome = genome
        self.samples = samples
        self.settings = settings

    def check(self) -> None:
        """Raise :class:`ConfigError` when the simulator cannot run here."""

    def simulate(self, scenario, params: dict[str, float], seeds: dict[str, int]) -> Genotypes:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (scratch folders) held across draws."""


SIMULATORS: dict[str, type[Simulator]] = {}


def register(cls: type[Simulator]) -> type[Simulator]:
    SIMULATORS[cls.name] = cls
    return cls


def get_simulator(name: str, **kwargs) -> Simulator:
    if name not in SIMULATORS:
        raise ConfigError(f"unknown simulator {name!r} (valid: {', '.join(sorted(SIMULATORS))})")
    return SIMULATORS[name](**kwargs)
