"""The conda environments of envs/: pinned, and pinned to the lock the tests install from."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from only_envs import TESTED_AS, commands_by_env, pip_pins

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def _sync_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sync_env_pins", REPO / "scripts" / "sync_env_pins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


# Does each env hold everything its rules import? The session's tiny dataset
# (conftest) and test_report.py's run through the report run every job with
# only its rule's env importable (tests/only_envs.py); test_report.py checks
# that every command below ran so.


def test_every_popdl_command_of_the_rules_has_an_env_and_imports_its_own_packages():
    table = commands_by_env()
    assert {"plan", "simulate", "features", "dataset", "tune", "select-best", "train", "evaluate", "abc", "observe",
            "predict", "scan", "report"} <= set(table), sorted(table)
    assert "msprime" in table["simulate"]["modules"] and "numpy" in table["simulate"]["modules"]
    assert "keras" in table["train"]["modules"] and "optuna" in table["tune"]["modules"]
    assert "keras" not in table["simulate"]["modules"]  # the restriction has teeth


def test_the_restriction_refuses_a_package_outside_the_env_and_logs_the_command(tmp_path):
    """The mechanism the shared runs rely on: a command whose env (here a made-up one) lacks a
    package it imports fails with the env named, and the command is logged as restricted."""
    import json
    import os
    import subprocess
    import sys

    from only_envs import commands_run, environment

    env = dict(os.environ, **environment(tmp_path))
    table = json.loads(Path(env["POPDL_ENV_TABLE"]).read_text())
    table["check"] = {"env": "envs/made_up.yaml", "modules": ["yaml"]}  # the config check needs jsonschema too
    Path(env["POPDL_ENV_TABLE"]).write_text(json.dumps(table))
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(REPO / "config" / "config.yaml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "(not in envs/made_up.yaml)" in proc.stderr, proc.stderr[-2000:]
    assert commands_run(tmp_path) == {"check": "envs/made_up.yaml"}
