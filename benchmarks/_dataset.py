"""A real dataset folder for the model benchmarks: the default config's
scenarios simulated with msprime (plan -> simulate -> features -> dataset),
in-process, at a chosen number of draws per scenario."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def make_dataset(folder: Path, *, per_scenario: int, shard_size: int = 500, snps: int | None = None) -> Path:
    """Build (or reuse) ``folder`` holding a dataset of the default config's scenarios."""
    from popdl.config import load_config
    from popdl.dataset import build_dataset
    from popdl.features import features_chunk
    from popdl.plan import plan_draws
    from popdl.scenarios import Scenario
    from popdl.simulate import simulate_chunk
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
    files = []
    for name in config["scenarios"]:
        scenario = Scenario.from_config(name, config)
        plan = plan_draws(scenario, root_seed=config["seed"], start=0, stop=per_scenario)
        simulate_chunk(config, scenario, plan, work / f"{name}.sims.npz")
        features_chunk(config, work / f"{name}.sims.npz", work / f"{name}.features.npz")
        files.append(work / f"{name}.features.npz")
    build_dataset(files, folder, scenarios=list(config["scenarios"]), fractions=config["simulations"]["split"],
                  shard_size=shard_size, root_seed=config["seed"], priors=prior_summary(config))
    return folder
