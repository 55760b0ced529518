"""Sub-commands for the networks: tune (one worker), select-best, train, evaluate."""

from __future__ import annotations

import json
import logging
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
    from popdl.io import write_json
    from popdl.tuning import run_worker

    cfg = config_from_args(args, "tune")
    if args.threads:
        cfg["tuning"]["threads"] = args.threads
    summary = run_worker(cfg, _dataset(args.dataset), worker=args.worker, tuning_dir=args.tuning_dir)
    write_json(args.out, summary)
    log.info("tune: %s", json.dumps(summary))
    return 0


def cmd_select_best(args) -> int:
    from popdl.tuning import select_best

    cfg = config_from_args(args, "select_best")
    select_best(cfg, _dataset(args.dataset), tuning_dir=args.tuning_dir, best_out=args.best, table_out=args.table)
    return 0


def cmd_train(args) -> int:
    from popdl.io import check_output_dir

    check_output_dir(args.out, kind="model")  # refuse a folder of other files before training (and Keras), not after
    from popdl.stages import settings_hash
    from popdl.training import train_final

    cfg = config_from_args(args, "train")
    config_hash = settings_hash(cfg)  # of the slice as given, before --threads
    if args.threads:
        cfg["train"]["threads"] = args.threads
    best = json.loads(Path(args.best).read_text())
    train_final(cfg, _dataset(args.dataset), best=best, out=args.out, tensorboard_dir=args.tensorboard,
                config_hash=config_hash)
    return 0


def cmd_evaluate(args) -> int:
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
