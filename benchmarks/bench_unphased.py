"""The accuracy cost of unphased data: one set of simulations, three feature modes, the same networks.

On the default config's scenarios and priors (``--per-scenario`` draws each,
split 60/10/30 so that the test set is large enough to tell the modes
apart), the simulations are turned into features three ways:

* ``phased``: the haplotype image (the default config);
* ``unphased genotypes``: ``features.phased: false, unphased_image: genotypes``
  (one row per individual, minor-allele dosage);
* ``unphased random_phase``: ``unphased_image: random_phase`` (the haplotype
  image after a random phase at every SNP).

Each dataset trains the same networks with the same fixed hyper-parameters
(the default config's search space at its middle, ``--epochs`` epochs), each
``--reps`` times with other seeds, and an ABC random forest on the summary
statistics (phase-free ones in the unphased modes).  The table prints test
accuracy, mean ± sd over the repetitions, and the difference to ``phased``.

    python benchmarks/bench_unphased.py [--per-scenario 300] [--networks cnn2d_stats,mlp] [--epochs 20] [--reps 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

MODES = {
    "phased": {"phased": True},
    "unphased genotypes": {"phased": False, "unphased_image": "genotypes"},
    "unphased random_phase": {"phased": False, "unphased_image": "random_phase"},
}
SPLIT = {"train": 0.6, "validation": 0.1, "test": 0.3}
#: The default search space at its middle: what every fit here uses.
HYPER = {"learning_rate": 1e-3, "lr_decay": "none", "lr_decay_rate": 0.5, "batch_size": 64, "optimizer": "adam",
         "momentum": 0.9, "dropout": 0.25, "batch_norm": True, "l1": 0.0, "l2": 0.001, "activation": "relu",
         "conv_layers": 2, "filters": 8, "kernel_size": 3, "pooling": "max", "dense_layers": 1, "dense_units": 64,
         "towers": "shared"}


def simulate(config: dict, work: Path) -> list[Path]:
    from popdl.plan import plan_draws
    from popdl.scenarios import Scenario
    from popdl.simulate import simulate_chunk

    files = []
    for name in config["scenarios"]:
        scenario = Scenario.from_config(name, config)
        plan = plan_draws(scenario, root_seed=config["seed"], start=0, stop=config["simulations"]["per_scenario"])
        simulate_chunk(config, scenario, plan, work / f"{name}.sims.npz")
        files.append(work / f"{name}.sims.npz")
    return files


def mode_config(config: dict, mode: str) -> dict:
    cfg = copy.deepcopy(config)
    cfg["features"].update(MODES[mode])
    return cfg


def dataset_for(config: dict, sims: list[Path], mode: str, work: Path) -> Path:
    from popdl.dataset import build_dataset
    from popdl.features import features_chunk
    from popdl.stages import prior_summary

    cfg = mode_config(config, mode)
    folder = work / mode.replace(" ", "_")
    files = []
    for path in sims:
        out = folder.with_name(folder.name + "." + path.name.replace(".sims", ".features"))
        features_chunk(cfg, path, out)
        files.append(out)
    build_dataset(files, folder, scenarios=list(cfg["scenarios"]), fractions=SPLIT, shard_size=10_000,
                  root_seed=cfg["seed"], priors=prior_summary(cfg))
    return folder


def network_accuracy(config: dict, data: Path, network: str, *, epochs: int, seed: int, work: Path) -> float:
    from popdl.dataset import Dataset
    from popdl.model_io import load_model
    from popdl.stages import stage_config
    from popdl.training import train_final

    settings = stage_config(config, "train")
    settings["seed"] = seed
    settings["train"].update(epochs=epochs, ensemble=1)
    out = work / f"model-{data.name}-{network}-{seed}"
    train_final(settings, data, best={"hyper_parameters": {"network": network, **HYPER}, "best_epoch": epochs},
                out=out)
    model = load_model(out)
    test = Dataset(data).load("test", ("images", "distances", "stats", "labels"))
    pred = model.predict(test["images"], test["distances"], test["stats"])
    return float((np.argmax(pred.probabilities, 1) == test["labels"]).mean())


def abc_accuracy(config: dict, data: Path) -> float:
    from popdl.abc import RandomForestABC, load_reference

    ref = load_reference(data, ("train", "validation"))
    test = load_reference(data, ("test",))
    method = RandomForestABC(trees=config["abc"]["trees"], seed=config["seed"], threads=2).fit(ref)
    return float((method.predict(test.stats)["probs"].argmax(1) == test.labels).mean())


def main(argv=None) -> int:
    from popdl.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-scenario", type=int, default=300)
    ap.add_argument("--networks", default="cnn2d_stats,mlp")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--reps", type=int, default=2, help="fits per network and mode, seeded root seed + rep")
    ap.add_argument("--snps", type=int, help="features.snps (default: the config's)")
    ap.add_argument("--work", help="folder for the simulations, datasets and models (default: a temporary one)")
    args = ap.parse_args(argv)
    overrides = {"simulations": {"per_scenario": args.per_scenario}}
    if args.snps:
        overrides["features"] = {"snps": args.snps}
    config = load_config(ROOT / "config" / "config.yaml", overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sims = simulate(config, work)
        rows = {}
        for mode in MODES:
            data = dataset_for(config, sims, mode, work)
            rows[(mode, "ABC-RF")] = [abc_accuracy(config, data)]
            for network in args.networks.split(","):
                rows[(mode, network)] = [network_accuracy(mode_config(config, mode), data, network, epochs=args.epochs,
                                                          seed=config["seed"] + rep, work=work)
                                         for rep in range(args.reps)]
        print(f"{args.per_scenario} draws per scenario of {', '.join(config['scenarios'])}; test set "
              f"{int(round(SPLIT['test'] * args.per_scenario)) * len(config['scenarios'])} draws; "
              f"{args.epochs} epochs, {args.reps} fit(s) each")
        print(f"{'mode':24} {'method':12} {'test accuracy':>18} {'- phased':>9}")
        for (mode, method), values in rows.items():
            mean = statistics.mean(values)
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            base = statistics.mean(rows[("phased", method)])
            print(f"{mode:24} {method:12} {mean:12.3f} ± {sd:.3f} {mean - base:+9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
