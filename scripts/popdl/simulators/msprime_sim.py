"""The msprime backend: sim_ancestry + sim_mutations (binary, infinite sites)."""

from __future__ import annotations

import math

import msprime
import numpy as np

from popdl.simulators.base import Genotypes, Simulator, register

__all__ = ["MsprimeSimulator", "genome_maps"]


def genome_maps(*, loci: int, length: float, recombination_rate: float, mutation_rate: float):
    """Recombination and mutation maps for ``loci`` unlinked loci of ``length`` bp.

    Loci are laid end to end, separated by 1 bp with a recombination rate of
    ln 2, which makes adjacent loci independent on msprime's discrete genome
    (the construction msprime's documentation gives for several chromosomes);
    the mutation rate is 0 on those separators.  One locus needs no map.
    """
    if loci == 1:
        return length, recombination_rate, mutation_rate
    edges = [0.0]
    for i in range(loci):
        edges.append(edges[-1] + length)
        if i < loci - 1:
            edges.append(edges[-1] + 1)
    rec, mut = [], []
    for i in range(len(edges) - 1):
        inside = i % 2 == 0
        rec.append(recombination_rate if inside else math.log(2))
        mut.append(mutation_rate if inside else 0.0)
    return edges[-1], msprime.RateMap(position=edges, rate=rec), msprime.RateMap(position=edges, rate=mut)


@register
class MsprimeSimulator(Simulator):
    """msprime 1.x with the demes graph converted by ``Demography.from_demes``."""

    name = "msprime"

    def simulate(self, scenario, params, seeds) -> Genotypes:
        graph = scenario.graph(params)
        demography = msprime.Demography.from_demes(graph)
        genome = self.genome
        loci, length = int(genome["loci"]), float(genome["length"])
        seq_len, rec, mut = genome_maps(
            loci=loci,
            length=length,
            recombination_rate=scenario.genome_value("recombination_rate", params, genome),
            mutation_rate=scenario.genome_value("mutation_rate", params, genome),
        )
        # A scenario with a sweep: section (popdl.sweeps) gets msprime's sweep model.
        sweep = getattr(scenario, "sweep", None)
        models = None if sweep is None else sweep.ancestry_models(
            params, graph=graph, sequence_length=seq_len, where=f"scenarios.{scenario.name}.sweep")
        ts = msprime.sim_ancestry(
            samples=self.samples,
            demography=demography,
            model=models,
            sequence_length=seq_len if loci == 1 else None,
            recombination_rate=rec,
            ploidy=2,
            random_seed=seeds["seed_ancestry"],
            record_provenance=False,  # the tree sequence is never stored; encoding it costs ~5% of a draw
        )
        ts = msprime.sim_mutations(
            ts,
            rate=mut,
            model=msprime.BinaryMutationModel(),
            discrete_genome=False,
            random_seed=seeds["seed_mutation"],
            record_provenance=False,
        )
        # Order haplotypes by population as listed in config['samples']: msprime
        # numbers sample nodes in that order already (population ids follow the
        # graph's deme order), so reorder only if it did not.
        order = ts.samples()
        pop_of = ts.nodes_population[order]
        ids = {deme.name: i for i, deme in enumerate(graph.demes)}
        wanted = np.repeat([ids[pop] for pop in self.samples], [2 * n for n in self.samples.values()])
        natural = np.array_equal(pop_of, wanted)
        if not natural:
            order = np.concatenate([order[pop_of == ids[pop]] for pop in self.samples])
        if not ts.num_sites:
            genotypes = np.zeros((0, order.size), np.uint8)
        else:
            genotypes = ts.genotype_matrix() if natural else ts.genotype_matrix(samples=order)
        positions = ts.sites_position
        if loci == 1:
            locus = np.zeros(positions.size, np.int32)
        else:
            locus = (positions // (length + 1)).astype(np.int32)
            positions = positions - locus * (length + 1)
        return Genotypes(genotypes, positions, locus)


def _pop_id(ts, name: str) -> int:
    for pop in ts.populations():
        if pop.metadata.get("name") == name:
            return pop.id
    raise KeyError(name)
