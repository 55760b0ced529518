"""A real dataset folder for the model benchmarks: the default config's
scenarios simulated with msprime (plan -> simulate -> features -> dataset),
in-process, at a chosen number of draws per scenario."""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def _scenario_features(config: dict, name: str, per_scenario: int, work: Path) -> Path:
    """Simulate ``per_scenario`` draws of scenario ``name`` and compute their features (one file)."""
    from popdl.features import features_chunk
    from popdl.plan import plan_draws
    from popdl.scenarios import Scenario
    from popdl.simulate import simulate_chunk

    scenario = Scenario.from_config(name, config)
    plan = plan_draws(scenario, root_seed=config["seed"], start=0, stop=per_scenario)
    simulate_chunk(config, scenario, plan, work / f"{name}.sims.npz")
    features_chunk(config, work / f"{name}.sims.npz", work / f"{name}.features.npz")
    return work / f"{name}.features.npz"


def make_dataset(folder: Path, *, per_scenario: int, shard_size: int = 500, snps: int | None = None) -> Path:
    """Build (or reuse) ``folder`` holding a dataset of the default config's scenarios."""
    from popdl.config import load_config
    from popdl.dataset import build_dataset
    from popdl.stages import prior_summary

    folder = Path(folder)
    if (folder / "manifest.json").exists():
        return folder
    overrides = {"simulations": {"per_scenario": per_scenario, "shard_size": shard_size}}
    if snps:
        overrides["features"] = {"snps": snps}
    config = load_config(ROOT / "config" / "config.yaml", overrides=overrides)
    work = folder.parent / f".{folder.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    names = list(config["scenarios"])
    # One process per scenario, at most one per core: each scenario's draws are seeded on their own,
    # so the files are the same whatever runs where.
    with ProcessPoolExecutor(max_workers=max(1, min(len(names), os.cpu_count() or 1)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        files = list(pool.map(_scenario_features, [config] * len(names), names, [per_scenario] * len(names),
                              [work] * len(names)))
    build_dataset(files, folder, scenarios=list(config["scenarios"]), fractions=config["simulations"]["split"],
                  shard_size=shard_size, root_seed=config["seed"], priors=prior_summary(config))
    return folder
