"""The data half of the workflow under real Snakemake: dry runs at scale, reruns, reproducibility."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, TINY, snakemake, tiny_config, write_config

from popdl.plan import n_chunks

EXAMPLES = sorted((REPO / "config" / "examples").glob("*.yaml"))
DATA_RULES = ("plan", "simulate", "features", "dataset")
MANIFEST = f"results/{TINY['run']}/dataset/manifest.json"


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


# ------------------------------------------------------------------------------------ dry runs
def test_dry_run_of_the_default_config(tmp_path):
    counts = dry_run(tmp_path)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    chunks = n_chunks(config["simulations"]["per_scenario"], config["simulations"]["chunk"])
    scenarios = len(config["scenarios"])
    assert counts["plan"] == scenarios and counts["dataset"] == 1
    assert counts["simulate"] == counts["features"] == scenarios * chunks
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_dry_run_of_each_example(tmp_path, example):
    config = yaml.safe_load(example.read_text())
    counts = dry_run(tmp_path, configfile=example)
    chunks = n_chunks(config["simulations"]["per_scenario"], config["simulations"]["chunk"])
    assert counts["plan"] == len(config["scenarios"])
    assert counts["simulate"] == counts["features"] == len(config["scenarios"]) * chunks


def test_examples_include_conservation_and_divergence_order():
    names = {p.stem for p in EXAMPLES}
    assert {"conservation", "divergence_order"} <= names
    order = yaml.safe_load((REPO / "config" / "examples" / "divergence_order.yaml").read_text())
    assert set(order["scenarios"]) == {"AB_C", "AC_B", "BC_A"}
    assert {"theta", "T1", "T2", "Ne"} <= set(order["scenarios"]["AB_C"]["priors"])


def test_three_million_simulations_dry_run_is_fast_and_chunked(tmp_path):
    per_scenario, chunk = 1_000_000, 2_000
    config = tiny_config(run="big")
    config["simulations"].update(per_scenario=per_scenario, chunk=chunk, shard_size=10_000)
    cfg = write_config(tmp_path, config)
    start = time.perf_counter()
    counts = dry_run(tmp_path, configfile=cfg)
    seconds = time.perf_counter() - start
    chunks = n_chunks(per_scenario, chunk)
    print(f"\ndry run of 3 scenarios x {per_scenario:,} simulations ({chunks} chunks each): "
          f"{seconds:.1f} s, {sum(counts.values()) - counts.get('total', 0):,} jobs ... {counts}")
    assert counts["plan"] == 3  # one per scenario
    assert counts["simulate"] == counts["features"] == 3 * chunks  # one per chunk
    assert counts["dataset"] == 1
    assert all(n <= 3 * chunks for rule, n in counts.items() if rule != "total")  # never one per simulation
    assert seconds < 30
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- real tiny runs
@pytest.fixture(scope="module")
def second_run(tmp_path_factory) -> Path:
    """The tiny config run to the dataset once more, in its own folder."""
    work = tmp_path_factory.mktemp("second_run")
    cfg = write_config(work, tiny_config())
    snakemake(work, MANIFEST, configfile=cfg)
    return work


def data_files(run: Path) -> dict[str, bytes]:
    out = {}
    for sub in ("plan", "sims", "features", "dataset"):
        for path in sorted((run / sub).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(run))] = path.read_bytes()
    return out


def test_same_config_twice_gives_byte_identical_files(tiny_dataset, second_run):
    first = data_files(tiny_dataset.parent)
    second = data_files(second_run / "results" / TINY["run"])
    assert len(first) > 20 and first.keys() == second.keys()
    different = [name for name in first if first[name] != second[name]]
    assert different == []


def per_draw(run: Path) -> dict:
    """Per (scenario, draw): genotypes, positions, parameters, image, distances and statistics."""
    out = {}
    for path in sorted((run / "sims").glob("*/*.npz")):
        with np.load(path) as sims, np.load(run / "features" / path.parent.name / path.name) as feats:
            off = sims["site_offsets"]
            for i, draw in enumerate(sims["draw"]):
                out[(path.parent.name, int(draw))] = {
                    "genotypes": sims["genotypes"][off[i]:off[i + 1]],
                    "positions": sims["positions"][off[i]:off[i + 1]],
                    "params": sims["params"][i],
                    "seeds": sims["seeds"][i],
                    "image": feats["images"][i],
                    "distances": feats["distances"][i],
                    "stats": feats["stats"][i],
                }
    return out


def test_chunk_size_does_not_change_any_draw(tiny_dataset, tmp_path):
    config = tiny_config()
    config["simulations"]["chunk"] = 7  # 40 draws: 6 chunks instead of 2
    cfg = write_config(tmp_path, config)
    snakemake(tmp_path, MANIFEST, configfile=cfg)
    run = tmp_path / "results" / TINY["run"]
    assert len(list((run / "sims" / "isolation").glob("*.npz"))) == 6
    a, b = per_draw(tiny_dataset.parent), per_draw(run)
    assert a.keys() == b.keys() and len(a) == 3 * TINY["simulations"]["per_scenario"]
    for key in a:
        for name in a[key]:
            assert np.array_equal(a[key][name], b[key][name]), (key, name)
    # The dataset shards are the same examples in the same order.
    for path in sorted((tiny_dataset).rglob("*.npy")):
        assert path.read_bytes() == (run / "dataset" / path.relative_to(tiny_dataset)).read_bytes()


def test_changed_features_rerun_features_and_dataset_but_not_simulations(second_run):
    config = tiny_config()
    assert dry_run(second_run, MANIFEST, configfile=write_config(second_run, config, "same.yaml")) == {}

    config["features"]["snps"] = 48
    counts = dry_run(second_run, MANIFEST, configfile=write_config(second_run, config, "snps.yaml"))
    chunks = 3 * n_chunks(TINY["simulations"]["per_scenario"], TINY["simulations"]["chunk"])
    assert counts.get("features") == chunks and counts.get("dataset") == 1
    assert "simulate" not in counts and "plan" not in counts

    config = tiny_config()
    config["simulations"]["shard_size"] = 10  # only the dataset depends on it
    counts = dry_run(second_run, MANIFEST, configfile=write_config(second_run, config, "shards.yaml"))
    assert set(counts) - {"total"} == {"dataset"}

    config = tiny_config(task=["classify"])  # a section the data does not depend on
    assert dry_run(second_run, MANIFEST, configfile=write_config(second_run, config, "task.yaml")) == {}

    config = tiny_config()
    config["genome"]["length"] = 25000  # the simulations themselves change
    counts = dry_run(second_run, MANIFEST, configfile=write_config(second_run, config, "genome.yaml"))
    assert counts.get("plan") == 3 and counts.get("simulate") == chunks


def test_run_name_selects_the_results_folder(second_run):
    config = tiny_config(run="other")
    counts = dry_run(second_run, configfile=write_config(second_run, config, "other.yaml"))
    assert counts["plan"] == 3  # a new run starts from scratch ...
    assert not (second_run / "results" / "other").exists()  # ... in its own folder (dry run: nothing written)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_example_runs_end_to_end_at_small_size(tmp_path, example):
    config = yaml.safe_load(example.read_text())
    config["simulations"].update(per_scenario=4, chunk=2, shard_size=3)
    config["genome"]["loci"] = min(config["genome"]["loci"], 5)
    config["genome"]["length"] = min(config["genome"]["length"], 20000)
    cfg = write_config(tmp_path, config)
    snakemake(tmp_path, f"results/{config['run']}/dataset/manifest.json", configfile=cfg)
    manifest = yaml.safe_load((tmp_path / "results" / config["run"] / "dataset" / "manifest.json").read_text())
    assert manifest["scenarios"] == list(config["scenarios"])
    assert sum(s["n"] for s in manifest["splits"].values()) == 4 * len(config["scenarios"])
