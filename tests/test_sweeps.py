"""Selective sweeps: the sweep: config section, msprime's sweep model, windowed scans."""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from popdl.config import prepare
from popdl.errors import ConfigError, DataError
from popdl.features import StatsSpec, genotype_image, summary_stats
from popdl.observed import Observed
from popdl.scan import read_scan_vcf, scan_windows, window_centres
from popdl.scenarios import Scenario
from popdl.simulate import simulator_for
from popdl.sweeps import simulate_chromosome, write_vcf

from conftest import BIN, REPO, snakemake, write_config

GRAPH = "config/scenarios/one_population.yaml"
LENGTH = 1_000_000  # bp of a training window
RATE = 1.0e-8


def sweep_config(per_scenario: int = 250) -> dict:
    """Neutral / linked / sweep in one population: windows of LENGTH bp, images of 64 SNPs."""
    return {
        "run": "sweeptest",
        "seed": 5,
        "samples": {"pop1": 10},
        "genome": {"loci": 1, "length": LENGTH, "mutation_rate": RATE, "recombination_rate": RATE},
        "scenarios": {
            "neutral": {"graph": GRAPH, "priors": {"N": 10000}},
            "linked": {
                "graph": GRAPH,
                "priors": {
                    "N": 10000,
                    "s": {"loguniform": [0.02, 0.1]},
                    "age": {"uniform": [0, 100]},
                    "offset": {"uniform": [0.04, 0.49]},  # beyond the image's SNPs, within the window
                    "side": {"uniform": [0, 1]},
                },
                "sweep": {"position": "0.5 + offset if side < 0.5 else 0.5 - offset", "s": "s", "age": "age"},
            },
            "sweep": {
                "graph": GRAPH,
                "priors": {"N": 10000, "s": {"loguniform": [0.02, 0.1]}, "age": {"uniform": [0, 100]},
                           "jitter": {"uniform": [-0.012, 0.012]}},
                "sweep": {"position": "0.5 + jitter", "s": "s", "age": "age"},
            },
        },
        "simulations": {"per_scenario": per_scenario, "chunk": per_scenario, "shard_size": 1000,
                        "split": {"train": 0.8, "validation": 0.1, "test": 0.1}},
        "features": {"snps": 64, "snp_selection": "central", "stats": ["segsites", "pi", "tajimas_d", "hap_diversity"]},
        "task": ["classify"],
        "network": "cnn2d",
        "train": {"epochs": 12, "threads": 2, "ensemble": 1},
    }


def prepared(config: dict) -> dict:
    return prepare(copy.deepcopy(config), base_dirs=(REPO,))


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["scenarios"]["sweep"].update(simulator="fastsimcoal2"), "not supported by fastsimcoal2"),
        (lambda c: c["genome"].update(loci=4), "needs one contiguous locus"),
        (lambda c: c["scenarios"]["sweep"]["sweep"].update(speed=1), "unknown config key 'scenarios.sweep.sweep.speed'"),
        (lambda c: c["scenarios"]["sweep"]["sweep"].pop("s"), "'s' is a required property"),
        (lambda c: c["scenarios"]["sweep"]["sweep"].update(s="sel"), "parameter 'sel' has no prior"),
        (lambda c: c["scenarios"]["sweep"]["sweep"].update(position=1.2), "not a fraction of the locus"),
        (lambda c: c["scenarios"]["sweep"]["sweep"].update(start_frequency=0.9, end_frequency=0.5),
         "0 < start_frequency < end_frequency < 1"),
    ],
)
def test_bad_sweep_configs_fail_with_one_line(change, message):
    config = sweep_config()
    change(config)
    with pytest.raises(ConfigError, match=message) as err:
        prepared(config)
    assert "\n" not in str(err.value)


def test_sweeps_need_a_single_population_graph():
    config = sweep_config()
    config["samples"] = {"pop1": 4}
    config["scenarios"]["sweep"]["graph"] = "config/scenarios/isolation.yaml"
    config["scenarios"]["sweep"]["priors"].update({"N_anc": 1e4, "N1": 1e4, "N2": 1e4, "T_split": 1e3})
    with pytest.raises(ConfigError, match="single population only, but the graph has 3 demes"):
        prepared(config)


def test_scenarios_without_sweep_are_unchanged():
    config = prepared(sweep_config())
    assert config["scenarios"]["neutral"]["sweep"] is None
    assert Scenario.from_config("neutral", config).sweep is None
    values = Scenario.from_config("sweep", config).sweep.values(
        {"N": 10000, "s": 0.05, "age": 10, "jitter": 0.0}, graph=Scenario.from_config("sweep", config).graph({"N": 10000}),
        where="x")
    assert values["start_frequency"] == pytest.approx(1 / 20000)
    assert values["end_frequency"] == pytest.approx(1 - 1 / 20000)
    assert values["dt"] == pytest.approx(1 / 400000)


# ---------------------------------------------------------------------------- simulation
def _diversity_at_centre(config, name, params, seeds, *, reps=6, half=10_000):
    scenario = Scenario.from_config(name, config)
    sim = simulator_for(scenario, config)
    out = []
    for r in range(reps):
        g = sim.simulate(scenario, params, {k: v + r for k, v in seeds.items()})
        near = np.abs(g.positions - LENGTH / 2) < half
        out.append(int(near.sum()))
    return np.mean(out)


def test_hard_sweep_removes_diversity_at_the_selected_site():
    config = prepared(sweep_config())
    seeds = {"seed_ancestry": 11, "seed_mutation": 12, "seed_fsc": 1}
    neutral = _diversity_at_centre(config, "neutral", {"N": 10000}, seeds)
    swept = _diversity_at_centre(config, "sweep", {"N": 10000, "s": 0.1, "age": 0, "jitter": 0.0}, seeds)
    # about 2 x 10 kb x 4Nu x a_20 = 28 sites without selection; a fresh strong sweep leaves few
    assert neutral > 15
    assert swept < 0.25 * neutral


def test_soft_sweep_keeps_more_diversity_than_a_hard_sweep():
    config = sweep_config()
    config["scenarios"]["soft"] = copy.deepcopy(config["scenarios"]["sweep"])
    config["scenarios"]["soft"]["sweep"]["start_frequency"] = 0.1
    config = prepared(config)
    seeds = {"seed_ancestry": 21, "seed_mutation": 22, "seed_fsc": 1}
    params = {"N": 10000, "s": 0.1, "age": 0, "jitter": 0.0}
    hard = _diversity_at_centre(config, "sweep", params, seeds)
    soft = _diversity_at_centre(config, "soft", params, seeds)
    assert soft > 2 * hard


def test_draws_are_reproducible():
    config = prepared(sweep_config())
    scenario = Scenario.from_config("linked", config)
    sim = simulator_for(scenario, config)
    params = scenario.draw(np.random.default_rng(3))
    seeds = {"seed_ancestry": 5, "seed_mutation": 6, "seed_fsc": 1}
    a, b = sim.simulate(scenario, params, seeds), sim.simulate(scenario, params, seeds)
    assert np.array_equal(a.genotypes, b.genotypes) and np.array_equal(a.positions, b.positions)


# ---------------------------------------------------------------------------- windows
def naive_window_centres(positions, snps, step):
    n = len(positions)
    if n <= snps:
        return [(positions[(n - 1) // 2] + positions[n // 2]) / 2]
    half = snps // 2
    lefts = []
    k = half - 1
    while k + 1 + (snps - half) - 1 < n:  # the window [k + 1 - half, k + 1 + snps - half) fits
        lefts.append(k)
        k += step
    if lefts[-1] != n - (snps - half) - 1:
        lefts.append(n - (snps - half) - 1)
    return [(positions[k] + positions[k + 1]) / 2 for k in lefts]


@pytest.mark.parametrize("n, snps, step", [(100, 16, 5), (100, 16, 1), (17, 16, 4), (16, 16, 3), (5, 16, 2), (64, 15, 7)])
def test_window_centres_match_naive(n, snps, step):
    positions = np.cumsum(np.random.default_rng(n).integers(1, 50, size=n)).astype(float)
    assert np.allclose(window_centres(positions, snps=snps, step=step), naive_window_centres(positions, snps, step))


def test_scan_window_is_built_like_a_training_locus():
    """A scan window equals the training example of the locus-sized stretch around its centre."""
    config = prepared(sweep_config())
    scenario = Scenario.from_config("sweep", config)
    ts = simulate_chromosome(scenario, {"N": 10000, "s": 0.05, "age": 0, "jitter": 0.0}, samples=config["samples"],
                             length=2.5 * LENGTH, recombination_rate=RATE, mutation_rate=RATE, seed=3)
    g = ts.genotype_matrix().astype(np.int8)
    pos = ts.sites_position + 1  # VCF positions
    pops = np.repeat(np.array(["pop1"]), g.shape[1])
    data = Observed(name="chr", genotypes=g, positions=pos, locus=np.zeros(pos.size, np.int32), populations=pops,
                     individuals=[f"i{k}" for k in range(10)], loci=["chr1"], length=2.5 * LENGTH)
    features = config["features"]
    windows = next(scan_windows(data, features=features, genome=config["genome"], step=9, seed=1))
    table = windows.table
    spec = StatsSpec(stats=features["stats"], populations=pops, jsfs_bins=features["jsfs_bins"])
    inner = np.flatnonzero(~table["edge"].to_numpy())
    assert inner.size > 10 and table["edge"].iloc[0] and table["edge"].iloc[-1]
    for w in (inner[0], inner[inner.size // 2], inner[-1]):
        centre = table["centre"][w]
        assert pos.min() + LENGTH / 2 <= centre <= pos.max() - LENGTH / 2
        inside = (pos >= centre - LENGTH / 2) & (pos < centre + LENGTH / 2)
        locus_pos = pos[inside] - (centre - LENGTH / 2)  # a simulated locus [0, LENGTH)
        image, distances, n = genotype_image(
            g[inside], locus_pos, np.zeros(inside.sum(), np.int32), populations=pops, snps=64, length=LENGTH,
            selection="central", sort_rows=True, rng=np.random.default_rng(0))
        assert np.array_equal(windows.images[w], image)
        assert np.allclose(windows.distances[w], distances)
        assert windows.n_snps[w] == n == 64
        stats = summary_stats(g[inside], np.zeros(inside.sum(), np.int32), spec=spec, total_length=LENGTH, loci=1)
        assert np.allclose(windows.stats[w], stats, rtol=1e-5)
    # Near the ends: half of the SNPs on each side of the centre.
    for w in (0, 3, len(table) - 1):
        centre, first = table["centre"][w], table["first_snp"][w]
        assert windows.n_snps[w] == 64 and table["edge"][w]
        left = int(np.searchsorted(pos, centre))
        assert first == min(max(0, left - 32), pos.size - 64)


def test_scan_vcf_without_popmap_needs_one_population(tmp_path):
    config = prepared(sweep_config())
    scenario = Scenario.from_config("neutral", config)
    ts = simulate_chromosome(scenario, {"N": 10000}, samples={"pop1": 12}, length=50_000, recombination_rate=RATE,
                             mutation_rate=RATE, seed=4)
    vcf = tmp_path / "chr.vcf.gz"
    write_vcf(ts, vcf)
    data = read_scan_vcf(vcf, popmap=None, samples={"pop1": 10}, seed=1)
    assert len(data.individuals) == 10 and data.genotypes.shape[1] == 20  # a reproducible subset of the 12
    # The same individuals from a sample sheet, by its columns (the scan.data entry's popmap_columns).
    from popdl.scan import _vcf_samples

    sheet = tmp_path / "sheet.csv"
    sheet.write_text("Museum no.,Lat,Group\n" + "".join(f"{s},4{i},pop1\n" for i, s in enumerate(_vcf_samples(vcf))))
    same = read_scan_vcf(vcf, popmap=sheet, popmap_columns=["museum no", "Group"], samples={"pop1": 10}, seed=1)
    assert same.individuals == data.individuals and np.array_equal(same.genotypes, data.genotypes)
    with pytest.raises(DataError, match="a popmap is needed"):
        read_scan_vcf(vcf, popmap=None, samples={"pop1": 5, "pop2": 5}, seed=1)
    bad = tmp_path / "bad.vcf.gz"
    with gzip.open(vcf, "rt") as fh:
        text = fh.read().replace("0|1", "0/1", 1)
    with gzip.open(bad, "wt") as fh:
        fh.write(text)
    with pytest.raises(DataError, match="unphased heterozygous"):
        read_scan_vcf(bad, popmap=None, samples={"pop1": 10}, seed=1)
    # The chromosome cut in two files (as a caller writes one per region): read as one, the same SNPs.
    lines = gzip.open(vcf, "rt").read().splitlines()
    head = [x for x in lines if x.startswith("#")]
    records = [x for x in lines if not x.startswith("#")]
    half = len(records) // 2
    for part, rows in (("part1.vcf", records[:half]), ("part2.vcf", records[half:])):
        (tmp_path / part).write_text("\n".join(head + rows) + "\n")
    parts = read_scan_vcf(str(tmp_path / "part*.vcf"), popmap=None, samples={"pop1": 10}, seed=1, name="chr")
    assert np.array_equal(parts.genotypes, data.genotypes) and np.array_equal(parts.positions, data.positions)
    assert parts.loci == data.loci and parts.individuals == data.individuals and parts.counts["vcf_files"] == 2


# ---------------------------------------------------------------------------- end to end
HP = {"network": "cnn2d", "learning_rate": 2e-3, "batch_size": 32, "optimizer": "adam", "dropout": 0.25,
      "batch_norm": True, "conv_layers": 2, "filters": 16, "kernel_size": 3, "dense_layers": 1, "dense_units": 32}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small neutral / linked / sweep classifier trained on real msprime simulations."""
    from popdl.dataset import build_dataset
    from popdl.features import features_chunk
    from popdl.plan import plan_draws
    from popdl.simulate import simulate_chunk
    from popdl.stages import prior_summary, stage_config
    from popdl.training import train_final

    work = tmp_path_factory.mktemp("sweeps")
    config = prepared(sweep_config())
    files = []
    for name in config["scenarios"]:
        scenario = Scenario.from_config(name, config)
        plan = plan_draws(scenario, root_seed=config["seed"], start=0, stop=config["simulations"]["per_scenario"])
        simulate_chunk(config, scenario, plan, work / f"{name}.sims.npz")
        features_chunk(config, work / f"{name}.sims.npz", work / f"{name}.features.npz")
        files.append(work / f"{name}.features.npz")
    build_dataset(files, work / "dataset", scenarios=list(config["scenarios"]), fractions=config["simulations"]["split"],
                  shard_size=1000, root_seed=config["seed"], priors=prior_summary(config))
    train_final(stage_config(config, "train"), work / "dataset", best={"hyper_parameters": HP, "temperature": 1.0},
                out=work / "model")
    config_file = write_config(work, sweep_config())
    return config, work, config_file


@pytest.mark.slow
def test_scan_finds_a_hard_sweep_in_the_middle_of_a_chromosome(trained, tmp_path):
    config, work, config_file = trained
    length = 3 * LENGTH  # scans are exact away from the ends (LENGTH / 2 from each)
    scenario = Scenario.from_config("sweep", config)
    ts = simulate_chromosome(scenario, {"N": 10000, "s": 0.02, "age": 0, "jitter": 0.0}, samples=config["samples"],
                             length=length, recombination_rate=RATE, mutation_rate=RATE, seed=2024)
    vcf = tmp_path / "chrom.vcf.gz"
    popmap = write_vcf(ts, vcf)
    (tmp_path / "popmap.tsv").write_text("".join(f"{s}\t{p}\n" for s, p in popmap))
    out = tmp_path / "scan"
    proc = subprocess.run(
        [str(BIN / "popdl"), "scan", "--configfile", str(config_file), "--model", str(work / "model"),
         "--vcf", str(vcf), "--popmap", str(tmp_path / "popmap.tsv"), "--step", "8", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(f"{out}.tsv", sep="\t")
    assert list(table.columns[:7]) == ["contig", "start", "end", "centre", "first_snp", "n_snps", "edge"]
    assert np.allclose(table[["p_neutral", "p_linked", "p_sweep"]].sum(axis=1), 1.0, atol=1e-5)
    best = table.loc[table["p_sweep"].idxmax(), "centre"]
    assert abs(best - length / 2) <= 0.1 * length, f"highest p(sweep) at {best:.0f} bp, the sweep is at {length / 2:.0f}"
    # far from the sweep the windows look neutral or linked, not swept
    assert table.loc[(table["centre"] - length / 2).abs() > LENGTH / 2, "p_sweep"].median() < 0.5
    assert table["edge"].any() and not table.loc[(table["centre"] - length / 2).abs() < LENGTH / 2, "edge"].any()
    bed = (out.parent / "scan.bed").read_text().splitlines()
    assert bed[0].startswith("track ") and len(bed) == len(table) + 1
    chrom, start, end, name, score, strand = bed[1].split("\t")
    assert (chrom, int(start), int(end), strand) == ("chr1", table["start"][0] - 1, table["end"][0], ".")
    assert int(score) == round(1000 * table["p_sweep"][0])
    assert (out.parent / "scan.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out.parent / "scan.json").read_text())["target"] == "sweep"
    assert "highest p(sweep)" in proc.stdout


@pytest.mark.slow
def test_scan_rejects_bad_input_with_one_line(trained, tmp_path):
    config, work, config_file = trained
    vcf = tmp_path / "broken.vcf"
    vcf.write_text("this is not a VCF\n")
    proc = subprocess.run(
        [str(BIN / "popdl"), "scan", "--configfile", str(config_file), "--model", str(work / "model"),
         "--vcf", str(vcf), "--out", str(tmp_path / "x")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"popdl: error: VCF {vcf}: not a VCF file (the first line must be ##fileformat=VCFv4.x)"
    assert not list(tmp_path.glob("x.*"))


def test_sweeps_example_dry_run_schedules_the_scan(tmp_path):
    proc = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=REPO / "config" / "examples" / "sweeps.yaml")
    assert "scan" in proc.stdout
    for rule in ("simulate", "features", "dataset", "train"):
        assert rule in proc.stdout


def test_check_lists_sweep_scenarios():
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", "config/examples/sweeps.yaml"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sweep [msprime]" in proc.stdout and "linked [msprime]" in proc.stdout
