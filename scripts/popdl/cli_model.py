"""Sub-commands for the networks: tune (one worker), select-best, train, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from popdl.cli import add_config_arguments, config_from_args

log = logging.getLogger("popdl")


def add_commands(sub) -> None:
    p = sub.add_parser("tune", help="run one Optuna worker's share of the hyper-parameter sweep")
    add_config_arguments(p)
    p.add_argument("--dataset", required=True, help="dataset folder (manifest.json + shards)")
    p.add_argument("--worker", type=int, default=0, help="worker index, 0 .. tuning.workers - 1")
    p.add_argument("--threads", type=int, help="CPU threads of this job (the workflow passes Snakemake's "
                   "{threads}); default: tuning.threads")
    p.add_argument("--gpus", type=int, help="GPUs granted to this job (the workflow passes its gpu resource); "
                   "default: those CUDA_VISIBLE_DEVICES lists")
    p.add_argument("--process", type=int, help=argparse.SUPPRESS)  # one of tuning.trials_per_gpu processes
    p.add_argument("--tuning-dir", required=True, help="folder of the study's journal file and per-trial records")
    p.add_argument("--out", required=True, help="summary of this worker (JSON), written when its share is done")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("select-best", help="best trial's hyper-parameters (JSON) and the trials table (CSV)")
    add_config_arguments(p)
    p.add_argument("--dataset", required=True, help="dataset folder the study was run on")
    p.add_argument("--tuning-dir", required=True)
    p.add_argument("--best", required=True, help="output best.json")
    p.add_argument("--table", required=True, help="output trials table (CSV)")
    p.set_defaults(func=cmd_select_best)

    p = sub.add_parser("train", help="fit the final network on train + validation and save the model folder")
    add_config_arguments(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--best", required=True, help="best.json from select-best")
    p.add_argument("--out", required=True, help="model folder (model.keras + bundle.json)")
    p.add_argument("--tensorboard", help="TensorBoard log folder (TensorFlow backend)")
    p.add_argument("--threads", type=int, help="CPU threads of this job (the workflow passes Snakemake's "
                   "{threads}); default: train.threads")
    p.add_argument("--gpus", type=int, help="GPUs granted to this job (the workflow passes its gpu resource); "
                   "default: those CUDA_VISIBLE_DEVICES lists")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics and plots of the final model on the test set")
    add_config_arguments(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--best", required=True, help="best.json (the best trial's training curves)")
    p.add_argument("--trials", help="the sweep's trials table (trials.csv from select-best), for the "
                   "hyper-parameter importances (default: trials.csv beside --best, if there)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_evaluate)


def _dataset(path) -> Path:
    path = Path(path)
    if not (path / "manifest.json").exists():
        raise FileNotFoundError(f"{path} is not a dataset folder (no manifest.json); run the dataset step first")
    return path


def cmd_tune(args) -> int:
    from popdl.device import setup

    start_env = dict(os.environ)
    cfg = config_from_args(args, "tune")
    if args.threads:
        cfg["tuning"]["threads"] = args.threads
    processes = max(1, int(cfg["tuning"].get("trials_per_gpu", 1) or 1))
    job = f"tune worker {args.worker}" + (f" process {args.process}" if args.process is not None else "")
    if processes > 1 and args.process is None:
        # The job's processes each run trials on the GPU; this one only checks the device
        # (without taking GPU memory) and waits for them.
        device = setup(cfg["train"], job=job, gpus=args.gpus, threads=cfg["tuning"]["threads"],
                       processes=processes, check_only=True)
        summary = _tune_processes(args, cfg, processes, dict(start_env, KERAS_BACKEND=device.backend))
    else:
        device = setup(cfg["train"], job=job, gpus=args.gpus, threads=cfg["tuning"]["threads"],
                       processes=processes)
        from popdl.tuning import run_worker

        summary = run_worker(cfg, _dataset(args.dataset), worker=args.worker, tuning_dir=args.tuning_dir,
                             process=args.process or 0)
    summary["device"] = device.to_dict()
    from popdl.io import write_json

    write_json(args.out, summary)
    log.info("tune: %s", json.dumps(summary))
    return 0


def _tune_processes(args, cfg: dict, processes: int, env: dict) -> dict:
    """Run the ``processes`` processes of one tune job (``tuning.trials_per_gpu``),
    each with its share of the job's threads; the summary of all of them."""
    threads = max(1, int(cfg["tuning"]["threads"]) // processes)
    source = ["--settings", args.settings] if args.settings is not None else ["--configfile", str(args.configfile)]
    flags = ["-v"] if args.verbose else ["--quiet"] if args.quiet else []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        procs = []
        for p in range(processes):
            cmd = [sys.executable, "-m", "popdl", *flags, "tune", *source, "--dataset", str(args.dataset),
                   "--worker", str(args.worker), "--process", str(p), "--threads", str(threads),
                   "--tuning-dir", str(args.tuning_dir), "--out", str(Path(tmp) / f"{p}.json")]
            if args.gpus is not None:
                cmd += ["--gpus", str(args.gpus)]
            procs.append(subprocess.Popen(cmd, env=env))
        failed = None
        while failed is None and any(p.poll() is None for p in procs):
            failed = next((i for i, p in enumerate(procs) if p.poll()), None)
            time.sleep(0.5)
        failed = next((i for i, p in enumerate(procs) if p.poll()), failed)
        if failed is not None:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                p.wait()
            raise RuntimeError(f"tune worker {args.worker}: process {failed} of {processes} stopped with exit "
                               f"status {procs[failed].returncode} (its error is in the lines above)")
        parts = [json.loads((Path(tmp) / f"{p}.json").read_text()) for p in range(processes)]
    merged = {"worker": args.worker, "processes": processes, "study": parts[0]["study"],
              "share": sum(p["share"] for p in parts), "per_process": parts,
              "seconds": round(time.perf_counter() - started, 3)}
    for key in ("trials_run_now", "killed_marked_failed", "finished", "failed"):
        merged[key] = sorted(n for p in parts for n in p[key])
    return merged


def cmd_select_best(args) -> int:
    from popdl.tuning import select_best

    cfg = config_from_args(args, "select_best")
    select_best(cfg, _dataset(args.dataset), tuning_dir=args.tuning_dir, best_out=args.best, table_out=args.table)
    return 0


def cmd_train(args) -> int:
    from popdl.io import check_output_dir

    check_output_dir(args.out, kind="model")  # refuse a folder of other files before training (and Keras), not after
    from popdl.stages import settings_hash

    cfg = config_from_args(args, "train")
    config_hash = settings_hash(cfg)  # of the slice as given, before --threads
    if args.threads:
        cfg["train"]["threads"] = args.threads
    from popdl.device import setup

    setup(cfg["train"], job="train", gpus=args.gpus, threads=cfg["train"]["threads"])
    from popdl.training import train_final

    best = json.loads(Path(args.best).read_text())
    train_final(cfg, _dataset(args.dataset), best=best, out=args.out, tensorboard_dir=args.tensorboard,
                config_hash=config_hash)
    return 0


def cmd_evaluate(args) -> int:
    from popdl.device import setup

    # A CPU job (TensorFlow under auto); on a node that exposes a GPU it may use it.
    setup({"backend": "auto", "allow_cpu_fallback": True}, job="evaluate")
    from popdl.evaluate import evaluate
    from popdl.stages import settings_hash

    cfg = config_from_args(args, "evaluate")
    best = json.loads(Path(args.best).read_text())
    trials = Path(args.trials) if args.trials else Path(args.best).with_name("trials.csv")
    if args.trials and not trials.is_file():
        raise FileNotFoundError(f"--trials {trials}: no such file")
    evaluate(_dataset(args.dataset), args.model, best=best, out=args.out, trials=trials if trials.is_file() else None,
             bins=cfg["evaluate"]["calibration_bins"], root_seed=cfg["seed"], config_hash=settings_hash(cfg))
    return 0
