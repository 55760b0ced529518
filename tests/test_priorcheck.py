"""check-data --simulate: the data's statistics among the run's first draws, before a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from popdl.errors import ConfigError
from popdl.priorcheck import prior_lines, score_prior

from conftest import REPO

EXAMPLE = ["--vcf", str(REPO / "config" / "data" / "example.vcf.gz"),
           "--popmap", str(REPO / "config" / "data" / "example_popmap.tsv")]
CONFIG = str(REPO / "config" / "config.yaml")
NAMES = ["segsites_pop1", "pi_pop1", "fst_pop1_pop2", "tajimas_d_pop1"] + [f"sfs_pop1_{i}" for i in range(1, 11)]


def _check_data(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "popdl", "check-data", *args], capture_output=True, text=True,
                          timeout=600)


def _line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if "prior check" in line)


def test_statistics_outside_every_simulation_name_the_priors_to_widen():
    sim = np.random.default_rng(1).normal(size=(60, len(NAMES)))
    obs = np.zeros(len(NAMES))
    obs[0], obs[2] = 9.0, -9.0  # more diversity, less divergence than any simulation
    result = score_prior(obs, sim, NAMES)
    assert [(o["statistic"], o["side"], o["kind"]) for o in result["outside"]] == [
        ("segsites_pop1", "above", "diversity"), ("fst_pop1_pop2", "below", "divergence")]
    assert result["warn"] and not result["shapes_beyond_chance"]
    assert result["expected_outside"] == pytest.approx(len(NAMES) * 2 / 61)
    line = prior_lines("d", result, draws=20, scenarios=3, seconds=5)[0]
    assert "WARNING, 2 of 14 statistics outside every simulation" in line
    assert "more diversity in pop1 than any simulation: move the upper bounds of the population-size priors up" in line
    assert "less divergence between pop1-pop2 than any simulation" in line
    assert line.endswith("could only answer at a prior's bound")
    # The SFS's shape beyond every simulation, many times what chance leaves there: a warning of its own.
    obs = np.zeros(len(NAMES))
    obs[4:] = 9.0
    result = score_prior(obs, sim, NAMES)
    assert result["warn"] and result["shapes_beyond_chance"]
    assert "the shape of the SFS lies beyond every simulation" in prior_lines("d", result, draws=20, scenarios=3,
                                                                               seconds=5)[0]
    # Tajima's D below every simulation beside it: more rare variants, growth, and the overlay that adds it.
    obs[3] = -9.0
    line = prior_lines("d", score_prior(obs, sim, NAMES), draws=20, scenarios=3, seconds=5)[0]
    assert ("Tajima's D below every simulation in pop1 (more rare variants than any simulation): population growth"
            in line and "config/overlays/growth.yaml adds a scenario with it" in line), line
    obs[3] = 9.0
    line = prior_lines("d", score_prior(obs, sim, NAMES), draws=20, scenarios=3, seconds=5)[0]
    assert "Tajima's D above every simulation in pop1 (fewer rare variants than any simulation): a recent " \
           "bottleneck" in line and "overlays/growth.yaml" not in line, line
    # One SFS bin just outside: what chance does, no warning.
    obs = np.median(sim, axis=0)
    obs[5] = sim[:, 5].max() + 0.1
    result = score_prior(obs, sim, NAMES)
    assert not result["warn"] and len(result["outside"]) == 1
    assert "WARNING" not in prior_lines("d", result, draws=20, scenarios=3, seconds=5)[0]
    # NaN statistics (Tajima's D of a population without SNPs) are left out, not outside.
    sim[:, 3] = np.nan
    assert all(o["statistic"] != "tajimas_d_pop1" for o in score_prior(obs, sim, NAMES)["outside"])


def test_check_data_simulates_the_runs_first_draws_and_flags_a_mutation_rate_too_low(tmp_path):
    # The example data against their own config: within the simulations.
    proc = _check_data("--configfile", CONFIG, *EXAMPLE, "--simulate", "4")
    assert proc.returncode == 0, proc.stderr
    assert _line(proc.stdout).startswith("example: prior check, the run's first 4 draws of each of 3 scenario(s) "
                                         "(12 simulations, ")
    assert "diversity" not in _line(proc.stdout)
    # A second config file (merged as Snakemake merges them) with a mutation rate 100 times lower: the data
    # hold more diversity than any simulation, and the line says which priors to widen.
    low = tmp_path / "low.yaml"
    low.write_text("genome: {mutation_rate: 1.0e-10}\n")
    proc = _check_data("--configfile", CONFIG, str(low), *EXAMPLE, "--simulate", "4")
    assert proc.returncode == 0, proc.stderr
    line = _line(proc.stdout)
    assert "WARNING" in line and "more diversity in pop1, pop2 than any simulation" in line, line
    # --simulate checks the config as the run uses it: not beside --suggest-config, not from --settings.
    proc = _check_data("--configfile", CONFIG, *EXAMPLE, "--simulate", "--suggest-config", str(tmp_path / "s.yaml"))
    assert proc.returncode == 1 and "run it after --suggest-config" in proc.stderr
    assert not (tmp_path / "s.yaml").exists()


def test_a_prior_of_another_kind_merged_from_a_later_config_file_is_named(tmp_path):
    from popdl.config import load_configs

    later = tmp_path / "later.yaml"
    later.write_text("scenarios:\n  isolation:\n    priors:\n      N_anc: {loguniform: [1000, 100000]}\n")
    with pytest.raises(ConfigError, match=r"scenarios\.isolation\.priors\.N_anc': a prior has one kind, this one has 2 "
                                          r"\(.*loguniform.*\): keep one \(a config file given after another merges"):
        load_configs([CONFIG, later])
    later.write_text("scenarios:\n  isolation:\n    priors:\n      N_anc: {uniform: [1000, 100000]}\n")
    config = load_configs([CONFIG, later])
    assert config["scenarios"]["isolation"]["priors"]["N_anc"] == {"uniform": [1000, 100000]}
    assert config["scenarios"]["isolation"]["priors"]["N1"] == {"loguniform": [1000, 30000]}  # the rest kept


def test_the_growth_overlay_adds_a_scenario_whose_tajimas_d_no_constant_size_reaches(tmp_path):
    # config/overlays/growth.yaml after the default config: a fourth scenario, isolation then exponential
    # growth. At the same sizes today, its SFS holds more rare variants than strict isolation's.
    from popdl.config import load_configs
    from popdl.priorcheck import simulate_prior

    fixed = tmp_path / "fixed.yaml"
    fixed.write_text("scenarios:\n"
                     "  isolation: {priors: {N1: 10000, N2: 10000}}\n"
                     "  isolation_growth: {priors: {N1: 10000, N2: 10000, growth: 100, T_growth: 2000}}\n")
    config = load_configs([CONFIG, str(REPO / "config" / "overlays" / "growth.yaml"), str(fixed)])
    assert sorted(config["scenarios"]) == ["isolation", "isolation_growth", "isolation_migration",
                                           "secondary_contact"]
    for name in ("isolation_migration", "secondary_contact"):
        del config["scenarios"][name]
    result = simulate_prior(config, 3)
    d = result["stats"][:, result["stat_names"].index("tajimas_d_pop1")]
    labels = np.array(result["labels"])
    assert d[labels == "isolation_growth"].max() < -1.0 < d[labels == "isolation"].min(), (labels, d)


def _observed_from(features: Path, out: Path, *, scale: dict[str, float] | None = None) -> Path:
    """An observed.npz (popdl observe's arrays) holding the first draw of a features file, with the
    statistics whose names start with a key of ``scale`` multiplied by its value."""
    from popdl.features import load_features
    from popdl.io import save_npz

    f = load_features(features)
    stats = np.array(f["stats"][0], dtype=np.float64)
    names = [str(s) for s in f["stat_names"]]
    for prefix, factor in (scale or {}).items():
        for j, name in enumerate(names):
            if name.startswith(prefix):
                stats[j] *= factor
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, images=f["images"][:1], distances=f["distances"][:1], stats=stats, stat_names=f["stat_names"])
    return out


def test_the_workflows_prior_check_places_the_data_among_each_scenarios_first_chunk(tiny_dataset, tmp_path):
    # popdl prior-check, as the prior_check rule runs it: the features of chunk 0 of every scenario.
    features = sorted(tiny_dataset.parent.glob("features/*/0.npz"))
    assert [p.parent.name for p in features] == ["isolation", "isolation_migration", "secondary_contact"]
    cmd = [sys.executable, "-m", "popdl", "prior-check", "--features", *map(str, features)]
    # A draw of the first chunk itself lies within every range.
    observed = _observed_from(features[0], tmp_path / "within" / "observed.npz")
    out = tmp_path / "within" / "prior_check.json"
    proc = subprocess.run(cmd + ["--observed", str(observed), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["scenarios"] == {"isolation": 20, "isolation_migration": 20, "secondary_contact": 20}
    assert not result["warn"] and result["outside"] == [] and result["simulations"] == 60
    assert proc.stdout.strip() == result["line"] == (
        "within: prior check, chunk 0 of each of 3 scenario(s) (60 simulations): every statistic lies within the "
        "simulations' range")
    # A hundred times its diversity: a WARNING naming the priors, in the file and on stdout ...
    observed = _observed_from(features[0], tmp_path / "far" / "observed.npz",
                              scale={"segsites_": 100, "pi_": 100, "theta_w_": 100})
    out = tmp_path / "far" / "prior_check.json"
    proc = subprocess.run(cmd + ["--observed", str(observed), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["warn"] and "WARNING" in result["line"] and "more diversity in pop1, pop2 than any simulation" \
        in result["line"], result["line"]
    # ... and with --stop (predict.prior_check: stop) one error line, and nothing written.
    out.unlink()
    proc = subprocess.run(cmd + ["--observed", str(observed), "--out", str(out), "--stop"], capture_output=True,
                          text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "more diversity in pop1, pop2" in lines[0], proc.stderr
    assert lines[0].endswith("(predict.prior_check: stop; widen the priors, or set it to warn to run on)")
    assert not out.exists()
    # Statistics that another config computed: named, nothing written.
    other = tmp_path / "other" / "observed.npz"
    from popdl.io import save_npz

    with np.load(observed) as f:
        save_npz(other, **{k: f[k] for k in ("images", "distances")}, stats=f["stats"][:-1],
                 stat_names=f["stat_names"][:-1])
    proc = subprocess.run(cmd + ["--observed", str(other), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1 and "its statistics are not those of" in proc.stderr and not out.exists()


def test_a_diversity_just_outside_few_simulations_is_tempered_by_the_simulations_own_share():
    # Among 60 simulations, a data set drawn as they were lies outside them on a diversity or divergence
    # statistic about 1 time in 8: as often as the simulations themselves lie outside the others.
    rng = np.random.default_rng(5)
    sim = rng.lognormal(size=(60, len(NAMES)))
    obs = np.median(sim, axis=0)
    obs[0] = sim[:, 0].max() * 1.001  # just above every simulation
    result = score_prior(obs, sim, NAMES)
    assert result["warn"] and [o["statistic"] for o in result["outside"]] == ["segsites_pop1"]
    assert 3 <= result["simulations_outside"] <= 6 and result["beyond"] < result["simulations_beyond"]
    share = f"but {result['simulations_outside']} of the 60 simulations ({result['simulations_outside'] / 60:.0%}) " \
            "lie outside the others and the data on such a statistic too, one as far out"
    line = prior_lines("d", result, draws=20, scenarios=3, seconds=5)[0]
    assert share + ": rerun with more draws (--simulate 100)" in line, line
    workflow = prior_lines("d", result, source="chunk 0")[0]
    assert share + ": the data may lie near a prior's bound rather than beyond it" in workflow, workflow
    # Far beyond every simulation, further than any simulation lies beyond the others: no caution.
    obs[0] = sim[:, 0].max() * 10
    result = score_prior(obs, sim, NAMES)
    assert result["beyond"] > result["simulations_beyond"]
    assert "lie outside the others" not in prior_lines("d", result, draws=20, scenarios=3, seconds=5)[0]
    # Many simulations: few of them lie outside the others, and a statistic outside them all is a warning alone.
    sim = rng.lognormal(size=(2000, len(NAMES)))
    obs = np.median(sim, axis=0)
    obs[0] = sim[:, 0].max() * 1.001
    result = score_prior(obs, sim, NAMES)
    assert result["warn"] and result["simulations_outside"] <= 6
    assert "lie outside the others" not in prior_lines("d", result, draws=700, scenarios=3, seconds=5)[0]
    assert json.loads(json.dumps({k: result[k] for k in ("simulations_outside", "simulations_beyond", "beyond")}))


def test_a_statistic_some_simulations_lack_is_ranged_among_the_others():
    # Tajima's D is NaN in a simulation without segregating sites: the statistic is still checked.
    sim = np.random.default_rng(2).normal(size=(60, len(NAMES)))
    sim[0, 3] = np.nan
    obs = np.median(np.nan_to_num(sim), axis=0)
    obs[3] = -9.0
    outside = score_prior(obs, sim, NAMES)["outside"]
    assert [o["statistic"] for o in outside] == ["tajimas_d_pop1"] and outside[0]["low"] < -1


def test_prior_check_stop_ends_the_run_before_the_other_chunks(tmp_path):
    # The example data (ten 100 kb contigs) against the tiny config (one 20 kb locus): far more diversity
    # than any simulation. With predict.prior_check: stop, each scenario's chunk 0 and the data are read
    # first, the prior check fails, and the run ends there: no other chunk, no dataset, no sweep.
    from conftest import snakemake, tiny_config, write_config

    entry = {"name": "far", "vcf": str(REPO / "config" / "data" / "example.vcf.gz"),
             "popmap": str(REPO / "config" / "data" / "example_popmap.tsv")}
    config = write_config(tmp_path, tiny_config(predict={"data": [entry], "prior_check": "stop"}))
    proc = snakemake(tmp_path, "--cores", "1", configfile=config, check=False)
    assert proc.returncode != 0
    results = tmp_path / "results" / "tiny"
    log = (results / "logs" / "prior_check" / "far.log").read_text()
    assert "more diversity in pop1, pop2 than any simulation" in log and "predict.prior_check: stop" in log, log
    assert sorted(p.relative_to(results / "sims").as_posix() for p in (results / "sims").glob("*/*.npz")) == [
        "isolation/0.npz", "isolation_migration/0.npz", "secondary_contact/0.npz"]
    assert not (results / "predict" / "far" / "prior_check.json").exists()
    assert not (results / "dataset").exists() and not (results / "tuning").exists()
