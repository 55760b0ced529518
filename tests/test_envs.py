"""The conda environments of envs/: pinned, and pinned to what the tests run with."""

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
def test_env_is_pinned_to_tested_versions(path: Path):
    env = yaml.safe_load(path.read_text())
    assert env.get("channels"), f"{path.name}: no channels"
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.startswith("python=") for d in conda), f"{path.name}: Python version not pinned"
    for dep in conda:
        if dep != "pip":
            assert re.search(r"[=<>]", dep), f"{path.name}: {dep} is not pinned"
    for name, version in pip_pins(env).items():
        try:
            installed = metadata.version(TESTED_AS.get(name, name))
        except metadata.PackageNotFoundError:
            continue  # not part of the test environment
        assert installed == version, f"{path.name} pins {name}=={version}, the tests run {installed}"


def test_every_rule_uses_an_env_that_exists():
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for ref in re.findall(r"conda:\s*\n\s*\"([^\"]+)\"", smk.read_text()):
            assert (smk.parent / ref).resolve().is_file(), f"{smk.name}: conda env {ref} does not exist"
