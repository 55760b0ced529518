"""One feature extractor: the same genotypes give the same network inputs, bit for bit, whether they
come as a simulation (popdl simulate + features), as an observed VCF (popdl observe) or as a scan window."""

from __future__ import annotations

import numpy as np
import pytest

from popdl import seeds
from popdl.config import prepare
from popdl.features import (Extractor, add_missing, features_chunk, load_features, minor_allele_filter,
                            observed_features, sites_kept)
from popdl.io import save_npz
from popdl.observed import Observed, read_observed
from popdl.plan import plan_draws
from popdl.scan import scan_windows
from popdl.scenarios import Scenario
from popdl.simulate import iter_draws, load_sims, simulate_chunk

from conftest import REPO, tiny_config

ALL_STATS = ["segsites", "pi", "theta_w", "tajimas_d", "hap_diversity", "fst", "dxy", "sfs", "jsfs", "ld"]


def write_vcf(path, g: np.ndarray, positions: np.ndarray, locus: np.ndarray, names: list[str]) -> None:
    """A phased VCF of ``g`` (sites, haplotypes; −1 missing): contig chr{locus + 1}, individual k = columns 2k, 2k+1."""
    call = {-1: "."}
    lines = ["##fileformat=VCFv4.2", '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">']
    lines += [f"##contig=<ID=chr{k + 1}>" for k in np.unique(locus)]
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *names]))
    for site in range(g.shape[0]):
        h = g[site].tolist()
        gts = [f"{call.get(h[2 * i], h[2 * i])}|{call.get(h[2 * i + 1], h[2 * i + 1])}" for i in range(len(names))]
        lines.append("\t".join([f"chr{locus[site] + 1}", str(int(positions[site])), ".", "A", "C", ".", "PASS", ".", "GT",
                                *gts]))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("projection, thin, alleles", [(None, None, {}), (6, None, {}), (None, "first", {}),
                                                      (None, "first", {"min_mac": 2, "min_maf": 0.1})],
                         ids=["all-snps", "projected-sfs", "one-snp-per-locus", "minor-allele-filter"])
def test_a_simulation_and_the_same_genotypes_as_a_vcf_give_identical_features(tmp_path, projection, thin, alleles):
    """Simulated draws (two loci, 10 % of calls made missing by features.missing_rate) against a VCF
    holding the same calls, read by the observed-data path; with the SFS as it is and projected onto
    6 of the 8 haplotypes of each population (features.sfs_projection), with each locus's first
    polymorphic site alone (features.one_snp_per_locus: first), and with that after a minor-allele
    filter (features.min_mac, min_maf)."""
    rate = 0.1
    config = prepare(tiny_config(genome={"loci": 2, "length": 20000, "mutation_rate": 1e-8, "recombination_rate": 1e-8},
                                 features={"snps": 256, "missing_rate": rate, "stats": ALL_STATS, "jsfs_bins": 3,
                                           "sfs_projection": projection, "one_snp_per_locus": thin, **alleles}),
                     base_dirs=(REPO,))
    scenario = Scenario.from_config("isolation", config)
    sims_path = tmp_path / "sims.npz"
    simulate_chunk(config, scenario, plan_draws(scenario, root_seed=config["seed"], start=0, stop=6), sims_path)
    # A VCF holds whole 1-based positions: give the simulations the same numbers.
    sims = load_sims(sims_path)
    sims["positions"] = np.floor(sims["positions"]) + 1
    save_npz(sims_path, **sims)
    features_chunk(config, sims_path, tmp_path / "features.npz")
    simulated = load_features(tmp_path / "features.npz")

    loci, length, seed = 2, float(config["genome"]["length"]), config["seed"]
    names = [f"{pop}_{i}" for pop, n in config["samples"].items() for i in range(n)]
    (tmp_path / "popmap.tsv").write_text("".join(f"{n}\t{n.split('_')[0]}\n" for n in names))
    extractor = Extractor.from_config(config["features"], populations=sims["populations"], locus_length=length)
    compared = 0
    for i, g, pos, loc in iter_draws(sims):
        draw = int(sims["draw"][i])
        g8 = add_missing(g.astype(np.int8), rate=rate, rng=seeds.missingness(seed, scenario.name, draw))  # as features_chunk
        unique = all(np.unique(pos[loc == k]).size == (loc == k).sum() for k in range(loci))
        keep = sites_kept(g8, pos, loc, config["features"], thinning_rng=None)
        keep = np.flatnonzero(extractor.counts(g8).polymorphic) if keep is None else keep
        if not unique or set(loc[keep].tolist()) != set(range(loci)):
            continue  # two sites on one bp, or a locus without a site kept (the VCF would not have it)
        write_vcf(tmp_path / f"draw{draw}.vcf", g8, pos, loc, names)
        data = read_observed({"name": f"draw{draw}", "vcf": str(tmp_path / f"draw{draw}.vcf"),
                              "popmap": str(tmp_path / "popmap.tsv")},
                             samples=config["samples"], seed=seed, max_missing=0.9, genome_length=loci * length)
        observed = observed_features(data, features=config["features"], genome=config["genome"], seed=seed, replicates=4)
        assert data.genotypes.shape[0] < g8.shape[0]  # the reader dropped sites left monomorphic by missing calls
        assert observed["images"].shape[0] == 1 and 0 < observed["n_snps"][0] <= 256  # all SNPs: one image
        assert np.array_equal(observed["images"][0], simulated["images"][i])
        assert np.array_equal(observed["distances"][0], simulated["distances"][i])
        assert observed["n_snps"][0] == simulated["n_snps"][i]
        assert observed["stat_names"].tolist() == simulated["stat_names"].tolist()
        assert np.array_equal(observed["stats"].astype(np.float32), simulated["stats"][i])  # the chunk stores float32
        # and in float64, against the extractor call features_chunk makes
        assert not thin or observed["n_snps"][0] == loci  # one SNP per locus
        f = extractor.extract(g8[keep], pos[keep], loc[keep], rng=seeds.snp_selection(seed, scenario.name, draw),
                              total_length=loci * length, loci=loci)
        assert np.array_equal(observed["stats"], f.stats) and np.array_equal(observed["images"][0], f.image)
        compared += 1
    assert compared >= 2, compared
    ld = [j for j, name in enumerate(simulated["stat_names"].tolist()) if name.startswith("ld_")]
    assert len(ld) == 12  # 4 classes x (pop1, pop2, pooled pair)
    assert np.any(simulated["stats"][:, ld] > 0) != bool(thin)  # no pair of SNPs within a locus when thinned
    sfs = [name for name in simulated["stat_names"].tolist() if name.startswith("sfs_")]
    assert len(sfs) == (6 if projection else 8)  # sfs_pop1_1..m/2, sfs_pop2_1..m/2


def _sims_file(path, stretches, *, populations, length):
    """A simulation chunk whose draws are the given (genotypes, positions) stretches of one locus."""
    g = np.concatenate([s[0] for s in stretches]).astype(np.uint8)
    save_npz(
        path, genotypes=g, positions=np.concatenate([s[1] for s in stretches]),
        locus=np.zeros(g.shape[0], np.int32), site_offsets=np.cumsum([0] + [s[0].shape[0] for s in stretches]),
        draw=np.arange(len(stretches)), params=np.zeros((len(stretches), 0)), param_names=np.array([], dtype=str),
        seeds=np.zeros((len(stretches), 3), np.int64), populations=populations, scenario=np.array("stretch"),
        simulator=np.array("msprime"), loci=np.array(1), length=np.array(float(length)),
    )


@pytest.mark.parametrize("alleles", [{}, {"min_mac": 3}], ids=["every-snp", "minor-allele-filter"])
def test_a_scan_window_equals_the_simulation_of_its_stretch(tmp_path, alleles):
    """Every scan window away from the contig ends is what popdl features makes of a simulated locus holding
    the stretch of genome.length bp around the window's centre, including stretches with fewer SNPs than
    the image (padded); with a minor-allele filter too (features.min_mac), which both apply per site."""
    rng = np.random.default_rng(4)
    length, snps = 10_000, 32
    pops = np.array(["pop1"] * 12 + ["pop2"] * 8)
    blocks, positions, locus = [], [], []
    for k, (span, n) in enumerate([(60_000, 150), (40_000, 400)]):  # a sparse contig (~25 SNPs a stretch), a dense one
        pos = np.sort(rng.choice(np.arange(1, span), size=n, replace=False)).astype(float)
        freq = rng.uniform(0.05, 0.95, size=(n, 1))
        g = (rng.random((n, pops.size)) < freq).astype(np.int8)
        g[:, 0], g[:, 1] = 0, 1  # every site polymorphic
        blocks.append(g)
        positions.append(pos)
        locus.append(np.full(n, k, np.int32))
    data = Observed(name="chrs", genotypes=np.concatenate(blocks), positions=np.concatenate(positions),
                    locus=np.concatenate(locus), populations=pops, individuals=[f"i{k}" for k in range(10)],
                    loci=["chr1", "chr2"], length=100_000.0)
    features = {"snps": snps, "snp_selection": "central", "sort_rows": True, "positions": True, "stats": ALL_STATS,
                "jsfs_bins": 3, **alleles}
    windows = list(scan_windows(data, features=features, genome={"length": length}, step=5, seed=1, batch=10_000))
    assert len(windows) == 1
    w = windows[0]
    inner = np.flatnonzero(~w.table["edge"].to_numpy())
    stretches = []
    for row in inner:
        c = data.loci.index(w.table["contig"][row])
        lo_bp = w.table["centre"][row] - length / 2
        inside = np.flatnonzero((data.locus == c) & (data.positions >= lo_bp) & (data.positions < lo_bp + length))
        stretches.append((data.genotypes[inside], data.positions[inside] - lo_bp))
    _sims_file(tmp_path / "stretches.npz", stretches, populations=pops, length=length)
    features_chunk({"seed": 1, "features": features}, tmp_path / "stretches.npz", tmp_path / "features.npz")
    simulated = load_features(tmp_path / "features.npz")
    assert np.array_equal(w.images[inner], simulated["images"])
    assert np.array_equal(w.distances[inner], simulated["distances"])
    assert np.array_equal(w.stats[inner], simulated["stats"])
    assert np.array_equal(w.n_snps[inner], simulated["n_snps"])
    n = w.n_snps[inner]
    assert (n < snps).sum() > 5 and (n == snps).sum() > 5  # both padded and full windows were compared
    if alleles:  # the filter left out some SNPs of the windows
        assert 0 < (minor_allele_filter(data.genotypes).size - minor_allele_filter(data.genotypes, **alleles).size)
