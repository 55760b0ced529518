"""Summary statistics as they are, or the skewed ones on a log10 scale (``stat_scale``).

A paired comparison that the sweep's own noise (which trials it draws,
which finish first) does not blur: on a run's dataset, the network and
hyper-parameters of the best trial for each output (``tuning/best.json``,
``by_task``) are fitted once per seed with ``stat_scale: linear`` and once
with ``stat_scale: log`` (:class:`popdl.models.LogStatistics`), everything
else equal: same examples, same seed for the weights and the batch order,
at most ``--max-epochs`` epochs, early stopping on the validation loss
(``--patience``, best weights restored).  The scenario and the parameters
are fitted separately, as the final model fits them.  Scored on the test
split: accuracy, and per parameter the R² of the mean of the quantiles on
the learning scale (log10 for log-uniform priors), as ``evaluate`` does.

It prints one line per fit, then per task the two means, their difference
(log − linear) and the difference of each seed.

    python benchmarks/bench_stat_scale.py --results results/demo [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

QUANTILES = tuple(float(q) for q in np.round(np.arange(0.05, 1.0, 0.1), 2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, help="a run's folder (results/RUN): dataset/ and tuning/best.json")
    parser.add_argument("--dataset", type=Path, help="the dataset folder (default: RESULTS/dataset)")
    parser.add_argument("--best", type=Path, help="the best-trial file (default: RESULTS/tuning/best.json)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    dataset_dir = args.dataset or (args.results / "dataset" if args.results else None)
    best_path = args.best or (args.results / "tuning" / "best.json" if args.results else None)
    if dataset_dir is None or best_path is None:
        parser.error("give --results, or both --dataset and --best")

    from popdl.training import configure_backend

    configure_backend(args.threads)
    import keras

    from popdl.dataset import Dataset
    from popdl.models import get_network
    from popdl.preprocess import Preprocessor
    from popdl.training import compile_model, dataset_shapes, load_arrays, predict_arrays

    ds = Dataset(dataset_dir)
    best = json.loads(best_path.read_text())
    prep = Preprocessor.fit(ds, ("train",))
    shapes = dataset_shapes(ds, prep)
    logged = [n for n, o in zip(prep.stat_names, prep.stat_log_offset) if o is not None]
    print(f"dataset {dataset_dir}: {ds.size('train')} train, {ds.size('validation')} validation, "
          f"{ds.size('test')} test; {len(logged)} of {len(prep.stat_names)} statistics get the log scale")
    by_task = best.get("by_task") or {t: {"hyper_parameters": best["hyper_parameters"]} for t in ("classify", "regress")}
    true = prep.learning_scale(ds.load("test", ("params",))["params"])
    scores: dict[tuple[str, str], list[float]] = {}
    for task in ("classify", "regress"):
        hp = dict(by_task[task]["hyper_parameters"])
        net = get_network(hp["network"])
        tasks = (task,)
        x_train, y_train = load_arrays(ds, "train", inputs=net.inputs, prep=prep, tasks=tasks)
        x_val, y_val = load_arrays(ds, "validation", inputs=net.inputs, prep=prep, tasks=tasks)
        x_test, y_test = load_arrays(ds, "test", inputs=net.inputs, prep=prep, tasks=("classify",))
        batch = int(hp["batch_size"])
        steps = -(-ds.size("train") // batch)
        for seed in range(args.seeds):
            for scale in ("linear", "log"):
                keras.backend.clear_session()
                keras.utils.set_random_seed(seed)
                model = net.build(shapes, hp={**hp, "stat_scale": scale}, n_classes=len(ds.scenarios),
                                  n_params=len(prep.param_names), quantiles=QUANTILES, tasks=tasks)
                compile_model(model, hp, steps_per_epoch=steps, epochs=args.max_epochs, quantiles=QUANTILES,
                              tasks=tasks)
                stop = keras.callbacks.EarlyStopping(patience=args.patience, restore_best_weights=True)
                model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=args.max_epochs, batch_size=batch,
                          verbose=0, callbacks=[stop])
                out = predict_arrays(model, x_test)
                if task == "classify":
                    got = {"accuracy": float(np.mean(out["scenario"].argmax(1) == y_test["scenario"]))}
                else:
                    estimate = prep.unstandardise(out["params"]).mean(-1)
                    got = {}
                    for j, name in enumerate(prep.param_names):
                        ok = np.isfinite(true[:, j])
                        t, e = true[ok, j], estimate[ok, j]
                        got[f"R² {name}"] = float(1.0 - np.sum((e - t) ** 2) / np.sum((t - t.mean()) ** 2))
                for key, value in got.items():
                    scores.setdefault((key, scale), []).append(value)
                print(f"{hp['network']} {task} seed {seed} {scale:6s} "
                      + ", ".join(f"{k} {v:.4f}" for k, v in got.items()), flush=True)
    print("\ntask | linear | log | log - linear | per seed")
    rows = []
    for key in dict.fromkeys(k for k, _ in scores):
        lin, log = np.array(scores[(key, "linear")]), np.array(scores[(key, "log")])
        rows.append({"task": key, "linear": lin.tolist(), "log": log.tolist()})
        print(f"{key} | {lin.mean():.4f} | {log.mean():.4f} | {log.mean() - lin.mean():+.4f} | "
              + " ".join(f"{d:+.4f}" for d in log - lin))
    if args.json:
        args.json.write_text(json.dumps({"dataset": str(dataset_dir), "logged": logged, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
