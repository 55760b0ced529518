"""Atomic file output and provenance records.

Every output is written to a temporary file beside its destination and moved
into place with :func:`os.replace`, so a killed job never leaves a
half-written file that a rerun would mistake for a finished one.  Temporary
files and folders left behind by a killed job (``.NAME.XXXXXXXX.SUFFIX``
beside ``NAME``) are removed by the next write of the same destination.

Output folders (:func:`atomic_dir`) carry a marker file, :data:`MARKER`; popdl
replaces an existing folder only when it is empty or carries the marker (or,
for folders written before the marker existed, has exactly the layout popdl
writes), never a folder of someone else's files.  Problems writing are one
line (:class:`OutputError`) naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import platform
import re
import shutil
import struct
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from popdl import __version__
from popdl.errors import PopdlError

__all__ = [
    "MARKER",
    "OutputError",
    "atomic_path",
    "atomic_dir",
    "check_output_dir",
    "save_npz",
    "SpooledRows",
    "NpyRows",
    "npz_rows",
    "write_json",
    "write_table",
    "provenance",
]

log = logging.getLogger("popdl.io")

#: The file that marks a folder as written by popdl (a short JSON record).
MARKER = ".popdl-output"

#: Temporaries of a destination older than this (seconds) are left by a killed job.
STALE_AFTER = 10.0

_UMASK = os.umask(0)
os.umask(_UMASK)

#: OSError numbers that mean "cannot write here": reported as one line naming the path.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                 errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ENOTEMPTY, errno.EEXIST}


class OutputError(PopdlError):
    """An output popdl refuses to write or cannot write, described in one line."""


def _output_error(exc: OSError, path: Path, tmp: str | Path | None = None) -> OutputError | None:
    """``exc`` as one line naming the path, when it is a failure to write; else None."""
    if exc.errno not in _WRITE_ERRNOS:
        return None
    reason = (exc.strerror or os.strerror(exc.errno or 0)).lower()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"cannot write {path}: {reason} (free some space, or write elsewhere)")
    other = exc.filename
    ours = {str(path), str(path.parent)} | ({str(tmp)} if tmp is not None else set())
    if other is not None and not any(str(other) == p or str(other).startswith(p + os.sep) for p in ours):
        return OutputError(f"{other}: {reason}")  # another file, e.g. an input that cannot be read
    return OutputError(f"cannot write {path}: {reason}")


def _stale_pattern(name: str, suffixes) -> re.Pattern:
    # tempfile names: prefix + 8 characters of [a-z0-9_] + suffix
    return re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}(?:" + "|".join(re.escape(s) for s in suffixes) + ")")


def remove_stale_temporaries(path: str | Path, suffixes=(".tmp",), *, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove the temporaries of destination ``path`` that a killed job left behind.

    Only entries beside ``path`` named exactly like its temporaries
    (``.NAME.XXXXXXXX`` + one of ``suffixes``) and not modified for
    ``older_than`` seconds are removed; two jobs never write one destination
    at the same time.  Returns what was removed.
    """
    path = Path(path)
    pattern = _stale_pattern(path.name, suffixes)
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot remove %s, left by an interrupted run: %s", entry.path, exc.strerror)
            continue
        log.info("removed %s, left by an interrupted run", entry.path)
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str | None = None):
    """Yield a temporary path in ``path``'s folder; move it onto ``path`` on success.

    Failures to write (no space left, read-only folder, ...) raise
    :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    suffix = suffix or path.suffix or ".tmp"
    if not path.name:
        raise OutputError(f"cannot write {path}: it names a folder, not a file")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path, (suffix,))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise (_output_error(exc, path) or exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and (err := _output_error(exc, path, tmp)) is not None:
            raise err from None
        raise


# ---------------------------------------------------------------------------- output folders
def _marker_record(kind: str | None) -> str:
    record = {"written_by": "popdl", "version": __version__}
    if kind:
        record["kind"] = kind
    return json.dumps(record, sort_keys=True) + "\n"


_SHARD = re.compile(r"shard-\d{5}")
_DATASET_ARRAYS = {f"{a}.npy" for a in ("images", "distances", "stats", "labels", "params", "draw", "n_snps")}
_SPLITS = ("train", "validation", "test")


def _legacy_layout(path: Path, kind: str | None) -> bool:
    """Whether ``path`` holds exactly what popdl wrote as a ``kind`` folder before :data:`MARKER` existed."""
    try:
        entries = list(os.scandir(path))
        if kind == "model":
            return all(e.name in {"model.keras", "bundle.json", "history.json"} and e.is_file(follow_symlinks=False)
                       for e in entries)
        if kind == "dataset":
            files = {"manifest.json", *(f"params_{s}.tsv" for s in _SPLITS)}
            for e in entries:
                if e.name in files and e.is_file(follow_symlinks=False):
                    continue
                if e.name not in _SPLITS or not e.is_dir(follow_symlinks=False):
                    return False
                for shard in os.scandir(e.path):
                    if not (_SHARD.fullmatch(shard.name) and shard.is_dir(follow_symlinks=False)):
                        return False
                    if not all(f.name in _DATASET_ARRAYS and f.is_file(follow_symlinks=False) for f in os.scandir(shard.path)):
                        return False
            return True
    except OSError:
        return False
    return False


def _output_folder(path: str | Path) -> Path:
    """``path`` as an absolute path; a symbolic link is followed to the folder it names."""
    path = Path(os.path.abspath(path))
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    return path


def check_output_dir(path: str | Path, *, kind: str | None = None) -> Path:
    """Raise :class:`OutputError` unless popdl may (re)place folder ``path``; return it, absolute.

    Allowed: a path that does not exist, an empty folder, or a folder popdl
    wrote (it holds :data:`MARKER`, or it has exactly the layout of a
    ``kind`` folder written before the marker existed).
    """
    path = _output_folder(path)
    if path.parent == path or not path.name:
        raise OutputError(f"{path}: popdl will not replace the root folder")
    if not os.path.lexists(path):
        return path
    if not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; popdl will not replace it")
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise OutputError(f"cannot list {path}: {(exc.strerror or str(exc)).lower()}") from None
    if not names or (MARKER in names and (path / MARKER).is_file()) or _legacy_layout(path, kind):
        return path
    here = " (the working folder)" if path == Path.cwd() else ""
    raise OutputError(
        f"{path}{here} holds {len(names)} entr{'y' if len(names) == 1 else 'ies'} popdl did not write "
        f"(e.g. {names[0]!r}); popdl replaces only empty folders or folders it wrote (they hold {MARKER}): "
        "give a new folder, or remove this one first"
    )


def _replace_dir(tmp: Path, path: Path) -> None:
    """Move folder ``tmp`` onto ``path`` (absent, empty, or a popdl folder); the old one is deleted last."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.replace(path, old)  # onto the empty placeholder: path is free now
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)  # put the previous output back
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, kind: str | None = None):
    """Yield a temporary folder beside ``path``; it replaces ``path`` on success.

    ``path`` must be absent, an empty folder or a folder popdl wrote
    (:func:`check_output_dir`, checked on entry and again before replacing);
    anything else is refused with :class:`OutputError` and nothing is
    written.  The new folder holds :data:`MARKER` (a JSON record: popdl, its
    version and ``kind``).
    """
    path = check_output_dir(path, kind=kind)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path, (".tmp", ".old"))
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise (_output_error(exc, path) or exc) from None
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
        (tmp / MARKER).write_text(_marker_record(kind))
        yield tmp
        check_output_dir(path, kind=kind)  # still free: nothing appeared there meanwhile
        _replace_dir(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and (err := _output_error(exc, path, tmp)) is not None:
            raise err from None
        raise


# ---------------------------------------------------------------------------- files
class SpooledRows:
    """Rows of an array appended block by block to an anonymous temporary file beside ``path`` (the
    output they are for), so that memory holds one block at a time; :func:`save_npz` copies them
    into the ``.npz``, byte for byte as the joined array.  The file has no name (or loses it at
    once): a killed job leaves nothing behind.  Use as a context manager, or :meth:`close`."""

    def __init__(self, path: str | Path, *, dtype, row_shape: tuple = ()):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(int(n) for n in row_shape)
        self.rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=self.path.parent)
        except OSError as exc:
            raise (_output_error(exc, self.path) or exc) from None

    @property
    def shape(self) -> tuple:
        return (self.rows,) + self.row_shape

    def append(self, block) -> None:
        b = np.ascontiguousarray(block, dtype=self.dtype)
        if b.shape[1:] != self.row_shape:
            raise ValueError(f"a block of shape {b.shape} among rows of shape {self.row_shape}")
        if b.size:
            try:
                self._file.write(memoryview(b.reshape(-1)).cast("B"))
            except OSError as exc:
                raise (_output_error(exc, self.path) or exc) from None
        self.rows += b.shape[0]

    def write(self, fh) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_1_0(fh, header)
        self._file.flush()
        self._file.seek(0)
        shutil.copyfileobj(self._file, fh, 16 << 20)

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_npz(path: str | Path, **arrays) -> None:
    """Write arrays to an uncompressed ``.npz`` file atomically.

    Unlike ``numpy.savez``, every zip entry carries a fixed timestamp, so the
    same arrays always give the same bytes (``numpy.load`` reads it as usual).
    A :class:`SpooledRows` value is written as the array its blocks make together.
    """
    with atomic_path(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with zf.open(info, "w", force_zip64=True) as fh:
                    if isinstance(value, SpooledRows):
                        value.write(fh)
                    else:
                        np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


class NpyRows:
    """A C-ordered array stored uncompressed at ``offset`` of a file, read a slice of rows at a time:
    ``rows[a:b]`` reads those rows from disk and nothing else (see :func:`npz_rows`)."""

    def __init__(self, path: str | Path, offset: int, shape: tuple, dtype):
        self.path, self.offset = Path(path), int(offset)
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("NpyRows reads contiguous slices of rows only (rows[a:b])")
        start, stop, _ = key.indices(self.shape[0])
        n = max(stop - start, 0)
        buf = bytearray(n * self._row_bytes)  # writable, as numpy.load's arrays are
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self._row_bytes)
            got = fh.readinto(buf)
        if got != len(buf):
            raise OSError(f"{self.path}: truncated array (rows {start}-{stop} of {self.shape[0]})")
        return np.frombuffer(buf, dtype=self.dtype).reshape((n,) + self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def npz_rows(path: str | Path, name: str) -> NpyRows | None:
    """Array ``name`` of an ``.npz`` file as :class:`NpyRows` (read a slice of rows at a time), or
    None where it cannot be read so: absent, compressed (``numpy.savez_compressed``), Fortran-ordered,
    of Python objects, or not at least one-dimensional."""
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(f"{name}.npy")
        except KeyError:
            return None
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(fh)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            return None
        shape, fortran_order, dtype = read_header(fh)
        offset = fh.tell()
    if fortran_order or dtype.hasobject or not shape:
        return None
    return NpyRows(path, offset, shape, dtype)


def write_json(path: str | Path, obj) -> None:
    """``obj`` as JSON at ``path``, written atomically.  JSON has no NaN or infinity: a float that is
    not finite (e.g. an empty bin of a reliability curve) is written ``null``, so that every JSON
    reader (jq, R's jsonlite, JavaScript) reads the file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n")


def _finite(obj):
    """``obj`` with every non-finite float (Python's or NumPy's) replaced by None, recursively."""
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    return obj


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
