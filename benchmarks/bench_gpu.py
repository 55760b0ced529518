"""Training throughput of every network on the device a job trains on (a GPU when granted).

Per network (every one registered in ``popdl.models.NETWORKS``, or ``--networks``),
with the same hyper-parameters, batch size and seed on the same real dataset:

``loader``
    the shard stream alone (:class:`popdl.training.ShardSequence`, one
    thread): the samples per second the host can hand to the device;
``streamed``
    ``model.fit`` on that stream (what ``train.streaming: true`` does);
``in memory``
    a bare Keras fit of the same model on in-memory NumPy arrays (the
    ceiling: no popdl code between Keras and the data);
``bf16``
    the streamed fit with ``train.mixed_precision`` (Keras ``mixed_bfloat16``);
``trials/min``
    the same short trials (fixed hyper-parameters, ``--trial-epochs`` epochs
    each) run by one ``popdl tune`` job, one at a time and then
    ``tuning.trials_per_gpu = k`` at a time (k processes sharing the job's
    GPU), over the study's own clock (first trial start to last trial end).

Training throughput is samples per second over the epochs after a warm-up
epoch (which compiles the step), median over epochs; the step time in
milliseconds (batch / throughput) shows where a step's time goes: the loader's
share, Keras's per-step cost (the mlp's step is nearly all of it), the
network's own compute.  The device comes from :func:`popdl.device.setup` as in
a tune job: ``--gpus 1`` stops with one line when the backend sees no GPU,
unless ``--allow-cpu-fallback``.  Targets on an H100/H200-class GPU: cnn2d
streamed >= 50,000 samples/s, streamed / in memory >= 0.9, k = 4 concurrent
trials >= 3x the trials/min of one.

    python benchmarks/bench_gpu.py [--dataset DIR | --per-scenario 10000] [--gpus 1] [--batch 512]
        [--networks mlp,cnn2d] [--k 4] [--json results.json]
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
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dataset import make_dataset  # noqa: E402

TASKS = ("classify", "regress")
START_ENV = dict(os.environ)
#: The default config's architecture at its middle settings (the search space's centre).
HP = {"learning_rate": 1e-3, "optimizer": "adam", "lr_decay": "none", "conv_layers": 2, "filters": 16,
      "kernel_size": 3, "pooling": "max", "dense_layers": 1, "dense_units": 64, "dropout": 0.25,
      "batch_norm": True, "l1": 0.0, "l2": 0.0, "activation": "relu", "momentum": 0.9, "lr_decay_rate": 0.5}


def _default_gpus() -> int:
    from popdl.device import visible_devices

    return 1 if visible_devices() else 0


def build(dataset, prep, *, network: str, batch: int, streaming: bool, mixed: bool, loader_threads: int,
          epochs: int, seed: int = 0):
    """A compiled model and its training data (streamed or in memory)."""
    import keras

    from popdl.models import get_network
    from popdl.training import compile_model, dataset_shapes, make_data, set_precision

    net = get_network(network)
    set_precision(mixed)
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    data, steps = make_data(dataset, "train", streaming=streaming, in_memory_max_mb=1e12, batch_size=batch,
                            inputs=net.inputs, prep=prep, tasks=TASKS, seed=seed, loader_threads=loader_threads)
    hp = {**HP, "batch_size": batch}
    model = net.build(dataset_shapes(dataset), hp=hp, n_classes=len(dataset.scenarios),
                      n_params=len(prep.param_names), tasks=TASKS)
    compile_model(model, hp, steps_per_epoch=steps, epochs=epochs, quantiles=(0.05, 0.5, 0.95), tasks=TASKS)
    set_precision(False)
    return model, data


def fit_rate(model, data, *, n: int, epochs: int) -> float:
    """Training samples per second: median over ``epochs`` epochs after a warm-up epoch."""
    import keras

    seconds = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.t)

    model.fit(**data, epochs=1 + epochs, verbose=0, callbacks=[Clock()])
    return n / statistics.median(seconds[1:])


def loader_rate(dataset, prep, *, network: str, batch: int, epochs: int = 3) -> float:
    """Samples per second of the shard stream alone (one thread, the batches as Keras gets them)."""
    from popdl.models import get_network
    from popdl.training import ShardSequence

    seq = ShardSequence(dataset, "train", batch_size=batch, inputs=get_network(network).inputs, prep=prep,
                        tasks=TASKS, seed=0)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        for i in range(len(seq)):
            seq[i]
        times.append(time.perf_counter() - t)
        seq.on_epoch_end()
    return dataset.size("train") / statistics.median(times)


def tune_settings(network: str, *, trials: int, k: int, epochs: int, batch: int, threads: int, gpus: int,
                  backend: str, fallback: bool, mixed: bool) -> dict:
    """A tune slice whose trials all cost the same: fixed hyper-parameters, no pruning or early stop."""
    space = {**{k_: v for k_, v in HP.items() if k_ != "learning_rate"}, "batch_size": batch,
             "learning_rate": {"float": [1e-4, 1e-2], "log": True}}
    return {
        "run": f"bench-gpu-{network}-k{k}",
        "seed": 1,
        "task": list(TASKS),
        "network": network,
        "tuning": {"workers": 1, "trials": trials, "trials_per_gpu": k, "max_epochs": epochs, "patience": 0,
                   "pruner": "none", "startup_trials": 1, "seed": None, "storage": "journal",
                   "heartbeat_interval": None, "grace_period": None, "max_failures": 2, "threads": threads,
                   "gpu": gpus, "search_space": space},
        "train": {"quantiles": [0.05, 0.5, 0.95], "regression_weight": 1.0, "streaming": "auto",
                  "in_memory_max_mb": 1024, "backend": backend, "allow_cpu_fallback": fallback,
                  "mixed_precision": mixed},
    }


def trials_per_minute(dataset_dir: Path, work: Path, cfg: dict, *, gpus: int, threads: int) -> tuple[float, float]:
    """``(trials/min over the study's clock, wall seconds)`` of one tune job running ``cfg``."""
    import optuna
    from optuna.trial import TrialState

    from popdl.tuning import load_study

    tdir = work / cfg["run"]
    # The environment this benchmark started with: each tune job chooses its backend and
    # GPU memory share itself, as in the workflow.
    env = dict(START_ENV, PYTHONPATH=os.pathsep.join([str(ROOT / "scripts"), START_ENV.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "popdl", "--quiet", "tune", "--settings", json.dumps(cfg),
                           "--dataset", str(dataset_dir), "--worker", "0", "--threads", str(threads),
                           "--gpus", str(gpus), "--tuning-dir", str(tdir), "--out", str(tdir / "worker-0.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"the tune job of {cfg['run']} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = [t for t in load_study(cfg, dataset_dir, tuning_dir=tdir).get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if len(done) != cfg["tuning"]["trials"]:
        raise SystemExit(f"{cfg['run']}: {len(done)} finished trials, expected {cfg['tuning']['trials']}")
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    span = max((end - start).total_seconds(), 1e-3) if isinstance(start, datetime) else wall
    return 60.0 * len(done) / span, wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", type=Path, help="a dataset folder (else one is simulated: --per-scenario)")
    ap.add_argument("--per-scenario", type=int, default=1000, help="draws per scenario of the simulated dataset")
    ap.add_argument("--networks", help="comma-separated (default: every registered network)")
    ap.add_argument("--batch", type=int, default=512, help="batch size (default 512)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per fit, after one warm-up epoch")
    ap.add_argument("--loader-threads", type=int, default=1,
                    help="read-ahead threads of the stream (default 1, what tune and train use)")
    ap.add_argument("--k", type=int, default=4, help="concurrent trials of the trials/min comparison (0: skip it)")
    ap.add_argument("--trials-each", type=int, default=2, help="trials per process in the trials/min comparison")
    ap.add_argument("--trial-epochs", type=int, default=2, help="epochs of each of those trials")
    ap.add_argument("--trial-networks", help="networks of the trials/min comparison (default: --networks)")
    ap.add_argument("--bf16-networks", help="networks whose bf16 fit is timed, comma-separated (default: every "
                    "measured network; 'none' skips the bf16 fits)")
    ap.add_argument("--gpus", type=int, help="GPUs granted (default: 1 when CUDA_VISIBLE_DEVICES lists one)")
    ap.add_argument("--backend", default="auto", choices=["auto", "tensorflow", "jax", "torch"])
    ap.add_argument("--allow-cpu-fallback", action="store_true", help="measure on the CPU when no GPU is usable")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads (default: all)")
    ap.add_argument("--json", type=Path, help="also write the figures here (JSON)")
    args = ap.parse_args(argv)

    from popdl.device import NoGPUError, setup

    gpus = _default_gpus() if args.gpus is None else args.gpus
    train_cfg = {"backend": args.backend, "allow_cpu_fallback": args.allow_cpu_fallback}
    # JAX takes GPU memory as it needs it in this process: the tune jobs started below
    # share the GPU and take their usual shares ahead (START_ENV does not carry this).
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        device = setup(train_cfg, job="bench_gpu", gpus=gpus, threads=args.threads)
    except NoGPUError as exc:
        print(f"bench_gpu: {exc}", file=sys.stderr)
        return 1
    print(device.line(), flush=True)

    from popdl.dataset import Dataset
    from popdl.io import write_json
    from popdl.models import NETWORKS
    from popdl.preprocess import Preprocessor

    # The default network of the targets first: a run cut short still has its figures.
    networks = args.networks.split(",") if args.networks else sorted(NETWORKS, key=lambda n: (n != "cnn2d", n))
    trial_networks = args.trial_networks.split(",") if args.trial_networks else networks
    bf16_networks = (networks if args.bf16_networks is None
                     else [] if args.bf16_networks == "none" else args.bf16_networks.split(","))
    for option, chosen in (("--trial-networks", trial_networks), ("--bf16-networks", bf16_networks)):
        if set(chosen) - set(networks):  # else silently never measured
            print(f"bench_gpu: {option} names {', '.join(sorted(set(chosen) - set(networks)))}, not among the "
                  f"measured networks ({', '.join(networks)})", file=sys.stderr)
            return 2
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        folder = args.dataset or make_dataset(Path(tmp) / "dataset", per_scenario=args.per_scenario, snps=128)
        dataset = Dataset(folder)
        prep = Preprocessor.fit(dataset)
        n = dataset.size("train")
        h, s = dataset.manifest["image_shape"]
        print(f"dataset {folder}: {n} training examples of {h} x {s}; batch {args.batch}, "
              f"{args.epochs} timed epochs after a warm-up", flush=True)
        for network in networks:
            row = {"network": network, "batch": args.batch}
            row["loader"] = loader_rate(dataset, prep, network=network, batch=args.batch)
            common = dict(network=network, batch=args.batch, loader_threads=args.loader_threads, epochs=args.epochs)
            row["streamed"] = fit_rate(*build(dataset, prep, streaming=True, mixed=False, **common), n=n,
                                       epochs=args.epochs)
            row["in_memory"] = fit_rate(*build(dataset, prep, streaming=False, mixed=False, **common), n=n,
                                        epochs=args.epochs)
            if network in bf16_networks:
                row["bf16"] = fit_rate(*build(dataset, prep, streaming=True, mixed=True, **common), n=n,
                                       epochs=args.epochs)
            row["step_ms"] = {k: 1e3 * args.batch / row[k] for k in ("loader", "streamed", "in_memory", "bf16")
                              if k in row}
            print(f"{network}: loader {row['loader']:,.0f} samples/s; streamed {row['streamed']:,.0f}, "
                  f"in memory {row['in_memory']:,.0f} (streamed / in memory {row['streamed'] / row['in_memory']:.3f})"
                  + (f"; bf16 {row['bf16']:,.0f} (bf16 / fp32 {row['bf16'] / row['streamed']:.3f})"
                     if "bf16" in row else "")
                  + "; ms per step: " + ", ".join(f"{k} {v:.2f}" for k, v in row["step_ms"].items()), flush=True)
            if args.k and network in trial_networks:
                work = Path(tmp) / "tuning"
                one = tune_settings(network, trials=args.trials_each, k=1, epochs=args.trial_epochs,
                                    batch=args.batch, threads=args.threads, gpus=gpus, backend=args.backend,
                                    fallback=args.allow_cpu_fallback, mixed=False)
                many = tune_settings(network, trials=args.trials_each * args.k, k=args.k, epochs=args.trial_epochs,
                                     batch=args.batch, threads=args.threads, gpus=gpus, backend=args.backend,
                                     fallback=args.allow_cpu_fallback, mixed=False)
                r1, w1 = trials_per_minute(folder, work, one, gpus=gpus, threads=args.threads)
                rk, wk = trials_per_minute(folder, work, many, gpus=gpus, threads=args.threads)
                row["trials_per_min"] = {"1": r1, str(args.k): rk, "ratio": rk / r1, "wall_s": {"1": w1, str(args.k): wk}}
                print(f"{network}: trials/min {r1:.2f} one at a time, {rk:.2f} with {args.k} at once "
                      f"({args.k} / 1: {rk / r1:.2f}; wall {w1:.0f} s and {wk:.0f} s with start-up)", flush=True)
            rows.append(row)
            if args.json:  # after every network
                write_json(args.json, {"device": device.to_dict(), "batch": args.batch, "epochs": args.epochs,
                                       "k": args.k, "trial_epochs": args.trial_epochs, "training_examples": n,
                                       "rows": rows, "complete": network == networks[-1]})

    print()
    print(f"{device.line()}")
    w = max(len(r["network"]) for r in rows) if rows else 7
    head = f"{'network':<{w}} {'loader/s':>10} {'streamed/s':>11} {'memory/s':>10} {'str/mem':>8}"
    any_bf16 = any("bf16" in r for r in rows)
    head += f" {'bf16/s':>10} {'bf16/fp32':>9}" if any_bf16 else ""
    head += f" {'trials/min 1':>12} {'k=' + str(args.k):>8} {'ratio':>6}" if args.k else ""
    print(head)
    for r in rows:
        line = (f"{r['network']:<{w}} {r['loader']:>10,.0f} {r['streamed']:>11,.0f} {r['in_memory']:>10,.0f} "
                f"{r['streamed'] / r['in_memory']:>8.3f}")
        if "bf16" in r:
            line += f" {r['bf16']:>10,.0f} {r['bf16'] / r['streamed']:>9.3f}"
        elif any_bf16:
            line += f" {'-':>10} {'-':>9}"
        if "trials_per_min" in r:
            t = r["trials_per_min"]
            line += f" {t['1']:>12.2f} {t[str(args.k)]:>8.2f} {t['ratio']:>6.2f}"
        print(line)
    print(f"bench_gpu took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
