"""Turning one simulated (or observed) data set into network inputs.

Two kinds of features, both computed per draw:

* the genotype *image* of the slides: haplotypes × a fixed number of SNPs,
  alleles encoded minor = 1, major = −1 (0 for padding and missing calls),
  haplotypes grouped by population and, within a population, ordered by
  similarity; plus the inter-SNP distances as a second input;
* summary statistics per population (segregating sites, π, θ_W, Tajima's D,
  haplotype diversity, folded SFS) and per pair (F_ST, d_xy, folded joint
  SFS), computed with scikit-allel where it has them.  Definitions follow
  tskit's (``ts.diversity``, ``segregating_sites``, ``Tajimas_D``, ``Fst``,
  ``divergence``, ``allele_frequency_spectrum(polarised=False)``), so the
  values equal tskit's on a tree sequence's sites: π, θ_W and d_xy per bp;
  F_ST = 1 − 2(π_a + π_b)/(π_a + 2 d_xy + π_b); the folded SFS as
  proportions of the population's segregating sites (minor-allele counts
  1..n/2); haplotype diversity as scikit-allel's, averaged over loci.

Genotype arrays here are int8 (sites, haplotypes) with 0/1 alleles and −1
for a missing call.
"""

from __future__ import annotations

import itertools
import logging
import time

import allel
import numpy as np

from popdl import seeds
from popdl.io import save_npz
from popdl.simulate import iter_draws, load_sims

__all__ = [
    "encode_minor_major",
    "select_snps",
    "sort_haplotypes",
    "snp_distances",
    "genotype_image",
    "StatsSpec",
    "summary_stats",
    "features_chunk",
    "add_missing",
    "load_features",
]

log = logging.getLogger("popdl.features")

MISSING = -1


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


def select_snps(n_sites: int, snps: int, *, method: str, rng: np.random.Generator) -> np.ndarray:
    """Indices of the sites kept in the image (in genome order).

    ``random`` keeps a reproducible random subset, ``first`` the first
    ``snps`` sites, ``central`` the ``snps`` sites in the middle.
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
    raise ValueError(f"unknown SNP selection {method!r} (valid: random, first, central)")


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
    r = rows.astype(np.int16)
    dist = np.abs(r[:, None, :] - r[None, :, :]).sum(axis=2)
    order = [int(np.argmin(dist.sum(axis=1)))]
    placed = np.zeros(n, dtype=bool)
    placed[order[0]] = True
    for _ in range(n - 1):
        d = np.where(placed, np.iinfo(np.int64).max, dist[order[-1]])
        nxt = int(np.argmin(d))
        order.append(nxt)
        placed[nxt] = True
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
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The image (haplotypes × ``snps``, int8), the distances (``snps``, float32) and the SNP count.

    Only polymorphic sites enter the image.  ``populations`` gives the
    population of each haplotype; rows stay grouped by population in the
    order they come and are sorted within each group when ``sort_rows``.
    """
    g = np.asarray(genotypes, dtype=np.int8)
    called = g != MISSING
    derived = (g == 1).sum(axis=1)
    poly = (derived > 0) & (derived < called.sum(axis=1))
    idx = np.flatnonzero(poly)
    keep = idx[select_snps(idx.size, snps, method=selection, rng=rng)]
    encoded = encode_minor_major(g[keep]).T  # haplotypes × kept SNPs
    image = np.zeros((g.shape[1], snps), dtype=np.int8)
    image[:, : keep.size] = encoded
    if sort_rows and keep.size:
        for pop in dict.fromkeys(populations.tolist()):
            rows = np.flatnonzero(populations == pop)
            image[rows] = image[rows][sort_haplotypes(image[rows])]
    distances = snp_distances(positions[keep], locus[keep], length=length, width=snps)
    return image, distances, int(keep.size)


# ---------------------------------------------------------------------------- statistics
PER_POP = ("segsites", "pi", "theta_w", "tajimas_d", "hap_diversity", "sfs")


class StatsSpec:
    """Which statistics to compute, for which populations; knows their names."""

    def __init__(self, *, stats, populations: np.ndarray, jsfs_bins: int = 4):
        self.stats = list(stats)
        self.populations = np.asarray(populations)
        self.pops = list(dict.fromkeys(self.populations.tolist()))
        self.index = {p: np.flatnonzero(self.populations == p) for p in self.pops}
        self.pairs = list(itertools.combinations(self.pops, 2))
        self.jsfs_bins = jsfs_bins

    @property
    def names(self) -> list[str]:
        out = []
        for stat in self.stats:
            if stat == "sfs":
                for p in self.pops:
                    out += [f"sfs_{p}_{k}" for k in range(1, self.index[p].size // 2 + 1)]
            elif stat == "jsfs":
                for a, b in self.pairs:
                    out += [f"jsfs_{a}_{b}_{i}_{j}" for i in range(self.jsfs_bins) for j in range(self.jsfs_bins)]
            elif stat in PER_POP:
                out += [f"{stat}_{p}" for p in self.pops]
            else:
                out += [f"{stat}_{a}_{b}" for a, b in self.pairs]
        return out


def _harmonic(n: int) -> float:
    return float(np.sum(1.0 / np.arange(1, n))) if n > 1 else 1.0


def _hap_diversity(g: np.ndarray, locus: np.ndarray, loci: int, rows: np.ndarray) -> float:
    """Mean over loci of Nei's haplotype diversity n/(n−1)·(1 − Σ p_i²)."""
    n = rows.size
    if n < 2:
        return 0.0
    if g.shape[0] == 0:
        return 0.0
    weights = seeds.haplotype_hash_weights(g.shape[0])
    sub = g[:, rows].astype(np.uint64) * weights[:, None]  # missing (-1 → large) still hashes consistently
    starts = np.searchsorted(locus, np.arange(loci))
    present = np.unique(locus)
    hashes = np.zeros((loci, n), dtype=np.uint64)
    with np.errstate(over="ignore"):
        sums = np.add.reduceat(sub, starts[present], axis=0)
    hashes[present] = sums
    same = (hashes[:, :, None] == hashes[:, None, :]).sum(axis=(1, 2))  # Σ_i count_i², per locus
    return float(np.mean(n / (n - 1) * (1.0 - same / n**2)))


def summary_stats(
    genotypes: np.ndarray,
    locus: np.ndarray,
    *,
    spec: StatsSpec,
    total_length: float,
    loci: int,
) -> np.ndarray:
    """The statistics of ``spec`` for one data set, float64, in ``spec.names`` order.

    ``total_length`` (bp) scales π, θ_W and d_xy to per-bp values.  Undefined
    values (Tajima's D with fewer than 2 segregating sites, F_ST with no
    variation) are 0.
    """
    g = np.asarray(genotypes, dtype=np.int8)
    h = allel.HaplotypeArray(g)
    acs = {p: h.count_alleles(subpop=spec.index[p], max_allele=1) for p in spec.pops}
    values: list[float] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for stat in spec.stats:
            if stat == "segsites":
                values += [float(acs[p].count_segregating()) for p in spec.pops]
            elif stat == "pi":
                values += [float(np.nansum(allel.mean_pairwise_difference(acs[p], fill=0))) / total_length for p in spec.pops]
            elif stat == "theta_w":
                values += [
                    acs[p].count_segregating() / _harmonic(int(acs[p].sum(axis=1).max(initial=spec.index[p].size)))
                    / total_length
                    for p in spec.pops
                ]
            elif stat == "tajimas_d":
                for p in spec.pops:
                    d = allel.tajima_d(acs[p], min_sites=3) if acs[p].shape[0] else np.nan
                    values.append(float(d) if np.isfinite(d) else 0.0)
            elif stat == "hap_diversity":
                values += [_hap_diversity(g, locus, loci, spec.index[p]) for p in spec.pops]
            elif stat == "sfs":
                for p in spec.pops:
                    n = spec.index[p].size
                    ac = acs[p]
                    seg = ac.is_segregating() & (ac.sum(axis=1) == n)
                    sfs = allel.sfs_folded(ac[seg], n=n)[1 : n // 2 + 1] if seg.any() else np.zeros(n // 2)
                    total = sfs.sum()
                    values += list(sfs / total if total else np.zeros(n // 2))
            elif stat == "fst":
                # tskit's F_ST: 1 - 2 (pi_a + pi_b) / (pi_a + 2 d_xy + pi_b), from sums over sites.
                for a, b in spec.pairs:
                    pi_a = float(np.nansum(allel.mean_pairwise_difference(acs[a], fill=0)))
                    pi_b = float(np.nansum(allel.mean_pairwise_difference(acs[b], fill=0)))
                    dxy = float(np.nansum(allel.mean_pairwise_difference_between(acs[a], acs[b], fill=0)))
                    total = pi_a + 2 * dxy + pi_b
                    values.append(1.0 - 2.0 * (pi_a + pi_b) / total if total > 0 else 0.0)
            elif stat == "dxy":
                for a, b in spec.pairs:
                    dxy = allel.mean_pairwise_difference_between(acs[a], acs[b], fill=0)
                    values.append(float(np.nansum(dxy)) / total_length)
            elif stat == "jsfs":
                for a, b in spec.pairs:
                    values += list(_binned_jsfs(acs[a], acs[b], spec.jsfs_bins).ravel())
            else:
                raise ValueError(f"unknown statistic {stat!r}")
    out = np.asarray(values, dtype=np.float64)
    out[~np.isfinite(out)] = 0.0
    return out


def _binned_jsfs(ac1, ac2, bins: int) -> np.ndarray:
    """Folded joint SFS of two populations, binned into ``bins``×``bins`` minor-allele-frequency classes.

    Folding is on the pooled sample: at sites where the derived allele is the
    majority in both populations together, both counts are flipped.  Only
    sites segregating in the pooled sample count; proportions sum to 1.
    """
    n1, n2 = ac1.sum(axis=1), ac2.sum(axis=1)
    k1, k2 = ac1[:, 1].astype(np.float64), ac2[:, 1].astype(np.float64)
    flip = (k1 + k2) > (n1 + n2) / 2
    k1 = np.where(flip, n1 - k1, k1)
    k2 = np.where(flip, n2 - k2, k2)
    seg = (k1 + k2 > 0) & (n1 > 0) & (n2 > 0)
    out = np.zeros((bins, bins))
    if seg.any():
        f1 = np.minimum((k1[seg] / n1[seg] * bins).astype(int), bins - 1)
        f2 = np.minimum((k2[seg] / n2[seg] * bins).astype(int), bins - 1)
        np.add.at(out, (f1, f2), 1.0)
        out /= seg.sum()
    return out


# ---------------------------------------------------------------------------- chunks
def add_missing(genotypes: np.ndarray, *, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``genotypes`` (sites, haplotypes) with a fraction ``rate`` of diploid calls missing.

    As in a VCF (``./.``), both haplotypes of an individual (columns 2k, 2k+1)
    go missing together; each (site, individual) independently with
    probability ``rate``.
    """
    g = np.array(genotypes, dtype=np.int8, copy=True)
    sites, haps = g.shape
    mask = rng.random((sites, haps // 2)) < rate
    g[np.repeat(mask, 2, axis=1)] = MISSING
    return g


def features_chunk(config: dict, sims_path, out, *, root_seed: int | None = None, progress_every: float = 30.0) -> dict:
    """Compute images, distances and statistics for every draw of a simulation chunk.

    Output arrays (``results/{run}/features/{scenario}/{chunk}.npz``):
    ``images`` (draws, haplotypes, snps) int8; ``distances`` (draws, snps)
    float32; ``n_snps`` (draws,) int32; ``stats`` (draws, statistics) float32
    with ``stat_names``; and ``draw``, ``params``, ``param_names``,
    ``populations``, ``scenario`` copied from the simulations.
    """
    fcfg = config["features"]
    root_seed = config["seed"] if root_seed is None else root_seed
    sims = load_sims(sims_path)
    scenario = str(sims["scenario"])
    populations = sims["populations"]
    loci, length = int(sims["loci"]), float(sims["length"])
    spec = StatsSpec(stats=fcfg["stats"], populations=populations, jsfs_bins=fcfg["jsfs_bins"])
    n = sims["draw"].size
    images = np.zeros((n, populations.size, fcfg["snps"]), dtype=np.int8)
    distances = np.zeros((n, fcfg["snps"]), dtype=np.float32)
    n_snps = np.zeros(n, dtype=np.int32)
    stats = np.zeros((n, len(spec.names)), dtype=np.float32)
    start = last = time.perf_counter()
    for i, g, pos, loc in iter_draws(sims):
        rng = seeds.snp_selection(root_seed, scenario, int(sims["draw"][i]))
        g8 = g.astype(np.int8)
        if fcfg.get("missing_rate", 0.0) > 0:
            g8 = add_missing(g8, rate=fcfg["missing_rate"],
                             rng=seeds.missingness(root_seed, scenario, int(sims["draw"][i])))
        images[i], distances[i], n_snps[i] = genotype_image(
            g8, pos, loc, populations=populations, snps=fcfg["snps"], length=length,
            selection=fcfg["snp_selection"], sort_rows=fcfg["sort_rows"], rng=rng,
        )
        if spec.stats:
            stats[i] = summary_stats(g8, loc, spec=spec, total_length=loci * length, loci=loci)
        now = time.perf_counter()
        if now - last > progress_every:
            log.info("%s: features of %d/%d draws", scenario, i + 1, n)
            last = now
    if not fcfg["positions"]:
        distances[:] = 0
    save_npz(
        out,
        images=images,
        distances=distances,
        n_snps=n_snps,
        stats=stats,
        stat_names=np.array(spec.names, dtype=str),
        draw=sims["draw"],
        params=sims["params"],
        param_names=sims["param_names"],
        populations=populations,
        scenario=sims["scenario"],
    )
    return {"draws": n, "seconds": time.perf_counter() - start, "mean_snps": float(n_snps.mean()) if n else 0.0}


def load_features(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
