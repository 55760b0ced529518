"""Reading Snakemake's own plan: the job counts of a dry run."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import snakemake


def job_stats(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run, as {rule: count}."""
    table = output[output.index("Job stats:"):]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)\s*$", line)
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


def dry_run(workdir: Path, *targets: str, configfile: Path | None = None) -> dict[str, int]:
    proc = snakemake(workdir, *targets, "-n", "--quiet", "rules", configfile=configfile)
    out = proc.stdout + proc.stderr
    return {} if "Nothing to be done" in out else job_stats(out)
