"""Dataset shards: stratified splits, streaming, parameter tables, atomic outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import REPO, TINY, tiny_config

from popdl.config import prepare
from popdl.dataset import SPLITS, Dataset, assign_splits, build_dataset
from popdl.plan import plan_draws, read_plan
from popdl.scenarios import Scenario
from popdl.simulate import simulate_chunk


def test_assign_splits_uses_the_configured_fractions():
    fractions = {"train": 0.7, "validation": 0.2, "test": 0.1}
    split = assign_splits(1000, fractions, root_seed=1, scenario="s")
    assert np.bincount(split, minlength=3).tolist() == [700, 200, 100]
    assert np.array_equal(split, assign_splits(1000, fractions, root_seed=1, scenario="s"))
    assert not np.array_equal(split, assign_splits(1000, fractions, root_seed=2, scenario="s"))


def test_splits_are_stratified_by_scenario(tiny_dataset):
    ds = Dataset(tiny_dataset)
    n = TINY["simulations"]["per_scenario"]
    fractions = TINY["simulations"]["split"]
    for split in SPLITS:
        labels = ds.load(split, ["labels"])["labels"]
        counts = np.bincount(labels, minlength=len(ds.scenarios))
        assert counts.tolist() == [round(n * fractions[split])] * len(ds.scenarios)
        assert ds.size(split) == labels.size
    assert ds.manifest["per_scenario"] == {s: n for s in TINY["scenarios"]}


def test_shards_stream_memory_mapped_and_cover_each_split_once(tiny_dataset):
    ds = Dataset(tiny_dataset)
    shard_size = TINY["simulations"]["shard_size"]
    seen = set()
    for split in SPLITS:
        total = 0
        for shard in ds.shards(split):
            assert isinstance(shard["images"], np.memmap)
            n = shard["labels"].shape[0]
            assert 0 < n <= shard_size
            assert shard["images"].shape == (n, *ds.manifest["image_shape"])
            assert all(shard[a].shape[0] == n for a in shard)
            for label, draw in zip(shard["labels"], shard["draw"]):
                key = (int(label), int(draw))
                assert key not in seen
                seen.add(key)
            total += n
        assert total == ds.size(split)
    assert len(seen) == TINY["simulations"]["per_scenario"] * len(TINY["scenarios"])


def test_examples_are_shuffled_across_scenarios(tiny_dataset):
    labels = Dataset(tiny_dataset).load("train", ["labels"])["labels"]
    assert np.unique(labels[: len(labels) // 3]).size > 1


def test_params_tables_agree_with_labels_shards_and_plan(tiny_dataset):
    ds = Dataset(tiny_dataset)
    run = tiny_dataset.parent
    plans = {s: read_plan(run / "plan" / f"{s}.tsv").set_index("draw")
             for s in ds.scenarios}
    for split in SPLITS:
        table = read_plan(tiny_dataset / f"params_{split}.tsv")
        arrays = ds.load(split, ["labels", "draw", "params"])
        assert list(table.columns) == ["scenario", "label", "draw", *ds.param_names]
        assert table["label"].tolist() == arrays["labels"].tolist()
        assert table["scenario"].tolist() == [ds.scenarios[k] for k in arrays["labels"]]
        assert table["draw"].tolist() == arrays["draw"].tolist()
        assert np.array_equal(table[ds.param_names].to_numpy(), arrays["params"], equal_nan=True)
        for row in table.itertuples(index=False):
            own = ds.manifest["scenario_params"][row.scenario]
            planned = plans[row.scenario].loc[row.draw]
            for name in ds.param_names:
                value = getattr(row, name)
                if name in own:
                    assert value == planned[name]
                else:  # a parameter of another scenario
                    assert np.isnan(value)


def test_manifest_records_names_priors_and_provenance(tiny_dataset):
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert manifest["scenarios"] == list(TINY["scenarios"])
    assert set(manifest["priors"]) == set(manifest["param_names"])
    assert manifest["priors"]["T_split"]["log_scale"] is True
    prov = manifest["provenance"]
    assert prov["seeds"] == {"root": TINY["seed"]} and len(prov["config_hash"]) == 16
    assert {"msprime", "numpy", "tskit"} <= set(prov["versions"])


# ---------------------------------------------------------------------------------- atomic writes
def test_failed_dataset_build_leaves_nothing_half_written(tiny_dataset, tmp_path):
    run = tiny_dataset.parent
    good = sorted((run / "features").glob("*/*.npz"))
    broken = tmp_path / "broken.npz"
    with np.load(good[-1]) as data:  # a chunk that lacks one array: fails while filling the shards
        np.savez(broken, **{k: data[k] for k in data.files if k != "n_snps"})
    out = tmp_path / "dataset"
    kwargs = dict(scenarios=list(TINY["scenarios"]), fractions=TINY["simulations"]["split"], shard_size=25, root_seed=7)
    with pytest.raises(ValueError, match="broken.npz: not a readable features file"):
        build_dataset([*good[:-1], broken], out, **kwargs)
    assert not out.exists() and list(tmp_path.iterdir()) == [broken]
    truncated = tmp_path / "truncated.npz"
    shutil.copy(good[-1], truncated)
    with open(truncated, "r+b") as fh:
        fh.truncate(truncated.stat().st_size // 2)
    with pytest.raises(ValueError, match="truncated.npz: not a readable features file"):
        build_dataset([*good[:-1], truncated], out, **kwargs)
    truncated.unlink()
    assert not out.exists() and list(tmp_path.iterdir()) == [broken]
    # An earlier, complete dataset survives a failed rebuild untouched.
    build_dataset(good, out, **kwargs)
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ValueError, match="not a readable features file"):
        build_dataset([*good[:-1], broken], out, **kwargs)
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.npz", "dataset"]


def test_failed_simulation_chunk_writes_no_file(tmp_path):
    config = prepare(tiny_config(), base_dirs=(REPO,))
    scenario = Scenario.from_config("isolation", config)
    plan = plan_draws(scenario, root_seed=1, start=0, stop=5)
    plan.loc[3, "N1"] = -10.0  # draw 3 cannot be simulated
    with pytest.raises(RuntimeError, match="draw 3"):
        simulate_chunk(config, scenario, plan, tmp_path / "sims.npz")
    assert list(tmp_path.iterdir()) == []


def test_plan_table_round_trips_exactly(tmp_path):
    config = prepare(tiny_config(), base_dirs=(REPO,))
    scenario = Scenario.from_config("secondary_contact", config)
    plan = plan_draws(scenario, root_seed=1, start=0, stop=50)
    from popdl.io import write_table

    write_table(tmp_path / "plan.tsv", plan)
    assert read_plan(tmp_path / "plan.tsv").equals(plan)
    assert read_plan(tmp_path / "plan.tsv", start=20, stop=30).reset_index(drop=True).equals(
        plan.iloc[20:30].reset_index(drop=True))
