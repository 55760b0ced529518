"""The msprime backend: sim_ancestry + sim_mutations (binary, infinite sites).

A genome of several loci is simulated as independent replicates of one
locus (unlinked loci), which costs about as much as the loci together.

msprime itself is imported where it is used (it takes over half a second to
import), so registering this simulator costs a job that never simulates nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import demes
import numpy as np

from popdl.seeds import locus_mutation_seeds
from popdl.simulators.base import Genotypes, Simulator, register

if TYPE_CHECKING:
    import msprime

__all__ = ["MsprimeSimulator", "demography_from_graph"]


class _GraphInGenerations(demes.Graph):
    """A demes graph whose times are already in generations.

    ``msprime.Demography.from_demes`` starts with ``graph.in_generations()``,
    which deep-copies the graph even when there is nothing to convert; that
    copy is ~40% of the conversion.  The graphs converted here are built for
    one draw and never reused, so the copy is skipped.
    """

    __slots__ = ()

    def in_generations(self):
        return self


def demography_from_graph(graph: demes.Graph) -> msprime.Demography:
    """``msprime.Demography.from_demes(graph)``, without a needless copy of ``graph``."""
    import msprime

    if graph.time_units == "generations" and graph.generation_time == 1 and type(graph) is demes.Graph:
        graph.__class__ = _GraphInGenerations
    return msprime.Demography.from_demes(graph)


@register
class MsprimeSimulator(Simulator):
    """msprime 1.x with the demes graph converted by ``Demography.from_demes``."""

    name = "msprime"

    def simulate(self, scenario, params, seeds) -> Genotypes:
        """One draw: ``params`` (sizes in diploid individuals, times in
        generations, rates per bp per generation) and ``seeds``.

        One locus is one ``sim_ancestry`` call.  Several loci are independent
        replicates of one locus (``num_replicates``): the same demography,
        independent genealogies, one mutation seed per locus derived from the
        draw's mutation seed.
        """
        import msprime

        graph = scenario.graph(params)
        demography = demography_from_graph(graph)
        genome = self.genome
        loci, length = int(genome["loci"]), float(genome["length"])
        rec = scenario.genome_value("recombination_rate", params, genome)
        mut = scenario.genome_value("mutation_rate", params, genome)
        seq_len = length
        # A scenario with a sweep: section (popdl.sweeps) gets msprime's sweep model.
        sweep = getattr(scenario, "sweep", None)
        models = None if sweep is None else sweep.ancestry_models(
            params, graph=graph, sequence_length=seq_len, where=f"scenarios.{scenario.name}.sweep")
        ancestry = msprime.sim_ancestry(
            samples=self.samples,
            demography=demography,
            model=models,
            sequence_length=seq_len,
            recombination_rate=rec,
            ploidy=2,
            random_seed=seeds["seed_ancestry"],
            num_replicates=None if loci == 1 else loci,
            record_provenance=False,  # the tree sequence is never stored; encoding it costs ~5% of a draw
        )
        if loci == 1:
            ancestry, mutation_seeds = [ancestry], [seeds["seed_mutation"]]
        else:
            mutation_seeds = locus_mutation_seeds(seeds["seed_mutation"], loci)
        order = natural = None
        blocks, positions = [], []
        for ts, mutation_seed in zip(ancestry, mutation_seeds):
            ts = msprime.sim_mutations(
                ts,
                rate=mut,
                model=msprime.BinaryMutationModel(),
                discrete_genome=False,
                random_seed=mutation_seed,
                record_provenance=False,
            )
            if order is None:
                order, natural = self._haplotype_order(ts, graph)
            if ts.num_sites:
                blocks.append(ts.genotype_matrix() if natural else ts.genotype_matrix(samples=order))
                positions.append(ts.sites_position.copy())  # a view would keep the whole tree sequence alive
            else:
                blocks.append(np.zeros((0, order.size), np.int8))
                positions.append(np.zeros(0))
        if loci == 1:
            return Genotypes(blocks[0], positions[0], np.zeros(positions[0].size, np.int32))
        locus = np.repeat(np.arange(loci, dtype=np.int32), [p.size for p in positions])
        return Genotypes(np.concatenate(blocks), np.concatenate(positions), locus)

    def _haplotype_order(self, ts, graph) -> tuple[np.ndarray, bool]:
        """Sample nodes ordered by population as listed in ``config['samples']``.

        msprime numbers sample nodes in that order already (population ids
        follow the graph's deme order), so the order is checked, and only
        applied when it differs.
        """
        order = ts.samples()
        pop_of = ts.nodes_population[order]
        ids = {deme.name: i for i, deme in enumerate(graph.demes)}
        wanted = np.repeat([ids[pop] for pop in self.samples], [2 * n for n in self.samples.values()])
        if np.array_equal(pop_of, wanted):
            return order, True
        return np.concatenate([order[pop_of == ids[pop]] for pop in self.samples]), False
