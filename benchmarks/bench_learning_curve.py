"""Learning curve: the tuned network against ABC-RF as the simulation budget grows.

On the default config's scenarios and priors, one dataset of ``max(budgets) /
0.9`` draws per scenario is simulated (split 80/10/10 as the workflow does);
its test split is the common test set of every budget.  For a budget of ``n``
draws per scenario, each scenario's first ``8n/9`` training draws and first
``n/9`` validation draws (by draw index, so budgets are nested) form the
data both methods get:

* the network: the default config's sweep (``tuning.trials`` trials of its
  search space, one worker here), select-best (the trials of the greedy
  ensemble selection) and the final fit (``train.ensemble`` fits on the
  training draws and half the validation draws, the parameters'
  cross-fitted; temperature and intervals calibrated on the other half):
  exactly what ``make run`` does;
* ABC-RF: the random forests of :mod:`popdl.abc` (``abc.trees`` trees) with
  all ``n`` draws as reference table.

Both are scored on the same test set: scenario accuracy, and per parameter
the R² of the estimate (log10 scale for log-uniform priors) on the test
simulations whose scenario has it.  The table prints both and the
difference (network - ABC-RF).

    python benchmarks/bench_learning_curve.py --budgets 1000,3000,10000 [--trials 8] [--work DIR]

A tiny run (the tests): ``--budgets 27,45 --trials 1 --max-epochs 2 --snps 32 --ensemble 1``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dataset import make_dataset  # noqa: E402

SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}


def budget_masks(dataset, n: int) -> dict[str, np.ndarray]:
    """Per split (train, validation), the examples of a budget of ``n`` draws per scenario:
    each scenario's ``round(8n/9)`` training and ``n - round(8n/9)`` validation draws of
    lowest draw index."""
    n_train = int(round(n * SPLIT["train"] / (SPLIT["train"] + SPLIT["validation"])))
    masks = {}
    for split, k in (("train", n_train), ("validation", n - n_train)):
        part = dataset.load(split, ("labels", "draw"))
        mask = np.zeros(part["labels"].size, dtype=bool)
        for s in range(len(dataset.scenarios)):
            idx = np.flatnonzero(part["labels"] == s)
            if idx.size < k:
                raise SystemExit(f"budget {n}: scenario {dataset.scenarios[s]} has only {idx.size} {split} draws "
                                 f"(needs {k}); simulate more (a larger --per-scenario)")
            mask[idx[np.argsort(part["draw"][idx], kind="stable")[:k]]] = True
        masks[split] = mask
    return masks


def subset_dataset(source, out: Path, masks: dict[str, np.ndarray]) -> Path:
    """A dataset folder holding ``source``'s examples selected by ``masks`` (split ->
    boolean mask; splits not named are copied whole), one shard per split."""
    from popdl.dataset import ARRAYS

    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(json.dumps(source.manifest))
    for split in manifest["splits"]:
        arrays = source.load(split, ARRAYS)
        if split in masks:
            arrays = {k: v[masks[split]] for k, v in arrays.items()}
        folder = out / split / "shard-00000"
        folder.mkdir(parents=True, exist_ok=True)
        for name, values in arrays.items():
            np.save(folder / f"{name}.npy", values)
        n = int(arrays["labels"].size)
        manifest["splits"][split] = {"n": n, "shards": [{"path": f"{split}/shard-00000", "n": n}]}
    manifest["per_scenario"] = int(sum(manifest["splits"][s]["n"] for s in ("train", "validation"))
                                   // len(manifest["scenarios"]))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def r2(truth: np.ndarray, estimate: np.ndarray) -> float:
    ok = np.isfinite(truth) & np.isfinite(estimate)
    t, e = truth[ok], estimate[ok]
    ss = float(((t - t.mean()) ** 2).sum())
    return float(1.0 - ((t - e) ** 2).sum() / ss) if t.size > 1 and ss > 0 else float("nan")


def run_network(config: dict, data: Path, work: Path, test: dict) -> dict:
    """The default sweep, select-best and final fit on ``data``; scores on ``test``."""
    from popdl.model_io import load_model
    from popdl.stages import stage_config
    from popdl.training import train_final
    from popdl.tuning import run_worker, select_best

    tune = stage_config(config, "tune")
    tune["tuning"]["workers"] = 1
    run_worker(tune, data, worker=0, tuning_dir=work / "tuning")
    best = select_best(tune, data, tuning_dir=work / "tuning", best_out=work / "best.json",
                       table_out=work / "trials.csv")
    fitted = train_final(stage_config(config, "train"), data, best=best, out=work / "model")
    model = load_model(work / "model")
    pred = model.predict(test["images"], test["distances"], test["stats"])
    truth = model.prep.learning_scale(np.asarray(test["params"], dtype=np.float64))
    est = model.prep.learning_scale(pred.estimates)
    return {"accuracy": float((np.argmax(pred.probabilities, 1) == test["labels"]).mean()),
            "r2": {p: r2(truth[:, j], est[:, j]) for j, p in enumerate(model.param_names)},
            "network": fitted["network"]}


def run_abc_rf(config: dict, data: Path, test_dataset) -> dict:
    from popdl.abc import RandomForestABC, load_reference

    ref = load_reference(data, ("train", "validation"))
    test = load_reference(test_dataset, ("test",))
    test.log_scale = ref.log_scale
    method = RandomForestABC(trees=config["abc"]["trees"], seed=config["seed"], threads=2).fit(ref)
    pred = method.predict(test.stats)
    truth = test.learning
    return {"accuracy": float((pred["probs"].argmax(1) == test.labels).mean()),
            "r2": {p: r2(truth[:, j], pred["estimate"][:, j]) for j, p in enumerate(ref.param_names)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="1000,3000", help="draws per scenario, comma-separated")
    ap.add_argument("--per-scenario", type=int, help="draws simulated per scenario (default: the largest "
                    "budget / 0.9, so that its training and validation draws exist)")
    ap.add_argument("--trials", type=int, help="sweep trials per budget (default: the config's tuning.trials)")
    ap.add_argument("--max-epochs", type=int, help="tuning.max_epochs (default: the config's)")
    ap.add_argument("--trial-seconds", type=float, help="tuning.trial_seconds (default: the config's)")
    ap.add_argument("--snps", type=int, help="features.snps (default: the config's)")
    ap.add_argument("--ensemble", type=int, help="train.ensemble, fits per output of the final model "
                    "(default: the config's)")
    ap.add_argument("--work", help="folder for the dataset and the runs (default: a temporary folder); an "
                    "existing dataset there is reused")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)

    from popdl.config import load_config
    from popdl.dataset import Dataset
    from popdl.training import configure_backend

    budgets = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    if not budgets or budgets[0] < 9:
        raise SystemExit("--budgets: give draws per scenario, at least 9 each")
    per_scenario = args.per_scenario or int(math.ceil(budgets[-1] / (SPLIT["train"] + SPLIT["validation"])))
    overrides = {"tuning": {}}
    if args.trials:
        overrides["tuning"]["trials"] = args.trials
    if args.max_epochs:
        overrides["tuning"]["max_epochs"] = args.max_epochs
    if args.trial_seconds:
        overrides["tuning"]["trial_seconds"] = args.trial_seconds
    if args.snps:
        overrides["features"] = {"snps": args.snps}
    if args.ensemble:
        overrides["train"] = {"ensemble": args.ensemble}
    config = load_config(ROOT / "config" / "config.yaml", overrides=overrides)
    configure_backend(2)
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="bench-learning-curve-")
    work = Path(args.work or tmp.name)
    started = time.perf_counter()
    big = Dataset(make_dataset(work / f"dataset-{per_scenario}", per_scenario=per_scenario, snps=args.snps))
    test = big.load("test")
    print(f"dataset: {per_scenario} draws per scenario simulated ({time.perf_counter() - started:.0f} s); "
          f"common test set: {test['labels'].size} simulations", flush=True)
    rows = []
    for n in budgets:
        t0 = time.perf_counter()
        data = subset_dataset(big, work / f"budget-{n}" / "dataset", budget_masks(big, n))
        net = run_network(config, data, work / f"budget-{n}", test)
        t1 = time.perf_counter()
        rf = run_abc_rf(config, data, big)
        t2 = time.perf_counter()
        rows.append({"budget": n, "network": net, "abc_rf": rf, "seconds": {"network": t1 - t0, "abc_rf": t2 - t1}})
        print(f"budget {n}: network ({net['network']}) {t1 - t0:.0f} s, ABC-RF {t2 - t1:.0f} s", flush=True)
    params = list(rows[0]["network"]["r2"])
    print(f"\nnetwork vs ABC-RF on the same {test['labels'].size} test simulations (R² on the log10 scale for "
          "log-uniform priors; difference = network - ABC-RF)")
    header = ["draws/scenario", "accuracy net", "ABC-RF", "diff"] + [f"R² {p} net / ABC-RF / diff" for p in params]
    print(" | ".join(header))
    for row in rows:
        net, rf = row["network"], row["abc_rf"]
        cells = [str(row["budget"]), f"{net['accuracy']:.3f}", f"{rf['accuracy']:.3f}",
                 f"{net['accuracy'] - rf['accuracy']:+.3f}"]
        cells += [f"{net['r2'][p]:.2f} / {rf['r2'][p]:.2f} / {net['r2'][p] - rf['r2'][p]:+.2f}" for p in params]
        print(" | ".join(cells))
    if args.json:
        Path(args.json).write_text(json.dumps({"budgets": budgets, "per_scenario": per_scenario,
                                               "n_test": int(test["labels"].size), "rows": rows}, indent=1))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
