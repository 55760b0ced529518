"""Stratified train/validation/test splits written as streamable shards.

Layout of ``results/{run}/dataset/``::

    manifest.json                      scenarios, parameter and statistic names, shapes,
                                       split sizes, shard list, priors, provenance
    {split}/shard-00000/images.npy     (n, haplotypes, snps) int8
    {split}/shard-00000/distances.npy  (n, snps) float32
    {split}/shard-00000/stats.npy      (n, statistics) float32
    {split}/shard-00000/labels.npy     (n,) int64  scenario index
    {split}/shard-00000/params.npy     (n, parameters) float64, NaN where the scenario lacks one
    {split}/shard-00000/draw.npy       (n,) int64  draw index within its scenario
    {split}/shard-00000/n_snps.npy     (n,) int32
    params_{split}.tsv                 scenario, label, draw and parameters of each example

Each scenario's draws are split by a seeded permutation (stratified: every
scenario contributes the configured fractions), and each split is shuffled
across scenarios before being cut into shards.  Shards are filled by writing
every example straight into its slot on disk, one features chunk at a time,
so memory is bounded by a chunk and a shard, never by the number of
simulations.  Loading a shard with ``numpy.load(..., mmap_mode="r")`` streams it.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from popdl import seeds
from popdl.common import config_hash as _config_hash
from popdl.io import atomic_dir, provenance

__all__ = ["SPLITS", "ARRAYS", "assign_splits", "build_dataset", "Dataset", "load_manifest"]

log = logging.getLogger("popdl.dataset")

SPLITS = ("train", "validation", "test")
ARRAYS = ("images", "distances", "stats", "labels", "params", "draw", "n_snps")


def assign_splits(n: int, fractions: dict, *, root_seed: int, scenario: str) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test) of each of a scenario's ``n`` draws."""
    counts = [int(round(n * fractions["train"])), int(round(n * fractions["validation"]))]
    counts.append(n - sum(counts))
    if counts[2] < 0:
        counts[1] += counts[2]
        counts[2] = 0
    rng = seeds.split(root_seed, scenario)
    perm = rng.permutation(n)
    out = np.empty(n, dtype=np.int8)
    out[perm[: counts[0]]] = 0
    out[perm[counts[0] : counts[0] + counts[1]]] = 1
    out[perm[counts[0] + counts[1] :]] = 2
    return out


def _chunk_header(path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {
            "scenario": str(data["scenario"]),
            "draw": data["draw"],
            "param_names": [str(p) for p in data["param_names"]],
            "stat_names": [str(s) for s in data["stat_names"]],
            "populations": [str(p) for p in data["populations"]],
            "image_shape": _npz_shape(path, "images")[1:],
        }


def _read_chunk(path) -> dict:
    """The arrays of a features chunk that go into the shards."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in ("images", "distances", "stats", "n_snps", "params", "draw")}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable features file ({exc})") from None


def _npz_shape(path, name: str) -> tuple:
    """Shape of array ``name`` of an ``.npz`` file, read from its header only."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read(fh)
    return tuple(shape)


class _ShardWriter:
    """Pre-sized .npy files per shard, filled slot by slot with seek + write."""

    def __init__(self, folder: Path, n: int, shapes: dict[str, tuple], dtypes: dict[str, np.dtype]):
        folder.mkdir(parents=True)
        self.folder, self.n = folder, n
        self.offsets, self.row_bytes = {}, {}
        for name in ARRAYS:
            shape = (n, *shapes[name])
            mm = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtypes[name], shape=shape)
            if name == "params":
                mm[:] = np.nan
                mm.flush()
            self.offsets[name] = mm.offset
            self.row_bytes[name] = int(np.prod(shapes[name], dtype=np.int64)) * np.dtype(dtypes[name]).itemsize
            del mm

    def write(self, slots: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        order = np.argsort(slots, kind="stable")
        for name in ARRAYS:
            data = np.ascontiguousarray(rows[name])
            with open(self.folder / f"{name}.npy", "r+b") as fh:
                for k in order:
                    fh.seek(self.offsets[name] + int(slots[k]) * self.row_bytes[name])
                    fh.write(data[k].tobytes())


def build_dataset(
    feature_files: list[str | Path],
    out: str | Path,
    *,
    scenarios: list[str],
    fractions: dict,
    shard_size: int,
    root_seed: int,
    priors: dict | None = None,
    config_hash: str = "",
) -> dict:
    """Build the dataset folder ``out`` from features chunks; return the manifest.

    ``scenarios`` fixes the label of each scenario (its index).  ``priors``
    (parameter -> {"log_scale": bool, "bounds": [lo, hi]}) is copied to the
    manifest for the networks' target scaling.
    """
    start_time = time.perf_counter()
    headers = []
    for f in feature_files:
        try:
            headers.append((Path(f), _chunk_header(f)))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{f}: not a readable features file ({exc})") from None
    if not headers:
        raise ValueError("no features files given")
    first = headers[0][1]
    for path, h in headers:
        if h["scenario"] not in scenarios:
            raise ValueError(f"{path}: scenario {h['scenario']!r} is not one of {scenarios}")
        for key in ("stat_names", "populations", "image_shape"):
            if h[key] != first[key]:
                raise ValueError(f"{path}: {key} differs from {headers[0][0]}; were the chunks made with one config?")
    param_names: list[str] = []
    for _, h in headers:
        param_names += [p for p in h["param_names"] if p not in param_names]

    # Which split, shard and slot each (scenario, draw) goes to.
    draws = {s: np.sort(np.concatenate([h["draw"] for _, h in headers if h["scenario"] == s] or [np.zeros(0, int)])) for s in scenarios}
    for s, d in draws.items():
        if d.size == 0:
            raise ValueError(f"no simulations of scenario {s!r} among the features files")
        if np.unique(d).size != d.size:
            raise ValueError(f"scenario {s!r}: some draws appear in two features files")
    where: dict[str, dict] = {}  # scenario -> arrays over its draws (by position in draws[s])
    split_members = {k: [] for k in range(3)}
    for label, s in enumerate(scenarios):
        split = assign_splits(draws[s].size, fractions, root_seed=root_seed, scenario=s)
        where[s] = {"split": split, "slot": np.full(draws[s].size, -1, np.int64)}
        for k in range(3):
            idx = np.flatnonzero(split == k)
            split_members[k].append(np.stack([np.full(idx.size, label), idx], axis=1))
    split_sizes = {}
    for k, name in enumerate(SPLITS):
        members = np.concatenate(split_members[k])
        rng = seeds.shuffle(root_seed, name)
        members = members[rng.permutation(len(members))]
        for slot, (label, idx) in enumerate(members):
            where[scenarios[label]]["slot"][idx] = slot
        split_sizes[name] = len(members)

    n_stats = len(first["stat_names"])
    shapes = {
        "images": first["image_shape"],
        "distances": (first["image_shape"][1],),
        "stats": (n_stats,),
        "labels": (),
        "params": (len(param_names),),
        "draw": (),
        "n_snps": (),
    }
    dtypes = {
        "images": np.int8, "distances": np.float32, "stats": np.float32, "labels": np.int64,
        "params": np.float64, "draw": np.int64, "n_snps": np.int32,
    }
    out = Path(out)
    with atomic_dir(out, kind="dataset") as tmp:
        writers: dict[tuple[int, int], _ShardWriter] = {}
        shards = {name: [] for name in SPLITS}
        for k, name in enumerate(SPLITS):
            n = split_sizes[name]
            for i in range(-(-n // shard_size)):
                size = min(shard_size, n - i * shard_size)
                rel = f"{name}/shard-{i:05d}"
                writers[(k, i)] = _ShardWriter(tmp / rel, size, shapes, dtypes)
                shards[name].append({"path": rel, "n": size})
        for done, (path, h) in enumerate(headers, 1):
            chunk = _read_chunk(path)
            s = h["scenario"]
            label = scenarios.index(s)
            pos = np.searchsorted(draws[s], chunk["draw"])
            split = where[s]["split"][pos]
            slot = where[s]["slot"][pos]
            params = np.full((pos.size, len(param_names)), np.nan)
            for j, p in enumerate(h["param_names"]):
                params[:, param_names.index(p)] = chunk["params"][:, j]
            rows = {
                "images": chunk["images"], "distances": chunk["distances"], "stats": chunk["stats"],
                "labels": np.full(pos.size, label, np.int64), "params": params,
                "draw": chunk["draw"].astype(np.int64), "n_snps": chunk["n_snps"].astype(np.int32),
            }
            for k in range(3):
                in_split = split == k
                if not in_split.any():
                    continue
                shard_of = slot[in_split] // shard_size
                for i in np.unique(shard_of):
                    sel = np.flatnonzero(in_split)[shard_of == i]
                    writers[(k, int(i))].write(slot[sel] - i * shard_size, {a: v[sel] for a, v in rows.items()})
            del chunk, rows
            log.info("dataset: %d/%d features files placed", done, len(headers))
        for name in SPLITS:
            _write_params_table(tmp, name, shards[name], scenarios=scenarios, param_names=param_names)
        manifest = {
            "format": 1,
            "scenarios": list(scenarios),
            "param_names": param_names,
            "scenario_params": {s: next(h["param_names"] for _, h in headers if h["scenario"] == s) for s in scenarios},
            "priors": priors or {},
            "stat_names": first["stat_names"],
            "populations": first["populations"],
            "image_shape": list(first["image_shape"]),
            "shard_size": shard_size,
            "splits": {name: {"n": split_sizes[name], "shards": shards[name]} for name in SPLITS},
            "per_scenario": {s: int(draws[s].size) for s in scenarios},
            "provenance": provenance(config_hash=config_hash, seeds={"root": root_seed}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("dataset: %s examples in %.1f s", split_sizes, time.perf_counter() - start_time)
    return manifest


def _write_params_table(folder: Path, split: str, shards: list[dict], *, scenarios, param_names) -> None:
    """``params_{split}.tsv``, written shard by shard from the shards' labels,
    draws and parameters (so it is in example order and memory stays bounded
    by a shard)."""
    columns = ["scenario", "label", "draw", *param_names]
    with open(folder / f"params_{split}.tsv", "w", newline="") as fh:
        if not shards:
            pd.DataFrame(columns=columns).to_csv(fh, sep="\t", index=False)
        for i, shard in enumerate(shards):
            part = folder / shard["path"]
            labels = np.load(part / "labels.npy")
            frame = pd.DataFrame(np.load(part / "params.npy"), columns=param_names)
            frame.insert(0, "draw", np.load(part / "draw.npy"))
            frame.insert(0, "label", labels)
            frame.insert(0, "scenario", np.asarray(scenarios, dtype=object)[labels])
            frame.to_csv(fh, sep="\t", index=False, header=i == 0)


def load_manifest(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text())


def dataset_identity(folder: str | Path) -> str:
    """A short hash naming the data of a dataset folder: its manifest (config
    hash of the data sections, draws per scenario, splits, shards) without the
    package versions that wrote it."""
    manifest = load_manifest(folder)
    provenance = {k: v for k, v in manifest.get("provenance", {}).items() if k != "versions"}
    return _config_hash({**manifest, "provenance": provenance})


class Dataset:
    """Read access to a dataset folder, shard by shard (memory-mapped).

    >>> ds = Dataset("results/demo/dataset")            # doctest: +SKIP
    >>> for shard in ds.shards("train"):                # doctest: +SKIP
    ...     shard["images"].shape
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = load_manifest(self.folder)

    @property
    def scenarios(self) -> list[str]:
        return self.manifest["scenarios"]

    @property
    def param_names(self) -> list[str]:
        return self.manifest["param_names"]

    def size(self, split: str) -> int:
        return self.manifest["splits"][split]["n"]

    def shards(self, split: str, arrays=ARRAYS, *, mmap: bool = True):
        """Yield each shard of ``split`` as a dict of (memory-mapped) arrays."""
        for shard in self.manifest["splits"][split]["shards"]:
            folder = self.folder / shard["path"]
            yield {a: np.load(folder / f"{a}.npy", mmap_mode="r" if mmap else None) for a in arrays}

    def load(self, split: str, arrays=ARRAYS) -> dict[str, np.ndarray]:
        """A whole split in memory (for small data sets, evaluation and tests)."""
        parts = list(self.shards(split, arrays, mmap=False))
        if not parts:
            return {a: np.zeros(0) for a in arrays}
        return {a: np.concatenate([p[a] for p in parts]) for a in arrays}
