"""Coalescent simulators behind one interface, chosen by name from config.

Each simulator turns one draw (a scenario, its parameters and its seeds) into
a :class:`~popdl.simulators.base.Genotypes`: a haplotype-by-site 0/1 matrix,
site positions and the locus of each site.  Every later step only sees that.
"""

from popdl.simulators.base import Genotypes, Simulator, get_simulator, register, SIMULATORS

# Importing the modules registers the simulators.
from popdl.simulators import msprime_sim  # noqa: F401,E402

try:  # the fastsimcoal2 backend is optional at import time
    from popdl.simulators import fastsimcoal2  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["Genotypes", "Simulator", "get_simulator", "register", "SIMULATORS"]
