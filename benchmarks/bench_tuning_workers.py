"""Optuna sweep throughput: 2 parallel tune workers against 1, on 2 cores.

Both sides run the same fixed number of trials of the same network on the
same real dataset (the default config's scenarios, simulated once), each
worker a separate ``popdl tune`` process with TensorFlow limited to one
thread (intra- and inter-op parallelism: ``tuning.threads: 1``), so the
comparison is fair.  The searched hyper-parameters (learning rate, dropout)
do not change a trial's cost; every trial runs the same number of epochs
(no pruning, no early stopping).

Throughput is finished trials per minute over the study's own clock (first
trial start to last trial end, from the trials' timestamps), which leaves
out the one-off interpreter and TensorFlow start-up; the wall time of the
whole command (start-up included) is printed too.  After each run the study
is checked: exactly the requested number of finished trials, numbered
0..n-1 once each, each worker its share, no two trials with the same
parameters.  Target: ratio (2 workers / 1 worker) >= 1.7.

    python benchmarks/bench_tuning_workers.py [--trials 8] [--epochs 2] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dataset import make_dataset  # noqa: E402


def settings(workers: int, trials: int, epochs: int, network: str, run: str) -> dict:
    return {
        "run": run,
        "seed": 1,
        "task": ["classify", "regress"],
        "network": network,
        "tuning": {
            "workers": workers, "trials": trials, "max_epochs": epochs, "patience": 0, "pruner": "none",
            "startup_trials": 2, "seed": None, "storage": "journal", "heartbeat_interval": None,
            "grace_period": None, "max_failures": 3, "threads": 1, "gpu": 0,
            "search_space": {
                "learning_rate": {"float": [1e-4, 1e-2], "log": True}, "dropout": {"float": [0.1, 0.5]},
                "lr_decay": "none", "lr_decay_rate": 0.5, "batch_size": 64, "optimizer": "adam", "momentum": 0.9,
                "batch_norm": True, "l1": 0.0, "l2": 0.0, "activation": "relu", "conv_layers": 2, "filters": 16,
                "kernel_size": 3, "pooling": "max", "dense_layers": 1, "dense_units": 64,
            },
        },
        # Streamed batches: Keras's in-memory path builds a tf.data pipeline whose own
        # autotuned threads would let a lone worker use more than its one core.
        "train": {"quantiles": [0.05, 0.5, 0.95], "regression_weight": 1.0, "streaming": True,
                  "in_memory_max_mb": 1024},
    }


def sweep(dataset: Path, workdir: Path, *, workers: int, trials: int, epochs: int, network: str) -> dict:
    import optuna
    from optuna.trial import TrialState

    from popdl.tuning import load_study, worker_shares

    cfg = settings(workers, trials, epochs, network, run=f"bench{workers}")
    tuning_dir = workdir / f"tuning-{workers}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "scripts"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "popdl", "--quiet", "tune", "--settings", json.dumps(cfg),
                               "--dataset", str(dataset), "--worker", str(w), "--tuning-dir", str(tuning_dir),
                               "--out", str(workdir / f"w{workers}-{w}.json")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for w in range(workers)]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    for p, out in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"a worker failed:\n{out[-3000:]}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(cfg, tuning_dir=tuning_dir)
    all_trials = study.get_trials(deepcopy=False)
    done = [t for t in all_trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # No trial lost or duplicated.
    assert len(done) == trials, [(t.number, t.state.name) for t in all_trials]
    assert sorted(t.number for t in all_trials) == list(range(len(all_trials))), "gaps in trial numbers"
    assert Counter(t.user_attrs["worker"] for t in done) == Counter(dict(enumerate(worker_shares(trials, workers))))
    points = [tuple(sorted(t.params.items())) for t in done]
    assert len(set(points)) == len(points), "two trials drew the same parameters"
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    span = (last - first).total_seconds()
    return {"workers": workers, "trials": trials, "span_s": span, "wall_s": wall,
            "trials_per_min": trials / span * 60, "trials_per_min_wall": trials / wall * 60,
            "mean_trial_s": statistics.mean((t.datetime_complete - t.datetime_start).total_seconds() for t in done)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--network", default="cnn2d")
    ap.add_argument("--per-scenario", type=int, default=600, help="simulations per scenario of the benchmark dataset")
    ap.add_argument("--dataset", type=Path, help="reuse this dataset folder instead of simulating one")
    ap.add_argument("--reps", type=int, default=1, help="repetitions (alternating which side runs first); medians")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_tuning_") as tmp:
        tmp = Path(tmp)
        dataset = args.dataset or make_dataset(tmp / "dataset", per_scenario=args.per_scenario)
        print(f"dataset {dataset}; {args.trials} trials of {args.network}, {args.epochs} epochs each, 1 thread per worker")
        ratios, results = [], {1: [], 2: []}
        for rep in range(args.reps):
            order = (1, 2) if rep % 2 == 0 else (2, 1)
            run = {}
            for w in order:
                work = tmp / f"rep{rep}"
                work.mkdir(exist_ok=True)
                run[w] = sweep(dataset, work, workers=w, trials=args.trials, epochs=args.epochs, network=args.network)
                results[w].append(run[w])
                print(f"  rep {rep}: {w} worker(s): {run[w]['trials_per_min']:.2f} trials/min "
                      f"(span {run[w]['span_s']:.1f} s; wall {run[w]['wall_s']:.1f} s incl. start-up; "
                      f"mean trial {run[w]['mean_trial_s']:.1f} s); study checked: {args.trials} finished, "
                      "none lost or duplicated")
            ratios.append(run[2]["trials_per_min"] / run[1]["trials_per_min"])
        wall_ratio = statistics.median(b["trials_per_min_wall"] / a["trials_per_min_wall"]
                                       for a, b in zip(results[1], results[2]))
        ratio = statistics.median(ratios)
        print(f"wall-clock ratio incl. start-up: {wall_ratio:.2f}")
        print(f"ratio (2 workers / 1 worker, trials per minute): {ratio:.2f}  (target >= 1.7) "
              f"{'OK' if ratio >= 1.7 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
