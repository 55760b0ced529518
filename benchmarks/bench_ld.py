"""The ``ld`` statistic: popdl's batched computation against a loop over the loci.

``ld`` is the mean r² of the pairs of common SNPs of each locus, by distance
class (:func:`popdl.features._ld`).  popdl stacks the loci, in batches of
similar SNP counts, into one array of r² matrices; the reference here is
popdl's previous version, one locus at a time (its common SNPs, their r²
matrix, the pairs of each distance class summed in one pass over it; the
positions of a simulation are sorted, so it leaves out the previous
version's sorting).  Both run on the same genotypes, one core, in this process,
on two genomes simulated once with msprime (``isolation``-like, two samples
of ``--haplotypes`` each, N = 10,000, μ = r = 1e-8):

* the default config's: 10 loci of 100 kb (up to 100 common SNPs a locus);
* RAD-like: ``--rad-loci`` loci of 300 bp (a few SNPs each), as a GBS/RAD
  data set or the RAD examples bring.

For each, the statistic of each sample and of both pooled (the three calls
of a draw of the default scenarios), phased and as unphased dosages; times
are CPU seconds (``time.process_time``), medians of ``--reps`` repetitions
that alternate which side goes first.  The line ends with the largest
absolute difference between the two sides' values (rounding only: < 1e-12;
the exit status is 1 when it is larger).
Targets: loop ÷ batched ≥ 1 on the default genome (no slower), ≥ 5 on the
RAD-like one.

    python benchmarks/bench_ld.py [--rad-loci 2000] [--haplotypes 20] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from popdl.features import LD_MAX_SITES, LD_MIN_MAF, MISSING, _ld, dosages  # noqa: E402


def loop_ld(x: np.ndarray, positions: np.ndarray, locus: np.ndarray, edges: np.ndarray, *, ploidy: int):
    """The reference: the same statistic, one locus at a time (popdl's previous version)."""
    sums, counts = np.zeros(edges.size - 1), np.zeros(edges.size - 1)
    called = x != MISSING
    n_called = called.sum(axis=1)
    freq = np.where(called, x, 0).sum(axis=1) / np.maximum(ploidy * n_called, 1)
    common = (np.minimum(freq, 1.0 - freq) >= LD_MIN_MAF) & (n_called >= 2)
    starts = np.flatnonzero(np.r_[True, locus[1:] != locus[:-1], True])
    for a, b in zip(starts[:-1], starts[1:]):
        idx = a + np.flatnonzero(common[a:b])
        if idx.size < 2:
            continue
        if idx.size > LD_MAX_SITES:
            idx = idx[np.linspace(0, idx.size - 1, LD_MAX_SITES).round().astype(np.int64)]
        pos = positions[idx]
        z = np.where(called[idx], x[idx] - (ploidy * freq[idx])[:, None], 0.0)
        norm = np.sqrt(np.einsum("ij,ij->i", z, z))
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.square((z @ z.T) / np.outer(norm, norm))
        r2[~np.isfinite(r2)] = 0.0
        # Pairs (i, j > i) in [e_c, e_c+1): columns b_c..b_c+1 of row i (sorted positions); one pass.
        n = idx.size
        rows = np.arange(n)
        bounds = np.maximum(np.searchsorted(pos, pos[:, None] + edges[None, :], side="left"), rows[:, None] + 1)
        width = np.diff(bounds, axis=1)
        segments = np.add.reduceat(np.append(r2.ravel(), 0.0), (bounds + rows[:, None] * n).ravel())
        sums += np.where(width > 0, segments.reshape(n, -1)[:, :-1], 0.0).sum(axis=0)
        counts += np.maximum(width, 0).sum(axis=0)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def genome(loci: int, length: float, haplotypes: int, seed: int):
    """Genotypes (sites × 2 samples of ``haplotypes``), positions within the locus, locus of each site."""
    import msprime

    demography = msprime.Demography()
    demography.add_population(name="a", initial_size=10_000)
    demography.add_population(name="b", initial_size=10_000)
    demography.add_population(name="anc", initial_size=10_000)
    demography.add_population_split(time=20_000, derived=["a", "b"], ancestral="anc")
    g, pos, loc = [], [], []
    reps = msprime.sim_ancestry({"a": haplotypes // 2, "b": haplotypes // 2}, demography=demography,
                                sequence_length=length, recombination_rate=1e-8, random_seed=seed,
                                num_replicates=loci)
    for i, ts in enumerate(reps):
        ts = msprime.sim_mutations(ts, rate=1e-8, random_seed=seed + i, model=msprime.BinaryMutationModel())
        g.append(ts.genotype_matrix().astype(np.int8))
        pos.append(ts.tables.sites.position)
        loc.append(np.full(ts.num_sites, i, dtype=np.int32))
    return np.concatenate(g), np.concatenate(pos), np.concatenate(loc)


def samples(g: np.ndarray, haplotypes: int):
    """The three inputs of a draw (each sample, both pooled), phased (ploidy 1) and as dosages (2)."""
    d = dosages(g)
    h, i = haplotypes, haplotypes // 2
    return ([(g[:, :h], 1), (g[:, h:], 1), (g, 1)]
            + [(d[:, :i], 2), (d[:, i:], 2), (d, 2)])


def timed(fn, inputs, positions, locus, edges) -> tuple[float, list[np.ndarray]]:
    start = time.process_time()
    out = [fn(x, positions, locus, edges, ploidy=p) for x, p in inputs]
    return time.process_time() - start, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rad-loci", type=int, default=2000, help="loci of 300 bp in the RAD-like genome")
    parser.add_argument("--loci", type=int, default=10, help="loci of 100 kb in the default genome")
    parser.add_argument("--haplotypes", type=int, default=20, help="haplotypes per sample (even)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each side")
    args = parser.parse_args(argv)
    fractions = np.array([0.0, 0.02, 0.1, 0.3, 1.0])  # the default features.ld_distances
    ok = True
    for label, loci, length, target in (("default genome", args.loci, 1e5, 1.0),
                                        ("RAD-like genome", args.rad_loci, 300.0, 5.0)):
        g, positions, locus = genome(loci, length, args.haplotypes, seed=7)
        inputs = samples(g, args.haplotypes)
        edges = fractions * length
        times = {"loop": [], "batched": []}
        diff = 0.0
        for rep in range(args.reps):
            sides = [("loop", loop_ld), ("batched", _ld)]
            results = {}
            for name, fn in (sides if rep % 2 == 0 else sides[::-1]):
                seconds, results[name] = timed(fn, inputs, positions, locus, edges)
                times[name].append(seconds)
            diff = max(diff, max(float(np.abs(a - b).max()) for a, b in zip(results["loop"], results["batched"])))
        loop, batched = statistics.median(times["loop"]), statistics.median(times["batched"])
        ratio = loop / batched if batched > 0 else float("inf")
        ok &= diff < 1e-12
        print(f"{label}: {loci} loci x {length:g} bp, {g.shape[0]} sites, 6 calls (3 samples, phased and "
              f"dosages): loop {1e3 * loop:.2f} ms, batched {1e3 * batched:.2f} ms; loop / batched {ratio:.2f} "
              f"(target >= {target:g}: {'met' if ratio >= target else 'BELOW TARGET'}); largest difference "
              f"{diff:.1e}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
