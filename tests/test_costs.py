"""``popdl check --time``: a run's costs measured on a few of its own draws, and its warnings."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, tiny_config, write_config

from popdl.costs import RULE_MEMORY, RULE_RUNTIME, extrapolate, tuning_line


def _rule_resource(rule: str, key: str) -> int:
    """The ``resources`` value ``key`` of ``rule`` in workflow/rules/*.smk."""
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        text = path.read_text()
        found = re.search(rf"^rule {rule}:\n(.*?)(?=^rule |\Z)", text, flags=re.S | re.M)
        if found:
            return int(re.search(rf"\b{key}=(\d+)", found.group(1)).group(1))
    raise AssertionError(f"no rule {rule}")


def test_the_rules_resources_are_the_ones_the_estimate_compares_with():
    for rule in ("simulate", "features"):
        assert RULE_RUNTIME[rule] == _rule_resource(rule, "runtime")
        assert RULE_MEMORY[rule] == _rule_resource(rule, "mem_mb")


def test_popdl_check_time_measures_the_configs_own_draws(tmp_path):
    cfg = write_config(tmp_path, tiny_config())
    # A second file's keys replace the first's, as Snakemake merges its --configfile files.
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("simulations: {per_scenario: 1000, chunk: 100}\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(cfg), str(overlay), "--time", "2",
                           "--cores", "4"], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "1000 draws per scenario in 10 chunk(s)" in out.splitlines()[0], out
    assert "costs measured on the first 2 draw(s) of each scenario" in out, out
    for name in ("isolation", "isolation_migration", "secondary_contact"):
        line = re.search(rf"^  {name} \[msprime\]: simulate ([\d.]+) s per draw \(([\d.]+)-([\d.]+)\), features ([\d.]+) s; "
                         r"(\d+) sites per draw", out, flags=re.M)
        assert line, out
        mean, lo, hi = (float(line.group(k)) for k in (1, 2, 3))
        assert 0 < lo <= mean <= hi and int(line.group(5)) > 0
    assert "3 scenario(s) x 1000 draws, 30 chunks of 100 per step" in out and "on 4 core(s)" in out
    assert re.search(r"one chunk of 100 draws: up to [\d.]+ min to simulate \(the rule asks SLURM for 120 min\)", out)
    # tiny draws: nothing near the rules' limits (the tiny config's short sweep has its own warnings)
    assert not re.search(r"^WARNING: (?!tuning\.)", out, flags=re.M), out
    assert "tuning: 8 trials on 2 worker(s), 4 each, without a time limit per trial" in out
    assert not list(scratch.iterdir())  # the draws were simulated in a temporary folder, now gone


def _measured(simulate_s: float, *, sims_bytes: int = 1000, peak_mb: float = 300.0) -> dict:
    rows = [{"simulate": simulate_s, "features": simulate_s / 10, "sites": 100, "sims_bytes": sims_bytes,
             "features_bytes": 500}] * 2
    return {"draws": 2, "peak_mb": peak_mb, "scenarios": {"a": {"simulator": "msprime", "per_draw": rows}}}


def test_a_chunk_past_half_its_rules_runtime_is_warned_with_a_chunk_that_fits():
    # 30 s a draw, 250 draws: 125 min against the rule's 120; 120 draws (60 min) fit half of it.
    costs = extrapolate(_measured(30.0), per_scenario=1000, chunk=250, cores=2)
    assert costs["scenarios"]["a"]["chunk_minutes"]["simulate"] == pytest.approx(125.0)
    assert any("a chunk of 250 draws of a takes about 125 min to simulate" in w and "set simulations.chunk to 120 or fewer"
               in w for w in costs["warnings"]), costs["warnings"]
    assert costs["run"]["cpu_hours"]["simulate"] == pytest.approx(1000 * 30 / 3600)
    # 4 chunks on 2 cores: two rounds of a chunk each, 1000 x 30 s / 2 cores, longer than one chunk.
    assert costs["run"]["wall_hours"] == pytest.approx((1000 * 30 / 2 + 1000 * 3 / 2) / 3600)
    assert not extrapolate(_measured(1.0), per_scenario=1000, chunk=250, cores=2)["warnings"]


def test_a_simulate_job_past_its_rules_memory_is_warned_with_the_resources_that_fit():
    # A draw's 2,300 MB peak is the job's, whatever the chunk (its sites are spooled to disk).
    costs = extrapolate(_measured(1.0, sims_bytes=2_000_000, peak_mb=2300.0), per_scenario=500, chunk=250, cores=2)
    assert costs["run"]["simulate_mb"] == pytest.approx(2300.0)
    assert any("a simulate job needs about 2300 MB, up to 3500 MB with dearer draws than these, more than the 2000 MB"
               in w and "mem_mb: 3500 * attempt" in w for w in costs["warnings"]), costs["warnings"]
    # 1,500 MB: under the rule's 2,000, but not with the margin (2,250 MB).
    near = extrapolate(_measured(1.0, peak_mb=1500.0), per_scenario=500, chunk=250, cores=2)
    assert any("mem_mb: 2500 * attempt" in w for w in near["warnings"]), near["warnings"]
    assert not extrapolate(_measured(1.0, peak_mb=1300.0), per_scenario=500, chunk=250, cores=2)["warnings"]
    assert costs["run"]["disk_gb"]["sims"] == pytest.approx(500 * 2e6 / 1e9)


def test_the_tuning_line_says_what_bounds_the_sweeps_time():
    assert "about 3 min of training per worker" in tuning_line({"trials": 8, "workers": 2, "trial_seconds": 45})
    assert "3 each" in tuning_line({"trials": 5, "workers": 2, "trial_seconds": None})


@pytest.mark.parametrize("flags, message", [(["--time", "0"], "--time 0: measure at least one draw per scenario"),
                                            (["--time", "--cores", "0"], "--cores 0: at least 1")])
def test_check_time_refuses_nonsense_in_one_line_before_any_work(tmp_path, flags, message):
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(write_config(tmp_path, tiny_config())),
                           *flags], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stdout == "" and proc.stderr.strip() == f"popdl: error: {message}", proc.stderr


def test_the_peak_memory_is_the_processs_own_not_that_of_the_process_that_started_it():
    # ru_maxrss keeps, across exec, the size of the process that forked it: 300 MB held here would show.
    import numpy as np

    held = np.ones(300_000_000, np.uint8)
    proc = subprocess.run([sys.executable, "-c", "from popdl.costs import _peak_mb; print(_peak_mb())"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and held.sum() == held.size, proc.stderr
    assert 1 < float(proc.stdout) < 250, proc.stdout
