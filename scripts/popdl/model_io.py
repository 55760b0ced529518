"""The trained model as a self-contained folder, and how to use it elsewhere.

Layout of ``results/{run}/model/``::

    model.keras     the Keras 3 model (architecture + weights), any backend
    bundle.json     everything else prediction needs: scenario names, parameter
                    names and which scenario has which, input names and shapes,
                    statistic names, the preprocessing (statistic means and
                    standard deviations; per parameter log10 scale, mean and
                    standard deviation), the softmax temperature, the
                    quantile levels, the hyper-parameters and provenance
    history.json    loss (and accuracy) per epoch of the final fit

Copy the folder to another machine with popdl installed and::

    from popdl.model_io import load_model
    model = load_model("results/demo/model")
    pred = model.predict(images, distances, stats)
    pred.probabilities        # (n, scenarios) calibrated softmax
    pred.scenarios            # scenario names, the columns of probabilities
    pred.best                 # (n,) most probable scenario's name per example
    pred.estimates            # (n, parameters) median estimate, natural units
    pred.lower, pred.upper    # (n, parameters) interval bounds (e.g. 5 % and 95 %)
    pred.param_names          # columns of estimates / lower / upper
    pred.to_frame()           # one row per example (pandas)
    pred["probabilities"], pred["params"]   # mapping access; "params" is pred.quantiles:
                              # (n, parameters, levels) natural units, levels = model.quantiles

Inputs are the raw arrays that ``popdl features`` writes for each example:
``images`` (n, haplotypes, snps) int8, ``distances`` (n, snps) float32,
``stats`` (n, statistics) float32 in the order of ``model.stat_names``.
Arrays the network does not read (``model.inputs``) may be ``None``.
Standardisation, log scales and the temperature are applied inside
:meth:`PopdlModel.predict`.  Parameter estimates are conditional on the
scenario having that parameter: use ``model.scenario_params`` to read only
those of the scenario of interest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from popdl.io import atomic_dir

__all__ = ["save_bundle", "load_model", "PopdlModel", "Prediction", "softmax"]

FORMAT = 1


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def save_bundle(folder: str | Path, *, model, prep, scenarios: list[str], network: str, inputs: tuple[str, ...],
                shapes: dict, temperature: float, quantiles, tasks, hyper_parameters: dict,
                history: dict | None = None, provenance: dict | None = None,
                run_config: dict | None = None) -> Path:
    """Write the model folder atomically (a killed job leaves no half-written model)."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save(tmp / "model.keras")
        bundle = {
            "format": FORMAT,
            "scenarios": list(scenarios),
            "param_names": list(prep.param_names),
            "scenario_params": prep.scenario_params,
            "stat_names": list(prep.stat_names),
            "network": network,
            "inputs": list(inputs),
            "shapes": {k: list(v) for k, v in shapes.items()},
            "tasks": list(tasks),
            "temperature": float(temperature),
            "quantiles": [float(q) for q in quantiles],
            "preprocessing": prep.to_dict(),
            "hyper_parameters": hyper_parameters,
            "provenance": provenance or {},
            "config": run_config,
        }
        (tmp / "bundle.json").write_text(json.dumps(bundle, indent=2, default=_plain) + "\n")
        (tmp / "history.json").write_text(json.dumps(history or {}, indent=2) + "\n")
    return folder


def stored_config(folder: str | Path) -> dict:
    """The data settings a model was trained with (its run config, validated, defaults filled).

    Raises :class:`popdl.config.ConfigError` when the bundle holds none.
    """
    import copy

    from popdl.config import ConfigError, prepare

    folder = Path(folder)
    bundle = json.loads((folder / "bundle.json").read_text())
    if not isinstance(bundle.get("config"), dict):
        raise ConfigError(f"{folder}/bundle.json holds no run config; give --configfile (the config the model was trained with)")
    return prepare(copy.deepcopy(bundle["config"]), check_executables=False)


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(type(obj).__name__)


@dataclass
class Prediction:
    """What :meth:`PopdlModel.predict` returns (see the module docstring)."""

    scenarios: list[str]
    probabilities: np.ndarray | None
    logits: np.ndarray | None
    param_names: list[str]
    estimates: np.ndarray | None
    lower: np.ndarray | None
    upper: np.ndarray | None
    quantiles: np.ndarray | None  # (n, parameters, quantile levels), natural units
    levels: list[float]

    def _mapping(self) -> dict:
        return {"probabilities": self.probabilities, "logits": self.logits, "params": self.quantiles,
                "estimates": self.estimates, "lower": self.lower, "upper": self.upper}

    def __getitem__(self, key):
        """Mapping access: ``pred["probabilities"]``, ``pred["params"]`` (= :attr:`quantiles`), ..."""
        return self._mapping()[key]

    def get(self, key, default=None):
        value = self._mapping().get(key)
        return default if value is None else value

    def keys(self):
        return [k for k, v in self._mapping().items() if v is not None]

    @property
    def best(self) -> np.ndarray:
        return np.asarray(self.scenarios)[np.argmax(self.probabilities, axis=1)]

    def to_frame(self):
        import pandas as pd

        cols = {}
        if self.probabilities is not None:
            cols["scenario"] = self.best
            for j, s in enumerate(self.scenarios):
                cols[f"p_{s}"] = self.probabilities[:, j]
        if self.estimates is not None:
            for j, p in enumerate(self.param_names):
                cols[p] = self.estimates[:, j]
                cols[f"{p}_lower"] = self.lower[:, j]
                cols[f"{p}_upper"] = self.upper[:, j]
        return pd.DataFrame(cols)


class PopdlModel:
    """A loaded model folder; :meth:`predict` turns raw features into answers."""

    def __init__(self, folder: str | Path):
        import keras

        import popdl.models  # noqa: F401  (registers the custom layers and loss)
        from popdl.training import Preprocessor

        self.folder = Path(folder)
        bundle_path = self.folder / "bundle.json"
        if not bundle_path.exists():
            raise FileNotFoundError(f"{self.folder} is not a popdl model folder (no bundle.json)")
        self.bundle = json.loads(bundle_path.read_text())
        if self.bundle.get("format") != FORMAT:
            raise ValueError(f"{bundle_path}: unsupported model format {self.bundle.get('format')!r}")
        self.keras_model = keras.saving.load_model(self.folder / "model.keras", compile=False)
        self.prep = Preprocessor.from_dict(self.bundle["preprocessing"])
        self.scenarios = self.bundle["scenarios"]
        self.param_names = self.bundle["param_names"]
        self.scenario_params = self.bundle["scenario_params"]
        self.stat_names = self.bundle["stat_names"]
        self.inputs = tuple(self.bundle["inputs"])
        self.temperature = float(self.bundle["temperature"])
        self.levels = self.bundle["quantiles"]
        self.quantiles = list(self.levels)  # the quantile levels of ``Prediction.quantiles``

    def __repr__(self):
        return f"PopdlModel({str(self.folder)!r}, network={self.bundle['network']!r}, scenarios={self.scenarios})"

    def _check(self, name, array, shape):
        if array is None:
            raise ValueError(f"the {self.bundle['network']} network needs {name} (shape (n, {', '.join(map(str, shape))}))")
        array = np.asarray(array)
        if tuple(array.shape[1:]) != tuple(shape):
            raise ValueError(f"{name} has shape {array.shape[1:]} per example; this model was trained on {tuple(shape)}")
        return array

    def raw_outputs(self, images=None, distances=None, stats=None, *, batch_size: int = 256) -> dict:
        """The network's outputs: ``scenario`` logits, ``params`` standardised quantiles."""
        given = {"image": images, "distances": distances, "stats": stats}
        x = {}
        for name in self.inputs:
            a = self._check(name if name != "image" else "images", given[name], self.bundle["shapes"][name])
            if name == "image":
                x[name] = a.astype(np.int8, copy=False)
            elif name == "stats":
                x[name] = self.prep.stats(a)
            else:
                x[name] = a.astype(np.float32, copy=False)
        out = self.keras_model.predict(x, batch_size=batch_size, verbose=0)
        if not isinstance(out, dict):
            out = dict(zip(self.keras_model.output_names, out if isinstance(out, (list, tuple)) else [out]))
        return {k: np.asarray(v) for k, v in out.items()}

    def predict(self, images=None, distances=None, stats=None, *, batch_size: int = 256,
                calibrated: bool = True) -> Prediction:
        """Scenario probabilities and parameter estimates with intervals (see module docstring)."""
        out = self.raw_outputs(images, distances, stats, batch_size=batch_size)
        logits = out.get("scenario")
        probs = softmax(logits, self.temperature if calibrated else 1.0) if logits is not None else None
        est = lower = upper = q = None
        if "params" in out:
            z = np.sort(out["params"], axis=-1)  # quantiles never cross
            q = self.prep.natural(self.prep.unstandardise(z))
            levels = np.asarray(self.levels)
            mid = int(np.argmin(np.abs(levels - 0.5)))
            est, lower, upper = q[:, :, mid], q[:, :, 0], q[:, :, -1]
        return Prediction(self.scenarios, probs, logits, self.param_names, est, lower, upper, q, list(self.levels))


def load_model(folder: str | Path) -> PopdlModel:
    """Load a model folder written by ``popdl train`` (see the module docstring)."""
    return PopdlModel(folder)
