"""The tiny workflow, end to end, through a real SLURM and profiles/slurm.

A one-node SLURM (munge, slurmctld, slurmd from Debian's packages, with two
fake GPUs) is started by the fixture; Snakemake runs with the real profile
``--profile profiles/slurm``, plus a small site profile layered on top that
says what any site says: its partition, no account (this cluster has no
accounting), ``squeue`` for job status (no slurmdbd).  Then SLURM's own
records (``scontrol show job`` and the controller log) must show that every
job Snakemake did not run locally went through sbatch and completed, and
that exactly the tune and train jobs asked for, and got, a GPU.  The GPUs
are fake, so the config allows the CPU fallback explicitly
(``train.allow_cpu_fallback``), and each GPU job's log must name the GPU it
was granted and say that it trains on the CPU instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from snakemake.resources import Resource

from cluster import MIN_JOB_AGE, PARTITION, SlurmCluster, Unavailable
from conftest import REPO, TINY, tiny_config, write_config

pytestmark = pytest.mark.slurm

BIN = Path(sys.executable).parent
SLURM_PROFILE = REPO / "profiles" / "slurm"
#: First status check this many seconds after a submission (MinJobAge >= 3x this).
STATUS_DELAY = 3
#: Rules that must ask SLURM for a GPU through the profile (the others must not).
GPU_RULES = {"tune", "train"}

#: The smallest sweep and training that still run every model rule.
SMALL_MODEL = {
    "network": "mlp",
    "tuning": {
        "workers": 2,
        "trials": 2,
        "max_epochs": 1,
        "patience": 0,
        "pruner": "none",
        "startup_trials": 1,
        "search_space": {"batch_size": 16, "dense_layers": 1, "dense_units": 8},
    },
    # The fake GPUs cannot run anything: without this, the GPU jobs stop (one line, naming the fix).
    "train": {"epochs": 1, "allow_cpu_fallback": True, "ensemble": 1},
}


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node SLURM cluster, stopped (by PID) after the module."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except Unavailable as exc:
        pytest.skip(f"no test SLURM cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


def site_profile(folder: Path) -> Path:
    """A profile layered over profiles/slurm: this cluster's partition, no account,
    squeue for job status. Every other setting comes from the real profile."""
    real = yaml.safe_load((SLURM_PROFILE / "config.v8+.yaml").read_text())
    resources = dict(real["default-resources"])
    resources["slurm_partition"] = PARTITION
    resources.pop("slurm_account", None)
    assert STATUS_DELAY * 3 <= MIN_JOB_AGE
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.v8+.yaml").write_text(yaml.safe_dump({
        "default-resources": resources,
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": STATUS_DELAY,
        "jobs": 12,
    }, sort_keys=False))
    return folder


def run_snakemake(work: Path, config: Path, site: Path, *args: str, timeout: int = 900):
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(work),
           "--profile", str(SLURM_PROFILE), "--profile", str(site), *args, "--configfile", str(config)]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    # From the repository root, as a user would: profiles/default applies on top.
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)


def job_stats(output: str) -> Counter:
    """The 'Job stats' table of a Snakemake run or dry run, as rule -> count."""
    counts, inside = Counter(), False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            inside, counts = True, Counter()
            continue
        if inside:
            fields = line.split()
            if len(fields) == 2 and fields[1].isdigit() and fields[0] != "total":
                counts[fields[0]] = int(fields[1])
            elif fields and fields[0] == "total":
                inside = False
    return counts


def seconds(runtime: str) -> int:
    """SLURM's [D-]HH:MM:SS as seconds."""
    days, _, hms = runtime.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def rule_of(comment: str) -> str:
    """The rule name from the plugin's job comment ``rule_<name>[_wildcards_<...>]``."""
    assert comment.startswith("rule_"), comment
    return comment[len("rule_"):].split("_wildcards_")[0]


def test_tiny_workflow_runs_through_slurm_with_gpu_requests(slurm, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # Two scenarios, one chunk each: each SLURM job also starts two Snakemakes of its own (about
    # 5 s of CPU here), and the plan, simulate and features jobs of a third add nothing.
    simulations = {**TINY["simulations"], "chunk": TINY["simulations"]["per_scenario"]}
    scenarios = {name: TINY["scenarios"][name] for name in ("isolation_migration", "secondary_contact")}
    config = write_config(work, tiny_config(**SMALL_MODEL, simulations=simulations, scenarios=scenarios))
    site = site_profile(tmp_path / "site")

    started = time.perf_counter()
    run = run_snakemake(work, config, site)
    wall = time.perf_counter() - started
    log = run.stdout + run.stderr
    assert run.returncode == 0, f"snakemake via SLURM failed:\n{log[-8000:]}"
    planned = job_stats(log)  # the plan Snakemake printed before running
    assert planned["plan"] == planned["simulate"] == planned["features"] == len(scenarios), planned

    # What Snakemake ran, and where.
    local_rules = set(re.findall(r"^localrule (\w+):", log, re.M))
    # The workflow's localrules: light steps that would otherwise queue for a node.
    assert {"select_best", "report"} <= local_rules, local_rules
    remote_rules = Counter(re.findall(r"^rule (\w+):", log, re.M))
    submitted = set(re.findall(r"has been submitted with SLURM jobid (\d+)", log))
    expected = Counter({rule: n for rule, n in planned.items() if rule not in local_rules})
    assert remote_rules == expected, (remote_rules, planned, local_rules)
    assert len(submitted) == sum(expected.values())

    # What SLURM ran: its own records, this run's jobs (working directory = work).
    jobs = [j for j in slurm.jobs() if j.get("WorkDir") == str(work)]
    by_id = {j["JobId"]: j for j in jobs}
    assert set(by_id) == submitted, (sorted(by_id), sorted(submitted))
    assert all(j["JobState"] == "COMPLETED" for j in jobs), [(j["JobId"], j["JobState"]) for j in jobs]
    assert all(j["Partition"] == PARTITION for j in jobs)
    assert Counter(rule_of(j["Comment"]) for j in jobs) == expected

    logged = {m for line in slurm.submissions_logged() for m in re.findall(r"JobId=(\d+)", line)}
    assert submitted <= logged, "a job Snakemake submitted is missing from slurmctld's submission log"

    gpu_asked = {j["JobId"] for j in jobs if "gpu" in j.get("TresPerJob", "") + j.get("TresPerNode", "")}
    gpu_rules = {rule_of(by_id[i]["Comment"]) for i in gpu_asked}
    gpu_allocated = set(re.findall(r"gres_job_state gres:gpu\(\d+\) type:fake\(\d+\) job:(\d+)",
                                   slurm.ctld_log.read_text(errors="replace")))
    assert GPU_RULES <= set(expected), f"the run had no {GPU_RULES - set(expected)} job"
    assert gpu_rules == GPU_RULES, gpu_rules
    assert gpu_asked == {i for i, j in by_id.items() if rule_of(j["Comment"]) in GPU_RULES}
    assert gpu_asked <= gpu_allocated, "a GPU request was not allocated a (fake) GPU by slurmctld"
    for i in gpu_asked:
        assert by_id[i]["TresPerJob"] == "gres:gpu:1", by_id[i]

    # Each GPU job's log names the device it was granted and the one it trained on.
    results = work / "results" / TINY["run"]
    logs = [results / "logs" / "tune" / f"{w}.log" for w in range(SMALL_MODEL["tuning"]["workers"])]
    devices = {}
    for log_file in logs + [results / "logs" / "train.log"]:
        lines = [x.split("device: ", 1)[1] for x in log_file.read_text().splitlines() if "device: " in x]
        assert len(lines) == 1, (log_file, lines)
        assert "1 GPU granted (--gpus 1" in lines[0], lines[0]
        assert " trains on cpu " in lines[0] and "CPU fallback allowed by train.allow_cpu_fallback" in lines[0]
        devices[log_file.name] = lines[0]

    # Memory and CPUs as the profile sets them (attempt 1).
    profile = yaml.safe_load((SLURM_PROFILE / "config.v8+.yaml").read_text())
    for j in jobs:
        rule = rule_of(j["Comment"])
        want = profile["set-resources"].get(rule, {})
        if "cpus_per_task" in want:
            assert j["NumCPUs"] == str(want["cpus_per_task"]), (rule, j["NumCPUs"])
        if "mem_mb" in want:
            mem = Resource.cli_evaluator("mem_mb", str(want["mem_mb"]), wildcards={}, input=[], attempt=1,
                                         async_run=None)  # Snakemake's own reading of the profile
            assert j["MinMemoryNode"] == f"{mem}M", (rule, j["MinMemoryNode"])

    for done in ("dataset/manifest.json", "tuning/best.json", "model/bundle.json", "evaluation/metrics.json"):
        assert (results / done).exists(), done
    busy = sum(seconds(j["RunTime"]) for j in jobs)
    print(f"\nSLURM ran {len(jobs)} jobs for the tiny workflow ({dict(sorted(expected.items()))}); "
          f"{len(gpu_asked)} carried a GPU request ({', '.join(sorted(gpu_rules)) or 'none'}), "
          f"all allocated a GPU; local rules: {', '.join(sorted(local_rules)) or 'none'}; "
          f"Snakemake took {wall:.0f} s, the jobs ran {busy} s in all")
    for name, line in sorted(devices.items()):
        print(f"  {name}: {line}")
