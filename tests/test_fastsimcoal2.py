"""fastsimcoal2 backend: .par writer, .arp parser, executable checks, and
agreement with msprime (the last ones only where an fsc program is on PATH)."""

from __future__ import annotations

import logging
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import demes
import numpy as np
import pytest

from conftest import REPO, snakemake, tiny_config, write_config
from popdl.config import prepare
from popdl.errors import ConfigError
from popdl.scenarios import load_scenarios
from popdl.simulators import get_simulator
from popdl.simulators.fastsimcoal2 import (
    EXECUTABLE_NAMES,
    FscNotSupported,
    find_executable,
    graph_to_par,
    parse_arp,
)

DATA = Path(__file__).parent / "data" / "fsc"
FSC = next((shutil.which(n) for n in EXECUTABLE_NAMES if shutil.which(n)), None)
needs_fsc = pytest.mark.skipif(
    FSC is None, reason=f"no fastsimcoal2 program on PATH (looked for {', '.join(EXECUTABLE_NAMES)})"
)


def _graph(text: str) -> demes.Graph:
    return demes.loads("time_units: generations\n" + text)


SPLIT = """
demes:
  - {name: anc, epochs: [{start_size: 1000, end_time: 500}]}
  - {name: pop1, ancestors: [anc], epochs: [{start_size: 200}]}
  - {name: pop2, ancestors: [anc], epochs: [{start_size: 300}]}
"""
CASES = {
    "split": (SPLIT, {"pop1": 2, "pop2": 3}, 1, 10000),
    "resize": (
        """
demes:
  - name: pop1
    epochs: [{start_size: 1000, end_time: 200}, {start_size: 100}]
""",
        {"pop1": 2},
        1,
        10000,
    ),
    "growth": (
        """
demes:
  - name: pop1
    epochs:
      - {start_size: 1000, end_time: 100}
      - {start_size: 1000, end_size: 4000, size_function: exponential}
""",
        {"pop1": 2},
        1,
        10000,
    ),
    "growth_split": (
        """
demes:
  - {name: anc, epochs: [{start_size: 1000, end_time: 500}]}
  - name: pop1
    ancestors: [anc]
    epochs: [{start_size: 100, end_size: 400, size_function: exponential}]
  - {name: pop2, ancestors: [anc], epochs: [{start_size: 200}]}
""",
        {"pop1": 2, "pop2": 2},
        1,
        10000,
    ),
    "migration_change": (
        SPLIT.replace("500", "1000")
        + """
migrations:
  - {source: pop2, dest: pop1, rate: 0.001, start_time: 100}
  - {source: pop1, dest: pop2, rate: 0.003, start_time: 100}
""",
        {"pop1": 2, "pop2": 3},
        5,
        2000,
    ),
    "pulse": (
        SPLIT.replace("500", "1000") + "pulses:\n  - {sources: [pop1], dest: pop2, time: 50, proportions: [0.1]}\n",
        {"pop1": 2, "pop2": 3},
        1,
        10000,
    ),
    "admixture": (
        """
demes:
  - {name: anc, epochs: [{start_size: 1000, end_time: 1000}]}
  - {name: pop1, ancestors: [anc], epochs: [{start_size: 200}]}
  - {name: pop2, ancestors: [anc], epochs: [{start_size: 300}]}
  - {name: pop3, ancestors: [pop1, pop2], proportions: [0.3, 0.7], start_time: 100, epochs: [{start_size: 500}]}
""",
        {"pop1": 2, "pop2": 2, "pop3": 2},
        1,
        10000,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_par_matches_hand_derived_file(case):
    text, samples, loci, length = CASES[case]
    par = graph_to_par(
        _graph(text), samples=samples, loci=loci, length=length, recombination_rate=1e-8, mutation_rate=2e-8
    )
    assert par == (DATA / f"{case}.par").read_text()


def test_linear_size_change_is_not_supported():
    graph = _graph("demes:\n  - name: pop1\n    epochs: [{start_size: 100, end_time: 50}, "
                   "{start_size: 100, end_size: 400, size_function: linear}]\n")
    with pytest.raises(FscNotSupported, match="not supported by fastsimcoal2"):
        graph_to_par(graph, samples={"pop1": 2}, loci=1, length=100, recombination_rate=0, mutation_rate=1e-8)


def test_selfing_is_not_supported():
    graph = _graph("demes:\n  - name: pop1\n    epochs: [{start_size: 100, selfing_rate: 0.5}]\n")
    with pytest.raises(FscNotSupported, match="not supported by fastsimcoal2"):
        graph_to_par(graph, samples={"pop1": 2}, loci=1, length=100, recombination_rate=0, mutation_rate=1e-8)


def test_arp_several_demes_and_chromosomes_with_an_empty_one():
    g = parse_arp((DATA / "haploid_3chrom.arp").read_text(), samples={"pop1": 1, "pop2": 2}, loci=3)
    expected = np.array(
        [[0, 1, 0, 0, 0, 1], [1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 1]],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(g.genotypes, expected)
    np.testing.assert_array_equal(g.positions, [4, 16, 0, 39, 39])  # 0-based
    np.testing.assert_array_equal(g.locus, [0, 0, 2, 2, 2])
    assert g.genotypes.dtype == np.uint8 and g.positions.dtype == np.float64 and g.locus.dtype == np.int32


def test_arp_genotypic_phased_output():
    g = parse_arp((DATA / "genotypic.arp").read_text(), samples={"pop1": 1, "pop2": 2}, loci=1)
    # haplotypes: 012, 300 | 000, 001, 010, 000
    expected = np.array([[0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(g.genotypes, expected)
    np.testing.assert_array_equal(g.positions, [2, 7, 8])


def test_arp_without_snps():
    g = parse_arp((DATA / "no_snps.arp").read_text(), samples={"pop1": 1, "pop2": 2}, loci=3)
    assert g.genotypes.shape == (0, 6) and g.positions.size == 0 and g.locus.size == 0


def test_arp_sample_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="has 4 haplotypes, expected 2"):
        parse_arp((DATA / "haploid_3chrom.arp").read_text(), samples={"pop1": 1, "pop2": 1}, loci=3)


def test_missing_executable_fails_config_validation(tmp_path):
    config = tiny_config(simulator="fastsimcoal2", fastsimcoal2={"executable": "no-such-fsc-program"})
    with pytest.raises(ConfigError, match="fastsimcoal2 executable 'no-such-fsc-program' not found") as info:
        prepare(config, base_dirs=(REPO,))
    assert "\n" not in str(info.value) and "envs/fastsimcoal2.yaml" in str(info.value)
    with pytest.raises(ConfigError):
        find_executable("no-such-fsc-program")
    write_config(tmp_path, config)
    proc = snakemake(tmp_path, "-n", f"results/{config['run']}/dataset/manifest.json",
                     configfile=tmp_path / "config.yaml", check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "config error" in line]
    assert len(lines) == 1 and "no-such-fsc-program" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_failing_program_names_the_draw_and_logs_its_stderr(tmp_path, caplog):
    fake = tmp_path / "fsc-broken"
    fake.write_text("#!/bin/sh\necho 'cannot read draw.par: boom' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    config = prepare(tiny_config(), base_dirs=(REPO,))
    scenario = load_scenarios(config)["isolation"]
    sim = get_simulator("fastsimcoal2", genome=config["genome"], samples=config["samples"], executable=str(fake))
    params = scenario.draw(np.random.default_rng(0))
    with caplog.at_level(logging.ERROR, logger="popdl.fastsimcoal2"):
        with pytest.raises(RuntimeError, match=r"scenario 'isolation' with seed 77 \(exit status 3\): cannot read"):
            sim.simulate(scenario, params, {"seed_fsc": 77, "seed_ancestry": 1, "seed_mutation": 1})
    assert "boom" in caplog.text


# --------------------------------------------------------------------------- with the real program
@needs_fsc
def test_simulate_shapes_and_determinism():
    config = prepare(tiny_config(genome={"loci": 3, "length": 5000, "mutation_rate": 1e-7,
                                         "recombination_rate": 1e-8}), base_dirs=(REPO,))
    scenario = load_scenarios(config)["secondary_contact"]
    sim = get_simulator("fastsimcoal2", genome=config["genome"], samples=config["samples"])
    params = scenario.draw(np.random.default_rng(3))
    seeds = {"seed_fsc": 4321, "seed_ancestry": 1, "seed_mutation": 1}
    a = sim.simulate(scenario, params, seeds)
    b = sim.simulate(scenario, params, seeds)
    assert a.genotypes.shape[1] == 16 and a.genotypes.shape[0] > 0
    assert set(np.unique(a.genotypes)) <= {0, 1}
    assert np.all((a.positions >= 0) & (a.positions < 5000)) and set(np.unique(a.locus)) <= {0, 1, 2}
    assert np.all(np.diff(a.locus) >= 0)
    np.testing.assert_array_equal(a.genotypes, b.genotypes)
    np.testing.assert_array_equal(a.positions, b.positions)


def _stats(g, n):
    if g.genotypes.shape[0] == 0:
        return 0.0, 0
    c = g.genotypes.sum(axis=1).astype(float)
    return float(np.sum(2 * c * (n - c) / (n * (n - 1)))), int(g.genotypes.shape[0])


@needs_fsc
def test_msprime_and_fastsimcoal2_agree_on_default_scenarios():
    """Mean pi and segregating sites of each default scenario (fixed parameters,
    small genome) agree between the simulators within sampling error."""
    import yaml

    with open(REPO / "config" / "config.yaml") as fh:
        config = yaml.safe_load(fh)
    config["samples"] = {"pop1": 3, "pop2": 3}
    config["genome"] = {"loci": 10, "length": 5000, "mutation_rate": 1e-7, "recombination_rate": 1e-8}
    fixed = {"N_anc": 4000, "N1": 1000, "N2": 3000, "T_split": 2000, "m": 2e-4, "f_sc": 0.25}
    for spec in config["scenarios"].values():
        for name in spec["priors"]:
            if name in fixed:
                spec["priors"][name] = fixed[name]
    # and one with exponential growth (the sign convention that is easiest to get wrong)
    config["scenarios"]["expansion"] = {
        "graph": {"demes": [
            {"name": "anc", "epochs": [{"start_size": "N_anc", "end_time": "T_split"}]},
            {"name": "pop1", "ancestors": ["anc"],
             "epochs": [{"start_size": 300, "end_size": "N1", "size_function": "exponential"}]},
            {"name": "pop2", "ancestors": ["anc"], "epochs": [{"start_size": "N2"}]},
        ]},
        "priors": {"N_anc": 4000, "N1": 3000, "N2": 1000, "T_split": 2000},
    }
    # and config/overlays/growth.yaml's scenario: a resize, then growth, in both populations
    overlay = yaml.safe_load((REPO / "config" / "overlays" / "growth.yaml").read_text())["scenarios"]
    config["scenarios"]["isolation_growth"] = {**overlay["isolation_growth"], "priors": {
        "N_anc": 4000, "N1": 3000, "N2": 2000, "T_split": 2000, "growth": 20, "T_growth": 300}}
    config = prepare(config, base_dirs=(REPO,))
    n_hap, reps = 12, 40
    seeds_fsc = np.random.default_rng(11).choice(np.arange(1, 1_000_001), size=reps, replace=False)
    fsc = get_simulator("fastsimcoal2", genome=config["genome"], samples=config["samples"])
    msp = get_simulator("msprime", genome=config["genome"], samples=config["samples"])
    report = []
    for name, scenario in load_scenarios(config).items():
        params = scenario.draw(np.random.default_rng(0))
        values = {"fsc": [], "msprime": []}
        for r in range(reps):
            seeds = {"seed_fsc": int(seeds_fsc[r]), "seed_ancestry": 1000 + r, "seed_mutation": 5000 + r}
            values["fsc"].append(_stats(fsc.simulate(scenario, params, seeds), n_hap))
            values["msprime"].append(_stats(msp.simulate(scenario, params, seeds), n_hap))
        f, m = np.array(values["fsc"], float), np.array(values["msprime"], float)
        for k, stat_name in enumerate(("pi", "segsites")):
            se = np.sqrt(f[:, k].var(ddof=1) / reps + m[:, k].var(ddof=1) / reps)
            z = (f[:, k].mean() - m[:, k].mean()) / se
            report.append(f"{name} {stat_name}: fsc {f[:, k].mean():.2f} msprime {m[:, k].mean():.2f} z {z:+.2f}")
            assert abs(z) < 4, "\n".join(report)
    print("\n".join(report), file=sys.stderr)


@needs_fsc
def test_tiny_workflow_runs_with_fastsimcoal2(tmp_path):
    config = tiny_config(simulator="fastsimcoal2")
    config["simulations"].update(per_scenario=10, chunk=5, shard_size=10)
    write_config(tmp_path, config)
    snakemake(tmp_path, f"results/{config['run']}/dataset/manifest.json", configfile=tmp_path / "config.yaml")
    sims = np.load(tmp_path / "results" / config["run"] / "sims" / "isolation" / "0.npz")
    assert str(sims["simulator"]) == "fastsimcoal2"
    assert int(sims["haplotypes"]) == 16 and sims["genotype_bits"].shape[1] == 2  # 16 alleles per site, as bits
    assert (tmp_path / "results" / config["run"] / "dataset" / "manifest.json").is_file()


def test_fsc_help_runs():
    if FSC is None:
        pytest.skip(f"no fastsimcoal2 program on PATH (looked for {', '.join(EXECUTABLE_NAMES)})")
    proc = subprocess.run([FSC, "--help"], capture_output=True, text=True)
    assert "fastSimcoal2" in proc.stdout + proc.stderr
