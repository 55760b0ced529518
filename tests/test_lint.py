"""CI lints: `snakemake --lint`, snakefmt and ruff must all pass."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return str(path)


def test_snakemake_lint(tmp_path):
    proc = run(tool("snakemake"), "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path), "--lint")
    assert proc.returncode == 0, f"snakemake --lint found problems:\n{proc.stdout[-6000:]}{proc.stderr[-3000:]}"


def test_snakefmt():
    proc = run(tool("snakefmt"), "--check", "--diff", "workflow")
    assert proc.returncode == 0, f"run `snakefmt workflow`:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}"


def test_ruff():
    proc = run(tool("ruff"), "check", "scripts", "tests", "benchmarks")
    assert proc.returncode == 0, proc.stdout[-6000:]
