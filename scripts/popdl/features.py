"""Network inputs of one data set: the one feature extractor.

Simulations (:func:`features_chunk`), observed data (:func:`observed_features`)
and genome scans (:mod:`popdl.scan`) all turn genotypes into network inputs
through one :class:`Extractor`: the same polymorphic-site mask, SNP
selection, image, distances and statistics, so a simulated and an observed
data set with the same genotypes give the same features bit for bit.  What
differs between the three is only which genotypes they hand over (a
simulated draw; an observed data set, once per random SNP subset; the
locus-sized stretch around a scan window's centre) and the random stream of
the SNP selection.

Two kinds of features:

* the genotype *image* of the slides: haplotypes × a fixed number of SNPs,
  alleles encoded minor = 1, major = −1 (0 for padding and missing calls),
  haplotypes grouped by population and, within a population, ordered by
  similarity; plus the inter-SNP distances as a second input;
* summary statistics per population (segregating sites, π, θ_W, Tajima's D,
  haplotype diversity, folded SFS, linkage disequilibrium by distance) and
  per pair (F_ST, d_xy, folded joint SFS, linkage disequilibrium of the two
  samples pooled).  Definitions follow tskit's (``ts.diversity``,
  ``segregating_sites``, ``Tajimas_D``, ``Fst``, ``divergence``,
  ``allele_frequency_spectrum(polarised=False)``), so the values equal
  tskit's on a tree sequence's sites: π, θ_W and d_xy per bp;
  F_ST = 1 − 2(π_a + π_b)/(π_a + 2 d_xy + π_b); the folded SFS as
  proportions of the population's segregating sites (minor-allele counts
  1..n/2); haplotype diversity as scikit-allel's, averaged over loci.  The
  SFS and joint SFS take every called genotype: each site's allele count is
  projected onto ``m`` haplotypes per population by the hypergeometric
  projection of dadi, moments and easySFS (``features.sfs_projection``;
  sites with fewer than ``m`` calls are left out), ``m`` being the sample
  size by default (no projection: with complete data, tskit's SFS).  They
  are computed with numpy in scikit-allel's order of operations (its
  ``mean_pairwise_difference``, ``tajima_d``, ``sfs_folded``), which the
  tests check value for value against scikit-allel itself; scikit-allel is
  not imported here (it pulls in dask, seconds of every job's start-up).
  Linkage disequilibrium (``ld``) is the mean r² of pairs of common SNPs
  (minor-allele frequency ≥ 0.1 in the sample) of one locus, in classes of
  distance (``features.ld_distances``, fractions of the locus length):
  within each population, and in each pair's two samples pooled, where
  admixture after a secondary contact leaves long-range LD.

Genotype arrays here are int8 (sites, haplotypes) with 0/1 alleles and −1
for a missing call; the two haplotypes of a diploid individual are
neighbouring columns.

Unphased data (``features.phased: false``): the extractor discards the
phase of simulated and observed genotypes alike.  The image is either one
row per individual holding its genotype (``unphased_image: genotypes``:
minor-allele dosage 0, 1, 2 encoded −1, 1, 2; 0 for padding and missing),
or the haplotype image after a random phase of every individual at every
SNP (``random_phase``, drawn from the SNP-selection stream after the
selection).  The statistics come from allele counts, which need no phase,
except haplotype diversity, which becomes the diversity of multi-locus
genotypes (individuals instead of haplotypes, per locus), and linkage
disequilibrium, which becomes the squared correlation of the individuals'
allele dosages (Rogers and Huff's r², scikit-allel's ``rogers_huff_r``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from popdl import seeds
from popdl.errors import ConfigError, DataError
from popdl.io import save_npz
from popdl.simulate import iter_draws, load_sims

__all__ = [
    "MISSING",
    "FeatureSettings",
    "Features",
    "AlleleCounts",
    "Extractor",
    "encode_minor_major",
    "select_snps",
    "sort_haplotypes",
    "snp_distances",
    "genotype_image",
    "StatsSpec",
    "projection_sizes",
    "hypergeometric_table",
    "projected_sfs",
    "best_projection",
    "check_config",
    "summary_stats",
    "features_chunk",
    "observed_features",
    "add_missing",
    "add_missing_like",
    "one_snp_per_locus",
    "minor_allele_filter",
    "allele_thresholds",
    "NO_ALLELE_FILTER",
    "sites_kept",
    "load_features",
]

log = logging.getLogger("popdl.features")

MISSING = -1
#: How the SNPs of an image are chosen when there are more than its columns.
SELECTIONS = ("random", "first", "central")
#: The image of unphased data: one row per individual, or haplotypes phased at random.
UNPHASED_IMAGES = ("genotypes", "random_phase")


# ---------------------------------------------------------------------------- image
def encode_minor_major(genotypes: np.ndarray) -> np.ndarray:
    """Encode each site's minor allele as 1, its major allele as −1, missing as 0.

    The minor allele is the less frequent one among the non-missing calls of
    all haplotypes; at a tie the derived allele (1) counts as minor.
    Input (sites, haplotypes) int; output the same shape, int8.
    """
    g = np.asarray(genotypes, dtype=np.int8)
    called = g != MISSING
    n_called = called.sum(axis=1)
    n_derived = (g == 1).sum(axis=1)
    derived_is_minor = 2 * n_derived <= n_called
    out = np.where(g == 1, 1, -1).astype(np.int8)
    out[~derived_is_minor] *= -1
    out[~called] = 0
    return out


def dosages(genotypes: np.ndarray) -> np.ndarray:
    """Derived-allele dosage (0, 1, 2) of each individual, −1 when either call is missing.

    Input (sites, haplotypes) int with an individual's two haplotypes in
    columns 2k, 2k+1; output (sites, individuals) int8.
    """
    g = np.asarray(genotypes, dtype=np.int8)
    a, b = g[:, 0::2], g[:, 1::2]
    return np.where((a == MISSING) | (b == MISSING), MISSING, a + b).astype(np.int8)


def encode_genotypes(genotypes: np.ndarray) -> np.ndarray:
    """Each individual's minor-allele dosage at each site, for an unphased image.

    Homozygous major −1, heterozygous 1, homozygous minor 2, missing 0 (as
    padding).  The minor allele is :func:`encode_minor_major`'s (the less
    frequent among the called haplotypes; the derived allele at a tie).
    Input (sites, haplotypes) int; output (sites, individuals) int8.
    """
    g = np.asarray(genotypes, dtype=np.int8)
    called = g != MISSING
    derived_is_minor = 2 * (g == 1).sum(axis=1) <= called.sum(axis=1)
    d = dosages(g)
    minor = np.where(derived_is_minor[:, None], d, 2 - d)
    out = np.where(minor == 0, -1, minor).astype(np.int8)
    out[d == MISSING] = 0
    return out


def random_phase(genotypes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``genotypes`` (sites, haplotypes) with each individual's two alleles
    swapped at each site with probability ½: the phase, drawn at random."""
    g = np.array(genotypes, dtype=np.int8, copy=True)
    swap = rng.random((g.shape[0], g.shape[1] // 2)) < 0.5
    a, b = g[:, 0::2], g[:, 1::2]
    first = np.where(swap, b, a)
    g[:, 1::2] = np.where(swap, a, b)
    g[:, 0::2] = first
    return g


def select_snps(n_sites: int, snps: int, *, method: str, rng: np.random.Generator | None) -> np.ndarray:
    """Indices of the sites kept in the image (in genome order).

    ``random`` keeps a reproducible random subset, ``first`` the first
    ``snps`` sites, ``central`` the ``snps`` sites in the middle.  Only
    ``random`` with more than ``snps`` sites draws from ``rng``.
    """
    if n_sites <= snps:
        return np.arange(n_sites)
    if method == "random":
        return np.sort(rng.choice(n_sites, size=snps, replace=False))
    if method == "first":
        return np.arange(snps)
    if method == "central":
        start = (n_sites - snps) // 2
        return np.arange(start, start + snps)
    raise ValueError(f"unknown SNP selection {method!r} (valid: {', '.join(SELECTIONS)})")


def _manhattan(rows: np.ndarray) -> np.ndarray:
    """Summed absolute differences between every pair of ``rows``, int64 (rows × rows).

    Encoded rows (values −1, 0, 1) go through three matrix products, exact in
    float64: |1 − y| = 1 − y, |−1 − y| = 1 + y and |0 − y| = y² for y in
    {−1, 0, 1}.  Other values are differenced pair by pair.
    """
    r = rows.astype(np.float64)
    if r.size and (r.min() < -1 or r.max() > 1):
        return np.abs(r[:, None, :] - r[None, :, :]).sum(axis=2).astype(np.int64)
    plus, minus, zero = (rows == 1).astype(np.float64), (rows == -1).astype(np.float64), (rows == 0).astype(np.float64)
    d = plus @ (1.0 - r).T + minus @ (1.0 + r).T + zero @ (r * r).T
    return np.rint(d).astype(np.int64)


def sort_haplotypes(rows: np.ndarray) -> np.ndarray:
    """Order of ``rows`` (haplotypes × SNPs) putting similar haplotypes together.

    Greedy nearest-neighbour chain: start from the medoid (smallest summed
    Manhattan distance to the others), then repeatedly append the closest
    haplotype not yet placed; ties go to the lowest index, so the order is
    deterministic.
    """
    n = rows.shape[0]
    if n <= 2:
        return np.arange(n)
    dist = _manhattan(rows)
    order = [int(dist.sum(axis=1).argmin())]
    left = [i for i in range(n) if i != order[0]]  # not yet placed, in index order
    table = dist.tolist()
    while left:
        nxt = min(left, key=table[order[-1]].__getitem__)  # the first of equals: the lowest index
        order.append(nxt)
        left.remove(nxt)
    return np.asarray(order)


def snp_distances(positions: np.ndarray, locus: np.ndarray, *, length: float, width: int) -> np.ndarray:
    """Inter-SNP distances scaled by the locus length, padded with 0 to ``width``.

    The first SNP's value is its position; a SNP on a different locus than the
    previous one gets 1 (unlinked).
    """
    out = np.zeros(width, dtype=np.float32)
    if positions.size:
        d = np.empty(positions.size, dtype=np.float64)
        d[0] = positions[0]
        d[1:] = np.diff(positions)
        d /= length
        new_locus = np.zeros(positions.size, dtype=bool)
        new_locus[1:] = locus[1:] != locus[:-1]
        d[new_locus] = 1.0
        out[: positions.size] = d
    return out


# ---------------------------------------------------------------------------- statistics
PER_POP = ("segsites", "pi", "theta_w", "tajimas_d", "hap_diversity", "sfs")
#: Distance classes of ``ld`` (``features.ld_distances``): edges as fractions of the locus length.
LD_DISTANCES = (0.0, 0.02, 0.1, 0.3, 1.0)
#: Minor-allele frequency a SNP needs in a sample to enter its ``ld``.
LD_MIN_MAF = 0.1
#: SNPs of one locus entering ``ld`` at most (evenly spaced among the common ones): cost ∝ its square.
LD_MAX_SITES = 100


def projection_sizes(sfs_projection, populations) -> dict[str, int]:
    """Haplotypes per population of the projected SFS and joint SFS (``features.sfs_projection``).

    ``sfs_projection``: None (every population keeps its sample size: no
    projection), one whole number for every population, or a mapping
    population -> haplotypes (populations left out keep their sample size).
    ``populations``: the population of each haplotype.  Raises
    :class:`ValueError` (one line) for a size below 2 or above a
    population's haplotypes, or a population that is not sampled.
    """
    pops = np.asarray(populations)
    sizes = {p: int(np.count_nonzero(pops == p)) for p in dict.fromkeys(pops.tolist())}
    if sfs_projection is None:
        return sizes
    if isinstance(sfs_projection, Mapping):
        given = {str(p): m for p, m in sfs_projection.items()}
    elif isinstance(sfs_projection, (tuple, list)):
        given = {str(p): m for p, m in sfs_projection}
    else:
        given = {p: sfs_projection for p in sizes}
    unknown = sorted(set(given) - set(sizes))
    if unknown:
        raise ValueError(f"features.sfs_projection names population(s) {', '.join(unknown)}, which are not sampled "
                         f"(populations: {', '.join(sizes)})")
    out = dict(sizes)
    for p, m in given.items():
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 2 <= m <= sizes[p]:
            raise ValueError(f"features.sfs_projection for {p} is {m!r}; it must be a whole number of haplotypes "
                             f"from 2 to {sizes[p]} (the population's sample)")
        out[p] = int(m)
    return out


def check_config(config: Mapping) -> None:
    """Check ``features.sfs_projection`` against the config's samples (2 haplotypes per
    individual), ``features.ld_distances`` (increasing) and ``features.missing_unit: locus``
    (several loci); raises :class:`popdl.errors.ConfigError` (one line)."""
    fcfg = config.get("features") or {}
    loci = int((config.get("genome") or {}).get("loci", 1) or 1)
    if fcfg.get("missing_unit") == "locus" and loci < 2 and (fcfg.get("missing_individuals") or fcfg.get("missing_rate")):
        raise ConfigError("config key 'features.missing_unit': locus drops an individual's whole locus, and with "
                          "genome.loci 1 that is all its calls at once: use site (or simulate the data's loci)")
    edges = fcfg.get("ld_distances")
    if edges is not None and (len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:]))):
        raise ConfigError(f"config key 'features.ld_distances': {list(edges)} must increase (edges of distance "
                          "classes, fractions of genome.length), at least two")
    projection = (config.get("features") or {}).get("sfs_projection")
    if projection is None:
        return
    samples = config.get("samples") or {}
    try:
        projection_sizes(projection, np.repeat(np.array(list(samples), dtype=str), [2 * int(n) for n in samples.values()]))
    except ValueError as exc:
        raise ConfigError(f"config key 'features.sfs_projection': {str(exc).removeprefix('features.sfs_projection ')}") \
            from None


class StatsSpec:
    """Which statistics to compute, for which populations; knows their names.

    ``sfs_projection``: the haplotypes per population of the SFS and joint
    SFS (:func:`projection_sizes`; None: each population's sample size).
    """

    def __init__(self, *, stats, populations: np.ndarray, jsfs_bins: int = 4, sfs_projection=None,
                 ld_edges=None):
        self.stats = list(stats)
        self.populations = np.asarray(populations)
        self.pops = list(dict.fromkeys(self.populations.tolist()))
        self.index = {p: np.flatnonzero(self.populations == p) for p in self.pops}
        self.pairs = list(itertools.combinations(self.pops, 2))
        self.jsfs_bins = jsfs_bins
        #: Haplotypes per population of the (projected) SFS and joint SFS.
        self.projection = projection_sizes(sfs_projection, self.populations)
        self._tables: dict[tuple[int, int], np.ndarray] = {}
        #: Edges (bp) of the distance classes of ``ld``.
        self.ld_edges = None if ld_edges is None else np.asarray(ld_edges, dtype=np.float64)
        if "ld" in self.stats and (self.ld_edges is None or self.ld_edges.size < 2
                                   or np.any(np.diff(self.ld_edges) <= 0)):
            raise ValueError("the ld statistic needs increasing distance edges (bp), at least two")

    def projection_table(self, n: int, m: int) -> np.ndarray:
        """:func:`hypergeometric_table` ``(n, m)``, computed once per spec."""
        if (n, m) not in self._tables:
            self._tables[(n, m)] = hypergeometric_table(n, m)
        return self._tables[(n, m)]

    @property
    def names(self) -> list[str]:
        out = []
        for stat in self.stats:
            if stat == "sfs":
                for p in self.pops:
                    out += [f"sfs_{p}_{k}" for k in range(1, self.projection[p] // 2 + 1)]
            elif stat == "jsfs":
                for a, b in self.pairs:
                    out += [f"jsfs_{a}_{b}_{i}_{j}" for i in range(self.jsfs_bins) for j in range(self.jsfs_bins)]
            elif stat == "ld":
                classes = range(1, self.ld_edges.size)
                out += [f"ld_{p}_{k}" for p in self.pops for k in classes]
                out += [f"ld_{a}_{b}_{k}" for a, b in self.pairs for k in classes]
            elif stat in PER_POP:
                out += [f"{stat}_{p}" for p in self.pops]
            else:
                out += [f"{stat}_{a}_{b}" for a, b in self.pairs]
        return out


def _columns(index: np.ndarray):
    """``index`` as a slice when its columns are contiguous (a view instead of a copy)."""
    if index.size and index[-1] - index[0] + 1 == index.size:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


@dataclass
class AlleleCounts:
    """Allele counts of every site, per population (in :class:`StatsSpec` order).

    ``derived[k]``: calls of allele 1 in population ``k``; ``called[k]``:
    non-missing calls (alleles 0 and 1); both int64 (sites,).
    """

    derived: list[np.ndarray]
    called: list[np.ndarray]

    @classmethod
    def of(cls, genotypes: np.ndarray, groups) -> AlleleCounts:
        """Counts of ``genotypes`` (sites, haplotypes) in the haplotype ``groups`` (index arrays or slices)."""
        derived, called = [], []
        for cols in groups:
            sub = genotypes[:, cols]
            ones = np.count_nonzero(sub == 1, axis=1)
            derived.append(ones)
            called.append(ones + np.count_nonzero(sub == 0, axis=1))
        return cls(derived, called)

    @property
    def polymorphic(self) -> np.ndarray:
        """Sites with both alleles among the called haplotypes of all populations (bool, sites)."""
        if not self.derived:
            return np.zeros(0, dtype=bool)
        derived, called = sum(self.derived), sum(self.called)
        return (derived > 0) & (derived < called)

    def take(self, sites: np.ndarray) -> AlleleCounts:
        """The counts of ``sites`` (a mask or indices)."""
        return AlleleCounts([d[sites] for d in self.derived], [c[sites] for c in self.called])


def _mean_pairwise_difference(derived: np.ndarray, called: np.ndarray) -> np.ndarray:
    """Per site, the mean number of differences between two haplotypes of one population
    (0 where fewer than two are called): scikit-allel's ``mean_pairwise_difference(ac, fill=0)``."""
    n_pairs = called * (called - 1) / 2
    ancestral = called - derived
    n_same = ancestral * (ancestral - 1) / 2 + derived * (derived - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_pairs > 0, (n_pairs - n_same) / n_pairs, 0.0)


def _mean_pairwise_difference_between(d1: np.ndarray, n1: np.ndarray, d2: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Per site, the mean number of differences between a haplotype of each population
    (0 where either has no call): scikit-allel's ``mean_pairwise_difference_between(..., fill=0)``."""
    n_pairs = n1 * n2
    n_same = (n1 - d1) * (n2 - d2) + d1 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_pairs > 0, (n_pairs - n_same) / n_pairs, 0.0)


def _harmonic(n: int) -> float:
    return float(np.sum(1.0 / np.arange(1, n))) if n > 1 else 1.0


def _tajimas_d(segregating: np.int64, called: np.ndarray, mpd: np.ndarray, *, min_sites: int = 3) -> float:
    """Tajima's D of one population, scikit-allel's ``tajima_d`` step for step (NaN below ``min_sites``)."""
    if called.size == 0 or segregating < min_sites:
        return np.nan
    S = segregating  # noqa: N806  (the textbook's names)
    n = called.max()
    a1 = np.sum(1 / np.arange(1, n))
    d = np.sum(mpd) - S / a1
    a2 = np.sum(1 / (np.arange(1, n) ** 2))
    b1 = (n + 1) / (3 * (n - 1))
    b2 = 2 * (n**2 + n + 3) / (9 * n * (n - 1))
    c1 = b1 - (1 / a1)
    c2 = b2 - ((n + 2) / (a1 * n)) + (a2 / (a1**2))
    e1 = c1 / a1
    e2 = c2 / (a1**2 + a2)
    return d / np.sqrt((e1 * S) + (e2 * S * (S - 1)))


#: The haplotype hash weights generated so far (a prefix of the fixed stream of
#: :func:`popdl.seeds.haplotype_hash_weights`: any length gives the same first values).
_HASH_WEIGHTS = np.zeros(0, dtype=np.uint64)


def _hash_weights(sites: int) -> np.ndarray:
    global _HASH_WEIGHTS
    if _HASH_WEIGHTS.size < sites:
        _HASH_WEIGHTS = seeds.haplotype_hash_weights(max(sites, 2 * _HASH_WEIGHTS.size, 1024))
    return _HASH_WEIGHTS[:sites]


def _haplotype_hashes(g: np.ndarray, locus: np.ndarray, loci: int) -> np.ndarray:
    """One uint64 hash per (locus, haplotype): equal haplotypes of a locus hash alike.

    The hash is Σ weight(site) × allele over the locus's sites, modulo 2⁶⁴,
    with fixed weights (:func:`popdl.seeds.haplotype_hash_weights`); a missing
    call (−1, as uint64 2⁶⁴ − 1) hashes as a third allele.  A locus without
    sites hashes every haplotype as 0.
    """
    hashes = np.zeros((loci, g.shape[1]), dtype=np.uint64)
    if not g.shape[0]:
        return hashes
    weights = _hash_weights(g.shape[0])
    present = np.unique(locus)
    bounds = np.r_[np.searchsorted(locus, present), g.shape[0]]  # each locus's first site, then the end
    batch = max(1, HASH_BATCH_ELEMENTS // max(g.shape[1], 1))  # sites per batch; a locus is never split
    i = 0
    while i < present.size:
        j = max(i + 1, int(np.searchsorted(bounds, bounds[i] + batch, side="right")) - 1)
        a, b = bounds[i], bounds[j]
        weighted = g[a:b].astype(np.uint64)
        weighted *= weights[a:b, None]  # integer arrays wrap silently
        hashes[present[i:j]] = np.add.reduceat(weighted, bounds[i:j] - a, axis=0)
        i = j
    return hashes


def _hap_diversity(hashes: np.ndarray, rows) -> float:
    """Mean over loci of Nei's haplotype diversity n/(n−1)·(1 − Σ p_i²) of haplotypes ``rows``
    (``hashes``: :func:`_haplotype_hashes`)."""
    h = np.sort(hashes[:, rows], axis=1)
    loci, n = h.shape
    if n < 2:
        return 0.0
    # Σ_i count_i² per locus from the runs of equal hashes of each sorted row (exact integers).
    new = np.ones(h.shape, dtype=bool)
    new[:, 1:] = h[:, 1:] != h[:, :-1]
    runs = np.bincount(np.cumsum(new.ravel()) - 1).astype(np.float64)
    same = np.bincount(np.repeat(np.arange(loci), new.sum(axis=1)), weights=runs**2, minlength=loci)
    return float(np.mean(n / (n - 1) * (1.0 - same / n**2)))


def hypergeometric_table(n: int, m: int) -> np.ndarray:
    """Projection of a site with ``n`` called haplotypes onto ``m`` (float64, (n + 1, m + 1)).

    Row ``k``: the probabilities that ``m`` haplotypes drawn without
    replacement from ``n`` of which ``k`` carry the derived allele carry
    ``0..m`` of them, C(k, j) C(n − k, m − j) / C(n, m) (the projection of
    dadi, moments and easySFS).  ``n == m`` is the identity, exactly.
    """
    if not 0 <= m <= n:
        raise ValueError(f"cannot project {n} haplotypes onto {m}")
    if n == m:
        return np.eye(n + 1)
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])  # log k!
    k = np.arange(n + 1)[:, None]
    j = np.arange(m + 1)[None, :]
    ok = (j <= k) & (m - j <= n - k)
    kk, jj = np.broadcast_arrays(k, j)
    a, b = np.where(ok, kk - jj, 0), np.where(ok, n - kk - m + jj, 0)
    log_p = (lf[kk] - lf[jj] - lf[a]) + (lf[n - kk] - lf[m - jj] - lf[b]) - (lf[n] - lf[m] - lf[n - m])
    return np.where(ok, np.exp(np.where(ok, log_p, 0.0)), 0.0)


def _projection_rows(derived: np.ndarray, called: np.ndarray, m: int, table) -> tuple[np.ndarray, np.ndarray]:
    """Each site's projected derived-allele distribution over ``0..m`` haplotypes.

    Returns the rows (sites with at least ``m`` calls, (kept, m + 1)
    float64) and the mask of those sites.  ``table(n, m)`` gives
    :func:`hypergeometric_table`.
    """
    keep = called >= m
    rows = np.zeros((int(keep.sum()), m + 1))
    d, c = derived[keep], called[keep]
    for n in np.unique(c):  # ascending: the same order of operations every time
        at = c == n
        rows[at] = table(int(n), m)[d[at]]
    return rows, keep


def projected_sfs(derived: np.ndarray, called: np.ndarray, m: int, *, table=hypergeometric_table) -> np.ndarray:
    """The unfolded SFS of ``m`` haplotypes (float64, ``m + 1`` bins, counts of sites), each site's
    derived count ``derived`` among its ``called`` haplotypes projected onto ``m``
    (:func:`hypergeometric_table`); sites with fewer than ``m`` calls are left out, so the
    bins sum to the number of sites with at least ``m`` calls.  Sites called in exactly ``m``
    haplotypes count whole, in bin ``derived``."""
    derived, called = np.asarray(derived, dtype=np.int64), np.asarray(called, dtype=np.int64)
    out = np.zeros(m + 1)
    keep = called >= m
    d, c = derived[keep], called[keep]
    for n in np.unique(c):
        at = c == n
        # einsum, not BLAS: one order of summation whatever the threads (byte-identical arrays)
        out += np.einsum("k,kj->j", np.bincount(d[at], minlength=int(n) + 1).astype(np.float64), table(int(n), m))
    return out


def best_projection(derived: np.ndarray, called: np.ndarray, n: int) -> tuple[int, float]:
    """The haplotypes ``m`` (2..``n``) onto which projecting a population's sites keeps the most
    segregating sites (easySFS's choice): the expected number of sites polymorphic among ``m``
    haplotypes, Σ of :func:`projected_sfs` over bins 1..m−1, largest; ties go to the larger ``m``.
    Returns ``m`` and that number.  ``derived``, ``called``: per site, as in :func:`projected_sfs`."""
    best, kept = n, -1.0
    for m in range(n, 1, -1):
        seg = float(projected_sfs(derived, called, m)[1:m].sum())
        if seg > kept + 1e-9:
            best, kept = m, seg
    return best, kept


def _folded_sfs(derived: np.ndarray, called: np.ndarray, m: int, table) -> np.ndarray:
    """The folded SFS of ``m`` haplotypes as proportions of its segregating sites: minor-allele
    counts ``1..m//2`` of :func:`projected_sfs` (zeros when nothing segregates)."""
    unfolded = projected_sfs(derived, called, m, table=table)
    j = np.arange(1, m // 2 + 1)
    folded = np.where(2 * j == m, unfolded[j], unfolded[j] + unfolded[m - j])
    total = folded.sum()
    return folded / total if total else np.zeros(m // 2)


def _binned_jsfs(d1: np.ndarray, n1: np.ndarray, d2: np.ndarray, n2: np.ndarray, bins: int, *,
                 m1: int, m2: int, table=hypergeometric_table) -> np.ndarray:
    """Folded joint SFS of two populations projected onto ``m1`` and ``m2`` haplotypes, binned into
    ``bins``×``bins`` minor-allele-frequency classes.

    Each site called in at least ``m1`` and ``m2`` haplotypes contributes the
    product of its two projections (:func:`hypergeometric_table`) to the
    (m1 + 1) × (m2 + 1) joint SFS; sites called in fewer are left out.
    Folding is on the pooled sample: a cell (i, j) with i + j > (m1 + m2)/2
    goes to (m1 − i, m2 − j).  Only cells segregating in the pooled sample
    count; cell i of a population falls in class ⌊i/m · bins⌋ (the last
    class holding i = m); proportions sum to 1.
    """
    r1, keep1 = _projection_rows(d1, n1, m1, table)
    r2, keep2 = _projection_rows(d2, n2, m2, table)
    both = keep1 & keep2
    # (m1 + 1, m2 + 1), counts of sites; einsum, not BLAS: one order of summation whatever the threads
    joint = np.einsum("si,sj->ij", r1[both[keep1]], r2[both[keep2]])
    i = np.arange(m1 + 1, dtype=np.float64)[:, None]
    j = np.arange(m2 + 1, dtype=np.float64)[None, :]
    flip = (i + j) > (m1 + m2) / 2
    k1, k2 = np.broadcast_arrays(np.where(flip, m1 - i, i), np.where(flip, m2 - j, j))
    seg = k1 + k2 > 0
    out = np.zeros((bins, bins))
    total = joint[seg].sum()
    if total > 0:
        f1 = np.minimum((k1[seg] / m1 * bins).astype(int), bins - 1)
        f2 = np.minimum((k2[seg] / m2 * bins).astype(int), bins - 1)
        out = np.bincount(f1 * bins + f2, weights=joint[seg], minlength=bins * bins).reshape(bins, bins)
        out /= total
    return out


#: Elements (sites × haplotypes) of one batch of :func:`_haplotype_hashes`' weighted alleles: about 16 MB.
HASH_BATCH_ELEMENTS = 2_000_000

#: Elements of one batch of :func:`_ld`'s per-locus r² matrices (loci × SNPs × SNPs): about 16 MB of float64.
LD_BATCH_ELEMENTS = 2_000_000

#: Elements of the padded rows (loci × SNPs × haplotypes) :func:`_ld` multiplies at a time: about 16 MB.
LD_ROWS_ELEMENTS = 2_000_000


def _ld(x: np.ndarray, positions: np.ndarray, locus: np.ndarray, edges: np.ndarray, *, ploidy: int) -> np.ndarray:
    """Mean r² of the pairs of common SNPs of each locus in each distance class of ``edges`` (bp).

    ``x`` (sites, rows) int: allele counts of one sample (haplotypes, 0/1,
    ``ploidy`` 1; or dosages 0-2, ``ploidy`` 2), −1 missing; sites sorted by
    locus.  A SNP enters when its minor-allele frequency among the called
    rows is at least :data:`LD_MIN_MAF` (at most :data:`LD_MAX_SITES`
    per locus, evenly spaced).  r is Pearson's correlation of the rows'
    values with a missing value set to its SNP's mean (it then adds nothing
    to the covariance): the haplotype r² of phased data, Rogers and Huff's
    genotype r² of dosages.  A class without a pair is 0.

    The loci are processed in batches of similar SNP counts, each as one
    stack of r² matrices padded to its largest locus, so that thousands of
    short loci (RAD tags, contigs) cost a few array operations rather than a
    Python loop each.
    """
    k = edges.size - 1
    sums, counts = np.zeros(k), np.zeros(k)
    if x.shape[0] < 2:
        return sums
    called = x != MISSING
    n_missing = x.shape[1] - called.sum(axis=1)
    n_called = x.shape[1] - n_missing
    # Missing calls are -1: the sum of the row plus one per missing call is the called rows' sum.
    freq = (x.sum(axis=1, dtype=np.int64) + n_missing) / np.maximum(ploidy * n_called, 1)
    idx = np.flatnonzero((np.minimum(freq, 1.0 - freq) >= LD_MIN_MAF) & (n_called >= 2))
    idx, group = _ld_sites(idx, locus)
    size = np.bincount(group, minlength=1)
    keep = size[group] >= 2
    if not keep.any():
        return sums
    # Loci renumbered 0..G-1 with 2+ SNPs; within each, SNPs by position (stable: sorted input stays).
    idx, group = idx[keep], (np.cumsum(size >= 2) - 1)[group[keep]]
    size = size[size >= 2]
    pos = positions[idx]
    if np.any((np.diff(pos) < 0) & (np.diff(group) == 0)):
        order = np.lexsort((pos, group))
        idx, group, pos = idx[order], group[order], pos[order]
    slot = np.arange(idx.size) - np.r_[0, np.cumsum(size)[:-1]][group]
    # Batches take loci by SNP count: the sites laid out in that order make each batch's sites one slice.
    by_size = np.argsort(size, kind="stable")
    rank = np.empty_like(by_size)
    rank[by_size] = np.arange(by_size.size)
    order = np.lexsort((slot, rank[group]))
    idx, group, slot, pos = idx[order], group[order], slot[order], pos[order]
    first_site = np.r_[0, np.cumsum(size[by_size])]  # of the k-th locus by size
    # Centred, missing calls 0, rows scaled to unit length: r = z_i . z_j (in place: z is the largest array).
    z = x[idx].astype(np.float64)
    z -= (ploidy * freq[idx])[:, None]
    z[~called[idx]] = 0.0
    norm = np.sqrt(np.einsum("ij,ij->i", z, z))
    np.divide(z, norm[:, None], out=z, where=norm[:, None] > 0)  # a row of norm 0 is zeros already
    span = float(pos.max() - min(pos.min(), 0.0) + edges[-1] + 1.0)  # beyond every SNP's reach
    start = 0
    while start < by_size.size:
        stop = start + 1
        while stop < by_size.size and (stop - start + 1) * int(size[by_size[stop]]) ** 2 <= LD_BATCH_ELEMENTS:
            stop += 1
        n = int(size[by_size[stop - 1]])
        loci = by_size[start:stop]
        mine = slice(first_site[start], first_site[stop])
        b, s = rank[group[mine]] - start, slot[mine]
        # Each locus's r² matrix from its padded rows of z, a few loci at a time (the padded rows of a
        # batch's loci can outweigh z itself).
        r2 = np.empty((loci.size, n, n))
        per = max(1, LD_ROWS_ELEMENTS // (n * z.shape[1]))
        for a in range(0, loci.size, per):
            e = min(a + per, loci.size)
            part = slice(first_site[start + a], first_site[start + e])
            zb = np.zeros((e - a, n, z.shape[1]))
            zb[rank[group[part]] - start - a, slot[part]] = z[part]
            r2[a:e] = np.square(np.matmul(zb, zb.transpose(0, 2, 1)))
        # Pairs (i, j > i) of one locus at distance in [e_c, e_c+1): for sorted positions, columns
        # b_c..b_c+1 of row i; one search in the loci's positions laid end to end (each padded beyond
        # its last SNP's reach), and the segments' sums in one pass over the flattened matrices.
        real = np.zeros((loci.size, n), dtype=bool)
        real[b, s] = True
        pb = np.full((loci.size, n), span)
        pb[b, s] = pos[mine]
        offset = (np.arange(loci.size) * 2.0 * span)[:, None]
        found = np.searchsorted((pb + offset).ravel(), (pb + offset)[:, :, None] + edges, side="left")
        rows = np.arange(n)[None, :, None]
        bounds = np.clip(found - (np.arange(loci.size) * n)[:, None, None], rows + 1, n)
        width = np.where(real[:, :, None], np.diff(bounds, axis=-1), 0)
        flat = (bounds + (np.arange(loci.size)[:, None, None] * n + rows) * n).ravel()
        segments = np.add.reduceat(np.append(r2.ravel(), 0.0), flat).reshape(bounds.shape)[..., :-1]
        sums += np.where(width > 0, segments, 0.0).sum(axis=(0, 1))
        counts += np.maximum(width, 0).sum(axis=(0, 1))
        start = stop
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def _ld_sites(idx: np.ndarray, locus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The common SNPs ``idx`` (sorted by locus) thinned to at most :data:`LD_MAX_SITES` evenly spaced
    per locus, and the locus of each (0, 1, ... in their order)."""
    if idx.size == 0:
        return idx, idx
    lc = locus[idx]
    first = np.flatnonzero(np.r_[True, lc[1:] != lc[:-1]])
    size = np.diff(np.r_[first, idx.size])
    keep = np.ones(idx.size, dtype=bool)
    for j in np.flatnonzero(size > LD_MAX_SITES):
        kept = np.zeros(size[j], dtype=bool)
        kept[np.linspace(0, size[j] - 1, LD_MAX_SITES).round().astype(np.int64)] = True
        keep[first[j] : first[j] + size[j]] = kept
    return idx[keep], np.repeat(np.arange(first.size), size)[keep]


def _statistics(
    g: np.ndarray, locus: np.ndarray, counts: AlleleCounts, *, spec: StatsSpec, groups, total_length: float, loci: int,
    phased: bool = True, positions: np.ndarray | None = None,
) -> np.ndarray:
    """The statistics of ``spec`` (see :func:`summary_stats`) from the populations' allele ``counts``.

    With ``phased`` False, haplotype diversity is that of the individuals'
    multi-locus genotypes (dosages; ``groups`` then index individuals), and
    linkage disequilibrium the r² of dosages.  ``positions`` (bp within each
    site's locus) are needed by ``ld`` only.

    Only polymorphic sites count: a site left with one allele among its
    called haplotypes (missing calls) is dropped, as the readers of observed
    data drop it, so that it cannot tell haplotypes apart in the haplotype
    diversity through its missing calls.
    """
    if positions is not None:
        positions = np.asarray(positions, dtype=np.float64)
    poly = counts.polymorphic
    if not poly.all():
        g, locus, counts = g[poly], locus[poly], counts.take(poly)
        if positions is not None:
            positions = positions[poly]
    k = {p: i for i, p in enumerate(spec.pops)}
    der, an = counts.derived, counts.called
    segregating = [np.sum((d > 0) & (d < n)) for d, n in zip(der, an)]
    mpd_cache: dict[int, np.ndarray] = {}

    def mpd(p) -> np.ndarray:
        if k[p] not in mpd_cache:
            mpd_cache[k[p]] = _mean_pairwise_difference(der[k[p]], an[k[p]])
        return mpd_cache[k[p]]

    def between(a, b) -> float:
        return float(np.sum(_mean_pairwise_difference_between(der[k[a]], an[k[a]], der[k[b]], an[k[b]])))

    unit_cache: list[np.ndarray] = []

    def units() -> np.ndarray:
        """The haplotypes, or unphased the individuals' dosages (computed once for hap_diversity and ld)."""
        if not unit_cache:
            unit_cache.append(g if phased else dosages(g))
        return unit_cache[0]

    values: list[float] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for stat in spec.stats:
            if stat == "segsites":
                values += [float(segregating[k[p]]) for p in spec.pops]
            elif stat == "pi":
                values += [float(np.sum(mpd(p))) / total_length for p in spec.pops]
            elif stat == "theta_w":
                values += [
                    segregating[k[p]] / _harmonic(int(an[k[p]].max(initial=spec.index[p].size))) / total_length
                    for p in spec.pops
                ]
            elif stat == "tajimas_d":
                for p in spec.pops:
                    d = _tajimas_d(segregating[k[p]], an[k[p]], mpd(p))
                    values.append(float(d) if np.isfinite(d) else 0.0)
            elif stat == "hap_diversity":
                if g.shape[0] == 0:
                    values += [0.0] * len(spec.pops)
                    continue
                hashes = _haplotype_hashes(units(), locus, loci)
                values += [_hap_diversity(hashes, groups[k[p]]) for p in spec.pops]
            elif stat == "sfs":
                for p in spec.pops:
                    values += list(_folded_sfs(der[k[p]], an[k[p]], spec.projection[p], spec.projection_table))
            elif stat == "fst":
                # tskit's F_ST: 1 - 2 (pi_a + pi_b) / (pi_a + 2 d_xy + pi_b), from sums over sites.
                for a, b in spec.pairs:
                    pi_a, pi_b = float(np.sum(mpd(a))), float(np.sum(mpd(b)))
                    dxy = between(a, b)
                    total = pi_a + 2 * dxy + pi_b
                    values.append(1.0 - 2.0 * (pi_a + pi_b) / total if total > 0 else 0.0)
            elif stat == "dxy":
                values += [between(a, b) / total_length for a, b in spec.pairs]
            elif stat == "jsfs":
                for a, b in spec.pairs:
                    values += list(_binned_jsfs(der[k[a]], an[k[a]], der[k[b]], an[k[b]], spec.jsfs_bins,
                                                m1=spec.projection[a], m2=spec.projection[b],
                                                table=spec.projection_table).ravel())
            elif stat == "ld":
                if positions is None:
                    raise ValueError("the ld statistic needs the SNP positions")
                x = units()
                ploidy = 1 if phased else 2
                for p in spec.pops:
                    values += list(_ld(x[:, groups[k[p]]], positions, locus, spec.ld_edges, ploidy=ploidy))
                for a, b in spec.pairs:
                    rows = np.r_[np.arange(x.shape[1])[groups[k[a]]], np.arange(x.shape[1])[groups[k[b]]]]
                    values += list(_ld(x[:, rows], positions, locus, spec.ld_edges, ploidy=ploidy))
            else:
                raise ValueError(f"unknown statistic {stat!r}")
    out = np.asarray(values, dtype=np.float64)
    out[~np.isfinite(out)] = 0.0
    return out


# ---------------------------------------------------------------------------- the extractor
@dataclass(frozen=True)
class FeatureSettings:
    """What the network inputs of a data set are (the config's ``features`` section).

    ``snps``: columns of the image; ``selection``: which SNPs fill them when
    there are more (``random``, ``first``, ``central``; see
    :func:`select_snps`); ``sort_rows``: order haplotypes by similarity
    within each population; ``positions``: the inter-SNP distances (else
    zeros); ``stats``: statistic names (:class:`StatsSpec`); ``jsfs_bins``:
    classes per population of the joint SFS; ``sfs_projection``: haplotypes
    per population of the SFS and joint SFS (None, a whole number, or
    (population, haplotypes) pairs; :func:`projection_sizes`); ``phased``: False discards
    the phase (see the module docstring), with ``unphased_image``
    ``genotypes`` (one row per individual) or ``random_phase``;
    ``ld_distances``: edges of the distance classes of ``ld``, as fractions
    of the locus length.
    """

    snps: int
    selection: str = "random"
    sort_rows: bool = True
    positions: bool = True
    stats: tuple[str, ...] = ()
    jsfs_bins: int = 4
    sfs_projection: int | tuple[tuple[str, int], ...] | None = None
    phased: bool = True
    unphased_image: str = "genotypes"
    ld_distances: tuple[float, ...] = LD_DISTANCES

    def __post_init__(self):
        if self.snps < 1:
            raise ValueError(f"an image needs at least 1 SNP column, got {self.snps}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"unknown SNP selection {self.selection!r} (valid: {', '.join(SELECTIONS)})")
        if self.unphased_image not in UNPHASED_IMAGES:
            raise ValueError(f"unknown unphased image {self.unphased_image!r} (valid: {', '.join(UNPHASED_IMAGES)})")

    @classmethod
    def from_config(cls, features: Mapping) -> FeatureSettings:
        """From a prepared config's ``features`` section (``snps``, ``snp_selection``,
        ``sort_rows``, ``positions``, ``stats``, ``jsfs_bins``, ``sfs_projection``, ``phased``,
        ``unphased_image``); ``missing_rate`` belongs to the simulations (:func:`add_missing`),
        not to the extractor."""
        projection = features.get("sfs_projection")
        if isinstance(projection, Mapping):
            projection = tuple(sorted((str(p), int(m)) for p, m in projection.items()))
        return cls(
            snps=int(features["snps"]),
            selection=str(features["snp_selection"]),
            sort_rows=bool(features["sort_rows"]),
            positions=bool(features.get("positions", True)),
            stats=tuple(features["stats"]),
            jsfs_bins=int(features["jsfs_bins"]),
            sfs_projection=projection,
            phased=bool(features.get("phased", True)),
            unphased_image=str(features.get("unphased_image", "genotypes")),
            ld_distances=tuple(float(d) for d in features.get("ld_distances") or LD_DISTANCES),
        )


@dataclass
class Features:
    """The network inputs of one data set.

    ``image`` (haplotypes, snps) int8; ``distances`` (snps,) float32, zeros
    when the settings leave positions out; ``stats`` (statistics,) float64;
    ``n_snps``: image columns holding a SNP (the rest is padding);
    ``sites``: the rows of the genotypes given that fill those columns.
    """

    image: np.ndarray
    distances: np.ndarray
    stats: np.ndarray
    n_snps: int
    sites: np.ndarray


class Extractor:
    """Genotypes of one data set → network inputs: the one feature extractor.

    ``settings``: :class:`FeatureSettings`; ``populations``: the population
    of each haplotype (column) of every data set given, grouped by
    population in the config's order, an individual's two haplotypes side by
    side; ``locus_length``: bp of one locus (``genome.length``), which
    scales the inter-SNP distances.  One extractor serves every data set of
    that layout: each draw of a simulation chunk, each SNP subset of an
    observed data set, each window of a scan.

    Every method takes ``genotypes`` int8 (sites, haplotypes) with 0/1
    alleles and ``MISSING`` (−1), ``positions`` (bp within each site's
    locus, float) and ``locus`` (int, sites sorted by locus, then position).
    Only sites polymorphic among the called haplotypes enter the image and
    the statistics (a missing call is left out of its site's allele counts;
    in the haplotype diversity it is a third allele).  Unphased data
    (``settings.phased`` False) are handled here, for all three callers at
    once: :attr:`row_populations` gives the population of each image row.
    """

    def __init__(self, settings: FeatureSettings, *, populations: np.ndarray, locus_length: float):
        self.settings = settings
        self.populations = np.asarray(populations)
        self.locus_length = float(locus_length)
        self.spec = StatsSpec(stats=settings.stats, populations=self.populations, jsfs_bins=settings.jsfs_bins,
                              sfs_projection=settings.sfs_projection,
                              ld_edges=np.asarray(settings.ld_distances) * self.locus_length)
        self.groups = [_columns(self.spec.index[p]) for p in self.spec.pops]
        individuals = self.populations[0::2]
        self.individual_groups = [_columns(np.flatnonzero(individuals == p)) for p in self.spec.pops]
        self.individual_rows = not settings.phased and settings.unphased_image == "genotypes"
        #: The population of each image row (haplotypes, or individuals for an unphased genotype image).
        self.row_populations = individuals if self.individual_rows else self.populations
        self.row_groups = self.individual_groups if self.individual_rows else self.groups

    @classmethod
    def from_config(cls, features: Mapping, *, populations: np.ndarray, locus_length: float) -> Extractor:
        """An extractor for a config's ``features`` section (:meth:`FeatureSettings.from_config`)."""
        return cls(FeatureSettings.from_config(features), populations=populations, locus_length=locus_length)

    @property
    def stat_names(self) -> list[str]:
        return self.spec.names

    def counts(self, genotypes: np.ndarray) -> AlleleCounts:
        """Per-population allele counts of every site (shared by the image and the statistics)."""
        return AlleleCounts.of(np.asarray(genotypes, dtype=np.int8), self.groups)

    def image(
        self,
        genotypes: np.ndarray,
        positions: np.ndarray,
        locus: np.ndarray,
        *,
        rng: np.random.Generator | None,
        selection: str | None = None,
        counts: AlleleCounts | None = None,
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """The image, the distances, the number of SNPs in the image and their rows.

        ``selection`` overrides the settings' (a scan window takes its central
        SNPs); ``rng`` draws a ``random`` selection; ``counts``: this data
        set's :meth:`counts`, when already at hand.
        """
        g = np.asarray(genotypes, dtype=np.int8)
        s = self.settings
        if counts is None:
            counts = self.counts(g)
        idx = np.flatnonzero(counts.polymorphic)
        keep = idx[select_snps(idx.size, s.snps, method=selection or s.selection, rng=rng)]
        image = np.zeros((self.row_populations.size, s.snps), dtype=np.int8)
        if self.individual_rows:
            image[:, : keep.size] = encode_genotypes(g[keep]).T
        elif not s.phased:
            if rng is None:
                raise ValueError("an unphased image with random_phase needs a random generator")
            image[:, : keep.size] = encode_minor_major(random_phase(g[keep], rng)).T
        else:
            image[:, : keep.size] = encode_minor_major(g[keep]).T
        if s.sort_rows and keep.size:
            for rows in self.row_groups:
                image[rows] = image[rows][sort_haplotypes(image[rows])]
        if s.positions:
            distances = snp_distances(np.asarray(positions)[keep], np.asarray(locus)[keep], length=self.locus_length,
                                      width=s.snps)
        else:
            distances = np.zeros(s.snps, dtype=np.float32)
        return image, distances, int(keep.size), keep

    def stats(
        self, genotypes: np.ndarray, locus: np.ndarray, *, total_length: float, loci: int, counts: AlleleCounts | None = None,
        positions: np.ndarray | None = None,
    ) -> np.ndarray:
        """The summary statistics (float64, in :attr:`stat_names` order).

        ``total_length``: bp over which π, θ_W and d_xy are averaged;
        ``loci``: the number of loci whose haplotype diversities are averaged
        (a locus without a site counts, with diversity 0); ``positions``
        (bp within each site's locus): needed by ``ld``.
        """
        if not self.spec.stats:
            return np.zeros(0)
        g = np.asarray(genotypes, dtype=np.int8)
        if counts is None:
            counts = self.counts(g)
        phased = self.settings.phased
        return _statistics(g, np.asarray(locus), counts, spec=self.spec,
                           groups=self.groups if phased else self.individual_groups,
                           total_length=float(total_length), loci=int(loci), phased=phased, positions=positions)

    def extract(
        self,
        genotypes: np.ndarray,
        positions: np.ndarray,
        locus: np.ndarray,
        *,
        rng: np.random.Generator | None,
        total_length: float,
        loci: int,
        selection: str | None = None,
    ) -> Features:
        """Image, distances and statistics of one data set (a simulated draw, a locus-sized stretch).

        ``total_length`` and ``loci`` as in :meth:`stats`; ``rng`` and
        ``selection`` as in :meth:`image`.
        """
        g = np.asarray(genotypes, dtype=np.int8)
        counts = self.counts(g)
        image, distances, n, sites = self.image(g, positions, locus, rng=rng, selection=selection, counts=counts)
        stats = self.stats(g, locus, total_length=total_length, loci=loci, counts=counts, positions=positions)
        return Features(image=image, distances=distances, stats=stats, n_snps=n, sites=sites)


def genotype_image(
    genotypes: np.ndarray,
    positions: np.ndarray,
    locus: np.ndarray,
    *,
    populations: np.ndarray,
    snps: int,
    length: float,
    selection: str = "random",
    sort_rows: bool = True,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The image (haplotypes × ``snps``, int8), the distances (``snps``, float32) and the SNP count.

    :meth:`Extractor.image` with these settings.  Only polymorphic sites
    enter the image.  ``populations`` gives the population of each
    haplotype; rows stay grouped by population in the order they come and are
    sorted within each group when ``sort_rows``.
    """
    settings = FeatureSettings(snps=snps, selection=selection, sort_rows=sort_rows)
    image, distances, n, _ = Extractor(settings, populations=populations, locus_length=length).image(
        genotypes, positions, locus, rng=rng)
    return image, distances, n


def summary_stats(
    genotypes: np.ndarray,
    locus: np.ndarray,
    *,
    spec: StatsSpec,
    total_length: float,
    loci: int,
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """The statistics of ``spec`` for one data set, float64, in ``spec.names`` order.

    ``total_length`` (bp) scales π, θ_W and d_xy to per-bp values.  Only
    polymorphic sites count.  Undefined values (Tajima's D with fewer than 3
    segregating sites, F_ST with no variation) are 0.  (What
    :meth:`Extractor.stats` computes.)
    """
    g = np.asarray(genotypes, dtype=np.int8)
    groups = [_columns(spec.index[p]) for p in spec.pops]
    return _statistics(g, np.asarray(locus), AlleleCounts.of(g, groups), spec=spec, groups=groups,
                       total_length=float(total_length), loci=int(loci), positions=positions)


# ---------------------------------------------------------------------------- simulations
def _by_locus(locus: np.ndarray | None) -> tuple[np.ndarray, int] | None:
    """(each site's locus index, loci) for missing calls placed by locus; None to place them by site."""
    if locus is None:
        return None
    locus = np.asarray(locus, dtype=np.int64)
    return locus, int(locus.max()) + 1 if locus.size else 0


def add_missing(genotypes: np.ndarray, *, rate: float, rng: np.random.Generator,
                locus: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``genotypes`` (sites, haplotypes) with a fraction ``rate`` of diploid calls missing.

    As in a VCF (``./.``), both haplotypes of an individual (columns 2k, 2k+1)
    go missing together; each (site, individual) independently with
    probability ``rate``, or, given ``locus`` (each site's locus index), each
    (locus, individual): the individual's whole locus goes missing, as a
    RAD/GBS tag an individual has no reads for (allele dropout).
    """
    g = np.array(genotypes, dtype=np.int8, copy=True)
    sites, haps = g.shape
    by_locus = _by_locus(locus)
    if by_locus is None:
        mask = rng.random((sites, haps // 2)) < rate
    else:
        mask = (rng.random((by_locus[1], haps // 2)) < rate)[by_locus[0]]
    g[np.repeat(mask, 2, axis=1)] = MISSING
    return g


def one_snp_per_locus(genotypes: np.ndarray, positions: np.ndarray, locus: np.ndarray, *, how: str,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """The sites kept (indices, in their order) when each locus keeps one SNP, as RAD/GBS data sets are
    often shared for unlinked-SNP methods: ``first``, the locus's first site (lowest position; Stacks
    ``populations --write-single-snp``), or ``random``, one drawn by ``rng`` (``--write-random-snp``);
    among the sites polymorphic among the called haplotypes (0 and 1; -1 is missing)."""
    poly = np.flatnonzero(AlleleCounts.of(np.asarray(genotypes), [slice(None)]).polymorphic)
    if poly.size == 0:
        return poly
    loc = np.asarray(locus)[poly]
    if how == "first":
        order = np.lexsort((np.asarray(positions)[poly], loc))
    elif how == "random":
        order = np.lexsort((rng.random(poly.size), loc))
    else:
        raise ValueError(f"one_snp_per_locus: {how!r} (first or random)")
    sorted_loci = loc[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = sorted_loci[1:] != sorted_loci[:-1]
    return np.sort(poly[order[first]])


def minor_allele_filter(genotypes: np.ndarray, *, min_maf: float = 0.0, min_mac: int = 1) -> np.ndarray:
    """The sites kept (indices, in their order) by a minor-allele filter: the minor allele, among the
    called haplotypes of all populations together (0 and 1; -1 is missing), is seen at least ``min_mac``
    times and at a frequency of at least ``min_maf``, as vcftools ``--mac`` / ``--maf``, bcftools view
    ``-c`` / ``-q``, plink ``--mac`` / ``--maf`` and Stacks populations ``--min-mac`` / ``--min-maf``
    filter a VCF.  A monomorphic site fails every filter."""
    counts = AlleleCounts.of(np.asarray(genotypes), [slice(None)])
    if not counts.derived:
        return np.zeros(0, dtype=np.int64)
    derived, called = counts.derived[0], counts.called[0]
    minor = np.minimum(derived, called - derived)
    maf = minor / np.maximum(called, 1)  # 0 where nothing is called
    # A frequency equal to the threshold passes (4 of 80 calls at 0.05), whatever the rounding of the division.
    return np.flatnonzero((minor >= max(1, int(min_mac))) & (maf >= float(min_maf) - 1e-9))


#: The thresholds of no minor-allele filter (every polymorphic site passes).
NO_ALLELE_FILTER = {"min_maf": 0.0, "min_mac": 1}


def allele_thresholds(features: Mapping) -> dict | None:
    """``features.min_maf`` and ``min_mac`` as :func:`minor_allele_filter`'s keywords, or None when
    they filter nothing (:data:`NO_ALLELE_FILTER`)."""
    thresholds = {"min_maf": float(features.get("min_maf") or 0.0), "min_mac": int(features.get("min_mac") or 1)}
    return None if thresholds == NO_ALLELE_FILTER else thresholds


def sites_kept(genotypes: np.ndarray, positions: np.ndarray, locus: np.ndarray, features: Mapping, *,
               thinning_rng) -> np.ndarray | None:
    """The sites (indices, in their order) that the data's own filters, as ``features`` sets them, keep
    of ``genotypes`` (after its missing calls): the minor-allele filter (``features.min_maf``,
    ``min_mac``; :func:`minor_allele_filter`), then one SNP per locus among those
    (``features.one_snp_per_locus``; :func:`one_snp_per_locus`, ``random`` drawing with ``thinning_rng()``), as
    Stacks populations filters sites before ``--write-single-snp`` picks one.  None when neither is set:
    every site.  Applied alike to simulations and observed data."""
    thresholds = allele_thresholds(features)
    how = features.get("one_snp_per_locus")
    if thresholds is None and not how:
        return None
    keep = minor_allele_filter(genotypes, **thresholds) if thresholds else np.arange(np.asarray(genotypes).shape[0])
    if how:
        g = np.asarray(genotypes)[keep]
        keep = keep[one_snp_per_locus(g, np.asarray(positions)[keep], np.asarray(locus)[keep], how=how,
                                      rng=thinning_rng() if how == "random" else None)]
    return keep


def add_missing_like(genotypes: np.ndarray, *, populations: np.ndarray, individuals: Mapping[str, list],
                     sites: list | None, rng: np.random.Generator, locus: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``genotypes`` (sites, haplotypes) with missing calls patterned on observed data.

    Each simulated individual of population ``p`` takes the missing rate of an
    observed individual of ``p`` drawn at random (``individuals[p]``: the
    observed individuals' rates); each site takes a relative rate drawn from
    ``sites`` (observed per-site missing fractions, divided by their mean;
    none: every site alike).  A call is missing with probability individual
    rate × site factor (at most 1), both haplotypes of an individual together.
    Given ``locus`` (each site's locus index), the same holds of each locus
    and individual: an individual's whole locus goes missing, every site of
    the locus with it (allele dropout of RAD/GBS data, ``features.missing_unit:
    locus``).  ``populations``: the population of each haplotype (column).
    """
    g = np.array(genotypes, dtype=np.int8, copy=True)
    n_sites, haps = g.shape
    pops = np.asarray(populations)[0::2]
    rate = np.zeros(haps // 2)
    for pop in dict.fromkeys(pops.tolist()):
        where = pops == pop
        observed = np.asarray(individuals.get(pop) or [0.0], dtype=np.float64)
        rate[where] = rng.choice(observed, size=int(where.sum()))
    by_locus = _by_locus(locus)
    units = n_sites if by_locus is None else by_locus[1]
    factor = np.ones(units)
    site_rates = np.asarray(sites or [], dtype=np.float64)
    if site_rates.size and site_rates.mean() > 0:
        factor = rng.choice(site_rates, size=units) / site_rates.mean()
    mask = rng.random((units, haps // 2)) < np.minimum(factor[:, None] * rate[None, :], 1.0)
    if by_locus is not None:
        mask = mask[by_locus[0]]
    g[np.repeat(mask, 2, axis=1)] = MISSING
    return g


def features_chunk(config: dict, sims_path, out, *, root_seed: int | None = None, progress_every: float = 30.0) -> dict:
    """Compute images, distances and statistics for every draw of a simulation chunk.

    Each draw goes through :meth:`Extractor.extract` (after
    ``features.missing_rate`` of its calls are made missing, or calls patterned
    on observed data's, ``features.missing_individuals`` and
    ``missing_sites``: :func:`add_missing_like`; site by site, or whole loci
    per individual with ``features.missing_unit: locus``; then the data's
    filters, :func:`sites_kept`), its SNPs chosen by the draw's :func:`popdl.seeds.snp_selection` stream, its statistics
    per bp of ``genome.loci × genome.length``.

    Output arrays (``results/{run}/features/{scenario}/{chunk}.npz``):
    ``images`` (draws, haplotypes, snps) int8; ``distances`` (draws, snps)
    float32; ``n_snps`` (draws,) int32; ``stats`` (draws, statistics) float32
    with ``stat_names``; and ``draw``, ``params``, ``param_names``,
    ``populations``, ``scenario`` copied from the simulations.
    """
    fcfg = config["features"]
    root_seed = config["seed"] if root_seed is None else root_seed
    sims = load_sims(sims_path, lazy=True)  # one draw's alleles in memory at a time
    scenario = str(sims["scenario"])
    populations = sims["populations"]
    loci, length = int(sims["loci"]), float(sims["length"])
    extractor = Extractor.from_config(fcfg, populations=populations, locus_length=length)
    missing_rate = float(fcfg.get("missing_rate", 0.0))
    like = fcfg.get("missing_individuals") or {}
    snps = extractor.settings.snps
    n = sims["draw"].size
    images = np.zeros((n, extractor.row_populations.size, snps), dtype=np.int8)
    distances = np.zeros((n, snps), dtype=np.float32)
    n_snps = np.zeros(n, dtype=np.int32)
    stats = np.zeros((n, len(extractor.stat_names)), dtype=np.float32)
    start = last = time.perf_counter()
    for i, g, pos, loc in iter_draws(sims):
        draw = int(sims["draw"][i])
        g8 = g.view(np.int8) if g.dtype == np.uint8 else g.astype(np.int8)  # 0/1 alleles: the same values
        by_locus = loc if fcfg.get("missing_unit", "site") == "locus" else None
        if like:
            g8 = add_missing_like(g8, populations=populations, individuals=like, sites=fcfg.get("missing_sites"),
                                  rng=seeds.missingness(root_seed, scenario, draw), locus=by_locus)
        elif missing_rate > 0:
            g8 = add_missing(g8, rate=missing_rate, rng=seeds.missingness(root_seed, scenario, draw), locus=by_locus)
        # The data's filters (minor allele, one SNP per locus) apply after their missing calls.
        keep = sites_kept(g8, pos, loc, fcfg, thinning_rng=lambda d=draw: seeds.thinning(root_seed, scenario, d))
        if keep is not None:
            g8, pos, loc = g8[keep], pos[keep], loc[keep]
        f = extractor.extract(g8, pos, loc, rng=seeds.snp_selection(root_seed, scenario, draw),
                              total_length=loci * length, loci=loci)
        images[i], distances[i], n_snps[i], stats[i] = f.image, f.distances, f.n_snps, f.stats
        now = time.perf_counter()
        if now - last > progress_every:
            log.info("%s: features of %d/%d draws", scenario, i + 1, n)
            last = now
    save_npz(
        out,
        images=images,
        distances=distances,
        n_snps=n_snps,
        stats=stats,
        stat_names=np.array(extractor.stat_names, dtype=str),
        draw=sims["draw"],
        params=sims["params"],
        param_names=sims["param_names"],
        populations=extractor.row_populations,
        scenario=sims["scenario"],
    )
    return {"draws": n, "seconds": time.perf_counter() - start, "mean_snps": float(n_snps.mean()) if n else 0.0}


def load_features(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


# ---------------------------------------------------------------------------- observed data
def observed_features(data, *, features: Mapping, genome: Mapping, seed: int, replicates: int = 10) -> dict:
    """Network inputs of an observed data set (a :class:`popdl.observed.Observed`), through the same
    :class:`Extractor` as :func:`features_chunk`.

    Returns ``images`` (replicates, haplotypes, snps) int8, ``distances``
    (replicates, snps) float32, ``n_snps`` (replicates,) int32 and ``stats``
    (statistics,) float64 with ``stat_names``.  With more SNPs than the image
    holds, each replicate keeps a different random subset (``snp_selection:
    random``) or a different random window of consecutive SNPs (``first``,
    ``central``), drawn from the data set's stream
    (:func:`popdl.seeds.observed`, index 1 + replicate); with fewer, all
    replicates are the same padded image, which is the image of a simulation
    with the same genotypes.  Statistics are computed once, on all SNPs, per
    bp of ``data.length``, averaging haplotype diversity over ``genome.loci``
    loci (or the data's, when more), as the simulations average it.
    """
    extractor = Extractor.from_config(features, populations=data.populations, locus_length=float(genome["length"]))
    snps = extractor.settings.snps
    g = np.asarray(data.genotypes, dtype=np.int8)
    # Filtered and thinned as the simulations are (a no-op on data filtered and thinned so already).
    keep = sites_kept(g, data.positions, data.locus, features,
                      thinning_rng=lambda: seeds.thinning(seed, f"__empirical_{data.name}__", 0))
    if keep is not None:
        if keep.size == 0:
            thresholds = allele_thresholds(features) or NO_ALLELE_FILTER
            raise DataError(f"data set {data.name!r}: no SNP passes the config's minor-allele filter "
                            f"(features.min_maf {thresholds['min_maf']:g}, min_mac {thresholds['min_mac']})")
        data = replace(data, genotypes=g[keep], positions=np.asarray(data.positions)[keep],
                       locus=np.asarray(data.locus)[keep])
        g = data.genotypes
    counts = extractor.counts(g)
    poly = np.flatnonzero(counts.polymorphic)
    replicates = max(1, int(replicates)) if poly.size > snps else 1
    images = np.zeros((replicates, extractor.row_populations.size, snps), dtype=np.int8)
    distances = np.zeros((replicates, snps), dtype=np.float32)
    n_snps = np.zeros(replicates, dtype=np.int32)
    for r in range(replicates):
        rng = seeds.observed(seed, data.name, 1 + r)
        if extractor.settings.selection != "random" and poly.size > snps:
            first = int(rng.integers(0, poly.size - snps + 1))  # a window of consecutive SNPs
            rows = poly[first : first + snps]
            images[r], distances[r], n_snps[r], _ = extractor.image(
                g[rows], data.positions[rows], data.locus[rows], rng=rng, selection="first")
        else:
            images[r], distances[r], n_snps[r], _ = extractor.image(
                g, data.positions, data.locus, rng=rng, counts=counts)
    # Haplotype diversity is averaged over genome.loci, as in the simulations: loci without a SNP
    # (absent from a VCF of variants) count with diversity 0 there too.
    observed_loci = int(data.locus.max()) + 1 if data.locus.size else 1
    loci = max(observed_loci, int(genome.get("loci", 0) or 0))
    stats = extractor.stats(g, data.locus, total_length=data.length, loci=loci, counts=counts,
                            positions=data.positions)
    return {
        "images": images,
        "distances": distances,
        "n_snps": n_snps,
        "stats": stats,
        "stat_names": np.array(extractor.stat_names, dtype=str),
        "populations": extractor.row_populations,
    }
