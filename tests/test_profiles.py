"""The execution profiles: dry runs of every shipped config with each profile,
and the rules the SLURM profile must keep (GPU only where it is used, memory
growing with the attempt, nothing in slurm_extra that the plugin refuses)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.resources import Resource
from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

from conftest import REPO

BIN = Path(sys.executable).parent
PROFILES = REPO / "profiles"
SLURM = yaml.safe_load((PROFILES / "slurm" / "config.v8+.yaml").read_text())
DEFAULT = yaml.safe_load((PROFILES / "default" / "config.v8+.yaml").read_text())
CONFIGS = [REPO / "config" / "config.yaml", *sorted((REPO / "config" / "examples").glob("*.yaml"))]
GPU_RULES = {"tune", "train"}
CPU_ONLY_RULES = {"plan", "simulate", "features", "dataset"}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake from the repository root (where profiles/default is picked up)."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir), *args]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def job_resources(output: str) -> dict[str, list[dict[str, str]]]:
    """Per rule, the resources line of each job printed by a dry run."""
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+resources: (.*)$", line)
        if m and rule is not None:
            pairs = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
            jobs.setdefault(rule, []).append(pairs)
            rule = None
    return jobs


@pytest.mark.parametrize("profile", ["default", "slurm"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_dry_run(profile, config, tmp_path):
    args = ["--dry-run"]
    if profile == "slurm":
        args += ["--profile", str(PROFILES / "slurm")]
    if config != CONFIGS[0]:
        args += ["--configfile", str(config)]  # else the embedded default
    proc = snakemake(tmp_path, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "workflow specific profile profiles/default" in proc.stderr
    jobs = job_resources(out)
    assert jobs.get("simulate"), "the dry run plans no simulation"
    for rule, resources in jobs.items():
        for res in resources:
            gpus = int(res.get("gpu", 0))
            if profile == "slurm" and rule in GPU_RULES:
                assert gpus == 1, (rule, res)
            if profile == "default" or rule in CPU_ONLY_RULES:
                assert gpus == 0, (rule, res)
            if profile == "slurm":
                assert res.get("slurm_partition") == SLURM["default-resources"]["slurm_partition"], (rule, res)
    if profile == "slurm":
        assert GPU_RULES <= set(jobs), f"the default target runs no {GPU_RULES - set(jobs)}"


def test_slurm_profile_rules():
    assert SLURM["executor"] == "slurm"
    assert int(SLURM["retries"]) >= 1
    rules = SLURM["set-resources"]
    for rule in GPU_RULES:
        assert rules[rule]["gpu"] == 1
        assert rules[rule]["cpus_per_task"] >= 1
        assert rules[rule]["runtime"] > 0
    for rule in CPU_ONLY_RULES:
        assert not {"gpu", "gpu_model", "gres"} & set(rules.get(rule, {})), rule
    forbidden = get_forbidden_slurm_options()
    for rule, res in [("default", SLURM["default-resources"]), *rules.items()]:
        extra = str(res.get("slurm_extra", ""))
        bad = [name for pattern, name in forbidden.items() if re.search(pattern, extra)]
        assert not bad, f"slurm_extra of {rule} sets {bad}: the plugin refuses them"
    # Memory grows with the attempt (Snakemake's own reading of the expressions).
    for rule in ("simulate", "features", "tune", "train"):
        expr = str(rules[rule]["mem_mb"])
        mem = [Resource.cli_evaluator("mem_mb", expr, wildcards={}, input=[], attempt=a, async_run=None)
               for a in (1, 2, 3)]
        assert mem[0] < mem[1] < mem[2], (rule, expr, mem)


def test_profiles_name_only_existing_rules(tmp_path):
    proc = snakemake(tmp_path, "--list-rules")
    assert proc.returncode == 0, proc.stderr[-3000:]
    workflow_rules = set(proc.stdout.split())
    named = set(SLURM["set-resources"]) | set(SLURM.get("set-threads", {}))
    assert named <= workflow_rules, f"profiles/slurm names unknown rules: {named - workflow_rules}"


def test_default_profile_stays_portable():
    # It is applied on top of every other profile (as the workflow profile):
    # anything here about executors or resources would override profiles/slurm.
    assert not {"executor", "jobs", "resources", "default-resources", "set-resources", "set-threads",
                "keep-going", "retries", "software-deployment-method"} & set(DEFAULT)
