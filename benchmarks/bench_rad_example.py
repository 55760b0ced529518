"""The shipped RAD example end to end: the cost of unphasing, and the answer on the shipped VCF.

On ``config/examples/rad_unphased.yaml`` (400 loci of 300 bp, 10 + 7
diploids, the data's missingness; ``--per-scenario`` draws per scenario,
split 60/10/30), one set of simulations becomes two datasets: unphased (the
example's ``features.phased: false``) and phased (the same draws, the same
missing calls, the haplotype image).  The same network, with fixed
hyper-parameters (:data:`bench_unphased.HYPER`), is trained on each; their
test accuracies give the cost of unphasing.  The unphased model then
predicts the shipped ``config/data/rad.vcf.gz``: its most probable scenario
against the truth (``rad_truth.json``), the reliability verdict and the
misspecification check, and whether every estimate and interval lies within
its prior.

    python benchmarks/bench_rad_example.py [--per-scenario 300] [--network cnn2d_stats] [--epochs 20]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_unphased import SPLIT, network_accuracy, simulate  # noqa: E402

EXAMPLE = ROOT / "config" / "examples" / "rad_unphased.yaml"


def dataset(config: dict, sims: list[Path], folder: Path) -> Path:
    from popdl.dataset import build_dataset
    from popdl.features import features_chunk
    from popdl.stages import prior_summary

    files = []
    for path in sims:
        out = folder.with_name(f"{folder.name}.{path.stem}.features.npz")
        features_chunk(config, path, out)
        files.append(out)
    build_dataset(files, folder, scenarios=list(config["scenarios"]), fractions=SPLIT, shard_size=10_000,
                  root_seed=config["seed"], priors=prior_summary(config))
    return folder


def main(argv=None) -> int:
    from popdl.config import load_config
    from popdl.predict import observed_inputs, predict_arrays
    from popdl.stages import prior_summary, stage_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-scenario", type=int, default=300)
    ap.add_argument("--network", default="cnn2d_stats")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--work", help="folder for the simulations, datasets and models (default: a temporary one)")
    args = ap.parse_args(argv)
    config = load_config(EXAMPLE, overrides={"simulations": {"per_scenario": args.per_scenario}})
    truth = json.loads((ROOT / "config" / "data" / "rad_truth.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sims = simulate(config, work)
        phased = copy.deepcopy(config)
        phased["features"]["phased"] = True
        accuracy = {}
        for label, cfg in (("unphased", config), ("phased", phased)):
            data = dataset(cfg, sims, work / label)
            accuracy[label] = network_accuracy(cfg, data, args.network, epochs=args.epochs, seed=cfg["seed"], work=work)
        model = work / f"model-unphased-{args.network}-{config['seed']}"
        entry = dict(config["predict"]["data"][0])
        entry["vcf"], entry["popmap"] = str(ROOT / entry["vcf"]), str(ROOT / entry["popmap"])
        settings = stage_config(config, "predict", entry["name"])
        feats, summary = observed_inputs(entry, settings)
        result = predict_arrays(feats, summary, name=entry["name"], model_dir=model, dataset_dir=work / "unphased",
                                config_hash="bench")
        net, rel, mis = result["network"], result["reliability"], result["misspecification"]
        bounds = {name: p["bounds"] for name, p in prior_summary(config).items()}
        outside = [name for name, v in net["params"].items() if name in bounds
                   and not (bounds[name][0] <= v["lower"] <= v["estimate"] <= v["upper"] <= bounds[name][1])]
        n_test = int(round(SPLIT["test"] * args.per_scenario)) * len(config["scenarios"])
        print(f"RAD example, {args.per_scenario} draws per scenario, {args.network} {args.epochs} epochs, "
              f"test set {n_test} draws")
        print(f"test accuracy: unphased {accuracy['unphased']:.3f}, phased {accuracy['phased']:.3f} "
              f"(cost of unphasing {accuracy['phased'] - accuracy['unphased']:+.3f})")
        shown = ", ".join(f"{k} {v:.3f}" for k, v in net["probabilities"].items())
        print(f"shipped VCF: {net['scenario']} ({shown}); truth {truth['scenario']}: "
              f"{'recovered' if net['scenario'] == truth['scenario'] else 'NOT recovered'}")
        print(f"reliability: {'reliable' if rel['reliable'] else 'UNRELIABLE: ' + '; '.join(rel['reasons'])}; "
              f"misspecification: {'flagged' if mis['flagged'] else 'quiet'} (p = {mis['p_value']:.3g}, {mis['summary']})")
        print("estimates inside their priors: " + ("all" if not outside else "NOT " + ", ".join(outside)))
        for name, v in net["params"].items():
            true = truth["params"].get(name)
            print(f"  {name}: {v['estimate']:.4g} ({v['lower']:.4g} - {v['upper']:.4g})"
                  + (f", truth {true:g}" if true is not None else ""))
        np.set_printoptions(precision=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
