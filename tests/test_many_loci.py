"""Many short loci in one msprime call: each locus as msprime simulates it alone (real msprime)."""

from __future__ import annotations

import msprime
import numpy as np
import pytest
import tskit
from conftest import REPO, tiny_config
from scipy import stats

from popdl.config import prepare
from popdl.scenarios import Scenario
from popdl.simulators.msprime_sim import (
    MsprimeSimulator,
    _public_replicate_tables,
    _replicate_tables,
    demography_from_graph,
)

PARAMS = {"N_anc": 10000.0, "N1": 3000.0, "N2": 8000.0, "T_split": 20000.0, "m": 3e-4}
SEEDS = {"seed_ancestry": 11, "seed_mutation": 12}


def _setup(loci: int, *, length: int = 100, recombination_rate: float = 2e-7, mutation_rate: float = 2e-7):
    """isolation_migration with 5 + 5 diploids: ρ = 4 N r L ≈ 0.4 per locus, so
    loci of one tree and loci of several; θ per locus ≈ 0.4."""
    config = tiny_config(samples={"pop1": 5, "pop2": 5})
    config["genome"].update(loci=loci, length=length, recombination_rate=recombination_rate,
                            mutation_rate=mutation_rate)
    config = prepare(config, base_dirs=(REPO,))
    scenario = Scenario.from_config("isolation_migration", config)
    return config, scenario, MsprimeSimulator(genome=config["genome"], samples=config["samples"])


def _ancestry_args(config, scenario) -> dict:
    genome = config["genome"]
    return dict(samples=config["samples"], demography=demography_from_graph(scenario.graph(PARAMS)), model=None,
                sequence_length=float(genome["length"]), recombination_rate=genome["recombination_rate"], ploidy=2,
                random_seed=SEEDS["seed_ancestry"])


def _genealogies(config, scenario):
    """The replicate genealogies that ``simulate`` mutates, as tskit tree sequences."""
    populations = len(demography_from_graph(scenario.graph(PARAMS)).populations)
    for nodes, edges in _replicate_tables(_ancestry_args(config, scenario), config["genome"]["loci"]):
        tables = tskit.TableCollection(float(config["genome"]["length"]))
        for _ in range(populations):
            tables.populations.add_row()
        tables.nodes.set_columns(flags=nodes["flags"], time=nodes["time"], population=nodes["population"])
        tables.edges.set_columns(left=edges["left"], right=edges["right"], parent=edges["parent"],
                                 child=edges["child"])
        yield tables.tree_sequence()


def naive_per_locus(scenario, config, loci: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One sim_ancestry + sim_mutations per locus: (sites per locus, derived count of each site)."""
    genome = config["genome"]
    demography = demography_from_graph(scenario.graph(PARAMS))
    sites, derived = [], []
    for locus in range(loci):
        ts = msprime.sim_ancestry(samples=config["samples"], demography=demography, sequence_length=genome["length"],
                                  recombination_rate=genome["recombination_rate"], ploidy=2,
                                  random_seed=seed + 2 * locus, record_provenance=False)
        ts = msprime.sim_mutations(ts, rate=genome["mutation_rate"], model=msprime.BinaryMutationModel(),
                                   discrete_genome=False, random_seed=seed + 2 * locus + 1, record_provenance=False)
        g = ts.genotype_matrix()
        sites.append(g.shape[0])
        derived.extend(g.sum(axis=1).tolist())
    return np.array(sites), np.array(derived)


def test_loci_of_one_call_match_one_msprime_call_per_locus_in_distribution():
    loci = 1500
    config, scenario, sim = _setup(loci)
    g = sim.simulate(scenario, PARAMS, SEEDS)
    ours_sites = np.bincount(g.locus, minlength=loci)
    ours_derived = g.genotypes.sum(axis=1)
    naive_sites, naive_derived = naive_per_locus(scenario, config, loci, seed=1000)
    # Both paths are exercised: loci of one tree and loci of several.
    replicates = msprime.sim_ancestry(samples=config["samples"], demography=demography_from_graph(scenario.graph(PARAMS)),
                                      sequence_length=100, recombination_rate=2e-7, ploidy=2,
                                      random_seed=SEEDS["seed_ancestry"], num_replicates=loci)
    several = sum(ts.num_trees > 1 for ts in replicates)
    assert 0.1 * loci < several < 0.9 * loci
    # Segregating sites per locus, and the derived-allele count of each site (the unfolded SFS).
    assert stats.ks_2samp(ours_sites, naive_sites).pvalue > 1e-3
    assert stats.ks_2samp(ours_derived, naive_derived).pvalue > 1e-3
    se = np.sqrt(ours_sites.var() / loci + naive_sites.var() / loci)
    assert abs(ours_sites.mean() - naive_sites.mean()) < 4 * se
    assert ours_sites.var() == pytest.approx(naive_sites.var(), rel=0.25)


def test_each_site_is_carried_by_the_samples_below_one_branch_of_its_tree():
    """Exact: the carriers of every site are the samples below one node (not the root)
    of the genealogy at that site's position, in the replicate genealogy of its locus."""
    loci, length = 150, 100
    config, scenario, sim = _setup(loci, length=length)
    g = sim.simulate(scenario, PARAMS, SEEDS)
    assert ((g.positions >= 0) & (g.positions < length)).all()
    assert (np.diff(g.locus) >= 0).all() and ((g.locus >= 0) & (g.locus < loci)).all()
    checked_several = 0
    for k, ts in enumerate(_genealogies(config, scenario)):
        rows = np.flatnonzero(g.locus == k)
        assert (np.diff(g.positions[rows]) > 0).all()
        samples = ts.samples()
        for row in rows:
            tree = ts.at(g.positions[row])
            carriers = samples[g.genotypes[row] == 1]
            assert 0 < carriers.size < samples.size
            node = tree.mrca(*carriers) if carriers.size > 1 else int(carriers[0])
            assert tree.num_samples(node) == carriers.size
        checked_several += ts.num_trees > 1 and rows.size > 0
    assert checked_several > 10


def test_loci_of_several_trees_give_the_same_genotypes_a_batch_at_a_time(monkeypatch):
    """The loci with recombination get their genotypes a batch of loci at a time (bounded memory): batches of
    100 edges, a dozen or more of them here, give the draw byte for byte."""
    from popdl.simulators import msprime_sim

    config, scenario, sim = _setup(150)
    whole = sim.simulate(scenario, PARAMS, SEEDS)
    several = sum(ts.num_edges for ts in _genealogies(config, scenario) if ts.num_trees > 1)
    assert several > 12 * 100
    monkeypatch.setattr(msprime_sim, "TREE_BATCH_EDGES", 100)
    batched = sim.simulate(scenario, PARAMS, SEEDS)
    for x, y in ((whole.genotypes, batched.genotypes), (whole.positions, batched.positions), (whole.locus, batched.locus)):
        assert x.tobytes() == y.tobytes()


def test_replicates_are_msprime_replicates_and_public_path_gives_the_same_arrays():
    """Without recombination, popdl's replicates are byte for byte those of
    ``msprime.sim_ancestry(num_replicates=...)`` from the same seed, and the draw
    is the same through msprime's public replicate iterator.  (With recombination
    they agree up to the rounding of msprime's running sum of recombination rates,
    which msprime's iterator recomputes between replicates.)"""
    loci = 60
    config, scenario, sim = _setup(loci, recombination_rate=0.0, mutation_rate=1e-6)
    ours = list(_replicate_tables(_ancestry_args(config, scenario), loci))
    theirs = list(_public_replicate_tables(_ancestry_args(config, scenario), loci))
    assert len(ours) == len(theirs) == loci
    for (nodes, edges), (their_nodes, their_edges) in zip(ours, theirs):
        for column in ("time", "flags", "population"):
            assert nodes[column].tobytes() == np.asarray(their_nodes[column]).tobytes()
        for column in ("left", "right", "parent", "child"):
            assert edges[column].tobytes() == np.asarray(their_edges[column]).tobytes()
    g = sim.simulate(scenario, PARAMS, SEEDS)
    graph = scenario.graph(PARAMS)
    public = sim._many_loci(_public_replicate_tables(_ancestry_args(config, scenario), loci), graph,
                            seed=SEEDS["seed_mutation"], mut=1e-6, length=100.0)
    assert g.positions.size > loci
    for x, y in ((g.genotypes, public.genotypes), (g.positions, public.positions), (g.locus, public.locus)):
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


def test_many_loci_reproducible_and_seeded_by_the_draw():
    _, scenario, sim = _setup(40)
    a, b = sim.simulate(scenario, PARAMS, SEEDS), sim.simulate(scenario, PARAMS, SEEDS)
    for x, y in ((a.genotypes, b.genotypes), (a.positions, b.positions), (a.locus, b.locus)):
        assert x.tobytes() == y.tobytes()
    other = sim.simulate(scenario, PARAMS, dict(SEEDS, seed_mutation=13))
    assert other.positions.tobytes() != a.positions.tobytes()


def test_one_locus_is_one_sim_ancestry_and_one_sim_mutations_call():
    """loci: 1 (the default config) simulates exactly as msprime called by hand."""
    config, scenario, sim = _setup(1, length=20000, recombination_rate=1e-8, mutation_rate=1e-8)
    g = sim.simulate(scenario, PARAMS, SEEDS)
    ts = msprime.sim_ancestry(samples=config["samples"], demography=demography_from_graph(scenario.graph(PARAMS)),
                              sequence_length=20000, recombination_rate=1e-8, ploidy=2,
                              random_seed=SEEDS["seed_ancestry"])
    ts = msprime.sim_mutations(ts, rate=1e-8, model=msprime.BinaryMutationModel(), discrete_genome=False,
                               random_seed=SEEDS["seed_mutation"])
    assert g.genotypes.tobytes() == ts.genotype_matrix().astype(np.uint8).tobytes()
    assert g.positions.tobytes() == ts.sites_position.tobytes()
    assert not g.locus.any()
