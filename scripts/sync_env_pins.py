"""Rewrite the pip pins of envs/*.yaml from requirements/lock.txt.

The lock (made by ``make lock``) holds the exact versions the tests pass with;
every conda env of envs/ pins its pip packages to the same versions, so a rule
run under ``--software-deployment-method conda`` gets what the tests ran.

    python scripts/sync_env_pins.py           # rewrite the pins in place
    python scripts/sync_env_pins.py --check   # exit 1 and name each pin that differs
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements" / "lock.txt"
#: The environment the conda envs describe (they pin python=3.11 on linux-64).
ENV_MARKERS = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
               "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
#: A pin in an env may name a build that the lock holds under another name.
SAME_RELEASE = {"tensorflow": "tensorflow-cpu"}
PIN = re.compile(r"^(\s*-\s*)([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#;]+)(.*)$")


def lock_versions(path: Path = LOCK) -> dict[str, str]:
    """Package name (canonical) -> version, for the lock lines that apply to the envs."""
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        spec, _, marker = line.partition(";")
        name, sep, version = spec.strip().partition("==")
        if not sep:
            raise ValueError(f"{path.name}: unpinned line {line!r}")
        if marker.strip() and not Marker(marker.strip()).evaluate(ENV_MARKERS):
            continue
        versions[canonicalize_name(name)] = version.strip()
    return versions


def sync(env_path: Path, versions: dict[str, str]) -> tuple[str, list[str]]:
    """The env file's text with its pins from the lock, and one line per pin changed or unknown."""
    out, problems = [], []
    for line in env_path.read_text().splitlines(keepends=True):
        m = PIN.match(line.rstrip("\n"))
        if m:
            name = canonicalize_name(m.group(2))
            want = versions.get(name) or versions.get(SAME_RELEASE.get(name, ""))
            if want is None:
                problems.append(f"{env_path.name}: {m.group(2)} is not in the lock")
            elif want != m.group(4):
                problems.append(f"{env_path.name}: {m.group(2)}=={m.group(4)}, the lock has {want}")
                line = f"{m.group(1)}{m.group(2)}{m.group(3) or ''}=={want}{m.group(5)}\n"
        out.append(line)
    return "".join(out), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report pins that differ")
    args = parser.parse_args(argv)
    versions = lock_versions()
    bad = 0
    for env_path in sorted((REPO / "envs").glob("*.yaml")):
        text, problems = sync(env_path, versions)
        for p in problems:
            print(p)
        unknown = [p for p in problems if "not in the lock" in p]
        bad += len(problems) if args.check else len(unknown)
        if not args.check and text != env_path.read_text():
            env_path.write_text(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
