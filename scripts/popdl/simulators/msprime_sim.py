"""The msprime backend: sim_ancestry + sim_mutations (binary, infinite sites).

A genome of several loci is simulated as independent replicates of one
locus (unlinked loci) by one msprime simulator, the replicates of
``sim_ancestry(num_replicates=...)`` read as table columns, and its mutations
are placed on all loci at once.  Measured for 2,000 loci × 64 bp and 130
diploids (``benchmarks/bench_many_loci.py``), that is faster than one msprime
call over a genome with a recombination rate of log 2 between loci, whose
coalescent merges lineages of unrelated loci (the cost grows with the square
of the loci), and faster than the SMC(k) model on that genome; about nine
tenths of such a draw is msprime's coalescent itself.

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

#: Loci of several trees (recombination within a locus) get their genotypes this many of their edges at a
#: time: every edge enters each tree it spans, so a batch holds some ten arrays of about this length (a
#: million held 90 MB more of a GBS-sized draw, 0.7 GB in all, and ran no faster).
TREE_BATCH_EDGES = 250_000


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
        Several loci are one msprime simulator too: independent replicates of
        one locus (those of ``sim_ancestry(num_replicates=...)``: the same
        demography, independent genealogies; :func:`_replicate_tables`),
        whose mutations are then placed all at once (:meth:`_many_loci`) from
        the draw's mutation seed.
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
        args = dict(samples=self.samples, demography=demography, model=models, sequence_length=seq_len,
                    recombination_rate=rec, ploidy=2, random_seed=seeds["seed_ancestry"])
        if loci > 1:
            return self._many_loci(_replicate_tables(args, loci), graph, seed=seeds["seed_mutation"], mut=float(mut),
                                   length=seq_len)
        # The tree sequence is never stored; encoding its provenance costs ~5% of a draw.
        ancestry = msprime.sim_ancestry(**args, record_provenance=False)
        ts = msprime.sim_mutations(
            ancestry,
            rate=mut,
            model=msprime.BinaryMutationModel(),
            discrete_genome=False,
            random_seed=seeds["seed_mutation"],
            record_provenance=False,
        )
        order, natural = self._haplotype_order(ts.nodes_flags, ts.nodes_population, graph)
        if not ts.num_sites:
            return Genotypes(np.zeros((0, order.size), np.uint8), np.zeros(0), np.zeros(0, np.int32))
        genotypes = ts.genotype_matrix() if natural else ts.genotype_matrix(samples=order)
        positions = ts.sites_position.copy()  # a view would keep the whole tree sequence alive
        return Genotypes(genotypes, positions, np.zeros(positions.size, np.int32))

    def _many_loci(self, replicates, graph, *, seed: int, mut: float, length: float) -> Genotypes:
        """Mutations on the replicate genealogies (one per locus) of one draw.

        ``replicates`` yields each locus's ``(nodes, edges)`` columns
        (:func:`_replicate_tables`).  All loci at once, in NumPy, instead of
        one ``msprime.sim_mutations`` call per locus, whose fixed cost (table
        copies, index building) was a third of a draw of thousands of short
        loci.  The model is msprime's with ``discrete_genome=False`` and
        binary alleles: on every edge, a Poisson number of mutations with mean
        ``mut`` (per bp per generation) × span (bp) × branch length
        (generations), each at a uniform position along the edge's span,
        carried by the samples below the edge in the tree at that position
        (``tests/test_many_loci.py`` checks the per-locus distributions
        against ``sim_mutations``).  Every draw comes from the draw's
        mutation seed.
        """
        rng = np.random.Generator(np.random.PCG64(seed))
        order = None
        times, parents, children, lefts, rights, node_offsets = [], [], [], [], [], []
        offset = 0
        for nodes, edges in replicates:
            if order is None:
                order, _ = self._haplotype_order(nodes["flags"], nodes["population"], graph)
            node_offsets.append(offset)
            times.append(nodes["time"])
            parents.append(edges["parent"])
            children.append(edges["child"])
            lefts.append(edges["left"])
            rights.append(edges["right"])
            offset += nodes["time"].size
        n_edges = np.array([p.size for p in parents])
        node_offsets = np.asarray(node_offsets, np.int64)
        # Each column joined, then its loci's pieces freed, before the next: never the draw's edges twice.
        time = np.concatenate(times)
        del times
        index = np.int32 if offset < 2**31 else np.int64  # node ids of all loci in one numbering
        edge_offset = np.repeat(node_offsets.astype(index), n_edges)
        parent = np.concatenate(parents).astype(index, copy=False)
        del parents
        parent += edge_offset
        child = np.concatenate(children).astype(index, copy=False)
        del children
        child += edge_offset
        del edge_offset
        left = np.concatenate(lefts)
        del lefts
        right = np.concatenate(rights)
        del rights
        mean = right - left
        mean *= mut
        branch = time[parent]
        branch -= time[child]
        mean *= branch
        del branch
        counts = rng.poisson(mean)
        del mean
        edge = np.repeat(np.arange(counts.size), counts)
        positions = left[edge] + rng.uniform(0.0, right[edge] - left[edge])
        edge_locus = np.repeat(np.arange(n_edges.size, dtype=np.int32), n_edges)
        locus = edge_locus[edge]
        genotypes = np.zeros((edge.size, order.size), np.uint8)
        # A locus with recombination has an edge that does not span it all: several trees.
        several = np.zeros(n_edges.size, bool)
        several[edge_locus[(left > 0) | (right < length)]] = True
        # One tree per locus: each node has one parent, in one array for all loci.
        parent_of = np.full(offset + 1, -1, np.int64)  # the last entry: "above a root" stays there
        parent_of[child] = parent
        one_tree = np.flatnonzero(~several[locus])
        first_node = node_offsets[locus[one_tree]]
        for a in range(0, one_tree.size, 4096):  # bounded memory: 4096 mutations × haplotypes at a time
            rows = one_tree[a:a + 4096]
            genotypes[rows] = _below(parent_of, first_node[a:a + 4096, None] + order[None, :],
                                     child[edge[rows], None])
        rows = np.flatnonzero(several[locus])
        if rows.size:
            # The loci of several trees that have mutations, their trees only, a batch of loci at a time: every
            # edge enters each tree it spans, and all loci at once held ten copies of the draw's edges (1 GB of
            # a draw of 14,000 loci of 300 bp and 150 diploids).
            mutated = np.unique(locus[rows])
            batch = np.cumsum(n_edges[mutated]) // TREE_BATCH_EDGES
            for b in np.unique(batch):
                loci = np.zeros_like(several)
                loci[mutated[batch == b]] = True
                part = rows[loci[locus[rows]]]
                genotypes[part] = _below_in_trees(part, loci, order, edge_locus=edge_locus, left=left, right=right,
                                                  parent=parent, child=child, node_offsets=node_offsets,
                                                  edge=edge[part], locus=locus[part], positions=positions[part],
                                                  length=length)
        rank = np.lexsort((positions, locus))
        return Genotypes(genotypes[rank], positions[rank], locus[rank])

    def _haplotype_order(self, flags, populations, graph) -> tuple[np.ndarray, bool]:
        """Sample nodes (``flags``, ``populations``: the node table's columns)
        ordered by population as listed in ``config['samples']``.

        msprime numbers sample nodes in that order already (population ids
        follow the graph's deme order), so the order is checked, and only
        applied when it differs.
        """
        order = np.flatnonzero(flags & 1).astype(np.int32)  # tskit.NODE_IS_SAMPLE
        pop_of = populations[order]
        ids = {deme.name: i for i, deme in enumerate(graph.demes)}
        wanted = np.repeat([ids[pop] for pop in self.samples], [2 * n for n in self.samples.values()])
        if np.array_equal(pop_of, wanted):
            return order, True
        return np.concatenate([order[pop_of == ids[pop]] for pop in self.samples]), False


def _replicate_tables(args: dict, replicates: int):
    """The node and edge columns of ``replicates`` independent genealogies:
    ``msprime.sim_ancestry(**args, num_replicates=replicates)`` without
    building a tskit tree sequence per replicate.

    msprime's replicate iterator runs its simulator, copies the tables into a
    ``tskit.TableCollection``, builds a ``TreeSequence`` and resets the
    simulator for the next replicate, and its ``Simulator.run`` sets the
    model again before every replicate; together about as much CPU time as
    msprime's coalescent itself in a draw of 2,000 loci of 64 bp and 130
    diploids.
    Here the same simulator, from the same seed, runs the same replicates,
    and only its node and edge columns are read.  Setting the model also
    recomputes msprime's running sum of the lineages' recombination rates
    (a sum over its whole 64 K-segment block); here that sum runs on from
    one replicate to the next, as it does within one replicate, and msprime
    recomputes it whenever its drift exceeds msprime's own bound.  Without
    recombination the genealogies are therefore byte for byte those of
    ``sim_ancestry``; with recombination an event time can differ in its
    last bits (about 1e-16 relative) and, rarely, a draw then differs from
    msprime's iterator.  The process simulated, and so every distribution,
    is the same.  The simulator is msprime's internal class
    (``msprime.ancestry``, version pinned in the lock file); without it, the
    public iterator gives the columns.
    """
    from msprime import ancestry

    if not (hasattr(ancestry, "_parse_sim_ancestry") and hasattr(ancestry.Simulator, "_run_until")):
        yield from _public_replicate_tables(args, replicates)
        return
    sim = ancestry._parse_sim_ancestry(**args)
    fast, model = False, None
    for i in range(replicates):
        if fast:
            # One model, no end time: Simulator.run is these two calls once it has set the model again.
            sim._run_until(np.inf)
            sim.finalise_tables()
        else:
            sim.run()
            model = sim.model
        tables = sim.tables.asdict()
        yield tables["nodes"], tables["edges"]
        sim.reset()
        if i == 0:
            # reset() keeps the model in place (checked, not assumed).
            fast = len(sim.models) == 1 and sim.models[0].duration is None and sim.end_time == np.inf \
                and sim.model == model


def _public_replicate_tables(args: dict, replicates: int):
    """:func:`_replicate_tables` through msprime's public replicate iterator."""
    import msprime

    for ts in msprime.sim_ancestry(**args, num_replicates=replicates, record_provenance=False):
        yield ({"time": ts.nodes_time, "flags": ts.nodes_flags, "population": ts.nodes_population},
               {"left": ts.edges_left, "right": ts.edges_right, "parent": ts.edges_parent, "child": ts.edges_child})


def _below_in_trees(rows, several, order, *, edge_locus, left, right, parent, child, node_offsets, edge, locus,
                    positions, length) -> np.ndarray:
    """Genotypes of the mutations on loci of several trees (``several``: per
    locus, the loci of these mutations), each carried by the samples below its
    edge in the tree at its position.

    Each tree of these loci gets its own copy of its locus's nodes: tree ``k``
    (a locus's breakpoint, in the order of (locus, position)) numbers node
    ``u`` of its locus ``k × width + u``, and every edge is entered in each
    tree it spans, so that one parent array holds all these trees.
    """
    sub = np.flatnonzero(several[edge_locus])
    e_locus = edge_locus[sub]
    local_parent = parent[sub] - node_offsets[e_locus]
    local_child = child[sub] - node_offsets[e_locus]
    width = int(max(local_parent.max(), local_child.max())) + 1
    # Breakpoints as complex numbers: locus + 1j × position sorts by locus, then position.
    e_left = e_locus + 1j * left[sub]
    e_right = e_locus + 1j * right[sub]
    starts = np.unique(np.concatenate([np.flatnonzero(several) + 0j, e_left[left[sub] > 0],
                                       e_right[right[sub] < length]]))
    first = np.searchsorted(starts, e_left)
    spans = np.searchsorted(starts, e_right) - first  # a locus's last edge ends at the next locus's first tree
    tree = np.repeat(first, spans) + np.arange(spans.sum()) - np.repeat(np.cumsum(spans) - spans, spans)
    parent_of = np.full(starts.size * width + 1, -1, np.int64)
    parent_of[tree * width + np.repeat(local_child, spans)] = tree * width + np.repeat(local_parent, spans)
    at = np.searchsorted(starts, locus + 1j * positions, side="right") - 1
    target = at * width + (child[edge] - node_offsets[locus])
    genotypes = np.zeros((rows.size, order.size), np.uint8)
    for a in range(0, rows.size, 4096):
        part = slice(a, a + 4096)
        genotypes[part] = _below(parent_of, at[part, None] * width + order[None, :], target[part, None])
    return genotypes


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
