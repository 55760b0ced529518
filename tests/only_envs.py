"""Each rule's job may import only the packages of its rule's conda env.

There is no conda here, so the test workflows run with the project's Python
while a ``sitecustomize`` lets each ``python3 -m popdl <command>`` job import
only the packages of its rule's env (and what they require) plus the standard
library: a job that needs a package its env lacks fails like it would under
``--software-deployment-method conda``. :func:`environment` gives the
variables that switch it on for a Snakemake run; every restricted job writes
its command to a log, which :func:`commands_run` reads, so a test can check
that every rule's command ran so restricted.
"""

from __future__ import annotations

import functools
import json
import os
import re
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

#: PyPI names whose tested stand-in has another name (the CPU build in the test venv).
TESTED_AS = {"tensorflow": "tensorflow-cpu"}

#: Rules whose env is chosen by an input function: the env it picks for the
#: tiny config (msprime scenarios).
DYNAMIC_ENVS = {"simulate_env": "envs/simulate.yaml", "check_fit_env": "envs/simulate.yaml"}

#: The words a refused import carries in the job's log.
REFUSED = "(not in envs/"

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
    with open(os.environ["POPDL_ENV_LOG"], "a") as log:
        log.write(f"{rest[0]}\\t{env}\\n")

_only_env()
'''


def pip_pins(env: dict) -> dict[str, str]:
    """PyPI name -> pinned version of a conda env's pip section (an unpinned one fails)."""
    pins = {}
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            for spec in dep.get("pip", []):
                m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", spec)
                assert m, f"unpinned pip requirement {spec!r}"
                pins[m.group(1).lower()] = m.group(2)
    return pins


@functools.cache
def _provides() -> dict[str, set[str]]:
    """Installed distribution (normalised name) -> the top-level modules it provides."""
    provides: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            provides.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    return provides


def env_modules(path: Path) -> set[str]:
    """Top-level modules of the env's pip packages and of everything they require."""
    from packaging.requirements import Requirement

    provides = _provides()
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


@functools.cache
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


def _folder(workdir: Path) -> Path:
    return Path(workdir) / ".only-envs"


def environment(workdir: Path) -> dict[str, str]:
    """Variables that make every popdl job of a Snakemake run in ``workdir`` import only its env."""
    folder = _folder(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (folder / "table.json").write_text(json.dumps(commands_by_env()))
    path = os.environ.get("PYTHONPATH", "")
    return {"POPDL_ENV_TABLE": str(folder / "table.json"), "POPDL_ENV_LOG": str(folder / "ran.log"),
            "PYTHONPATH": os.pathsep.join([str(folder), path]) if path else str(folder)}


def commands_run(workdir: Path) -> dict[str, str]:
    """popdl command -> env, of the jobs that ran restricted in ``workdir``."""
    log = _folder(workdir) / "ran.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


def refusals(workdir: Path) -> list[str]:
    """The refused imports named in the job logs under ``workdir``'s results."""
    return sorted({line.strip() for log in (Path(workdir) / "results").rglob("logs/**/*.log")
                   for line in log.read_text(errors="replace").splitlines() if REFUSED in line})
