"""Feeding a dataset folder to a network, compiling it and fitting it.

Two ways to feed the same batches:

* :class:`ShardSequence` (a :class:`keras.utils.PyDataset`) streams the
  shards of one or more splits from disk: each shard is memory-mapped,
  batches never cross a shard, and the shard order and the order within each
  shard are reshuffled every epoch (seeded).  Memory is bounded by a batch
  plus the operating system's page cache, not by the number of simulations.
* :func:`load_arrays` loads whole splits into memory (small data sets,
  evaluation, tests).

:func:`make_data` picks one (``streaming: auto`` streams when a split
exceeds ``in_memory_max_mb``).

:class:`~popdl.preprocess.Preprocessor` (fitted on the training examples,
stored with the model) standardises the statistics and parameters.

Targets: ``scenario`` (int label) and ``params`` (standardised, NaN where
the scenario lacks the parameter; the loss is masked there).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from popdl.dataset import Dataset
from popdl.io import provenance
from popdl.model_io import save_bundle
from popdl.preprocess import Preprocessor
from popdl.stages import settings_hash

log = logging.getLogger("popdl.training")

__all__ = [
    "ShardSequence",
    "load_arrays",
    "make_data",
    "configure_backend",
    "set_precision",
    "make_optimizer",
    "compile_model",
    "history_dict",
]

INPUT_ARRAYS = {"image": "images", "distances": "distances", "stats": "stats"}


def configure_backend(threads: int | None = None) -> str:
    """Limit the backend's CPU threads (``None``: leave the default) and
    return the backend's name.  Call before any model is built.

    Which backend and which device a tune or train job uses is chosen before
    Keras is imported, by :func:`popdl.device.setup` (the command line does
    that); this only applies the thread limit in the process as it is.
    """
    from popdl.device import limit_threads, thread_env

    thread_env(os.environ, threads)
    import keras

    backend = keras.backend.backend()
    limit_threads(backend, threads)
    log.debug("backend %s, threads %s", backend, threads or "default")
    return backend


def set_precision(mixed: bool) -> str:
    """Set Keras's global dtype policy for the models built next and return its
    name: ``mixed_bfloat16`` (bf16 computations, float32 weights;
    ``train.mixed_precision``) or ``float32``.  The networks' outputs stay
    float32 either way."""
    import keras

    name = "mixed_bfloat16" if mixed else "float32"
    keras.config.set_dtype_policy(name)
    return name


def _batch(arrays: dict, rows, *, inputs, prep: Preprocessor, tasks) -> tuple[dict, dict]:
    x = {}
    for name in inputs:
        a = arrays[INPUT_ARRAYS[name]][rows]
        x[name] = prep.stats(a) if name == "stats" else np.asarray(a)
    y = {}
    if "classify" in tasks:
        y["scenario"] = np.asarray(arrays["labels"][rows], dtype=np.int32)
    if "regress" in tasks:
        y["params"] = prep.params(arrays["params"][rows])
    return x, y


def _needed(inputs, tasks) -> tuple[str, ...]:
    names = [INPUT_ARRAYS[i] for i in inputs]
    if "classify" in tasks:
        names.append("labels")
    if "regress" in tasks:
        names.append("params")
    return tuple(names)


def _pydataset_base():
    import keras

    return keras.utils.PyDataset


class ShardSequence(_pydataset_base()):
    """Batches streamed from the memory-mapped shards of ``splits``.

    ``inputs``: the network's inputs; ``tasks``: which targets to yield.
    With ``shuffle``, every epoch visits the shards in a new order and each
    shard's examples in a new order (seeded by ``seed`` and the epoch).
    ``workers`` > 1 threads read batches ahead (at most 8 batches in memory);
    on few cores the default, 1, is faster (no contention with the training
    threads for the interpreter lock).  ``keep`` maps a split to a boolean
    mask of the examples used (default all).  With ``augment``, the image rows
    of every example are permuted within each population, anew each epoch
    (:func:`permute_haplotypes`; the same for the same ``seed``, epoch and batch).
    """

    def __init__(self, dataset: Dataset, splits, *, batch_size: int, inputs, prep: Preprocessor,
                 tasks=("classify", "regress"), shuffle: bool = True, seed: int = 0, targets: bool = True,
                 workers: int = 1, keep: dict | None = None, augment: bool = False):
        # workers > 1: batches are read by background threads while the model trains.
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.inputs, self.prep, self.tasks = tuple(inputs), prep, tuple(tasks)
        self.shuffle, self.seed, self.targets = shuffle, seed, targets
        self.groups = haplotype_groups(dataset) if augment and "image" in self.inputs else None
        self.arrays = _needed(self.inputs, self.tasks if targets else ())
        self.shards, self.rows = [], []  # rows: the shard's examples used (None: all)
        for split in ([splits] if isinstance(splits, str) else splits):
            mask = None if keep is None or split not in keep else np.asarray(keep[split], dtype=bool)
            offset = 0
            for shard in dataset.manifest["splits"][split]["shards"]:
                n = int(shard["n"])
                self.shards.append((dataset.folder / shard["path"], n))
                self.rows.append(None if mask is None else np.flatnonzero(mask[offset : offset + n]))
                offset += n
        largest = max((n for _, n in self.shards), default=0)
        if largest and self.batch_size > largest:
            log.warning("batch size %d exceeds the %d examples of the largest shard: streamed batches hold "
                        "at most one shard (raise simulations.shard_size, or train in memory)",
                        self.batch_size, largest)
        self._open: dict[int, dict] = {}
        self.epoch = 0
        self._plan()

    def _plan(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.shards)) if self.shuffle else np.arange(len(self.shards))
        self.batches = []
        for s in order:
            rows = self.rows[s]
            n = self.shards[s][1] if rows is None else rows.size
            perm = rng.permutation(n) if self.shuffle else np.arange(n)
            if rows is not None:
                perm = rows[perm]
            for start in range(0, n, self.batch_size):
                self.batches.append((int(s), np.sort(perm[start : start + self.batch_size])))

    def _arrays(self, s: int) -> dict:
        if s not in self._open:
            folder = self.shards[s][0]
            self._open[s] = {a: np.load(folder / f"{a}.npy", mmap_mode="r") for a in self.arrays}
        return self._open[s]

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        s, rows = self.batches[i]
        x, y = _batch(self._arrays(s), rows, inputs=self.inputs, prep=self.prep,
                      tasks=self.tasks if self.targets else ())
        if self.groups is not None:
            x["image"] = permute_haplotypes(x["image"], self.groups, seed=self.seed, epoch=self.epoch, batch=i)
        return (x, y) if self.targets else (x,)

    def on_epoch_end(self):
        self.epoch += 1
        if self.shuffle:
            self._plan()


def haplotype_groups(dataset: Dataset) -> list[np.ndarray]:
    """Image rows of each population of ``dataset`` (its manifest's ``populations``)."""
    populations = np.asarray(dataset.manifest.get("populations") or [], dtype=str)
    return [np.flatnonzero(populations == p) for p in dict.fromkeys(populations.tolist())]


def permute_haplotypes(images: np.ndarray, groups, *, seed: int, epoch: int, batch: int) -> np.ndarray:
    """``images`` (n, haplotypes, snps) with each example's rows shuffled within each
    population (``groups``: the rows of each), by the augmentation stream of
    ``seed``, ``epoch`` and ``batch`` (:func:`popdl.seeds.augment`).  A haplotype
    never leaves its population, so the labels stay true."""
    from popdl import seeds

    images = np.array(images, copy=True)
    rng = seeds.augment(seed, epoch, batch)
    n = images.shape[0]
    for rows in groups:
        order = np.argsort(rng.random((n, rows.size)), axis=1)
        images[:, rows] = np.take_along_axis(images[:, rows], order[:, :, None], axis=1)
    return images


def load_arrays(dataset: Dataset, splits, *, inputs, prep: Preprocessor, tasks=("classify", "regress"),
                keep: dict | None = None):
    """Whole splits in memory as ``(x, y)`` dicts of arrays; ``keep`` maps a split to a
    boolean mask over its examples (in shard order): only those are loaded."""
    splits = [splits] if isinstance(splits, str) else list(splits)
    needed = _needed(inputs, tasks) + ("labels", "params")
    parts = [dataset.load(s, tuple(dict.fromkeys(needed))) for s in splits]
    parts = [p if keep is None or s not in keep else {a: v[np.asarray(keep[s], dtype=bool)] for a, v in p.items()}
             for s, p in zip(splits, parts)]
    arrays = {a: np.concatenate([p[a] for p in parts]) for a in parts[0]}
    return _batch(arrays, slice(None), inputs=inputs, prep=prep, tasks=tasks)


def split_megabytes(dataset: Dataset, splits) -> float:
    m = dataset.manifest
    h, s = m["image_shape"]
    per = h * s + 4 * s + 4 * len(m["stat_names"]) + 8 * (1 + len(m["param_names"]))
    return sum(dataset.size(x) for x in ([splits] if isinstance(splits, str) else splits)) * per / 2**20


def make_data(dataset: Dataset, splits, *, streaming, in_memory_max_mb: float, batch_size: int, inputs,
              prep: Preprocessor, tasks, shuffle: bool = True, seed: int = 0, loader_threads: int = 1,
              keep: dict | None = None, augment: bool = False):
    """``(fit_kwargs, steps_per_epoch)`` for :meth:`keras.Model.fit`: a :class:`ShardSequence`
    (read ahead by ``loader_threads`` threads; 1 reads in the training thread),
    or in-memory arrays (``streaming`` true | false | "auto").  ``keep``: split ->
    boolean mask of the examples used (default all).  ``augment`` (haplotypes
    permuted within populations every epoch) always streams: the sequence
    permutes each batch as it reads it."""
    augment = bool(augment) and "image" in inputs
    if streaming == "auto":
        streaming = split_megabytes(dataset, splits) > in_memory_max_mb
    if streaming or augment:
        seq = ShardSequence(dataset, splits, batch_size=batch_size, inputs=inputs, prep=prep, tasks=tasks,
                            shuffle=shuffle, seed=seed, workers=loader_threads, keep=keep, augment=augment)
        return {"x": seq}, len(seq)
    x, y = load_arrays(dataset, splits, inputs=inputs, prep=prep, tasks=tasks, keep=keep)
    n = len(next(iter(y.values())))
    return {"x": x, "y": y, "batch_size": int(batch_size), "shuffle": shuffle}, -(-n // int(batch_size))


def make_optimizer(hp: dict, *, steps_per_epoch: int, epochs: int):
    """Optimiser with the learning-rate schedule of ``hp``.

    ``lr_decay``: none; linear (from ``learning_rate`` to ``learning_rate *
    lr_decay_rate`` over ``epochs``); exponential (same end point, geometric).
    """
    import keras

    lr = float(hp["learning_rate"])
    decay = hp.get("lr_decay", "none") or "none"
    rate = float(hp.get("lr_decay_rate", 0.5))
    total = max(1, int(steps_per_epoch) * int(epochs))
    if decay == "linear":
        lr = keras.optimizers.schedules.PolynomialDecay(lr, decay_steps=total, end_learning_rate=lr * rate, power=1.0)
    elif decay == "exponential":
        lr = keras.optimizers.schedules.ExponentialDecay(lr, decay_steps=total, decay_rate=rate)
    elif decay != "none":
        raise ValueError(f"unknown lr_decay {decay!r} (valid: none, linear, exponential)")
    name = hp.get("optimizer", "adam")
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    if name in ("sgd", "sgd_momentum"):
        return keras.optimizers.SGD(learning_rate=lr, momentum=float(hp.get("momentum", 0.9)))
    raise ValueError(f"unknown optimizer {name!r} (valid: adam, rmsprop, sgd)")


def compile_model(model, hp: dict, *, steps_per_epoch: int, epochs: int, quantiles, tasks,
                  regression_weight: float = 1.0):
    """Compile ``model`` for its outputs: cross-entropy on the scenario logits,
    masked pinball loss on the parameter quantiles."""
    import keras

    from popdl.models import PinballLoss

    loss, weights, metrics = {}, {}, {}
    if "scenario" in model.output_names:
        loss["scenario"] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        weights["scenario"] = 1.0
        metrics["scenario"] = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if "params" in model.output_names:
        loss["params"] = PinballLoss(quantiles)
        weights["params"] = float(regression_weight)
    model.compile(optimizer=make_optimizer(hp, steps_per_epoch=steps_per_epoch, epochs=epochs), loss=loss,
                  loss_weights=weights, metrics=metrics or None)
    return model


def history_dict(history) -> dict[str, list[float]]:
    """``keras.callbacks.History`` -> plain lists of floats (JSON-ready)."""
    return {k: [float(v) for v in vals] for k, vals in (history.history if history else {}).items()}


def predict_arrays(model, data, *, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Raw outputs (``scenario`` logits, ``params`` standardised quantiles) of ``model``."""
    out = model.predict(data, batch_size=batch_size, verbose=0)
    if not isinstance(out, dict):
        names = model.output_names
        out = dict(zip(names, out if isinstance(out, (list, tuple)) else [out]))
    return {k: np.asarray(v) for k, v in out.items()}


def dataset_shapes(dataset: Dataset, prep: Preprocessor | None = None) -> dict[str, tuple]:
    """Input shapes (without the batch axis), ``populations`` (the population of each
    image row) and, given ``prep``, ``stat_log`` (the constants of the log scale of the
    statistics, for networks with ``stat_scale: log``)."""
    m = dataset.manifest
    h, s = m["image_shape"]
    shapes = {"image": (h, s), "distances": (s,), "stats": (len(m["stat_names"]),),
              "populations": tuple(m.get("populations") or ())}
    stat_log = prep.stat_log() if prep is not None else None
    if stat_log:
        shapes["stat_log"] = stat_log
    return shapes


#: Per task of separate towers: the layers that only it uses, and the validation loss that judges it.
TOWER_LAYERS = {"classify": ("classify_tower", "scenario"), "regress": ("regress_tower", "params_flat")}
TOWER_LOSS = {"classify": "val_scenario_loss", "regress": "val_params_loss"}


def separate_towers(model) -> tuple[str, ...]:
    """The tasks whose towers ``model`` holds as separate sub-models (none: a shared body)."""
    names = {layer.name for layer in model.layers}
    return tuple(t for t, layer_names in TOWER_LAYERS.items() if set(layer_names) <= names) \
        if {"classify_tower", "regress_tower"} <= names else ()


def _callback_base():
    import keras

    return keras.callbacks.Callback


def _tower_weights(model, task: str) -> list:
    return [model.get_layer(name).get_weights() for name in TOWER_LAYERS[task]]


def _set_tower_weights(model, task: str, weights: list) -> None:
    for name, w in zip(TOWER_LAYERS[task], weights):
        model.get_layer(name).set_weights(w)


class TowerCheckpoint(_callback_base()):
    """Separate towers, each judged by its own validation loss: every tower (with its
    output layer) ends with the weights of the epoch where that loss was lowest, and
    training stops once neither has improved for ``patience`` epochs (0: never).

    After training, ``best`` maps each task to ``(loss, epoch)`` (epochs from 1)."""

    def __init__(self, tasks, *, patience: int = 0):
        super().__init__()
        self.tasks, self.patience = tuple(tasks), int(patience)

    def on_train_begin(self, logs=None):
        self.best = {t: (math.inf, 0) for t in self.tasks}
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for task in self.tasks:
            value = logs.get(TOWER_LOSS[task])
            if value is not None and math.isfinite(float(value)) and float(value) < self.best[task][0]:
                self.best[task] = (float(value), epoch + 1)
                self.weights[task] = _tower_weights(self.model, task)
        if self.patience and all(epoch + 1 - e >= self.patience for _, e in self.best.values()):
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for task, weights in self.weights.items():
            _set_tower_weights(self.model, task, weights)


class TowerSnapshot(_callback_base()):
    """The final fit of separate towers: each tower (with its output layer) keeps its
    weights of epoch ``epochs[task]`` (from 1), the best epoch of its tuning trial."""

    def __init__(self, epochs: dict):
        super().__init__()
        self.epochs = {t: int(e) for t, e in epochs.items()}

    def on_train_begin(self, logs=None):
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        for task, e in self.epochs.items():
            if epoch + 1 == e:
                self.weights[task] = _tower_weights(self.model, task)

    def on_train_end(self, logs=None):
        for task, weights in self.weights.items():
            _set_tower_weights(self.model, task, weights)


def calibration_mask(dataset: Dataset, *, root_seed: int, fraction: float) -> np.ndarray:
    """Boolean mask over the validation split (in shard order): the examples the final
    fit leaves out, on which its temperature is fitted (:mod:`popdl.calibration`).

    ``fraction`` of each scenario's validation examples, drawn by the
    calibration stream of ``root_seed`` (:func:`popdl.seeds.calibration`).
    """
    from popdl import seeds

    labels = np.asarray(dataset.load("validation", ("labels",))["labels"]) if dataset.size("validation") else \
        np.zeros(0, dtype=np.int64)
    rng = seeds.calibration(root_seed)
    mask = np.zeros(labels.size, dtype=bool)
    for s in range(len(dataset.scenarios)):
        idx = np.flatnonzero(labels == s)
        mask[rng.permutation(idx)[: int(round(float(fraction) * idx.size))]] = True
    return mask


#: Fewest ensemble members with which ``train.cross_fit`` applies (member i leaves out 1/k of the examples).
MIN_CROSS_FIT_MEMBERS = 4


def cross_fit_folds(dataset: Dataset, held_out: np.ndarray, *, root_seed: int, k: int) -> dict[str, np.ndarray]:
    """Per split (``train``, ``validation``, in shard order), the fold 0..k-1 of each example
    the final fit trains on, and -1 for the validation examples of the calibration part
    (``held_out``, :func:`calibration_mask`).  Within each split and scenario the examples are
    dealt in turn to the k folds, in an order drawn by the cross-fit stream of ``root_seed``
    (:func:`popdl.seeds.cross_fit`): the folds are balanced by scenario."""
    from popdl import seeds

    rng = seeds.cross_fit(root_seed)
    folds = {}
    for split in ("train", "validation"):
        labels = np.asarray(dataset.load(split, ("labels",))["labels"]) if dataset.size(split) else \
            np.zeros(0, dtype=np.int64)
        fold = np.full(labels.size, -1, dtype=np.int64)
        use = ~np.asarray(held_out, dtype=bool) if split == "validation" else np.ones(labels.size, dtype=bool)
        for s in range(len(dataset.scenarios)):
            idx = np.flatnonzero((labels == s) & use)
            fold[rng.permutation(idx)] = np.arange(idx.size) % int(k)
        folds[split] = fold
    return folds


def train_final(settings: dict, dataset_dir: str | Path, *, best: dict, out: str | Path,
                tensorboard_dir: str | Path | None = None, config_hash: str | None = None) -> dict:
    """Fit the final network with ``best``'s hyper-parameters on the training split
    and the validation examples outside its calibration part, and save it with its
    preprocessing (fitted on the training split) as a model folder (:mod:`popdl.model_io`).

    Epochs: ``train.epochs`` if set, else the best trial's best epoch; with
    separate towers, each tower keeps its weights of its own best epoch in the
    trial (``best_epochs``) and the fit runs to the later of the two.  With
    ``train.ensemble`` k > 1, k such networks are fitted (Keras and the batch
    order seeded with the root seed + i) and saved as one model averaging
    their logits and quantiles (:func:`popdl.models.ensemble`); the history
    saved is the members' mean.  With ``train.ensemble_trials`` j > 1, the
    members take in turn the hyper-parameters (and best epochs) of up to j
    trials: the first j of the greedy ensemble selection on the validation
    split (per task with separate networks: ``best.json``'s ``ensemble``,
    :func:`popdl.tuning.greedy_ensemble`), so that the ensemble mixes
    networks rather than only seeds where that helps.  With ``train.cross_fit`` and k >=
    :data:`MIN_CROSS_FIT_MEMBERS`, member i leaves out fold i of the examples
    (:func:`cross_fit_folds`), and the parameter intervals' conformal offsets
    are computed on every example by the member that did not train on it
    (cross-conformal calibration: 17 times the examples of the calibration
    part with the default split); otherwise on the calibration part.  With
    separate networks for the scenario and the parameters, only the
    parameters' members are cross-fitted.  The
    softmax temperature is fitted for this model on the calibration part of
    the validation split (``train.calibration_fraction`` of it, which the fit
    never sees; :func:`calibration_mask`), and kept only where it helps there
    (:func:`popdl.calibration.calibrate`); the bundle's ``calibration`` records
    the decision, the NLL and ECE before and after, and the (scenario, draw) of
    every calibration example.  ``config_hash``: the train job's settings hash,
    recorded in the bundle's provenance (default: that of ``settings``).
    """
    import keras

    from popdl.models import get_network

    configure_backend(settings["train"].get("threads"))
    train_cfg = settings["train"]
    tasks = tuple(settings["task"])
    dataset = Dataset(dataset_dir)
    hp = dict(best["hyper_parameters"])
    prep = Preprocessor.fit(dataset, ("train",))
    seed = int(settings["seed"])
    held_out = calibration_mask(dataset, root_seed=seed, fraction=float(train_cfg.get("calibration_fraction", 0.5)))
    if train_cfg.get("augment") and ((settings.get("run_config") or {}).get("features") or {}).get("sort_rows"):
        log.warning("train.augment permutes haplotypes that features.sort_rows sorted: the network trains on "
                    "orders it will not meet at prediction (set features.sort_rows: false)")
    keep = {"validation": ~held_out}
    shapes = dataset_shapes(dataset, prep)
    members = max(1, int(train_cfg.get("ensemble", 1) or 1))
    folds = None
    if train_cfg.get("cross_fit", True) and "regress" in tasks:
        if members >= MIN_CROSS_FIT_MEMBERS:
            folds = cross_fit_folds(dataset, held_out, root_seed=seed, k=members)
        elif members > 1:
            log.info("train.cross_fit needs train.ensemble >= %d (each member then trains on >= 3/4 of the "
                     "examples): the intervals are calibrated on the calibration part", MIN_CROSS_FIT_MEMBERS)
    common = dict(dataset=dataset, prep=prep, keep=keep, shapes=shapes, train_cfg=train_cfg, seed=seed,
                  members=members, tensorboard_dir=tensorboard_dir, folds=folds)
    n_trials = max(1, min(members, int(train_cfg.get("ensemble_trials", 1) or 1)))
    by_task = best.get("by_task") or {}
    if n_trials > 1 and "ensemble" not in best:
        log.warning("train.ensemble_trials is %d but the best-trial file selects no ensemble (written by an older "
                    "select_best): every member takes the best trial's network; rerun select_best "
                    "(snakemake --forcerun select_best) to mix the best trials", n_trials)
    if {"classify", "regress"} <= set(tasks) and {"classify", "regress"} <= set(by_task):
        # Each output from the network(s) of the trial(s) whose tower for it was best, fitted on its own.
        parts, histories, tower_epochs, infos = {}, {}, {}, {}
        for task in ("classify", "regress"):
            choice = by_task[task]
            plans = [{"hp": dict(c["hyper_parameters"]), "epochs": int(train_cfg["epochs"] or c["best_epoch"]),
                      "tower_hint": {}, "number": c["number"]} for c in _member_trials(choice, n_trials)]
            # Only the parameters' fits are cross-fitted: the scenario's train on all the examples.
            parts[task], histories[task], tower_epochs[task], _, infos[task] = _fit_network(
                plans, tasks=(task,), name=f"{task}_network",
                **{**common, "folds": folds if task == "regress" else None})
        oof, held_members = infos["regress"]["oof"], infos["regress"]["held_out_members"]
        examples = {task: info["examples"] for task, info in infos.items()}
        from popdl.models import combine_tasks

        model = combine_tasks(parts)
        hp = {task: dict(by_task[task]["hyper_parameters"]) for task in parts}
        names = {t: _network_names(infos[t]["networks"]) for t in ("classify", "regress")}
        network = names["classify"] if names["classify"] == names["regress"] else \
            f"{names['classify']} (scenario) + {names['regress']} (parameters)"
        inputs = tuple(i for i in INPUT_ARRAYS if any(i in get_network(n).inputs
                                                      for info in infos.values() for n in info["networks"]))
        history = {**histories["classify"], "params_loss": histories["regress"]["loss"]}
        epochs = max(tower_epochs.values())
        trial = {t: by_task[t]["number"] for t in parts}
        member_trials = {t: infos[t]["trials"] for t in parts}
    else:
        plans = [{"hp": dict(r["hyper_parameters"]), "epochs": int(train_cfg["epochs"] or r.get("best_epoch") or 1),
                  "tower_hint": r.get("best_epochs") or {}, "number": r.get("number")}
                 for r in _member_trials(best, n_trials)]
        model, history, epochs, tower_epochs, info = _fit_network(plans, tasks=tasks, name=None, **common)
        oof, held_members, examples = info["oof"], info["held_out_members"], {"+".join(tasks): info["examples"]}
        network, trial = _network_names(info["networks"]), best.get("number")
        inputs = tuple(i for i in INPUT_ARRAYS if any(i in get_network(n).inputs for n in info["networks"]))
        member_trials = {"+".join(tasks): info["trials"]}
    calibration, intervals = _calibrate_final(model, dataset, held_out, inputs=inputs, prep=prep,
                                              levels=train_cfg["quantiles"], oof=oof, folds=folds,
                                              held_out_members=held_members)
    n_fit = dataset.size("train") + int((~held_out).sum())
    save_bundle(out, model=model, prep=prep, scenarios=dataset.scenarios, network=network, inputs=inputs,
                shapes={k: shapes[k] for k in inputs}, temperature=calibration.get("temperature", 1.0),
                calibration=calibration, interval_calibration=intervals,
                quantiles=train_cfg["quantiles"], tasks=tasks, hyper_parameters=hp, history=history,
                run_config=settings.get("run_config"),
                provenance=provenance(config_hash=config_hash or settings_hash(settings), seeds={"root": seed},
                                      dataset=dataset.manifest.get("provenance", {}).get("config_hash"),
                                      best_trial=trial, epochs=epochs, tower_epochs=tower_epochs,
                                      ensemble=members, member_trials=member_trials, fit_examples=examples,
                                      backend=keras.backend.backend()))
    log.info("train: %s x %d, %d epochs on %d examples%s, final loss %.4f; temperature %.3f", network, members,
             epochs, n_fit, f" ({members - 1}/{members} of them each, cross-fitted)" if folds else "",
             history["loss"][-1], calibration.get("temperature", 1.0))
    return {"epochs": epochs, "tower_epochs": tower_epochs, "history": history, "calibration": calibration,
            "n_fit": n_fit, "members": members, "network": network, "folds": folds, "fit_examples": examples}


def _member_trials(choice: dict, most: int) -> list[dict]:
    """The trials an ensemble's members take in turn: the first ``most`` of ``choice``'s greedy
    ensemble path (``ensemble``, :func:`popdl.tuning.greedy_ensemble`), else ``choice`` itself."""
    return (choice.get("ensemble") or [choice])[:most]


def _network_names(networks: list[str]) -> str:
    """The networks of an ensemble's members, each once, in order: ``"mlp"``, ``"mlp + exchangeable"``."""
    return " + ".join(dict.fromkeys(networks))


def _fit_network(plans: list[dict], *, tasks, name, dataset: Dataset, prep: Preprocessor, keep: dict,
                 shapes: dict, train_cfg: dict, seed: int, members: int, tensorboard_dir=None,
                 folds: dict | None = None):
    """Fit ``members`` networks for ``tasks`` (member i: Keras and the batch order seeded
    with ``seed`` + i, the network of ``plans[i % len(plans)]``: ``{hp, epochs,
    tower_hint, number}``, one per trial) and return ``(model, history, epochs,
    tower_epochs, info)``: the fitted network, or an ensemble averaging them
    (:func:`popdl.models.ensemble`), named ``name``; the members' mean history (a
    member that ran fewer epochs counts for the epochs it ran); the most epochs run;
    each separate tower's latest epoch; ``{"oof", "examples", "networks", "trials"}``:
    the out-of-fold parameter quantiles, the examples each member's fit saw per epoch,
    and each member's network and trial.  A member's separate towers are each kept at
    their epoch of its ``tower_hint`` (the trial's best), the fit running to the later
    one; a single-task fit runs its ``epochs``.  Every member trains on the examples of
    ``keep``, or, with ``folds`` (:func:`cross_fit_folds`), member i on those of folds
    other than i; ``oof`` then maps each split to the quantiles (examples, parameters,
    levels) that the member which left an example out predicts for it (NaN outside the
    folds), else it is None; ``held_out_members``: every member's quantiles on the
    calibration part (:func:`_out_of_fold`), or None."""
    import keras

    from popdl.models import ensemble, get_network

    mixed = bool(train_cfg.get("mixed_precision", False))
    fitted, histories, tower_epochs, examples, networks, trials = [], [], {}, [], [], []
    most_epochs = 0
    for member in range(members):
        plan = plans[member % len(plans)]
        hp, epochs = plan["hp"], int(plan["epochs"])
        net = get_network(hp["network"])

        def build(member_name, net=net, hp=hp):
            return net.build(shapes, hp=hp, n_classes=len(dataset.scenarios), n_params=len(prep.param_names),
                             quantiles=tuple(train_cfg["quantiles"]), tasks=tasks, name=member_name)

        member_seed = seed + member
        keras.utils.set_random_seed(member_seed)
        member_keep = keep if folds is None else {s: (fold >= 0) & (fold != member) for s, fold in folds.items()}
        data, steps = make_data(dataset, ("train", "validation"), streaming=train_cfg["streaming"],
                                in_memory_max_mb=train_cfg["in_memory_max_mb"], batch_size=hp["batch_size"],
                                inputs=net.inputs, prep=prep, tasks=tasks, seed=member_seed,
                                loader_threads=loader_threads(train_cfg.get("threads")), keep=member_keep,
                                augment=bool(train_cfg.get("augment", False)))
        examples.append(_fit_examples(data))
        member_name = f"{name or 'network'}_member{member}" if members > 1 else name
        set_precision(mixed)
        try:
            model = build(member_name)
        finally:
            set_precision(False)
        towers = separate_towers(model)
        member_towers = {t: int(train_cfg["epochs"] or (plan.get("tower_hint") or {}).get(t) or epochs)
                         for t in towers}
        if member_towers and not train_cfg["epochs"]:
            epochs = max(member_towers.values())
        for t, e in member_towers.items():
            tower_epochs[t] = max(e, tower_epochs.get(t, 0))
        most_epochs = max(most_epochs, epochs)
        compile_model(model, hp, steps_per_epoch=steps, epochs=epochs, quantiles=train_cfg["quantiles"], tasks=tasks,
                      regression_weight=train_cfg["regression_weight"])
        callbacks = [keras.callbacks.TerminateOnNaN()]
        if towers:
            callbacks.append(TowerSnapshot(member_towers))
        if tensorboard_dir and keras.backend.backend() == "tensorflow" and _has_module("tensorboard"):
            log_dir = Path(tensorboard_dir) / member_name if member_name else Path(tensorboard_dir)
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0, write_graph=False))
        label = f"member {member + 1}/{members} (trial {plan['number']}, {hp['network']})"
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs, n=epochs, who=label: log.info(
            "final fit: %s: epoch %d/%d %s", who, epoch + 1, n, " ".join(f"{k}={float(v):.4g}" for k, v in sorted((logs or {}).items())))))
        # Progress goes to the job's log (stderr), not to the console (stdout).
        history = history_dict(model.fit(**data, epochs=epochs, verbose=0, callbacks=callbacks))
        if any(not math.isfinite(v) for v in history.get("loss", [])):
            raise RuntimeError("the final fit diverged (NaN loss); try another trial's hyper-parameters")
        if mixed:  # the saved model computes in float32 wherever it is loaded (weights are float32 already)
            weights, model = model.get_weights(), build(member_name)
            model.set_weights(weights)
        fitted.append(model)
        histories.append(history)
        networks.append(hp["network"])
        trials.append(plan["number"])
    history = histories[0] if members == 1 else {k: _mean_ragged([h[k] for h in histories]) for k in histories[0]}
    oof, held = _out_of_fold(fitted, folds, dataset=dataset, prep=prep) \
        if folds is not None and "regress" in tasks else (None, None)
    model = fitted[0] if members == 1 else ensemble(fitted, name=f"{name or 'network'}_ensemble")
    return model, history, most_epochs, tower_epochs, {"oof": oof, "held_out_members": held, "examples": examples,
                                                       "networks": networks, "trials": trials}


def _mean_ragged(series: list[list[float]]) -> list[float]:
    """Per epoch, the mean of the series that reach it (members may run different epochs)."""
    longest = max(len(s) for s in series)
    return [float(np.mean([s[i] for s in series if i < len(s)])) for i in range(longest)]


def _fit_examples(data: dict) -> int:
    """How many examples a fit of :func:`make_data`'s ``data`` sees per epoch."""
    if "y" in data:
        return len(next(iter(data["y"].values())))
    seq = data["x"]
    return sum(n if rows is None else rows.size for (_, n), rows in zip(seq.shards, seq.rows))


def _out_of_fold(members: list, folds: dict, *, dataset: Dataset, prep: Preprocessor) -> tuple[dict, np.ndarray | None]:
    """Per split, the parameter quantiles each example gets from the member that left its
    fold out (member i, fold i; NaN for examples in no fold); and every member's quantiles
    (members, examples, parameters, levels) on the validation examples in no fold (the
    calibration part, which none trained on), None without any.  Each split is read once."""
    from popdl.models import input_names

    names = [input_names(m) for m in members]
    inputs = tuple(i for i in INPUT_ARRAYS if any(i in n for n in names))
    oof, held = {}, None
    for split, fold in folds.items():
        x, _ = load_arrays(dataset, split, inputs=inputs, prep=prep, tasks=())
        for member, model in enumerate(members):
            rows = fold == member
            if rows.any():
                out = predict_arrays(model, {k: x[k][rows] for k in names[member]})["params"]
                oof.setdefault(split, np.full((fold.size,) + out.shape[1:], np.nan))[rows] = out
        rows = fold < 0
        if split == "validation" and rows.any() and len(members) > 1:
            held = np.stack([predict_arrays(model, {k: x[k][rows] for k in names[member]})["params"]
                             for member, model in enumerate(members)])
    return oof, held


def _calibrate_final(model, dataset: Dataset, held_out: np.ndarray, *, inputs, prep: Preprocessor,
                     levels, oof: dict | None = None, folds: dict | None = None,
                     held_out_members: np.ndarray | None = None) -> tuple[dict, dict]:
    """From one pass of ``model`` over the held-out validation examples, which it never
    trained on: the temperature (:func:`popdl.calibration.calibrate` on the logits, with
    the (scenario, draw) of every example) and the conformal offsets of the parameter
    intervals (:func:`popdl.calibration.interval_offsets` on the quantiles); ``{}`` for an
    output the model lacks.  With the out-of-fold quantiles of a cross-fitted ensemble
    (``oof``, ``folds``: :func:`_fit_network`), the offsets come from those instead, and
    with every member's quantiles on the calibration part (``held_out_members``) they are
    narrowed by the coverage the ensemble adds there
    (:func:`popdl.calibration.ensemble_narrowing`)."""
    from popdl.calibration import calibrate, ensemble_narrowing, interval_offsets

    val = dataset.load("validation", ("labels", "draw", "params")) if dataset.size("validation") else \
        {"labels": np.zeros(0, np.int64), "draw": np.zeros(0, np.int64)}
    outputs = {}
    if held_out.any():
        x, _ = load_arrays(dataset, "validation", inputs=inputs, prep=prep, tasks=(), keep={"validation": held_out})
        outputs = predict_arrays(model, x)
    calibration, intervals = {}, {}
    if "scenario" in model.output_names:
        labels, draws = val["labels"][held_out], val["draw"][held_out]
        calibration = calibrate(outputs.get("scenario", np.zeros((0, len(dataset.scenarios)))), labels)
        calibration.update(split="validation", fraction=float(held_out.mean()) if held_out.size else 0.0,
                           draws=[[dataset.scenarios[int(lab)], int(d)] for lab, d in zip(labels, draws)])
    if oof is not None:
        splits = [s for s in ("train", "validation") if s in oof]
        rows = {s: folds[s] >= 0 for s in splits}
        true = np.concatenate([prep.params(dataset.load(s, ("params",))["params"][rows[s]]) for s in splits])
        scores_q = np.concatenate([oof[s][rows[s]] for s in splits])
        intervals = interval_offsets(scores_q, true, levels=levels, param_names=prep.param_names)
        k = 1 + max(int(f.max(initial=-1)) for f in folds.values())
        intervals["method"] = (f"cross-conformal: each of the {k} members' left-out fold of the training and "
                               "validation examples, by that member")
        if held_out_members is not None and "params" in outputs:
            intervals = ensemble_narrowing(intervals, scores_q, true, members=held_out_members,
                                           ensemble=outputs["params"], true=prep.params(val["params"][held_out]),
                                           levels=levels, param_names=prep.param_names)
            intervals["method"] += ("; narrowed for the ensemble by the coverage it adds on the calibration part "
                                    "(lower 95 % confidence bound)")
        intervals["scale"] = "standardised network target"
    elif "params" in outputs:
        intervals = interval_offsets(outputs["params"], prep.params(val["params"][held_out]), levels=levels,
                                     param_names=prep.param_names)
        intervals["method"] = "held out: the calibration part of the validation split, by the final model"
        intervals["scale"] = "standardised network target"
    return calibration, intervals


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def loader_threads(threads: int | None) -> int:
    """Read-ahead threads of a stream for a job of ``threads`` CPU threads: none
    (1: batches are read in the training thread), whatever ``threads``.

    Measured on 2 CPU cores (``benchmarks/bench_gpu.py``; 2,400 examples of
    40 x 128): one thread reads 0.2 to 1.9 million examples a second from the
    shards, far more than any step consumes, while Keras's read-ahead pool
    costs time in every step (a thread-pool task per batch, a 0.1 s drain at
    every epoch's end): the MLP's step took 1.1 ms with one thread and 3.4 ms
    with two at batch 64, 1.2 and 25 ms at batch 512 (JAX).  The read-ahead
    that matters on a GPU, the next batch's copy to the device during the
    current step, is done by Keras's JAX trainer itself."""
    return 1
