"""Atomic file output and provenance records.

Every output is written to a temporary file beside its destination and moved
into place with :func:`os.replace`, so a killed job never leaves a
half-written file that a rerun would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "atomic_dir", "save_npz", "write_json", "write_table", "provenance"]


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str | None = None):
    """Yield a temporary path in ``path``'s folder; move it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a temporary folder beside ``path``; it replaces ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_npz(path: str | Path, **arrays) -> None:
    """Write arrays to an uncompressed ``.npz`` file atomically.

    Unlike ``numpy.savez``, every zip entry carries a fixed timestamp, so the
    same arrays always give the same bytes (``numpy.load`` reads it as usual).
    """
    with atomic_path(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_table(path: str | Path, frame) -> None:
    """Write a pandas DataFrame as TSV, atomically (floats round-trip exactly)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


PACKAGES = ("popdl", "numpy", "msprime", "tskit", "demes", "scikit-allel", "pandas", "keras", "tensorflow-cpu", "optuna", "snakemake")


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def provenance(*, config_hash: str, seeds: dict | None = None, **extra) -> dict:
    """The provenance record stored beside every array, model and report."""
    return {"config_hash": config_hash, "seeds": seeds or {}, "versions": package_versions(), **extra}
