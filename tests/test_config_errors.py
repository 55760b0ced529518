"""Config mistakes: one line naming the key, from `popdl check` and from `snakemake -n`, before any job."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import BIN, DEFAULT_CONFIG, REPO, snakemake, tiny_config, write_config

from popdl.config import load_config, load_yaml
from popdl.errors import ConfigError


def typo_top(c):
    c["simulatons"] = c.pop("simulations")


def typo_nested(c):
    c["features"]["snp"] = c["features"].pop("snps")


def bad_prior(c):
    c["scenarios"]["isolation"]["priors"]["N1"] = {"uniform": [2000, 1000]}


def unknown_prior(c):
    c["scenarios"]["isolation"]["priors"]["N1"] = {"lognormal": [1, 2]}


def missing_graph(c):
    c["scenarios"]["isolation"]["graph"] = "config/scenarios/no_such_graph.yaml"


def deme_not_in_graph(c):
    c["samples"] = {"pop1": 4, "popX": 4}


def split_not_one(c):
    c["simulations"]["split"] = {"train": 0.8, "validation": 0.2, "test": 0.1}


def wrong_type(c):
    c["simulations"]["chunk"] = "many"


def unsatisfiable(c):
    c["scenarios"]["secondary_contact"]["constraints"] = ["T_sc > T_split"]
    c["simulations"]["max_tries"] = 200


def unknown_parameter_in_graph(c):
    c["scenarios"]["isolation"]["priors"].pop("N2")


def misspelt_prior(c):
    c["scenarios"]["isolation"]["priors"]["T_spilt"] = {"loguniform": [1e4, 1e5]}


def locus_dropout_of_one_locus(c):
    c["genome"]["loci"] = 1
    c["features"] = {**c.get("features", {}), "missing_rate": 0.1, "missing_unit": "locus"}


CASES = [
    (typo_top, "unknown config key 'simulatons'; did you mean 'simulations'?"),
    (typo_nested, "unknown config key 'features.snp'; did you mean 'snps'?"),
    (bad_prior, "config key 'scenarios.isolation.priors.N1': uniform needs low < high"),
    (unknown_prior, "config key 'scenarios.isolation.priors.N1': unknown prior 'lognormal'"),
    (missing_graph, "config key 'scenarios.isolation.graph': file 'config/scenarios/no_such_graph.yaml' not found"),
    (deme_not_in_graph, "config key 'samples.popX': scenario 'isolation' has no deme 'popX'"),
    (split_not_one, "config key 'simulations.split': fractions sum to 1.1, not 1"),
    (wrong_type, "config key 'simulations.chunk': 'many' is not of type 'integer'"),
    (unsatisfiable, "config key 'scenarios.secondary_contact.constraints': the priors never satisfied 'T_sc > T_split'"),
    (unknown_parameter_in_graph, "config key 'scenarios.isolation.graph.demes.2.epochs.0.start_size': parameter 'N2' has no prior"),
    (misspelt_prior, "config key 'scenarios.isolation.priors.T_spilt': parameter 'T_spilt' is used nowhere"),
    (locus_dropout_of_one_locus, "config key 'features.missing_unit': locus drops an individual's whole locus, and with "
                                 "genome.loci 1 that is all its calls at once"),
]
IDS = [f.__name__ for f, _ in CASES]


def broken_config(tmp_path, change):
    config = tiny_config()
    change(config)
    return write_config(tmp_path, config)


@pytest.mark.parametrize("change, message", CASES, ids=IDS)
def test_load_config_raises_one_line(tmp_path, change, message):
    with pytest.raises(ConfigError) as info:
        load_config(broken_config(tmp_path, change))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("change, message", CASES, ids=IDS)
def test_popdl_check_prints_one_line_and_fails(tmp_path, change, message):
    cfg = broken_config(tmp_path, change)
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(cfg)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("popdl: config error:") and message in lines[0]


@pytest.mark.parametrize("change, message", CASES, ids=IDS)
def test_snakemake_dry_run_fails_before_any_job(tmp_path, change, message):
    cfg = broken_config(tmp_path, change)
    proc = snakemake(tmp_path, "-n", configfile=cfg, check=False)
    assert proc.returncode != 0
    assert f"popdl: config error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_good_config_checks(tmp_path):
    cfg = write_config(tmp_path, tiny_config())
    proc = subprocess.run([BIN / "popdl", "check", "--configfile", str(cfg)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout and "secondary_contact" in proc.stdout


def test_popdl_check_draws_what_the_run_will_simulate(tmp_path):
    # One draw in ten of a normal prior on a size is negative: no graph, and the check says so
    # before a run's simulate jobs would fail on them (the plan jobs refuse them too).
    config = tiny_config()
    config["scenarios"]["isolation"]["priors"]["N1"] = {"normal": [1000, 800]}
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(write_config(tmp_path, config))],
                          cwd=REPO, capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert lines[0].startswith("popdl: config error: config key 'scenarios.isolation.priors': ") and (
        f"of draws 0-{config['simulations']['per_scenario'] - 1} give parameters the simulator cannot take" in lines[0])
    assert "(prior normal[1000.0, 800.0]); bound the priors" in lines[0]


def test_a_config_without_a_sweep_gets_the_default_configs_tested_one(tmp_path):
    # The schema's defaults are the default config's network, tuning and train sections: a config that
    # leaves them out runs the sweep that beats ABC-RF in the README, not a shorter or broader one.
    default = load_config(REPO / "config" / "config.yaml")
    bare = {k: v for k, v in DEFAULT_CONFIG.items() if k not in ("network", "tuning", "train")}
    prepared = load_config(write_config(tmp_path, bare))
    for key in ("network", "tuning", "train", "task"):
        assert prepared[key] == default[key], key
    from popdl.tuning import sweep_warnings

    assert sweep_warnings(prepared) == []
    # The wider sweep for a cluster is an overlay: valid after any config, and wider than the defaults.
    wide = load_config(REPO / "config" / "config.yaml",
                       overrides=load_yaml(REPO / "config" / "overlays" / "wide_sweep.yaml"))
    assert wide["tuning"]["search_space"]["optimizer"] == {"choices": ["adam", "rmsprop", "sgd"]}
    assert len(wide["network"]) == 6 and sweep_warnings(wide) == []


def test_too_few_test_simulations_are_warned_about():
    from popdl.config import prepare
    from popdl.tuning import split_warnings

    tiny = prepare(tiny_config(), base_dirs=(REPO,))  # 40 draws per scenario, 20 % test: 8
    line, = split_warnings(tiny)
    assert line.startswith("simulations.per_scenario 40 leaves 8 test and 8 validation simulations per scenario: ")
    assert "500 draws per scenario give 100 of each" in line
    for name in ("config.yaml", "examples/conservation.yaml", "examples/divergence_order.yaml",
                 "examples/rad_unphased.yaml", "examples/paper_scale.yaml", "examples/sweeps.yaml"):
        assert split_warnings(load_config(REPO / "config" / name)) == [], name


def test_popdl_check_warns_of_a_mutation_rate_that_saturates_sites(tmp_path):
    # 1e-3 per bp (a per-locus rate taken for a per-bp one, say): 4 N mu far above 1, hours per draw.
    config = tiny_config(genome={**tiny_config()["genome"], "mutation_rate": 1.0e-3})
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(write_config(tmp_path, config))],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line, = [x for x in proc.stdout.splitlines() if x.startswith("WARNING: 4 N mu per bp is ")]
    assert "most sites would carry several mutations" in line and "genome.mutation_rate is per bp" in line
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(write_config(tmp_path, tiny_config()))],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "4 N mu" not in proc.stdout, proc.stdout + proc.stderr


def test_popdl_check_finds_the_data_files_or_names_the_missing_one(tmp_path):
    # Found as the workflow finds them (here: relative to the repository, from another folder) ...
    config = tiny_config(predict={"data": [{"name": "ex", "vcf": "config/data/example.vcf.gz",
                                            "popmap": "config/data/example_popmap.tsv"}]})
    config["scenarios"] = {name: dict(sc, graph=str(REPO / sc["graph"])) for name, sc in config["scenarios"].items()}
    good = write_config(tmp_path, config)
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(good)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # The shipped config checks from any folder: its graphs and data are found in the repository.
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(REPO / "config" / "config.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and ": valid. run 'demo'" in proc.stdout, proc.stderr
    # ... and a missing one is named before the run would stop on it.
    config["predict"]["data"][0]["popmap"] = "config/data/no_such_popmap.tsv"
    bad = write_config(tmp_path, config, name="bad.yaml")
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(bad)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert lines[0].startswith("popdl: config error: config key 'predict.data[0].popmap': "
                               "'config/data/no_such_popmap.tsv' not found"), lines[0]


def test_graph_files_are_found_beside_the_config_file(tmp_path):
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "one.yaml").write_text(
        "time_units: generations\ndemes:\n  - name: pop\n    epochs: [{start_size: N}]\n")
    config = tiny_config(samples={"pop": 3}, scenarios={"one": {"graph": "graphs/one.yaml", "priors": {"N": 1000}}})
    cfg = write_config(tmp_path, config)
    assert load_config(cfg)["scenarios"]["one"]["graph"]["demes"][0]["name"] == "pop"
    work = tmp_path / "work"
    proc = snakemake(work, f"results/{config['run']}/dataset/manifest.json", "-n", configfile=cfg)
    assert "simulate" in proc.stdout


def test_a_sweep_too_short_for_the_parameters_is_warned_about(tmp_path):
    # The schema's default sweep (12 epochs, median pruner) left every parameter behind ABC-RF in a measured run.
    from popdl.config import prepare
    from popdl.tuning import sweep_warnings

    short = prepare(tiny_config(), base_dirs=(REPO,))
    lines = sweep_warnings(short)
    assert len(lines) == 2 and lines[0].startswith("tuning.max_epochs 12 ") and "tuning.pruner median" in lines[1]
    assert all("config/overlays/quick_sweep.yaml" in line for line in lines)
    tested = prepare(tiny_config(tuning={"max_epochs": 200, "pruner": "none"}), base_dirs=(REPO,))
    assert sweep_warnings(tested) == []
    assert sweep_warnings(prepare(tiny_config(task=["classify"]), base_dirs=(REPO,))) == []  # no parameters
    proc = subprocess.run([str(BIN / "popdl"), "check", "--configfile", str(write_config(tmp_path, tiny_config()))],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.count("WARNING: tuning.") == 2, proc.stdout + proc.stderr
    for name in ("config.yaml", "examples/conservation.yaml", "examples/divergence_order.yaml",
                 "examples/rad_unphased.yaml", "examples/paper_scale.yaml"):
        assert sweep_warnings(load_config(REPO / "config" / name)) == [], name
