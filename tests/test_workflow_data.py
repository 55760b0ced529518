"""The data half of the workflow under real Snakemake: reruns, reproducibility, every step by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, TINY, snakemake, tiny_config, write_config
from dry_runs import dry_run

from popdl.plan import n_chunks
from popdl.simulate import draw_genotypes, load_sims

EXAMPLES = [REPO / "config" / "examples" / f"{name}.yaml" for name in ("conservation", "divergence_order")]
MANIFEST = f"results/{TINY['run']}/dataset/manifest.json"


@pytest.fixture(scope="module")
def second_run(tmp_path_factory) -> Path:
    """The tiny config run to the dataset once more, in its own folder."""
    work = tmp_path_factory.mktemp("second_run")
    cfg = write_config(work, tiny_config())
    snakemake(work, MANIFEST, *[f"results/{TINY['run']}/plan/{s}.tsv" for s in TINY["scenarios"]], configfile=cfg)
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
        with np.load(run / "features" / path.parent.name / path.name) as feats:
            sims = load_sims(path)
            off = sims["site_offsets"]
            for i, draw in enumerate(sims["draw"]):
                out[(path.parent.name, int(draw))] = {
                    "genotypes": draw_genotypes(sims, i),
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
    config["simulations"]["chunk"] = 13  # 40 draws: 4 chunks, the last of 1 draw, instead of 2 of 20
    cfg = write_config(tmp_path, config)
    snakemake(tmp_path, MANIFEST, configfile=cfg)
    run = tmp_path / "results" / TINY["run"]
    assert len(list((run / "sims" / "isolation").glob("*.npz"))) == 4
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
    assert counts.get("simulate") == chunks


def test_more_simulations_add_chunks_and_keep_the_simulated_ones(second_run):
    config = tiny_config()
    sims = config["simulations"]
    sims["per_scenario"] += sims["chunk"]  # one more chunk per scenario
    counts = dry_run(second_run, MANIFEST, configfile=write_config(second_run, config, "more.yaml"))
    # Only the new chunks are simulated (each chunk plans its own draws; the
    # per-scenario plan tables are for the report and not needed here).
    assert counts.get("simulate") == 3 and counts.get("features") == 3, counts
    assert counts.get("dataset") == 1 and "plan" not in counts, counts


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
    assert manifest["scenarios"] == sorted(config["scenarios"])  # canonical (sorted) order
    assert sum(s["n"] for s in manifest["splits"].values()) == 4 * len(config["scenarios"])


def test_every_step_by_hand_gives_the_workflows_files(tiny_dataset, tmp_path):
    run = tiny_dataset.parent
    cfg = write_config(tmp_path, tiny_config())
    popdl = [sys.executable, "-m", "popdl", "--quiet"]

    def step(*args):
        proc = subprocess.run([*popdl, *args, "--configfile", str(cfg)], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    chunk = TINY["simulations"]["chunk"]
    step("plan", "--scenario", "isolation", "--out", str(tmp_path / "plan.tsv"))
    step("simulate", "--scenario", "isolation", "--plan", str(tmp_path / "plan.tsv"),
         "--start", str(chunk), "--stop", str(2 * chunk), "--out", str(tmp_path / "sims.npz"))
    # Without --plan the chunk plans its own draws: the same rows as the plan table.
    step("simulate", "--scenario", "isolation",
         "--start", str(chunk), "--stop", str(2 * chunk), "--out", str(tmp_path / "sims-self.npz"))
    step("features", "--sims", str(tmp_path / "sims.npz"), "--out", str(tmp_path / "features.npz"))
    features = sorted(str(p) for p in (run / "features").glob("*/*.npz"))
    step("dataset", "--out", str(tmp_path / "dataset"), *features)
    assert (tmp_path / "sims.npz").read_bytes() == (run / "sims" / "isolation" / "1.npz").read_bytes()
    assert (tmp_path / "sims-self.npz").read_bytes() == (tmp_path / "sims.npz").read_bytes()
    assert (tmp_path / "features.npz").read_bytes() == (run / "features" / "isolation" / "1.npz").read_bytes()
    for path in sorted(tiny_dataset.rglob("*")):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "dataset" / path.relative_to(tiny_dataset)).read_bytes(), path
