"""Optuna sweep throughput: 2 parallel tune workers against 1, on 2 cores.

For each network, three runs of the same fixed number of trials on the same
real dataset (the default config's scenarios, simulated once), every worker
a separate ``popdl tune`` process with its backend limited to one thread
(``tuning.threads: 1``):

``1 worker``
    one worker runs all the trials of a study;
``2 workers``
    two workers share one study (one journal file), each its half;
``2 alone``
    the machine's own ceiling: two one-worker studies, each with its own
    journal and half the trials, run side by side.  Nothing is shared
    between them, so their ratio to ``1 worker`` is what two cores give
    this workload here; ``2 workers`` can at best match it.

The searched hyper-parameters (learning rate, dropout) do not change a
trial's cost; every trial runs the same number of epochs (no pruning, no
early stopping).  Throughput is finished trials per minute over the studies'
own clock (first trial start to last trial end, from the trials'
timestamps), which leaves out the one-off interpreter and backend start-up;
the wall time of the whole command (start-up included) is printed too.
After each run every study is checked: exactly the requested number of
finished trials, numbered 0..n-1 once each, each worker its share, no two
trials with the same parameters (no trial lost or duplicated).

Target: ratio (2 workers / 1 worker) >= 1.7.  The 2-D CNN's full-resolution
activations (batch × haplotypes × SNPs × filters floats, about 20 MB per
layer at batch 64) do not fit a core's cache, so two of them at once contend
for memory bandwidth; ``2 alone`` measures that limit for each network.

    python benchmarks/bench_tuning_workers.py [--networks cnn1d,mlp,cnn2d] [--trials 12] [--reps 1]
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

TARGET = 1.7


def settings(workers: int, trials: int, epochs: int, network: str, run: str, seed: int = 1) -> dict:
    return {
        "run": run,
        "seed": seed,
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


def check_study(cfg: dict, tuning_dir: Path, dataset: Path) -> list:
    """The study's finished trials, after checking none was lost or duplicated."""
    import optuna
    from optuna.trial import TrialState

    from popdl.tuning import load_study, worker_shares

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = cfg["tuning"]
    all_trials = load_study(cfg, dataset, tuning_dir=tuning_dir).get_trials(deepcopy=False)
    done = [tr for tr in all_trials if tr.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == t["trials"], [(tr.number, tr.state.name) for tr in all_trials]
    assert sorted(tr.number for tr in all_trials) == list(range(len(all_trials))), "gaps in trial numbers"
    shares = Counter(dict(enumerate(worker_shares(t["trials"], t["workers"]))))
    assert Counter(tr.user_attrs["worker"] for tr in done) == shares, "a worker ran more or less than its share"
    points = [tuple(sorted(tr.params.items())) for tr in done]
    assert len(set(points)) == len(points), "two trials drew the same parameters"
    return done


def launch(dataset: Path, workdir: Path, jobs: list[tuple[dict, Path, int]]) -> dict:
    """Run ``jobs`` (settings, tuning folder, worker index) as concurrent processes;
    return the throughput over all their studies' trials."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "scripts"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "popdl", "--quiet", "tune", "--settings", json.dumps(cfg),
                               "--dataset", str(dataset), "--worker", str(w), "--tuning-dir", str(tdir),
                               "--out", str(workdir / f"{tdir.name}-w{w}.json")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cfg, tdir, w in jobs]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    for p, out in zip(procs, outs):
        if p.returncode:
            raise SystemExit(f"a worker failed:\n{out[-3000:]}")
    done = []
    for cfg, tdir in {(json.dumps(cfg), tdir) for cfg, tdir, _ in jobs}:
        done += check_study(json.loads(cfg), tdir, dataset)
    span = (max(tr.datetime_complete for tr in done) - min(tr.datetime_start for tr in done)).total_seconds()
    return {"trials": len(done), "span_s": span, "wall_s": wall, "per_min": len(done) / span * 60,
            "per_min_wall": len(done) / wall * 60,
            "mean_trial_s": statistics.mean((tr.datetime_complete - tr.datetime_start).total_seconds() for tr in done)}


def run_mode(mode: str, dataset: Path, work: Path, *, network: str, trials: int, epochs: int) -> dict:
    half = trials // 2
    if mode == "1 worker":
        cfg = settings(1, trials, epochs, network, run=f"one-{network}")
        jobs = [(cfg, work / f"one-{network}", 0)]
    elif mode == "2 workers":
        cfg = settings(2, trials, epochs, network, run=f"two-{network}")
        jobs = [(cfg, work / f"two-{network}", w) for w in (0, 1)]
    else:  # two independent studies side by side
        jobs = [(settings(1, half, epochs, network, run=f"alone{i}-{network}", seed=1 + i),
                 work / f"alone{i}-{network}", 0) for i in (0, 1)]
    return launch(dataset, work, jobs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="cnn1d,mlp,cnn2d", help="comma-separated networks to measure")
    ap.add_argument("--trials", type=int, default=12, help="trials per run (even)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--per-scenario", type=int, default=1000, help="simulations per scenario of the benchmark dataset")
    ap.add_argument("--dataset", type=Path, help="reuse this dataset folder instead of simulating one")
    ap.add_argument("--reps", type=int, default=1, help="repetitions (rotating which run goes first); medians")
    args = ap.parse_args(argv)
    if args.trials % 2:
        ap.error("--trials must be even (two workers, equal shares)")
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    modes = ["1 worker", "2 workers", "2 alone"]
    with tempfile.TemporaryDirectory(prefix="bench_tuning_") as tmp:
        tmp = Path(tmp)
        dataset = args.dataset or make_dataset(tmp / "dataset", per_scenario=args.per_scenario)
        print(f"dataset {dataset}; {args.trials} trials per run, {args.epochs} epochs each, "
              "1 thread per worker; every study checked: all trials finished, none lost or duplicated")
        summary = []
        for network in networks:
            results = {m: [] for m in modes}
            for rep in range(args.reps):
                order = modes[rep % 3:] + modes[:rep % 3]
                for mode in order:
                    work = tmp / f"rep{rep}"
                    work.mkdir(exist_ok=True)
                    r = run_mode(mode, dataset, work, network=network, trials=args.trials, epochs=args.epochs)
                    results[mode].append(r)
                    print(f"  {network} rep {rep}, {mode:9s}: {r['per_min']:6.2f} trials/min (span {r['span_s']:.1f} s, "
                          f"wall {r['wall_s']:.1f} s incl. start-up, mean trial {r['mean_trial_s']:.2f} s)", flush=True)
            ratio = statistics.median(b["per_min"] / a["per_min"] for a, b in zip(results["1 worker"], results["2 workers"]))
            ceiling = statistics.median(b["per_min"] / a["per_min"] for a, b in zip(results["1 worker"], results["2 alone"]))
            wall = statistics.median(b["per_min_wall"] / a["per_min_wall"]
                                     for a, b in zip(results["1 worker"], results["2 workers"]))
            summary.append((network, ratio, ceiling, wall))
        print()
        print(f"{'network':8s}  2 workers / 1 worker   2 alone / 1 worker (machine's ceiling)   incl. start-up")
        for network, ratio, ceiling, wall in summary:
            verdict = "OK" if ratio >= TARGET else ("BELOW TARGET; the machine's ceiling is below it too"
                                                    if ceiling < TARGET else "BELOW TARGET")
            print(f"{network:8s}  {ratio:20.2f}   {ceiling:38.2f}   {wall:14.2f}   {verdict} (target >= {TARGET})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
