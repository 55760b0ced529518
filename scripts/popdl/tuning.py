"""Hyper-parameter sweeps with Optuna, run as parallel workers sharing one study.

The search space lives in the config (``tuning.search_space``): each
hyper-parameter is a fixed value, ``{choices: [...]}``, ``{float: [lo, hi],
log: bool}`` or ``{int: [lo, hi], log: bool}``.  The network type comes from
``network`` (a name, or a list of names to search over).

Workers
    ``tuning.workers`` separate jobs (``tune[worker]`` in the workflow) run
    against one study.  Worker ``i`` owns a fixed share of the
    ``tuning.trials`` finished trials (COMPLETE or PRUNED), tags every trial
    it starts with the user attribute ``worker = i`` and stops once it has its
    share, so the study ends with exactly ``tuning.trials`` finished trials
    whatever the timing.  When ``network`` lists several networks, the
    first trials of the sweep take them in turn, one trial each (worker 0
    enqueues them once), so that no listed network goes untried however few
    trials the sweep has; the other hyper-parameters of those trials, and
    everything of the later ones, are drawn by the sampler.  Each worker's
    TPE sampler is seeded with ``seed + i``; a pruner (median or Hyperband) is fed the validation loss
    every epoch, and early stopping ends a trial that stopped improving.
    With ``tuning.trials_per_gpu`` k > 1, each job runs k processes at once
    on its GPU (``popdl tune`` starts them), process ``j`` of worker ``w``
    taking the part of worker ``w x k + j`` of ``workers x k``: its share,
    its tag and its sampler seed.

Failures and resuming
    A trial that fails (NaN loss, out of memory, any exception) is recorded
    as FAIL with its error in the ``error`` user attribute and the worker
    goes on.  Rerunning a worker resumes the study and runs only its missing
    trials.  A trial left RUNNING by a killed worker is marked FAIL when that
    worker restarts (only one job of a given worker index runs at a time),
    and a RUNNING trial no worker tagged (its worker was killed between
    creating and tagging it) is marked FAIL by the next worker to start once
    it is two minutes old; with an RDB storage, Optuna's heartbeat (``heartbeat_interval``,
    ``grace_period``) also fails the stale trials of dead workers.

Storage
    ``journal`` (default): an Optuna JournalStorage file
    ``results/{run}/tuning/journal.log`` locked with ``JournalFileOpenLock``
    (which works on NFS).  An RDB URL (``postgresql://...``) for workers on
    several nodes.  SQLite is refused: concurrent workers creating the same
    database fail.

Per trial, ``tuning/trials/{number}.json`` holds its training history and
``tuning/trials/{number}.npz`` its validation-set outputs (logits, labels,
parameter quantiles).  No temperature is fitted here: the final model is
another network, and :func:`popdl.training.train_final` fits its own on
validation examples it leaves out (:mod:`popdl.calibration`).
The study name derives from the tuning settings, so a changed search space
starts a new study instead of resuming an old one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from popdl.common import config_hash
from popdl.dataset import Dataset, dataset_identity
from popdl.errors import ConfigError
from popdl.io import atomic_path, save_npz, write_json
from popdl.preprocess import Preprocessor

log = logging.getLogger("popdl.tuning")

__all__ = [
    "HYPER_PARAMETERS",
    "MIN_REGRESSION_EPOCHS",
    "check_config",
    "check_storage",
    "open_storage",
    "study_name",
    "sweep_warnings",
    "worker_shares",
    "suggest",
    "all_hyper_parameters",
    "run_worker",
    "select_best",
    "trials_table",
]

#: Hyper-parameters a search space may set (see the schema for each one's meaning).
HYPER_PARAMETERS = (
    "conv_layers", "filters", "kernel_size", "pooling", "dense_layers", "dense_units", "dropout",
    "batch_norm", "l1", "l2", "activation", "optimizer", "momentum", "learning_rate", "lr_decay",
    "lr_decay_rate", "batch_size", "towers", "stat_scale",
)

#: Keys of the tune slice that do not change what the study computes.
_NOT_IN_STUDY_NAME = ("storage", "gpu", "threads", "heartbeat_interval", "grace_period", "max_failures")
#: Keys of the tune slice's ``train`` section that say where trials run, not what they compute.
_TRAIN_NOT_IN_STUDY_NAME = ("backend", "allow_cpu_fallback")


#: Fewer epochs than this leave the parameters' tower short of its best: its best epochs were 27-70
#: in the default config's sweep, against 12-24 for the scenario's.
MIN_REGRESSION_EPOCHS = 50


def sweep_warnings(config: dict) -> list[str]:
    """One line per setting of a validated config's sweep that measured runs showed too short for
    the parameters (a network whose parameter estimates lose to ABC-RF); empty when the task
    estimates no parameter.  Printed by ``popdl check`` and at the start of a workflow run."""
    if "regress" not in (config.get("task") or []) or "tuning" not in config:
        return []
    tune = config["tuning"]
    fix = ("(leave these keys out: the defaults are the default config's tested sweep; or give "
           "config/overlays/quick_sweep.yaml after your config)")
    out = []
    if tune["max_epochs"] < MIN_REGRESSION_EPOCHS:
        out.append(f"tuning.max_epochs {tune['max_epochs']} stops the sweep's trials before the parameters' tower is "
                   f"trained (its best epoch was 27-70 in the default config's sweep; in a measured run with 12, the "
                   f"schema's former default, the network's R² of T_split was -0.01 against ABC-RF's 0.61) {fix}")
    if tune["pruner"] != "none":
        out.append(f"tuning.pruner {tune['pruner']} stops trials on their first epochs' validation loss, where the "
                   f"parameters' tower starts slow {fix}")
    return out


#: Fewer test (or validation) simulations per scenario than this are warned about.
MIN_SPLIT_PER_SCENARIO = 100


def split_warnings(config: dict) -> list[str]:
    """One line when ``simulations.per_scenario`` leaves fewer than
    :data:`MIN_SPLIT_PER_SCENARIO` test or validation simulations per scenario (the test-set
    metrics, the comparison with ABC and the calibration rest on them).  Printed by ``popdl
    check`` and at the start of a workflow run."""
    sims = config.get("simulations") or {}
    if "per_scenario" not in sims or "split" not in sims:
        return []
    n, fractions = int(sims["per_scenario"]), sims["split"]
    validation = int(round(n * fractions["validation"]))
    test = max(0, n - int(round(n * fractions["train"])) - validation)
    if min(test, validation) >= MIN_SPLIT_PER_SCENARIO:
        return []
    least = math.ceil(MIN_SPLIT_PER_SCENARIO / min(fractions["validation"], fractions["test"]))
    return [f"simulations.per_scenario {n} leaves {test} test and {validation} validation simulations per scenario: "
            f"the test-set metrics, the comparison with ABC and the calibration rest on so few that they say "
            f"little (the report's intervals show how little); {least} draws per scenario give "
            f"{MIN_SPLIT_PER_SCENARIO} of each (the default config has 1,500)"]


def check_config(config: dict) -> None:
    """Check the tuning part of a validated config (its storage): raises
    :class:`ConfigError` (one line)."""
    if "tuning" in config:
        check_storage(config["tuning"]["storage"])


def check_storage(storage: str) -> str:
    """Reject storages that parallel workers cannot share; return ``storage``."""
    s = str(storage).strip()
    if s.lower().startswith("sqlite"):
        raise ConfigError(
            "config key 'tuning.storage': SQLite cannot be shared by parallel tuning workers "
            "(concurrent workers corrupt or fail to create it); use 'journal' or an RDB URL such as postgresql://..."
        )
    if s != "journal" and "://" not in s:
        raise ConfigError(f"config key 'tuning.storage': {s!r} is neither 'journal' nor a database URL")
    return s


def open_storage(storage: str, *, tuning_dir: str | Path, heartbeat_interval: int | None = None,
                 grace_period: int | None = None):
    """The Optuna storage named by ``storage`` (``journal`` or an RDB URL)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    storage = check_storage(storage)
    if storage == "journal":
        path = Path(tuning_dir) / "journal.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    kwargs = {}
    if heartbeat_interval:
        kwargs = {"heartbeat_interval": int(heartbeat_interval), "grace_period": int(grace_period or 2 * heartbeat_interval)}
    return _rdb_storage(storage, **kwargs)


def _rdb_storage(url: str, *, attempts: int = 6, **kwargs):
    """``RDBStorage(url)``, retried when workers starting together race to create
    the schema of a fresh database (measured on PostgreSQL: the second worker
    fails with "duplicate key value ... studydirection"); once one worker has
    created it, the others find it there."""
    import random

    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (IntegrityError, ProgrammingError) as exc:
            if attempt == attempts - 1:
                raise
            log.info("storage schema being created by another worker (%s); retrying", type(exc).__name__)
            time.sleep(0.2 + random.random())


def study_name(settings: dict, dataset: str) -> str:
    """``popdl-{run}-{hash}``: the hash covers what the trials compute, i.e. the
    tuning, task, network and training settings, and the data they train on
    (``dataset``: :func:`popdl.dataset.dataset_identity`). New data therefore
    start a new study; the studies of earlier data stay in the storage."""
    tuning = {k: v for k, v in settings["tuning"].items() if k not in _NOT_IN_STUDY_NAME}
    key = {**{k: v for k, v in settings.items() if k not in ("tuning", "run")}, "tuning": tuning,
           "dataset": dataset}
    if "train" in settings:
        key["train"] = {k: v for k, v in settings["train"].items() if k not in _TRAIN_NOT_IN_STUDY_NAME}
    return f"popdl-{settings.get('run', 'run')}-{config_hash(key)}"


def worker_shares(total: int, workers: int) -> list[int]:
    """How many finished trials each worker owns (they sum to ``total``)."""
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


def _networks(settings: dict) -> list[str]:
    net = settings["network"]
    return list(net) if isinstance(net, list) else [net]


def suggest(trial, settings: dict) -> dict:
    """Draw one point of the search space (``settings['tuning']['search_space']``)."""
    space = settings["tuning"]["search_space"]
    nets = _networks(settings)
    hp = {"network": trial.suggest_categorical("network", nets) if len(nets) > 1 else nets[0]}
    for name, spec in space.items():
        if isinstance(spec, dict):
            if "choices" in spec:
                choices = spec["choices"]
                hp[name] = trial.suggest_categorical(name, choices) if len(choices) > 1 else choices[0]
            elif "float" in spec:
                lo, hi = spec["float"]
                hp[name] = trial.suggest_float(name, float(lo), float(hi), log=bool(spec.get("log", False))) if lo != hi else float(lo)
            elif "int" in spec:
                lo, hi = spec["int"]
                hp[name] = trial.suggest_int(name, int(lo), int(hi), log=bool(spec.get("log", False))) if lo != hi else int(lo)
            else:
                raise ConfigError(f"config key 'tuning.search_space.{name}': give choices, float or int")
        else:
            hp[name] = spec
    return hp


def all_hyper_parameters(settings: dict, sampled: dict) -> dict:
    """A trial's full hyper-parameters: the ``sampled`` ones (Optuna's
    ``trial.params``) plus those the search space fixes."""
    class _Fixed:
        def suggest_categorical(self, name, choices):
            return sampled[name]

        def suggest_float(self, name, lo, hi, log=False):
            return sampled[name]

        def suggest_int(self, name, lo, hi, log=False):
            return sampled[name]

    return suggest(_Fixed(), settings)


# ---------------------------------------------------------------------------
# One trial


class _EpochReporter:
    """Keras callback: report the validation loss to Optuna every epoch, prune."""

    def __new__(cls, trial, monitor):
        import keras

        class Reporter(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.pruned_at = None

            def on_epoch_end(self, epoch, logs=None):
                value = (logs or {}).get(monitor)
                if value is None or not math.isfinite(float(value)):
                    return
                trial.report(float(value), epoch)
                if trial.should_prune():
                    self.pruned_at = epoch
                    self.model.stop_training = True

        return Reporter()


class _ExactValidation:
    """Keras callback: the validation losses of every epoch, computed from one prediction pass
    over the whole validation split and averaged per example (``val_loss``,
    ``val_scenario_loss``, ``val_params_loss``, ``val_scenario_accuracy`` in the logs).

    Keras's own per-output validation losses are means of batch means: with 450
    validation examples in batches of 64, the last batch's 2 examples weigh 1/8
    (measured: 0.267 reported against 0.295 per example for the same weights), which
    moved the towers' best epochs and the per-task choice of trials.  The losses here
    are those of :func:`scenario_loss` and :func:`params_loss` (without the weight
    penalties), the same as the ensemble selection uses."""

    def __new__(cls, inputs, *, labels, true, levels, weight: float, batch_size: int):
        import keras

        from popdl.training import predict_arrays

        class Exact(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs is None:
                    return
                out = predict_arrays(self.model, inputs, batch_size=batch_size)
                total = 0.0
                if "scenario" in out:
                    logs["val_scenario_loss"] = scenario_loss(out["scenario"], labels)
                    logs["val_scenario_accuracy"] = float((out["scenario"].argmax(1) == labels).mean())
                    total += logs["val_scenario_loss"]
                if "params" in out:
                    logs["val_params_loss"] = params_loss(out["params"], true, levels)
                    total += weight * logs["val_params_loss"]
                logs["val_loss"] = total

        return Exact()


class _TimeBudget:
    """Keras callback: stop a trial at the end of the first epoch that ends after
    ``seconds`` of training (None: no limit); ``stopped_at`` is that epoch (from 0)."""

    def __new__(cls, seconds):
        import keras

        class Budget(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.stopped_at = None

            def on_train_begin(self, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                if seconds and time.perf_counter() - self.started > float(seconds) and not self.model.stop_training:
                    self.stopped_at = epoch
                    self.model.stop_training = True

        return Budget()


class TrialRunner:
    """Builds, trains and scores one network on the train / validation splits."""

    def __init__(self, settings: dict, dataset, *, tuning_dir: str | Path):
        self.settings, self.dataset = settings, dataset
        self.tuning = settings["tuning"]
        self.tasks = tuple(settings["task"])
        self.trials_dir = Path(tuning_dir) / "trials"
        self.trials_dir.mkdir(parents=True, exist_ok=True)
        self.prep = Preprocessor.fit(dataset, ("train",))
        self.val_labels = dataset.load("validation", ("labels",))["labels"]
        self.val_params = self.prep.params(dataset.load("validation", ("params",))["params"]) \
            if "regress" in self.tasks else None

    def __call__(self, trial) -> float:
        import keras

        from popdl.models import get_network, log_scaled_statistics
        from popdl.training import (TowerCheckpoint, compile_model, dataset_shapes, history_dict, loader_threads,
                                    make_data, predict_arrays, separate_towers, set_precision)

        train_cfg = self.settings["train"]
        hp = suggest(trial, self.settings)
        net = get_network(hp["network"])
        keras.backend.clear_session()
        keras.utils.set_random_seed(int(self.settings["seed"]) + trial.number)
        epochs = int(self.tuning["max_epochs"])
        common = dict(inputs=net.inputs, prep=self.prep, tasks=self.tasks, streaming=train_cfg["streaming"],
                      in_memory_max_mb=train_cfg["in_memory_max_mb"],
                      loader_threads=loader_threads(self.tuning.get("threads")))
        train, steps = make_data(self.dataset, "train", batch_size=hp["batch_size"], seed=trial.number,
                                 augment=bool(train_cfg.get("augment", False)), **common)
        val, _ = make_data(self.dataset, "validation", batch_size=max(256, int(hp["batch_size"])), shuffle=False,
                           **common)
        set_precision(bool(train_cfg.get("mixed_precision", False)))
        try:
            model = net.build(dataset_shapes(self.dataset, self.prep), hp=hp, n_classes=len(self.dataset.scenarios),
                              n_params=len(self.prep.param_names), quantiles=tuple(train_cfg["quantiles"]),
                              tasks=self.tasks)
        finally:
            set_precision(False)
        # The statistics this trial's network put on a log scale (stat_scale: log and skewed statistics).
        trial.set_user_attr("log_scaled_statistics", log_scaled_statistics(model))
        compile_model(model, hp, steps_per_epoch=steps, epochs=epochs, quantiles=train_cfg["quantiles"],
                      tasks=self.tasks, regression_weight=train_cfg["regression_weight"])
        reporter = _EpochReporter(trial, "val_loss")
        val_inputs = val["x"] if "y" in val else _inputs_only(val["x"])
        exact = _ExactValidation(val_inputs, labels=self.val_labels, true=self.val_params,
                                 levels=np.asarray(train_cfg["quantiles"], dtype=np.float64),
                                 weight=float(train_cfg["regression_weight"]), batch_size=max(256, int(hp["batch_size"])))
        # The validation losses first: every callback after it reads them.
        callbacks = [exact, keras.callbacks.TerminateOnNaN(), reporter]
        # Separate towers are each kept at, and stopped by, their own validation loss.
        towers = separate_towers(model)
        checkpoint = TowerCheckpoint(towers, patience=int(self.tuning["patience"])) if towers else None
        if checkpoint is not None:
            callbacks.append(checkpoint)
        elif self.tuning["patience"]:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(self.tuning["patience"]),
                                                           restore_best_weights=True))
        budget = _TimeBudget(self.tuning.get("trial_seconds"))
        callbacks.append(budget)
        started = time.perf_counter()
        history = history_dict(model.fit(**train, epochs=epochs, verbose=0,
                                         callbacks=callbacks))
        seconds = time.perf_counter() - started
        losses = history.get("loss", [])
        record = {"number": trial.number, "params": hp, "history": history, "seconds": seconds}
        write_json(self.trials_dir / f"{trial.number}.json", record)
        if not losses or any(not math.isfinite(v) for v in losses + history.get("val_loss", [])):
            raise FloatingPointError(f"loss became NaN or infinite at epoch {len(losses)}")
        val_loss = history["val_loss"]
        best_epoch = int(np.argmin(val_loss)) + 1
        value = float(min(val_loss))
        accuracy_epoch = best_epoch
        if checkpoint is not None:
            # Each tower at its own best epoch: the sum of their weighted best losses.
            weights = {"classify": 1.0, "regress": float(train_cfg["regression_weight"])}
            value = float(sum(weights[t] * loss for t, (loss, _) in checkpoint.best.items()))
            trial.set_user_attr("best_epochs", {t: int(e) for t, (_, e) in checkpoint.best.items()})
            trial.set_user_attr("best_losses", {t: float(loss) for t, (loss, _) in checkpoint.best.items()})
            best_epoch = max(int(e) for _, e in checkpoint.best.values())
            accuracy_epoch = checkpoint.best.get("classify", (0, best_epoch))[1]
        trial.set_user_attr("best_epoch", best_epoch)
        trial.set_user_attr("epochs_run", len(val_loss))
        trial.set_user_attr("seconds", round(seconds, 3))
        if budget.stopped_at is not None:
            trial.set_user_attr("stopped_by_trial_seconds", budget.stopped_at + 1)
        if "val_scenario_accuracy" in history:
            trial.set_user_attr("val_accuracy", float(history["val_scenario_accuracy"][accuracy_epoch - 1]))
        if reporter.pruned_at is not None:
            import optuna

            raise optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at + 1}")
        out = predict_arrays(model, val_inputs)
        save_npz(self.trials_dir / f"{trial.number}.npz", labels=self.val_labels,
                 **{k: v.astype(np.float32) for k, v in out.items()})
        return value


def _inputs_only(seq):
    from popdl.training import ShardSequence

    return ShardSequence(seq.dataset, ["validation"], batch_size=seq.batch_size, inputs=seq.inputs,
                         prep=seq.prep, tasks=seq.tasks, shuffle=False, targets=False)


# ---------------------------------------------------------------------------
# Worker loop


def _sampler(settings: dict, worker: int):
    import optuna

    seed = int(settings["tuning"].get("seed") if settings["tuning"].get("seed") is not None else settings["seed"])
    return optuna.samplers.TPESampler(seed=seed + int(worker),
                                      n_startup_trials=int(settings["tuning"]["startup_trials"]))


def _pruner(settings: dict):
    import optuna

    name = settings["tuning"]["pruner"]
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=int(settings["tuning"]["max_epochs"]))
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"config key 'tuning.pruner': {name!r} is not one of median, hyperband, none")


def load_study(settings: dict, dataset_dir: str | Path, *, tuning_dir: str | Path, worker: int = 0,
               create: bool = False):
    """The study of ``settings`` on the dataset in ``dataset_dir`` (created if ``create``)."""
    import optuna

    t = settings["tuning"]
    storage = open_storage(t["storage"], tuning_dir=tuning_dir, heartbeat_interval=t.get("heartbeat_interval"),
                           grace_period=t.get("grace_period"))
    name = study_name(settings, dataset_identity(dataset_dir))
    if create:
        return optuna.create_study(study_name=name, storage=storage, direction="minimize",
                                   sampler=_sampler(settings, worker), pruner=_pruner(settings), load_if_exists=True)
    return optuna.load_study(study_name=name, storage=storage, sampler=_sampler(settings, worker),
                             pruner=_pruner(settings))


def enqueue_networks(study, settings: dict) -> list[str]:
    """Enqueue one trial per network listed in ``network`` (at most
    ``tuning.trials``), in the listed order, unless the study already has it;
    return the networks enqueued now.  Called by worker 0 only, so that
    workers starting together do not enqueue twice; a resumed worker 0 finds
    its earlier trials (Optuna keeps their ``fixed_params``) and adds none,
    and a sweep whose trials have all finished gets none.
    """
    from optuna.trial import TrialState

    nets = _networks(settings)
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    if len(nets) < 2 or finished >= int(settings["tuning"]["trials"]):  # nothing to add to a finished sweep
        return []
    queued = {t.system_attrs.get("fixed_params", {}).get("network") for t in trials}
    added = [net for net in nets[:int(settings["tuning"]["trials"])] if net not in queued]
    for net in added:
        study.enqueue_trial({"network": net})
    if added:
        log.info("first trials enqueued, one per network: %s", ", ".join(added))
    return added


def _mine(study, worker: int, states=None):
    return [t for t in study.get_trials(deepcopy=False, states=states) if t.user_attrs.get("worker") == worker]


#: A RUNNING trial without a ``worker`` tag older than this (seconds) was left by a
#: worker killed between creating the trial and tagging it (milliseconds apart).
UNTAGGED_GRACE_S = 120.0


def fail_stale_trials(study, worker: int, *, untagged_grace_s: float = UNTAGGED_GRACE_S) -> list[int]:
    """Mark FAIL the RUNNING trials of ``worker`` (left by a killed run of it),
    and RUNNING trials that no worker tagged within ``untagged_grace_s``
    seconds of their start (left by a worker killed before it could tag them).
    """
    from datetime import datetime

    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    now = datetime.now()
    stale = [(t, "worker killed during the trial") for t in running if t.user_attrs.get("worker") == worker]
    stale += [(t, "worker killed before tagging the trial") for t in running
              if "worker" not in t.user_attrs and t.datetime_start is not None
              and (now - t.datetime_start).total_seconds() > untagged_grace_s]
    numbers = []
    for t, reason in stale:
        study._storage.set_trial_system_attr(t._trial_id, "fail_reason", reason)
        if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
            numbers.append(t.number)
    if numbers:
        log.warning("worker %d: trials %s were left running by a killed worker; marked failed", worker, numbers)
    return numbers


def worker_processes(settings: dict) -> int:
    """Processes of each tune job (``tuning.trials_per_gpu``): trials that run at once."""
    return max(1, int(settings["tuning"].get("trials_per_gpu", 1) or 1))


def run_worker(settings: dict, dataset_dir: str | Path, *, worker: int, tuning_dir: str | Path,
               process: int = 0) -> dict:
    """Run the share of the study's trials of worker ``worker``'s process ``process``
    (0 .. ``tuning.trials_per_gpu`` - 1); return a summary.

    Each of the ``tuning.workers`` x ``tuning.trials_per_gpu`` processes of a
    sweep owns a share of the trials, tags them with its index ``worker x
    trials_per_gpu + process`` (the user attribute ``worker``) and seeds its
    sampler with it.  Blocks until the process owns its share of finished
    trials; raises :class:`RuntimeError` after ``tuning.max_failures`` failed
    trials in a row.
    """
    import optuna
    from optuna.trial import TrialState

    from popdl.training import configure_backend

    t = settings["tuning"]
    if not 0 <= worker < int(t["workers"]):
        raise ValueError(f"worker {worker} is not in 0..{int(t['workers']) - 1} (tuning.workers)")
    per_job = worker_processes(settings)
    if not 0 <= process < per_job:
        raise ValueError(f"process {process} is not in 0..{per_job - 1} (tuning.trials_per_gpu)")
    index = worker * per_job + process  # this process's tag and share among all of the sweep's processes
    configure_backend(t.get("threads"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dataset = Dataset(dataset_dir)
    study = load_study(settings, dataset_dir, tuning_dir=tuning_dir, worker=index, create=True)
    killed = fail_stale_trials(study, index)
    if index == 0:
        enqueue_networks(study, settings)
    if t.get("heartbeat_interval") and isinstance(study._storage, optuna.storages.RDBStorage):
        optuna.storages.fail_stale_trials(study)
    share = worker_shares(int(t["trials"]), int(t["workers"]) * per_job)[index]
    runner = TrialRunner(settings, dataset, tuning_dir=tuning_dir)
    name = f"worker {worker}" + (f" process {process}" if per_job > 1 else "")

    def objective(trial):
        trial.set_user_attr("worker", index)
        try:
            return runner(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise

    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    in_a_row = 0
    started = time.perf_counter()
    ran = []
    while len(_mine(study, index, finished)) < share:
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
        last = max(_mine(study, index), key=lambda tr: tr.number)
        ran.append(last.number)
        log.info("%s: trial %d %s network=%s value=%s%s", name, last.number, last.state.name,
                 last.params.get("network", _networks(settings)[0]),
                 f"{last.value:.5g}" if last.value is not None else "-",
                 f" ({last.user_attrs['error']})" if "error" in last.user_attrs else "")
        in_a_row = in_a_row + 1 if last.state == TrialState.FAIL else 0
        if in_a_row >= int(t["max_failures"]):
            raise RuntimeError(f"{name}: {in_a_row} trials failed in a row; last error: "
                               f"{last.user_attrs.get('error', 'unknown')}")
    mine = _mine(study, index)
    return {
        "worker": worker,
        "process": process,
        "study": study.study_name,
        "share": share,
        "trials_run_now": ran,
        "killed_marked_failed": killed,
        "finished": sorted(tr.number for tr in mine if tr.state in finished),
        "failed": sorted(tr.number for tr in mine if tr.state == TrialState.FAIL),
        "seconds": round(time.perf_counter() - started, 3),
    }


# ---------------------------------------------------------------------------
# After the sweep


def trials_table(study):
    """All trials as a DataFrame: number, state, value, hyper-parameters, user attributes."""
    return study.trials_dataframe(attrs=("number", "state", "value", "datetime_start", "datetime_complete",
                                         "duration", "params", "user_attrs", "system_attrs"))


def best_by_task(settings: dict, complete: list) -> dict:
    """Per task, the completed trial of separate towers whose tower for that task reached
    the lowest validation loss: ``{task: {number, loss, best_epoch, hyper_parameters,
    ranked}}``, ``ranked`` listing the :data:`RANKED_TRIALS` best such trials for the task
    in the same form, best first (empty unless both tasks have one).  The final model may then take its scenario
    tower from one trial and its parameter tower from another (:func:`popdl.training.train_final`):
    a network that separates the scenarios best need not estimate the parameters best."""
    out = {}
    for task in ("classify", "regress"):
        scored = [t for t in complete if task in (t.user_attrs.get("best_losses") or {})]
        if not scored:
            return {}
        ranked = sorted(scored, key=lambda tr: (tr.user_attrs["best_losses"][task], tr.number))
        entries = [{"number": t.number, "loss": float(t.user_attrs["best_losses"][task]),
                    "best_epoch": int(t.user_attrs["best_epochs"][task]),
                    "hyper_parameters": all_hyper_parameters(settings, t.params)} for t in ranked[:RANKED_TRIALS]]
        out[task] = {**entries[0], "ranked": entries}
    return out


def _ensemble_paths(result: dict, settings: dict, dataset_dir, trials_dir: Path) -> None:
    """Add the greedy ensemble path (:func:`greedy_ensemble`) to ``result``'s ranking
    (``ensemble``), and to each task's (``by_task[task]["ensemble"]``), from the trials'
    validation outputs (``trials/{number}.npz``)."""
    dataset = Dataset(dataset_dir)
    true = Preprocessor.fit(dataset, ("train",)).params(dataset.load("validation", ("params",))["params"]) \
        if "regress" in settings["task"] else None
    levels = np.asarray(settings["train"]["quantiles"], dtype=np.float64)
    weight = float(settings["train"]["regression_weight"])
    losses = {"classify": lambda out: scenario_loss(out["scenario"], out["labels"]),
              "regress": lambda out: params_loss(out["params"], true, levels)}
    tasks = [t for t in ("classify", "regress") if t in settings["task"]]
    result["ensemble"] = greedy_ensemble(result["ranked"], trials_dir,
                                         lambda out: sum((1.0 if t == "classify" else weight) * losses[t](out)
                                                         for t in tasks))
    for task, choice in result["by_task"].items():
        choice["ensemble"] = greedy_ensemble(choice["ranked"], trials_dir, losses[task])


def scenario_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits)``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)].mean())


def params_loss(quantiles: np.ndarray, true: np.ndarray, levels: np.ndarray) -> float:
    """The training loss of the parameters (:func:`popdl.models.pinball_loss`) in numpy: per
    example, the mean pinball loss over its scenario's parameters (NaN elsewhere), then the mean."""
    q = np.asarray(quantiles, dtype=np.float64)
    mask = np.isfinite(true)
    err = np.where(mask, true, 0.0)[..., None] - q
    loss = np.maximum(levels * err, (levels - 1.0) * err).mean(axis=-1)
    return float(((loss * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)).mean())


def greedy_ensemble(ranked: list[dict], trials_dir: Path, loss) -> list[dict]:
    """Ensemble selection (Caruana et al. 2004) on the validation split, without replacement:
    from the best trial of ``ranked``, add at each step the trial whose outputs, averaged
    with those chosen so far (logits and quantiles, as :func:`popdl.models.ensemble`
    averages), lower ``loss`` the most; stop when none lowers it.  Returns the chosen
    entries of ``ranked`` in order, each with ``ensemble_loss``: the loss of the average up
    to it.  Only the best trial when a trial's outputs are missing."""
    outputs = {}
    for entry in ranked:
        path = Path(trials_dir) / f"{entry['number']}.npz"
        if not path.exists():
            return [{**ranked[0], "ensemble_loss": None}] if ranked else []
        with np.load(path) as z:
            outputs[entry["number"]] = {k: z[k] for k in z.files}

    def averaged(numbers):
        first = outputs[numbers[0]]
        return {k: (first[k] if k == "labels" else np.mean([outputs[n][k] for n in numbers], axis=0)) for k in first}

    chosen = [ranked[0]["number"]]
    path = [{**ranked[0], "ensemble_loss": loss(averaged(chosen))}]
    rest = [e for e in ranked[1:]]
    while rest:
        scored = [(loss(averaged(chosen + [e["number"]])), i) for i, e in enumerate(rest)]
        best_loss, i = min(scored)
        if not best_loss < path[-1]["ensemble_loss"]:
            break
        entry = rest.pop(i)
        chosen.append(entry["number"])
        path.append({**entry, "ensemble_loss": best_loss})
    return path


#: How many of the best trials ``best.json`` lists (per task and overall), best first:
#: the final ensemble may draw its members from several of them (``train.ensemble_trials``).
RANKED_TRIALS = 8


def ranked_trials(settings: dict, complete: list) -> list[dict]:
    """The :data:`RANKED_TRIALS` completed trials of lowest validation loss, best first:
    ``[{number, value, best_epoch, best_epochs, hyper_parameters}]``."""
    ranked = sorted(complete, key=lambda t: (t.value, t.number))[:RANKED_TRIALS]
    return [{"number": t.number, "value": float(t.value),
             "best_epoch": int(t.user_attrs.get("best_epoch", settings["tuning"]["max_epochs"])),
             "best_epochs": dict(t.user_attrs.get("best_epochs") or {}),
             "hyper_parameters": all_hyper_parameters(settings, t.params)} for t in ranked]


def select_best(settings: dict, dataset_dir: str | Path, *, tuning_dir: str | Path, best_out: str | Path,
                table_out: str | Path) -> dict:
    """Write the best trial of the study on ``dataset_dir`` (``best.json``, with the best
    trial per task, :func:`best_by_task`) and the whole trials table (CSV)."""
    from optuna.trial import TrialState

    study = load_study(settings, dataset_dir, tuning_dir=tuning_dir)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {study.study_name} has no completed trial "
                           f"({sum(t.state == TrialState.FAIL for t in trials)} failed, "
                           f"{sum(t.state == TrialState.PRUNED for t in trials)} pruned)")
    best = min(complete, key=lambda t: t.value)
    trials_dir = Path(tuning_dir) / "trials"
    history = {}
    record = trials_dir / f"{best.number}.json"
    if record.exists():
        history = json.loads(record.read_text())["history"]
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    result = {
        "study": study.study_name,
        "number": best.number,
        "value": best.value,
        "objective": "validation loss (minimised)",
        "hyper_parameters": all_hyper_parameters(settings, best.params),
        "best_epoch": int(best.user_attrs.get("best_epoch", settings["tuning"]["max_epochs"])),
        "best_epochs": dict(best.user_attrs.get("best_epochs") or {}),
        "user_attrs": dict(best.user_attrs),
        "history": history,
        "trial_counts": counts,
        "by_task": best_by_task(settings, complete),
        "ranked": ranked_trials(settings, complete),
    }
    _ensemble_paths(result, settings, dataset_dir, trials_dir)
    frame = trials_table(study)
    with atomic_path(table_out, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)
    write_json(best_out, result)
    log.info("select_best: trial %d, validation loss %.4f, %s", best.number, best.value, counts)
    return result
