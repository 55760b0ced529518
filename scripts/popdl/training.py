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
    "make_optimizer",
    "compile_model",
    "history_dict",
]

INPUT_ARRAYS = {"image": "images", "distances": "distances", "stats": "stats"}


def configure_backend(threads: int | None = None) -> str:
    """Limit the backend's CPU threads (``None``: leave the default) and
    return the backend's name.  Call before any model is built.

    The GPU is whichever the scheduler exposes through
    ``CUDA_VISIBLE_DEVICES``; none is picked here.
    """
    if threads:
        for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                    "XLA_FLAGS_THREADS"):
            os.environ.setdefault(var, str(threads))
    import keras

    backend = keras.backend.backend()
    if threads and backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        except RuntimeError:  # already initialised in this process
            log.debug("TensorFlow threads already set")
    elif threads and backend == "torch":
        import torch

        torch.set_num_threads(int(threads))
    log.info("backend %s, threads %s, CUDA_VISIBLE_DEVICES=%s", backend, threads or "default",
             os.environ.get("CUDA_VISIBLE_DEVICES", "(unset)"))
    return backend


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
    threads for the interpreter lock).
    """

    def __init__(self, dataset: Dataset, splits, *, batch_size: int, inputs, prep: Preprocessor,
                 tasks=("classify", "regress"), shuffle: bool = True, seed: int = 0, targets: bool = True,
                 workers: int = 1):
        # workers > 1: batches are read by background threads while the model trains.
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.inputs, self.prep, self.tasks = tuple(inputs), prep, tuple(tasks)
        self.shuffle, self.seed, self.targets = shuffle, seed, targets
        self.arrays = _needed(self.inputs, self.tasks if targets else ())
        self.shards = []
        for split in ([splits] if isinstance(splits, str) else splits):
            for shard in dataset.manifest["splits"][split]["shards"]:
                self.shards.append((dataset.folder / shard["path"], int(shard["n"])))
        self._open: dict[int, dict] = {}
        self.epoch = 0
        self._plan()

    def _plan(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.shards)) if self.shuffle else np.arange(len(self.shards))
        self.batches = []
        for s in order:
            n = self.shards[s][1]
            perm = rng.permutation(n) if self.shuffle else np.arange(n)
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
        return (x, y) if self.targets else (x,)

    def on_epoch_end(self):
        self.epoch += 1
        if self.shuffle:
            self._plan()


def load_arrays(dataset: Dataset, splits, *, inputs, prep: Preprocessor, tasks=("classify", "regress")):
    """Whole splits in memory as ``(x, y)`` dicts of arrays."""
    splits = [splits] if isinstance(splits, str) else list(splits)
    needed = _needed(inputs, tasks) + ("labels", "params")
    parts = [dataset.load(s, tuple(dict.fromkeys(needed))) for s in splits]
    arrays = {a: np.concatenate([p[a] for p in parts]) for a in parts[0]}
    return _batch(arrays, slice(None), inputs=inputs, prep=prep, tasks=tasks)


def split_megabytes(dataset: Dataset, splits) -> float:
    m = dataset.manifest
    h, s = m["image_shape"]
    per = h * s + 4 * s + 4 * len(m["stat_names"]) + 8 * (1 + len(m["param_names"]))
    return sum(dataset.size(x) for x in ([splits] if isinstance(splits, str) else splits)) * per / 2**20


def make_data(dataset: Dataset, splits, *, streaming, in_memory_max_mb: float, batch_size: int, inputs,
              prep: Preprocessor, tasks, shuffle: bool = True, seed: int = 0, loader_threads: int = 1):
    """``(fit_kwargs, steps_per_epoch)`` for :meth:`keras.Model.fit`: a :class:`ShardSequence`
    (read ahead by ``loader_threads`` threads; 1 reads in the training thread),
    or in-memory arrays (``streaming`` true | false | "auto")."""
    if streaming == "auto":
        streaming = split_megabytes(dataset, splits) > in_memory_max_mb
    if streaming:
        seq = ShardSequence(dataset, splits, batch_size=batch_size, inputs=inputs, prep=prep, tasks=tasks,
                            shuffle=shuffle, seed=seed, workers=loader_threads)
        return {"x": seq}, len(seq)
    x, y = load_arrays(dataset, splits, inputs=inputs, prep=prep, tasks=tasks)
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


def dataset_shapes(dataset: Dataset) -> dict[str, tuple]:
    m = dataset.manifest
    h, s = m["image_shape"]
    return {"image": (h, s), "distances": (s,), "stats": (len(m["stat_names"]),)}


def train_final(settings: dict, dataset_dir: str | Path, *, best: dict, out: str | Path,
                tensorboard_dir: str | Path | None = None, config_hash: str | None = None) -> dict:
    """Fit the final network with ``best``'s hyper-parameters on train + validation
    and save it with its preprocessing as a model folder (:mod:`popdl.model_io`).

    Epochs: ``train.epochs`` if set, else the best trial's best epoch.  The
    softmax temperature is the one :func:`popdl.tuning.select_best` fitted on
    the validation set (the final model trains on that set, so it cannot be
    refitted there).  ``config_hash``: the train job's settings hash, recorded
    in the bundle's provenance (default: that of ``settings``).
    """
    import keras

    from popdl.models import get_network

    configure_backend(settings["train"].get("threads"))
    train_cfg = settings["train"]
    tasks = tuple(settings["task"])
    dataset = Dataset(dataset_dir)
    hp = dict(best["hyper_parameters"])
    net = get_network(hp["network"])
    splits = ("train", "validation")
    prep = Preprocessor.fit(dataset, splits)
    epochs = int(train_cfg["epochs"] or best.get("best_epoch") or 1)
    seed = int(settings["seed"])
    keras.utils.set_random_seed(seed)
    data, steps = make_data(dataset, splits, streaming=train_cfg["streaming"],
                            in_memory_max_mb=train_cfg["in_memory_max_mb"], batch_size=hp["batch_size"],
                            inputs=net.inputs, prep=prep, tasks=tasks, seed=seed,
                            loader_threads=loader_threads(train_cfg.get("threads")))
    shapes = dataset_shapes(dataset)
    model = net.build(shapes, hp=hp, n_classes=len(dataset.scenarios), n_params=len(prep.param_names),
                      quantiles=tuple(train_cfg["quantiles"]), tasks=tasks)
    compile_model(model, hp, steps_per_epoch=steps, epochs=epochs, quantiles=train_cfg["quantiles"], tasks=tasks,
                  regression_weight=train_cfg["regression_weight"])
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if tensorboard_dir and keras.backend.backend() == "tensorflow" and _has_module("tensorboard"):
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(tensorboard_dir), histogram_freq=0,
                                                     write_graph=False))
    history = history_dict(model.fit(**data, epochs=epochs, verbose=2, callbacks=callbacks))
    if any(not math.isfinite(v) for v in history.get("loss", [])):
        raise RuntimeError("the final fit diverged (NaN loss); try another trial's hyper-parameters")
    save_bundle(out, model=model, prep=prep, scenarios=dataset.scenarios, network=hp["network"], inputs=net.inputs,
                shapes={k: shapes[k] for k in net.inputs}, temperature=best.get("temperature", 1.0),
                quantiles=train_cfg["quantiles"], tasks=tasks, hyper_parameters=hp, history=history,
                run_config=settings.get("run_config"),
                provenance=provenance(config_hash=config_hash or settings_hash(settings), seeds={"root": seed},
                                      dataset=dataset.manifest.get("provenance", {}).get("config_hash"),
                                      best_trial=best.get("number"), epochs=epochs,
                                      backend=keras.backend.backend()))
    log.info("train: %s, %d epochs on %d examples, final loss %.4f", hp["network"], epochs,
             sum(dataset.size(s) for s in splits), history["loss"][-1])
    return {"epochs": epochs, "history": history}


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def loader_threads(threads: int | None) -> int:
    """Read-ahead threads of a stream for a job of ``threads`` CPU threads: none
    (1, read in the training thread) up to 2 cores, 2 above."""
    return 2 if threads and threads > 2 else 1
