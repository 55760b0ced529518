"""Where a config's data files are: a path relative to the working directory, else to a base folder
(the repository, a config's folder), and a data set's VCF files given as a list or glob patterns.

Imports nothing heavier than :mod:`popdl.errors`: the workflow's input functions use it while
Snakemake builds its job graph.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from popdl.errors import DataError

__all__ = ["located", "vcf_files", "repository"]


def located(path: str | Path, base_dir: str | Path | None = None) -> Path:
    """``path`` itself, unless it is relative, absent from the working directory and present in
    ``base_dir``: then ``base_dir / path``."""
    p = Path(path)
    if not p.is_absolute() and not p.exists() and base_dir is not None and (Path(base_dir) / p).exists():
        return Path(base_dir) / p
    return p


def _natural_key(path: Path) -> list:
    """Sort key ordering numbered files by their numbers: chr2 before chr10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def vcf_files(vcf, *, base_dir: str | Path | None = None) -> list[Path]:
    """The files of a data set's ``vcf``: one path, a list of paths (one VCF per
    chromosome or region, as variant callers write them), or glob patterns
    (``calls/chr*.vcf.gz``), each pattern's files in natural order (``chr2``
    before ``chr10``).  Relative paths and patterns are looked up in the working
    directory, then in ``base_dir`` (:func:`located`).  A pattern matching no file
    is a :class:`DataError`."""
    items = [vcf] if isinstance(vcf, (str, Path)) else list(vcf or [])
    if not items:
        raise DataError("vcf: no file given")
    out: list[Path] = []
    for item in items:
        p = located(item, base_dir)
        if p.exists() or not any(ch in str(item) for ch in "*?"):
            out.append(p)
            continue
        found = []
        for root in ([Path(".")] if p.is_absolute() else [Path("."), *([Path(base_dir)] if base_dir else [])]):
            pattern = str(item) if p.is_absolute() else str(root / item)
            found = sorted((Path(f) for f in glob.glob(pattern)), key=_natural_key)
            if found:
                break
        if not found:
            raise DataError(f"VCF {item}: no file matches this pattern")
        out += found
    return out


def repository() -> Path | None:
    """The popdl repository this package runs from (the folder holding ``workflow/Snakefile``),
    where the shipped configs' relative paths (``config/scenarios/...``, ``config/data/...``) point;
    None when the package is installed elsewhere."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "workflow" / "Snakefile").is_file() else None
