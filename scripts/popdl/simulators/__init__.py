"""Coalescent simulators behind one interface, chosen by name from config.

Each simulator turns one draw (a scenario, its parameters and its seeds) into
a :class:`~popdl.simulators.base.Genotypes`: a haplotype-by-site 0/1 matrix,
site positions and the locus of each site.  Every later step only sees that.

Importing the simulator modules registers them (:func:`register`); none of
them imports its simulator's heavy library until a draw is simulated.
"""

from popdl.simulators import fastsimcoal2, msprime_sim  # noqa: F401  (registers the simulators)
from popdl.simulators.base import SIMULATORS, Genotypes, Simulator, get_simulator, register

__all__ = ["Genotypes", "Simulator", "get_simulator", "register", "SIMULATORS", "from_config", "check_config"]


def from_config(name: str, config: dict) -> Simulator:
    """Simulator ``name`` with the config's genome, samples and its own settings
    (the ``fastsimcoal2`` section for fastsimcoal2)."""
    settings = (config.get("fastsimcoal2") or {}) if name == "fastsimcoal2" else {}
    return get_simulator(name, genome=config["genome"], samples=config["samples"], **settings)


def check_config(config: dict) -> None:
    """Stop with one line (:class:`~popdl.errors.ConfigError`) when a simulator
    the scenarios use cannot run here (e.g. no fastsimcoal2 executable)."""
    used = {spec.get("simulator") or config["simulator"] for spec in config["scenarios"].values()}
    for name in sorted(used):
        from_config(name, config).check()
