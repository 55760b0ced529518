"""The conda environments of envs/: pinned, and pinned to the lock the tests install from."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
#: PyPI names whose tested stand-in has another name (the CPU build in the test venv).
TESTED_AS = {"tensorflow": "tensorflow-cpu"}


def _sync_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_env_pins", REPO / "scripts" / "sync_env_pins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pip_pins(env: dict) -> dict[str, str]:
    pins = {}
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            for spec in dep.get("pip", []):
                m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", spec)
                assert m, f"unpinned pip requirement {spec!r}"
                pins[m.group(1).lower()] = m.group(2)
    return pins


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.stem)
def test_env_is_pinned_to_the_lock(path: Path):
    env = yaml.safe_load(path.read_text())
    assert env.get("channels"), f"{path.name}: no channels"
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python=") for d in conda), f"{path.name}: Python version not pinned"
    for dep in conda:
        if dep != "pip":
            assert re.search(r"[=<>]", dep), f"{path.name}: {dep} is not pinned"
    sync = _sync_module()
    locked = sync.lock_versions()
    for name, version in pip_pins(env).items():
        want = locked.get(name) or locked.get(TESTED_AS.get(name, ""))
        assert want, f"{path.name} pins {name}, which the lock (requirements/lock.txt) lacks"
        assert want == version, f"{path.name} pins {name}=={version}, the lock has {want}: run make lock"


def test_the_venv_holds_the_locked_versions():
    """make install installs the lock: what the tests run is what the envs pin."""
    from packaging.utils import canonicalize_name

    locked = _sync_module().lock_versions()
    wrong = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in locked and dist.version != locked[name]:
            wrong.append(f"{name} {dist.version} (lock {locked[name]})")
    assert not wrong, "installed outside the lock: " + ", ".join(sorted(wrong))


def test_sync_env_pins_repairs_a_stale_pin(tmp_path):
    sync = _sync_module()
    env = tmp_path / "x.yaml"
    env.write_text("dependencies:\n  - pip:\n      - numpy==0.0.1  # old\n      - tensorflow[and-cuda]==0.1\n")
    locked = {"numpy": "2.4.6", "tensorflow-cpu": "2.21.0"}
    text, problems = sync.sync(env, locked)
    assert "numpy==2.4.6  # old" in text and "tensorflow[and-cuda]==2.21.0" in text
    assert len(problems) == 2


def test_every_rule_uses_an_env_that_exists():
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for ref in re.findall(r"conda:\s*\n\s*\"([^\"]+)\"", smk.read_text()):
            assert (smk.parent / ref).resolve().is_file(), f"{smk.name}: conda env {ref} does not exist"


# -- does each env hold everything its rules import? -------------------------
# There is no conda here, so the tiny workflow runs with the project's Python
# while a sitecustomize lets each `python3 -m popdl <command>` job import only
# the packages of its rule's env (and their requirements) plus the standard
# library: a job that needs a package its env lacks fails like it would
# under --software-deployment-method conda.

SITECUSTOMIZE = '''
import importlib.abc, json, os, sys

def _only_env():
    argv = sys.orig_argv
    if "-m" not in argv or argv[argv.index("-m") + 1:argv.index("-m") + 2] != ["popdl"]:
        return
    rest = argv[argv.index("-m") + 2:]
    table = json.load(open(os.environ["POPDL_ENV_TABLE"]))
    if not rest or rest[0] not in table:
        return
    env, allowed = table[rest[0]]["env"], set(table[rest[0]]["modules"])

    class OnlyTheEnv(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in allowed or top in sys.stdlib_module_names or top.startswith("_") or top == "popdl":
                return None
            raise ModuleNotFoundError(f"No module named {name!r} (not in {env})", name=name)

    sys.meta_path.insert(0, OnlyTheEnv())

_only_env()
'''


def env_modules(path: Path) -> set[str]:
    """Top-level modules of the env's pip packages and of everything they require."""
    from packaging.requirements import Requirement

    provides: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            provides.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    todo = [TESTED_AS.get(n, n) for n in pip_pins(yaml.safe_load(path.read_text()))]
    seen: set[str] = set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return set().union(*(provides.get(d, set()) for d in seen))


#: Rules whose env is chosen by an input function: the env it picks for the
#: tiny config (msprime scenarios).
DYNAMIC_ENVS = {"simulate_env": "envs/simulate.yaml"}


def commands_by_env() -> dict[str, dict]:
    """popdl command -> its rule's conda env and what that env lets it import, from the rules."""
    table = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"(?m)^(?=rule \w+:)", smk.read_text())[1:]:
            env = re.search(r"conda:\s*\n\s*(\S+)", block)
            command = re.search(r"python3 -m popdl ([\w-]+)", block)
            if not (env and command):
                continue
            ref = env.group(1)
            if ref.startswith('"'):
                path = (smk.parent / ref.strip('"')).resolve()
            else:
                assert ref in DYNAMIC_ENVS, f"{smk.name}: conda env from {ref}(); add it to DYNAMIC_ENVS"
                path = REPO / DYNAMIC_ENVS[ref]
            table[command.group(1)] = {"env": f"envs/{path.name}", "modules": sorted(env_modules(path))}
    return table


@pytest.mark.slow
def test_each_rule_runs_with_only_its_env(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from conftest import tiny_config, write_config

    table = commands_by_env()
    assert {"simulate", "features", "dataset", "tune", "train"} <= set(table), sorted(table)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "table.json").write_text(json.dumps(table))
    work = tmp_path / "work"
    work.mkdir()
    config = write_config(work, tiny_config(
        network="mlp",
        tuning={"workers": 1, "trials": 1, "max_epochs": 1, "patience": 0, "pruner": "none",
                "startup_trials": 1, "search_space": {"batch_size": 16, "dense_layers": 1, "dense_units": 8}},
        train={"epochs": 1},
        predict={"data": [{"name": "example", "vcf": "config/data/example.vcf.gz",
                           "popmap": "config/data/example_popmap.tsv"}], "replicates": 2},
    ))
    bindir = Path(sys.executable).parent
    env = dict(os.environ, POPDL_ENV_TABLE=str(tmp_path / "table.json"),
               PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
               PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [str(bindir / "snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(work),
         "--cores", "2", "--configfile", str(config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        missing = sorted({line.strip() for log in (work / "results").rglob("logs/**/*.log")
                          for line in log.read_text(errors="replace").splitlines() if "(not in envs/" in line})
        pytest.fail("a rule needs a package its conda env lacks:\n" + "\n".join(missing)
                    if missing else f"workflow failed:\n{proc.stderr[-5000:]}")
    ran = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M))
    assert {"simulate", "tune", "train", "evaluate", "predict", "report"} <= ran, sorted(ran)
