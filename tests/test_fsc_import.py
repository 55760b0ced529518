"""Importing fastsimcoal2 .tpl/.est pairs as scenarios (popdl import-fsc)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, tiny_config
from popdl.config import prepare
from popdl.fsc_import import FscImportError, import_fsc, parse_est, translate_expression
from popdl.scenarios import load_scenarios
from popdl.simulators import get_simulator

DATA = Path(__file__).parent / "data" / "fsc"


def test_expressions_are_translated():
    assert translate_expression("$A$ %min% $B$") == "min(A, B)"
    assert translate_expression("A %max% B / 2") == "max(A, B) / 2"
    assert translate_expression("%abs% X + 1") == "abs(X) + 1"
    assert translate_expression("log(N1) + exp(T) ^ 2") == "log(N1) + exp(T) ** 2"
    with pytest.raises(FscImportError, match="not supported"):
        translate_expression("A %pow% B")


def test_est_priors_rules_and_complex_parameters():
    priors, constraints = parse_est((DATA / "im.est").read_text())
    assert priors["NPOP1"] == {"loguniform": [1000.0, 100000.0]}
    assert priors["NPOP2"] == {"uniform": [1000.0, 100000.0]}
    assert priors["TANC"] == {"expr": "round(TDIV + DT)"}
    assert priors["RANC"] == {"expr": "min(NPOP1, NPOP2)"}
    assert constraints == ["TBOT < TDIV"]


def test_template_becomes_demes_graph_with_placeholders():
    result = import_fsc((DATA / "im.tpl").read_text(), (DATA / "im.est").read_text(), names=["a", "b", "c"])
    demes_by_name = {d["name"]: d for d in result["graph"]["demes"]}
    assert [d["name"] for d in result["graph"]["demes"]][0] == "c"  # ancestor first
    assert demes_by_name["b"]["ancestors"] == ["c"] and demes_by_name["b"]["start_time"] == "TDIV"
    assert demes_by_name["a"]["ancestors"] == ["c"] and demes_by_name["a"]["start_time"] == "TANC"
    assert demes_by_name["a"]["epochs"] == [
        {"start_size": "(NPOP1 / 2) * (RBOT)", "end_time": "TBOT"},
        {"start_size": "NPOP1 / 2", "end_time": 0},
    ]
    # absoluteResize: the ancestor's size is RANC gene copies from TANC on
    assert demes_by_name["c"]["epochs"][0] == {"start_size": "RANC / 2", "end_time": "TANC"}
    rates = {(m["source"], m["dest"]): m for m in result["graph"]["migrations"]}
    assert set(rates) == {("a", "b"), ("b", "a")} and rates[("a", "b")]["rate"] == "MIG"
    assert result["samples"] == {"a": 10, "b": 5}


def test_growth_is_not_supported():
    tpl = (DATA / "im.tpl").read_text().replace("//Growth rates\n0\n", "//Growth rates\nGR\n")
    with pytest.raises(FscImportError, match="growth rate 'GR' is not supported"):
        import_fsc(tpl, (DATA / "im.est").read_text())


def test_cli_import_then_simulate_with_both_simulators(tmp_path):
    out = tmp_path / "scenarios" / "im.yaml"
    entry = tmp_path / "entry.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "popdl", "import-fsc", "--tpl", str(DATA / "im.tpl"), "--est", str(DATA / "im.est"),
         "--out", str(out), "--names", "a,b,c", "--config-out", str(entry)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "scenarios:" in proc.stdout
    spec = yaml.safe_load(entry.read_text())
    config = prepare(tiny_config(samples=spec["samples"], scenarios=spec["scenarios"]))
    scenario = load_scenarios(config)["im"]
    params = scenario.draw(np.random.default_rng(1))
    assert params["TBOT"] < params["TDIV"]
    g = get_simulator("msprime", genome=config["genome"], samples=config["samples"]).simulate(
        scenario, params, {"seed_ancestry": 1, "seed_mutation": 2, "seed_fsc": 3})
    assert g.genotypes.shape[1] == 30


def test_cli_missing_file_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "popdl", "import-fsc", "--tpl", str(tmp_path / "no.tpl"), "--est", str(DATA / "im.est"),
         "--out", str(tmp_path / "x.yaml")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "no.tpl" in proc.stderr
    assert not (tmp_path / "x.yaml").exists()
