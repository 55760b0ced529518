"""Shared fixtures: a tiny config and a helper to run the real workflow on it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent

DEFAULT_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

# Small enough that the whole simulate -> dataset chain runs in seconds.
TINY = {
    "run": "tiny",
    "seed": 7,
    "samples": {"pop1": 4, "pop2": 4},
    "genome": {"loci": 1, "length": 20000, "mutation_rate": 1.0e-8, "recombination_rate": 1.0e-8},
    # The default config's scenarios and priors.
    "scenarios": DEFAULT_CONFIG["scenarios"],
    "simulations": {"per_scenario": 40, "chunk": 20, "shard_size": 25,
                    "split": {"train": 0.6, "validation": 0.2, "test": 0.2}},
    "features": {"snps": 32},
    # A short sweep and one final fit (not the schema's defaults, which are the default config's
    # tested sweep: 200 epochs, no pruner, 8 fits), and all four kinds of network in it.
    "network": ["mlp", "cnn1d", "cnn2d", "exchangeable"],
    "tuning": {"max_epochs": 12, "patience": 3, "trial_seconds": None, "pruner": "median"},
    "train": {"ensemble": 1},
}


#: The hyper-parameters of a tiny MLP, for tests that fit a final model without a sweep.
TINY_MLP = {"network": "mlp", "learning_rate": 1e-3, "lr_decay": "none", "lr_decay_rate": 0.5, "batch_size": 16,
            "optimizer": "adam", "momentum": 0.9, "dropout": 0.1, "batch_norm": False, "l1": 0.0, "l2": 0.0,
            "activation": "relu", "dense_layers": 1, "dense_units": 8, "towers": "shared"}


def tiny_config(**overrides) -> dict:
    """A deep copy of the tiny config with top-level keys replaced."""
    config = copy.deepcopy(TINY)
    config.update(copy.deepcopy(overrides))
    return config


def write_config(folder: Path, config: dict, name: str = "config.yaml") -> Path:
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, check: bool = True,
              timeout: int = 1800, only_envs: bool = False) -> subprocess.CompletedProcess:
    """Run the real Snakemake on the workflow, in ``workdir``; returns the completed process.

    ``only_envs``: each popdl job may import only the packages of its rule's conda env
    (:mod:`only_envs`; the commands that ran so are logged in ``workdir``)."""
    cmd = [str(BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir), "--cores", "2"]
    cmd += list(args)
    if configfile is not None:  # last: --configfile takes several values
        cmd += ["--configfile", str(configfile)]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if only_envs:
        from only_envs import environment

        env.update(environment(workdir))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        if only_envs:
            from only_envs import refusals

            refused = refusals(workdir)
            if refused:
                raise AssertionError("a rule needs a package its conda env lacks:\n" + "\n".join(refused))
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A temporary work folder holding the tiny config as config.yaml."""
    write_config(tmp_path, tiny_config())
    return tmp_path


def _tiny_run_to_the_dataset(work: Path) -> None:
    cfg = write_config(work, tiny_config())
    plans = [f"results/{TINY['run']}/plan/{s}.tsv" for s in TINY["scenarios"]]
    snakemake(work, f"results/{TINY['run']}/dataset/manifest.json", *plans, configfile=cfg, only_envs=True)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """The tiny config run through the workflow up to the dataset, with the
    scenarios' plan tables (once per session), each job importing only its
    rule's conda env (``tests/only_envs.py``).

    Under pytest-xdist the first worker to need it runs the workflow once, in
    the folder the workers share, and every worker gets its own copy of the
    whole work folder (Snakemake's records and the files' times included, so
    that Snakemake finds it complete): tests write into theirs."""
    work = tmp_path_factory.mktemp("tiny_run")
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        _tiny_run_to_the_dataset(work)
    else:
        import fcntl
        import shutil

        shared = tmp_path_factory.getbasetemp().parent  # this session's, common to its workers
        built = shared / "tiny_run_shared"
        with open(shared / "tiny_run_shared.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (built / "complete").exists():
                shutil.rmtree(built, ignore_errors=True)
                built.mkdir()
                _tiny_run_to_the_dataset(built)
                (built / "complete").touch()
        shutil.rmtree(work)
        copy_work(built, work)
    return work / "results" / TINY["run"] / "dataset"


def copy_work(source: Path, target: Path) -> None:
    """A copy of a Snakemake work folder in which Snakemake finds the same jobs done: its
    records and the files' times come along (not its locks)."""
    import shutil

    shutil.copytree(source, target, copy_function=shutil.copy2, symlinks=True,
                    ignore=shutil.ignore_patterns("complete", "locks"), dirs_exist_ok=True)


#: Test files that take longest, longest first (``pytest --durations=0``, summed per file, on
#: two cores): ``make test`` runs files whole in pytest-xdist workers (``--dist loadfile``,
#: ``--no-loadscope-reorder``), which take them in collection order, so these start first and
#: the short files fill the end. The SLURM test leads: it mostly waits on the cluster.
LONGEST_FILES = ["test_slurm.py", "test_benchmarks.py", "test_model.py", "test_report.py", "test_real_data.py",
                 "test_workflow_data.py", "test_bad_data.py", "test_sweeps.py",
                 "test_fastsimcoal2.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: in-file order kept
