"""Genotype images against slow naive versions, statistics against tskit's and scikit-allel's."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from math import comb

import allel
import msprime
import numpy as np
import pytest

from popdl import seeds
from popdl.features import (
    Extractor,
    FeatureSettings,
    LD_MAX_SITES,
    StatsSpec,
    _hash_weights,
    best_projection,
    encode_minor_major,
    hypergeometric_table,
    projected_sfs,
    genotype_image,
    select_snps,
    snp_distances,
    sort_haplotypes,
    summary_stats,
)


# -------------------------------------------------------------------------------- naive versions
def naive_encode(g):
    out = np.zeros(g.shape, dtype=np.int8)
    for s in range(g.shape[0]):
        calls = [x for x in g[s] if x != -1]
        derived = sum(1 for x in calls if x == 1)
        minor = 1 if derived <= len(calls) - derived else 0
        for h in range(g.shape[1]):
            if g[s, h] == -1:
                out[s, h] = 0
            else:
                out[s, h] = 1 if g[s, h] == minor else -1
    return out


def naive_sort(rows):
    n = len(rows)
    if n <= 2:
        return list(range(n))
    d = [[int(np.abs(rows[i].astype(int) - rows[j].astype(int)).sum()) for j in range(n)] for i in range(n)]
    start = min(range(n), key=lambda i: (sum(d[i]), i))
    order = [start]
    while len(order) < n:
        last = order[-1]
        order.append(min((j for j in range(n) if j not in order), key=lambda j: (d[last][j], j)))
    return order


def naive_distances(pos, loc, length, width):
    out = [0.0] * width
    for i in range(len(pos)):
        if i == 0:
            out[i] = pos[0] / length
        elif loc[i] != loc[i - 1]:
            out[i] = 1.0
        else:
            out[i] = (pos[i] - pos[i - 1]) / length
    return np.array(out, dtype=np.float32)


def random_genotypes(rng, sites=40, haps=12, missing=0.05):
    g = (rng.random((sites, haps)) < rng.random((sites, 1))).astype(np.int8)
    g[rng.random(g.shape) < missing] = -1
    return g


# --------------------------------------------------------------------------------------- image
def test_minor_major_encoding_matches_naive():
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = random_genotypes(rng)
        assert np.array_equal(encode_minor_major(g), naive_encode(g))


def test_minor_major_values_and_ties():
    g = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 1], [1, -1, 0, 0]], dtype=np.int8)
    assert encode_minor_major(g).tolist() == [[-1, -1, -1, 1], [1, -1, 1, -1], [-1, -1, -1, 1], [1, 0, -1, -1]]


def test_sort_matches_naive_greedy_chain():
    rng = np.random.default_rng(1)
    for _ in range(20):
        rows = encode_minor_major(random_genotypes(rng, sites=15, haps=9)).T
        assert sort_haplotypes(rows).tolist() == naive_sort(rows)
    for _ in range(5):  # values beyond the encoding's -1, 0, 1, and many ties
        rows = rng.integers(-2, 3, size=(12, 6)).astype(np.int8)
        assert sort_haplotypes(rows).tolist() == naive_sort(rows)
    assert sort_haplotypes(np.zeros((7, 4), np.int8)).tolist() == list(range(7))


def test_distances_match_naive():
    rng = np.random.default_rng(2)
    loc = np.sort(rng.integers(0, 4, 25)).astype(np.int32)
    pos = np.concatenate([np.sort(rng.uniform(0, 1000, (loc == k).sum())) for k in range(4)])
    assert np.allclose(snp_distances(pos, loc, length=1000.0, width=32), naive_distances(pos, loc, 1000.0, 32))


def test_select_snps_is_reproducible_and_in_genome_order():
    a = select_snps(100, 10, method="random", rng=np.random.default_rng(5))
    b = select_snps(100, 10, method="random", rng=np.random.default_rng(5))
    assert np.array_equal(a, b) and (np.diff(a) > 0).all() and a.size == 10
    assert select_snps(100, 10, method="first", rng=None).tolist() == list(range(10))
    assert select_snps(100, 10, method="central", rng=None).tolist() == list(range(45, 55))
    assert select_snps(5, 10, method="random", rng=None).tolist() == list(range(5))


@pytest.mark.parametrize("n_sites, snps", [(10, 32), (200, 32)])
def test_image_padding_subsampling_and_population_grouping(n_sites, snps):
    rng = np.random.default_rng(n_sites)
    pops = np.array(["p1"] * 6 + ["p2"] * 4 + ["p3"] * 6)
    g = random_genotypes(rng, sites=n_sites, haps=pops.size, missing=0.0)
    g[0] = 0  # a monomorphic site never enters the image
    pos = np.sort(rng.uniform(0, 5000, n_sites))
    loc = np.zeros(n_sites, np.int32)
    image, dist, kept = genotype_image(g, pos, loc, populations=pops, snps=snps, length=5000.0,
                                       rng=np.random.default_rng(9))
    assert image.shape == (pops.size, snps) and image.dtype == np.int8 and dist.shape == (snps,)
    poly = np.flatnonzero((g == 1).any(axis=1) & (g == 0).any(axis=1))
    assert kept == min(snps, poly.size)
    # Columns: the kept SNPs (same random subset as select_snps with the same seed), then 0 padding.
    keep = poly[select_snps(poly.size, snps, method="random", rng=np.random.default_rng(9))]
    assert (image[:, kept:] == 0).all() and (dist[kept:] == 0).all()
    assert set(np.unique(image[:, :kept])) <= {-1, 1}
    expected = naive_encode(g[keep]).T
    assert np.allclose(dist[:kept], naive_distances(pos[keep], loc[keep], 5000.0, snps)[:kept])
    # Rows: each population keeps its rows (as a multiset) and its block, sorted like the naive chain.
    for pop in ("p1", "p2", "p3"):
        rows = np.flatnonzero(pops == pop)
        block = expected[rows]
        assert sorted(map(tuple, image[rows, :kept])) == sorted(map(tuple, block))
        assert image[rows, :kept].tolist() == block[naive_sort(np.pad(block, ((0, 0), (0, snps - kept))))].tolist()
    unsorted, _, _ = genotype_image(g, pos, loc, populations=pops, snps=snps, length=5000.0, sort_rows=False,
                                    rng=np.random.default_rng(9))
    assert np.array_equal(unsorted[:, :kept], expected)


def test_image_of_data_without_snps_is_all_padding():
    g = np.zeros((5, 4), np.int8)
    image, dist, kept = genotype_image(g, np.arange(5.0), np.zeros(5, np.int32), populations=np.array(["a"] * 4),
                                       snps=8, length=10.0, rng=np.random.default_rng(0))
    assert kept == 0 and not image.any() and not dist.any()


# ----------------------------------------------------------------------------------- statistics
@pytest.fixture(scope="module")
def two_pop_ts():
    demography = msprime.Demography()
    demography.add_population(name="a", initial_size=8000)
    demography.add_population(name="b", initial_size=3000)
    demography.add_population(name="anc", initial_size=10000)
    demography.add_population_split(time=1500, derived=["a", "b"], ancestral="anc")
    demography.set_symmetric_migration_rate(["a", "b"], 1e-4)
    ts = msprime.sim_ancestry({"a": 7, "b": 5}, demography=demography, sequence_length=2e5,
                              recombination_rate=1e-8, random_seed=11)
    return msprime.sim_mutations(ts, rate=1.5e-8, model=msprime.BinaryMutationModel(), discrete_genome=False,
                                 random_seed=12)


def test_statistics_equal_tskits_own(two_pop_ts):
    ts = two_pop_ts
    g = ts.genotype_matrix()
    pops = np.array(["a"] * 14 + ["b"] * 10)
    A, B = ts.samples(population=0), ts.samples(population=1)
    spec = StatsSpec(stats=["segsites", "pi", "theta_w", "tajimas_d", "fst", "dxy", "sfs"], populations=pops)
    v = dict(zip(spec.names, summary_stats(g, np.zeros(g.shape[0], np.int32), spec=spec,
                                           total_length=ts.sequence_length, loci=1)))
    assert ts.num_sites > 100
    for name, nodes, n in (("a", A, 14), ("b", B, 10)):
        assert v[f"segsites_{name}"] == ts.segregating_sites(nodes, span_normalise=False)
        assert v[f"pi_{name}"] == pytest.approx(ts.diversity(nodes), rel=1e-9)
        harmonic = sum(1 / i for i in range(1, n))
        assert v[f"theta_w_{name}"] == pytest.approx(ts.segregating_sites(nodes) / harmonic, rel=1e-9)
        assert v[f"tajimas_d_{name}"] == pytest.approx(ts.Tajimas_D(nodes), rel=1e-9)
        afs = ts.allele_frequency_spectrum([nodes], polarised=False, span_normalise=False)[1 : n // 2 + 1]
        ours = np.array([v[f"sfs_{name}_{k}"] for k in range(1, n // 2 + 1)])
        assert np.allclose(ours, afs / afs.sum())
    assert v["dxy_a_b"] == pytest.approx(ts.divergence([A, B]), rel=1e-9)
    assert v["fst_a_b"] == pytest.approx(ts.Fst([A, B]), rel=1e-9)


def test_haplotype_diversity_equals_scikit_allel(two_pop_ts):
    g = two_pop_ts.genotype_matrix()
    pops = np.array(["a"] * 14 + ["b"] * 10)
    spec = StatsSpec(stats=["hap_diversity"], populations=pops)
    # On a short window haplotypes repeat, which is where the statistic is informative.
    for window in (slice(0, 3), slice(0, 8), slice(None)):
        sub = g[window]
        values = summary_stats(sub, np.zeros(sub.shape[0], np.int32), spec=spec, total_length=1.0, loci=1)
        for value, cols in zip(values, (slice(0, 14), slice(14, 24))):
            assert value == pytest.approx(allel.haplotype_diversity(allel.HaplotypeArray(sub[:, cols])))


def test_haplotype_diversity_is_the_mean_over_loci():
    rng = np.random.default_rng(3)
    g = (rng.random((30, 10)) < 0.3).astype(np.int8)
    loc = np.repeat(np.arange(3), 10).astype(np.int32)
    spec = StatsSpec(stats=["hap_diversity"], populations=np.array(["a"] * 10))
    value = summary_stats(g, loc, spec=spec, total_length=1.0, loci=3)[0]
    expected = np.mean([allel.haplotype_diversity(allel.HaplotypeArray(g[loc == k])) for k in range(3)])
    assert value == pytest.approx(expected)


def test_joint_sfs_matches_naive_binning(two_pop_ts):
    g = two_pop_ts.genotype_matrix()
    pops = np.array(["a"] * 14 + ["b"] * 10)
    spec = StatsSpec(stats=["jsfs"], populations=pops, jsfs_bins=3)
    ours = summary_stats(g, np.zeros(g.shape[0], np.int32), spec=spec, total_length=1.0, loci=1).reshape(3, 3)
    naive = np.zeros((3, 3))
    for site in g:
        k1, k2 = int(site[:14].sum()), int(site[14:].sum())
        if k1 + k2 > 12:  # fold on the pooled minor allele
            k1, k2 = 14 - k1, 10 - k2
        if k1 + k2 == 0:
            continue
        naive[min(int(k1 / 14 * 3), 2), min(int(k2 / 10 * 3), 2)] += 1
    assert np.allclose(ours, naive / naive.sum())


def test_statistic_names_follow_populations_and_pairs():
    spec = StatsSpec(stats=["pi", "fst", "sfs"], populations=np.array(["x"] * 4 + ["y"] * 2 + ["z"] * 2))
    assert spec.names == ["pi_x", "pi_y", "pi_z", "fst_x_y", "fst_x_z", "fst_y_z",
                          "sfs_x_1", "sfs_x_2", "sfs_y_1", "sfs_z_1"]



# ------------------------------------------------------------------------------ linkage disequilibrium
def naive_ld(x, positions, locus, edges, *, ploidy):
    """Mean r² per distance class, pair by pair: Pearson's r over the rows, missing values
    replaced by their SNP's mean over the called rows; SNPs with minor-allele frequency < 0.1 left out."""
    sums, counts = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    common = []
    for s in range(x.shape[0]):
        called = x[s][x[s] != -1]
        f = called.sum() / (ploidy * called.size) if called.size else 0.0
        common.append(called.size >= 2 and min(f, 1 - f) >= 0.1)
    for i in range(x.shape[0]):
        for j in range(i + 1, x.shape[0]):
            if not (common[i] and common[j]) or locus[i] != locus[j]:
                continue
            a, b = x[i].astype(float), x[j].astype(float)
            a[x[i] == -1] = a[x[i] != -1].mean()
            b[x[j] == -1] = b[x[j] != -1].mean()
            r = np.corrcoef(a, b)[0, 1]
            k = np.searchsorted(edges, abs(positions[i] - positions[j]), side="right") - 1
            if 0 <= k < len(edges) - 1:
                sums[k] += r * r
                counts[k] += 1
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def test_ld_names_classes_per_population_and_pooled_pair():
    spec = StatsSpec(stats=["ld"], populations=np.array(["x"] * 4 + ["y"] * 2), ld_edges=[0, 10, 50])
    assert spec.names == ["ld_x_1", "ld_x_2", "ld_y_1", "ld_y_2", "ld_x_y_1", "ld_x_y_2"]
    with pytest.raises(ValueError, match="increasing distance edges"):
        StatsSpec(stats=["ld"], populations=np.array(["x"] * 4), ld_edges=[0, 50, 10])


def test_ld_of_haplotypes_equals_the_naive_pairwise_r2(two_pop_ts):
    ts = two_pop_ts
    g = ts.genotype_matrix().astype(np.int8)
    positions = ts.tables.sites.position
    locus = (positions // 5e4).astype(np.int32)  # four loci of 50 kb
    positions = positions - 5e4 * locus
    pops = np.array(["a"] * 14 + ["b"] * 10)
    edges = np.array([0.0, 1e3, 5e3, 1.5e4, 5e4])
    spec = StatsSpec(stats=["ld"], populations=pops, ld_edges=edges)
    ours = summary_stats(g, locus, spec=spec, total_length=2e5, loci=4, positions=positions)
    expected = np.concatenate([naive_ld(g[:, cols], positions, locus, edges, ploidy=1)
                               for cols in (slice(0, 14), slice(14, 24), slice(0, 24))])
    f = g.mean(axis=1)
    assert max(np.sum((np.minimum(f, 1 - f) >= 0.1) & (locus == k)) for k in range(4)) <= LD_MAX_SITES  # no thinning
    assert np.allclose(ours, expected, rtol=1e-9, atol=1e-12)
    assert np.all(ours > 0) and np.all(ours <= 1)


def test_ld_of_a_locus_with_more_common_snps_keeps_evenly_spaced_ones():
    rng = np.random.default_rng(8)
    n = LD_MAX_SITES + 50
    g = (rng.random((n, 16)) < 0.5).astype(np.int8)
    g[:, 0], g[:, 1] = 0, 1  # every SNP common
    positions = np.sort(rng.choice(10_000, n, replace=False)).astype(float)
    locus = np.zeros(n, np.int32)
    edges = np.array([0.0, 500.0, 10_000.0])
    spec = StatsSpec(stats=["ld"], populations=np.array(["a"] * 16), ld_edges=edges)
    ours = summary_stats(g, locus, spec=spec, total_length=1e4, loci=1, positions=positions)
    kept = np.linspace(0, n - 1, LD_MAX_SITES).round().astype(int)
    assert np.allclose(ours, naive_ld(g[kept], positions[kept], locus[kept], edges, ploidy=1))
    assert not np.allclose(ours, naive_ld(g, positions, locus, edges, ploidy=1))


def test_ld_of_unphased_data_is_rogers_huffs_r2_and_takes_missing_calls():
    ts = msprime.sim_mutations(msprime.sim_ancestry(12, population_size=5000, sequence_length=5e4,
                                                    recombination_rate=1e-8, random_seed=4),
                               rate=2e-8, model=msprime.BinaryMutationModel(), random_seed=5)
    g = ts.genotype_matrix().astype(np.int8)
    positions = ts.tables.sites.position
    locus = np.zeros(g.shape[0], np.int32)
    settings = FeatureSettings(snps=16, stats=("ld",), phased=False, ld_distances=(0.0, 0.1, 1.0))
    ex = Extractor(settings, populations=np.array(["a"] * 24), locus_length=5e4)
    ours = ex.stats(g, locus, total_length=5e4, loci=1, positions=positions)
    d = g[:, 0::2] + g[:, 1::2]
    freq = d.sum(1) / 24  # 12 diploid individuals
    keep = np.minimum(freq, 1 - freq) >= 0.1
    r = allel.rogers_huff_r(d[keep].astype(np.int8))  # condensed, pairs in order (i < j)
    i, j = np.triu_indices(int(keep.sum()), 1)
    dist = np.abs(positions[keep][i] - positions[keep][j])
    expected = [np.mean(r[(dist >= lo) & (dist < hi)] ** 2) for lo, hi in ((0, 5e3), (5e3, 5e4))]
    assert np.allclose(ours, expected, rtol=1e-6)
    # Missing calls (both of an individual's) enter with their SNP's mean: as the naive version.
    rng = np.random.default_rng(6)
    gm = g.copy()
    gone = rng.random((g.shape[0], 12)) < 0.2
    gm[np.repeat(gone, 2, axis=1)] = -1
    dm = np.where((gm[:, 0::2] == -1), -1, gm[:, 0::2] + gm[:, 1::2])
    with_missing = ex.stats(gm, locus, total_length=5e4, loci=1, positions=positions)
    assert np.allclose(with_missing, naive_ld(dm, positions, locus, [0, 5e3, 5e4], ploidy=2))
    assert not np.allclose(with_missing, ours)


def test_ld_of_many_short_loci_in_several_batches_equals_the_naive_pairwise_r2(monkeypatch):
    """RAD-like data: hundreds of short loci of unequal SNP counts, positions unsorted within some
    loci, missing calls; batches of loci forced small so that several are needed."""
    from popdl import features

    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 9, size=300)
    locus = np.repeat(np.arange(300), sizes).astype(np.int32)
    positions = rng.integers(0, 300, size=locus.size).astype(float)
    g = (rng.random((locus.size, 12)) < 0.4).astype(np.int8)
    g[rng.random(g.shape) < 0.1] = -1
    edges = np.array([0.0, 20.0, 100.0, 300.0])
    expected = naive_ld(g, positions, locus, edges, ploidy=1)
    monkeypatch.setattr(features, "LD_BATCH_ELEMENTS", 200)
    assert np.allclose(features._ld(g, positions, locus, edges, ploidy=1), expected, rtol=1e-9, atol=1e-12)
    monkeypatch.setattr(features, "LD_BATCH_ELEMENTS", 2_000_000)
    whole = features._ld(g, positions, locus, edges, ploidy=1)
    assert np.allclose(whole, expected, rtol=1e-9, atol=1e-12)
    assert np.all(expected > 0)
    # The loci's padded rows multiplied a few loci at a time (down to one): the same values, bit for bit.
    for rows in (1, 300):
        monkeypatch.setattr(features, "LD_ROWS_ELEMENTS", rows)
        assert np.array_equal(features._ld(g, positions, locus, edges, ploidy=1), whole)


def test_haplotype_hashes_in_batches_of_loci_are_the_same(monkeypatch):
    from popdl import features

    rng = np.random.default_rng(5)
    locus = np.repeat(np.array([0, 2, 3, 7]), [5, 1, 9, 3]).astype(np.int32)
    g = (rng.random((locus.size, 6)) < 0.5).astype(np.int8)
    g[rng.random(g.shape) < 0.1] = -1
    whole = features._haplotype_hashes(g, locus, 9)
    assert not whole[[1, 4, 5, 6, 8]].any() and whole[[0, 2, 3, 7]].any()
    for elements in (1, 6, 40):  # a locus is never split, even where it exceeds the batch
        monkeypatch.setattr(features, "HASH_BATCH_ELEMENTS", elements)
        assert np.array_equal(features._haplotype_hashes(g, locus, 9), whole)
    rows = [0, 1, 2, 3, 5]
    expected = np.mean([1.0 - sum(c * c for c in np.unique(h, return_counts=True)[1]) / 25.0 for h in whole[:, rows]])
    assert features._hap_diversity(whole, rows) == pytest.approx(expected * 5 / 4, rel=1e-12)


def test_ld_needs_positions_and_is_zero_without_pairs():
    spec = StatsSpec(stats=["ld"], populations=np.array(["a"] * 6), ld_edges=[0, 100])
    g = np.array([[0, 1, 0, 1, 0, 1]], np.int8)
    assert summary_stats(g, np.zeros(1, np.int32), spec=spec, total_length=100, loci=1,
                         positions=np.array([5.0])).tolist() == [0.0]
    with pytest.raises(ValueError, match="needs the SNP positions"):
        summary_stats(g, np.zeros(1, np.int32), spec=spec, total_length=100, loci=1)


# ----------------------------------------------------------- statistics against scikit-allel, value for value
def naive_hap_diversity(g, locus, loci, cols):
    """Nei's haplotype diversity per locus from counted haplotype tuples (a missing call is an allele), averaged."""
    n = len(cols)
    same = np.array([sum(c * c for c in Counter(tuple(g[locus == k][:, j]) for j in cols).values()) for k in range(loci)])
    return float(np.mean(n / (n - 1) * (1.0 - same / n**2)))


def naive_summary_stats(genotypes, locus, *, spec, total_length, loci):
    """The statistics computed with scikit-allel (popdl's former implementation), on the polymorphic sites."""
    g = np.asarray(genotypes, dtype=np.int8)
    derived = (g == 1).sum(axis=1)
    poly = (derived > 0) & (derived < (g != -1).sum(axis=1))
    g, locus = g[poly], locus[poly]
    h = allel.HaplotypeArray(g)
    acs = {p: h.count_alleles(subpop=spec.index[p], max_allele=1) for p in spec.pops}
    values = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for stat in spec.stats:
            for p in spec.pops if stat in ("segsites", "pi", "theta_w", "tajimas_d", "hap_diversity", "sfs") else []:
                ac, n = acs[p], spec.index[p].size
                if stat == "segsites":
                    values.append(float(ac.count_segregating()))
                elif stat == "pi":
                    values.append(float(np.nansum(allel.mean_pairwise_difference(ac, fill=0))) / total_length)
                elif stat == "theta_w":
                    values.append(ac.count_segregating() / sum(1 / i for i in range(1, n)) / total_length)
                elif stat == "tajimas_d":
                    d = allel.tajima_d(ac, min_sites=3) if ac.shape[0] else np.nan
                    values.append(float(d) if np.isfinite(d) else 0.0)
                elif stat == "hap_diversity":
                    values.append(naive_hap_diversity(g, locus, loci, spec.index[p]) if n > 1 else 0.0)
                elif spec.projection[p] == n:
                    seg = ac.is_segregating() & (ac.sum(axis=1) == n)
                    sfs = allel.sfs_folded(ac[seg], n=n)[1 : n // 2 + 1] if seg.any() else np.zeros(n // 2)
                    values += list(sfs / sfs.sum() if sfs.sum() else np.zeros(n // 2))
                else:
                    values += list(naive_folded_sfs(ac[:, 1], ac.sum(axis=1), spec.projection[p]))
            for a, b in spec.pairs if stat in ("fst", "dxy", "jsfs") else []:
                dxy = float(np.nansum(allel.mean_pairwise_difference_between(acs[a], acs[b], fill=0)))
                if stat == "dxy":
                    values.append(dxy / total_length)
                elif stat == "fst":
                    pi_a = float(np.nansum(allel.mean_pairwise_difference(acs[a], fill=0)))
                    pi_b = float(np.nansum(allel.mean_pairwise_difference(acs[b], fill=0)))
                    total = pi_a + 2 * dxy + pi_b
                    values.append(1.0 - 2.0 * (pi_a + pi_b) / total if total > 0 else 0.0)
                else:
                    values += list(naive_jsfs(acs[a], acs[b], spec.jsfs_bins, spec.projection[a],
                                              spec.projection[b]).ravel())
    out = np.asarray(values, dtype=np.float64)
    out[~np.isfinite(out)] = 0.0
    return out


def naive_projection(k, n, m):
    """P(j of m haplotypes drawn from n, k of them derived, are derived), j = 0..m: a list of floats."""
    return [comb(k, j) * comb(n - k, m - j) / comb(n, m) for j in range(m + 1)]


def naive_projected_sfs(derived, called, m):
    """The unfolded SFS of m haplotypes: each site with at least m calls adds its hypergeometric projection."""
    out = np.zeros(m + 1)
    for k, n in zip(np.asarray(derived).tolist(), np.asarray(called).tolist()):
        if n >= m:
            for j, p in enumerate(naive_projection(k, n, m)):
                out[j] += p
    return out


def naive_folded_sfs(derived, called, m):
    unfolded = naive_projected_sfs(derived, called, m)
    folded = np.array([unfolded[j] + (unfolded[m - j] if 2 * j != m else 0.0) for j in range(1, m // 2 + 1)])
    return folded / folded.sum() if folded.sum() else folded


def naive_jsfs(ac1, ac2, bins, m1, m2):
    """The folded joint SFS projected onto m1 x m2 haplotypes, site by site and cell by cell, binned."""
    out = np.zeros((bins, bins))
    for (a0, a1), (b0, b1) in zip(ac1.tolist(), ac2.tolist()):
        n1, n2 = a0 + a1, b0 + b1
        if n1 < m1 or n2 < m2:
            continue
        for i, p1 in enumerate(naive_projection(a1, n1, m1)):
            for j, p2 in enumerate(naive_projection(b1, n2, m2)):
                k1, k2 = (m1 - i, m2 - j) if i + j > (m1 + m2) / 2 else (i, j)
                if k1 + k2 > 0:
                    out[min(int(k1 / m1 * bins), bins - 1), min(int(k2 / m2 * bins), bins - 1)] += p1 * p2
    return out / out.sum() if out.sum() else out


ALL_STATS = ["segsites", "pi", "theta_w", "tajimas_d", "hap_diversity", "fst", "dxy", "sfs", "jsfs"]


@pytest.mark.parametrize("seed", range(6))
def test_statistics_equal_scikit_allels_bit_for_bit(seed):
    """Missing calls, sites left monomorphic by them, three populations, several loci (one of them empty)."""
    rng = np.random.default_rng(seed)
    pops = np.array(["p1"] * 6 + ["p2"] * 4 + ["p3"] * 8)
    g = random_genotypes(rng, sites=int(rng.integers(2, 60)), haps=pops.size, missing=0.1 * (seed % 3))
    locus = np.sort(rng.choice([0, 1, 3], size=g.shape[0])).astype(np.int32)
    spec = StatsSpec(stats=ALL_STATS, populations=pops, jsfs_bins=3)
    ours = summary_stats(g, locus, spec=spec, total_length=4e4, loci=4)
    assert np.array_equal(ours, naive_summary_stats(g, locus, spec=spec, total_length=4e4, loci=4))
    ex = Extractor(FeatureSettings(snps=16, stats=tuple(ALL_STATS), jsfs_bins=3), populations=pops, locus_length=1e4)
    assert np.array_equal(ex.stats(g, locus, total_length=4e4, loci=4), ours)


# ----------------------------------------------------------- the SFS of every called genotype (projection)
def test_hypergeometric_table_is_the_hypergeometric_distribution():
    for n, m in ((10, 6), (7, 2), (24, 17), (5, 5)):
        table = hypergeometric_table(n, m)
        assert table.shape == (n + 1, m + 1)
        assert np.allclose(table, [naive_projection(k, n, m) for k in range(n + 1)], rtol=1e-12, atol=1e-15)
    assert np.array_equal(hypergeometric_table(6, 6), np.eye(7))


@pytest.mark.parametrize("seed", range(4))
def test_projected_sfs_with_missing_calls_equals_the_naive_per_site_sum(seed):
    """Missing calls: every site with at least m calls counts, projected onto m haplotypes."""
    rng = np.random.default_rng(100 + seed)
    pops = np.array(["p1"] * 12 + ["p2"] * 8)
    g = random_genotypes(rng, sites=int(rng.integers(20, 80)), haps=pops.size, missing=0.18)
    m = {"p1": 8, "p2": 5}
    spec = StatsSpec(stats=["segsites", "sfs", "jsfs"], populations=pops, jsfs_bins=3, sfs_projection=m)
    assert spec.names[2:] == ["sfs_p1_1", "sfs_p1_2", "sfs_p1_3", "sfs_p1_4", "sfs_p2_1", "sfs_p2_2"] + \
        [f"jsfs_p1_p2_{i}_{j}" for i in range(3) for j in range(3)]
    locus = np.zeros(g.shape[0], np.int32)
    ours = summary_stats(g, locus, spec=spec, total_length=1e4, loci=1)
    poly = ((g == 1).sum(axis=1) > 0) & ((g == 1).sum(axis=1) < (g != -1).sum(axis=1))
    h = allel.HaplotypeArray(g[poly])
    acs = {p: h.count_alleles(subpop=spec.index[p], max_allele=1) for p in spec.pops}
    expected = np.concatenate([naive_folded_sfs(acs["p1"][:, 1], acs["p1"].sum(axis=1), 8),
                               naive_folded_sfs(acs["p2"][:, 1], acs["p2"].sum(axis=1), 5),
                               naive_jsfs(acs["p1"], acs["p2"], 3, 8, 5).ravel()])
    assert np.allclose(ours[2:], expected, rtol=1e-12, atol=1e-14)
    assert np.array_equal(ours[:2], naive_summary_stats(g, locus, spec=StatsSpec(stats=["segsites"], populations=pops),
                                                        total_length=1e4, loci=1))
    # The unfolded projected SFS: the naive per-site sum, summing to the sites with at least m calls.
    for p, cols in (("p1", slice(0, 12)), ("p2", slice(12, 20))):
        derived, called = (g[:, cols] == 1).sum(axis=1), (g[:, cols] != -1).sum(axis=1)
        unfolded = projected_sfs(derived, called, m[p])
        assert np.allclose(unfolded, naive_projected_sfs(derived, called, m[p]), rtol=1e-12, atol=1e-14)
        assert unfolded.sum() == pytest.approx(np.count_nonzero(called >= m[p]), rel=1e-12)
        assert np.count_nonzero(called >= m[p]) > np.count_nonzero(called == cols.stop - cols.start)


def test_projected_sfs_of_complete_data_is_the_sfs_exactly(two_pop_ts):
    """Projecting onto the sample size changes nothing, bit for bit (complete data, the default)."""
    g = two_pop_ts.genotype_matrix()
    pops = np.array(["a"] * 14 + ["b"] * 10)
    locus = np.zeros(g.shape[0], np.int32)
    default = summary_stats(g, locus, spec=StatsSpec(stats=ALL_STATS, populations=pops, jsfs_bins=4),
                            total_length=2e5, loci=1)
    full = StatsSpec(stats=ALL_STATS, populations=pops, jsfs_bins=4, sfs_projection={"a": 14, "b": 10})
    assert np.array_equal(summary_stats(g, locus, spec=full, total_length=2e5, loci=1), default)
    for cols, n in ((slice(0, 14), 14), (slice(14, 24), 10)):
        derived = g[:, cols].sum(axis=1)
        assert np.array_equal(projected_sfs(derived, np.full(g.shape[0], n), n), np.bincount(derived, minlength=n + 1))


def test_best_projection_keeps_the_most_segregating_sites():
    rng = np.random.default_rng(8)
    g = random_genotypes(rng, sites=200, haps=12, missing=0.0)
    derived, called = (g == 1).sum(axis=1), (g != -1).sum(axis=1)
    assert best_projection(derived, called, 12)[0] == 12  # complete data: no projection
    g[rng.random(g.shape) < 0.2] = -1
    derived, called = (g == 1).sum(axis=1), (g != -1).sum(axis=1)
    m, kept = best_projection(derived, called, 12)
    segregating = {k: naive_projected_sfs(derived, called, k)[1:k].sum() for k in range(2, 13)}
    assert m < 12 and kept == pytest.approx(max(segregating.values())) and segregating[m] == pytest.approx(kept)


def test_projection_sizes_are_checked():
    pops = np.array(["a"] * 6 + ["b"] * 4)
    assert StatsSpec(stats=["sfs"], populations=pops, sfs_projection=4).projection == {"a": 4, "b": 4}
    assert StatsSpec(stats=["sfs"], populations=pops, sfs_projection={"a": 3}).names == ["sfs_a_1", "sfs_b_1", "sfs_b_2"]
    for bad, words in ((5, "from 2 to 4"), ({"c": 2}, "not sampled"), ({"a": 1}, "from 2 to 6"), (2.5, "whole number")):
        with pytest.raises(ValueError, match=words):
            StatsSpec(stats=["sfs"], populations=pops, sfs_projection=bad)


def test_statistics_of_a_simulation_equal_scikit_allels_bit_for_bit(two_pop_ts):
    g = two_pop_ts.genotype_matrix()
    spec = StatsSpec(stats=ALL_STATS, populations=np.array(["a"] * 14 + ["b"] * 10))
    locus = np.zeros(g.shape[0], np.int32)
    assert np.array_equal(summary_stats(g, locus, spec=spec, total_length=2e5, loci=1),
                          naive_summary_stats(g, locus, spec=spec, total_length=2e5, loci=1))


def test_haplotype_hash_weights_are_a_prefix_of_one_fixed_stream():
    longest = _hash_weights(5000)
    for n in (0, 1, 7, 300, 4999):
        assert np.array_equal(_hash_weights(n), seeds.haplotype_hash_weights(n))
    assert np.array_equal(longest, seeds.haplotype_hash_weights(5000))


def test_feature_and_simulation_jobs_load_no_heavy_library():
    """What `popdl simulate`, `popdl features` and `popdl observe` import before they work: no scikit-allel
    (it pulls in dask), TensorFlow, Keras, matplotlib, Optuna or scikit-learn."""
    code = ("import sys; import popdl.cli, popdl.cli_core, popdl.cli_predict, popdl.simulate, popdl.plan, "
            "popdl.features, popdl.observed, popdl.predict, popdl.simulators; "
            "print(' '.join(m for m in ('allel', 'dask', 'tensorflow', 'keras', 'matplotlib', 'optuna', 'sklearn', "
            "'torch', 'jax') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
