"""The msprime backend: sim_ancestry + sim_mutations (binary, infinite sites).

A genome of several loci is simulated as independent replicates of one
locus (unlinked loci) in one ``sim_ancestry`` call, and its mutations are
placed on all loci at once.  Measured for 2,000 loci × 64 bp and 130
diploids (``benchmarks/bench_many_loci.py``), that is faster than one msprime
call over a genome with a recombination rate of log 2 between loci, whose
coalescent merges lineages of unrelated loci (the cost grows with the square
of the loci), and faster than the SMC(k) model on that genome.

msprime itself is imported where it is used (it takes over half a second to
import), so registering this simulator costs a job that never simulates nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import demes
import numpy as np

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

        One locus is one ``sim_ancestry`` and one ``sim_mutations`` call.
        Several loci are one ``sim_ancestry`` call too: independent replicates
        of one locus (``num_replicates``: the same demography, independent
        genealogies), whose mutations are then placed all at once
        (:meth:`_many_loci`) from the draw's mutation seed.
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
        if loci > 1:
            return self._many_loci(ancestry, graph, seed=seeds["seed_mutation"], mut=float(mut))
        ts = msprime.sim_mutations(
            ancestry,
            rate=mut,
            model=msprime.BinaryMutationModel(),
            discrete_genome=False,
            random_seed=seeds["seed_mutation"],
            record_provenance=False,
        )
        order, natural = self._haplotype_order(ts, graph)
        if not ts.num_sites:
            return Genotypes(np.zeros((0, order.size), np.uint8), np.zeros(0), np.zeros(0, np.int32))
        genotypes = ts.genotype_matrix() if natural else ts.genotype_matrix(samples=order)
        positions = ts.sites_position.copy()  # a view would keep the whole tree sequence alive
        return Genotypes(genotypes, positions, np.zeros(positions.size, np.int32))

    def _many_loci(self, replicates, graph, *, seed: int, mut: float) -> Genotypes:
        """Mutations on the replicate genealogies (one per locus) of one draw.

        All loci at once, in NumPy, instead of one ``msprime.sim_mutations``
        call per locus, whose fixed cost (table copies, index building) was
        a third of a draw of thousands of short loci.  The model is msprime's
        with ``discrete_genome=False`` and binary alleles: on every edge, a
        Poisson number of mutations with mean ``mut`` (per bp per generation)
        × span (bp) × branch length (generations), each at a uniform position
        along the edge's span, carried by the samples below the edge in the
        tree at that position (``tests/test_many_loci.py`` checks the
        per-locus distributions against ``sim_mutations``).  Every draw comes
        from the draw's mutation seed.
        """
        rng = np.random.Generator(np.random.PCG64(seed))
        order = None
        times, parents, children, lefts, rights, node_offsets, several = [], [], [], [], [], [], {}
        offset = 0
        for i, ts in enumerate(replicates):
            if order is None:
                order, _ = self._haplotype_order(ts, graph)
            if ts.num_trees > 1:
                several[i] = ts  # a locus with recombination: its mutations find their tree below
            node_offsets.append(offset)
            times.append(ts.nodes_time)
            parents.append(ts.edges_parent + offset)
            children.append(ts.edges_child + offset)
            lefts.append(ts.edges_left)
            rights.append(ts.edges_right)
            offset += ts.num_nodes
        n_edges = np.array([p.size for p in parents])
        time = np.concatenate(times)
        parent, child = np.concatenate(parents), np.concatenate(children)
        left, right = np.concatenate(lefts), np.concatenate(rights)
        counts = rng.poisson(mut * (right - left) * (time[parent] - time[child]))
        edge = np.repeat(np.arange(counts.size), counts)
        positions = left[edge] + rng.uniform(0.0, right[edge] - left[edge])
        locus = np.repeat(np.arange(n_edges.size, dtype=np.int32), n_edges)[edge]
        first_node = np.repeat(np.asarray(node_offsets, np.int64), n_edges)[edge]
        genotypes = np.zeros((edge.size, order.size), np.uint8)
        # One tree per locus: each node has one parent, in one array for all loci.
        parent_of = np.full(offset + 1, -1, np.int64)  # the last entry: "above a root" stays there
        parent_of[child] = parent
        one_tree = np.flatnonzero(~np.isin(locus, list(several)))
        for a in range(0, one_tree.size, 4096):  # bounded memory: 4096 mutations × haplotypes at a time
            rows = one_tree[a:a + 4096]
            genotypes[rows] = _below(parent_of, first_node[rows, None] + order[None, :], child[edge[rows], None])
        # Several trees: the tree at each mutation's position.
        for i, ts in several.items():
            rows = np.flatnonzero(locus == i)
            for tree in ts.trees():
                inside = rows[(positions[rows] >= tree.interval.left) & (positions[rows] < tree.interval.right)]
                if inside.size:
                    target = child[edge[inside], None] - node_offsets[i]
                    genotypes[inside] = _below(tree.parent_array, np.broadcast_to(order, (inside.size, order.size)),
                                               target)
        rank = np.lexsort((positions, locus))
        return Genotypes(genotypes[rank], positions[rank], locus[rank])

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


def _below(parent_of: np.ndarray, node: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Whether each start node (rows: mutations, columns: sample nodes) has
    ``target`` (one node per row) among itself and its ancestors, climbing
    ``parent_of`` (-1 above a root; ``parent_of[-1]`` must be -1)."""
    below = node == target
    while True:
        node = parent_of[node]
        if (node < 0).all():
            return below
        below |= node == target
