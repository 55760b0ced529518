"""The trained model as a self-contained folder, and how to use it elsewhere.

Layout of ``results/{run}/model/``::

    model.keras     the Keras 3 model (architecture + weights), any backend
    bundle.json     everything else prediction needs: scenario names, parameter
                    names and which scenario has which, input names and shapes,
                    statistic names, the preprocessing (statistic means and
                    standard deviations; per parameter log10 scale, bounds,
                    mean and standard deviation), the softmax temperature and
                    how it was fitted (``calibration``), the quantile levels,
                    the intervals' conformal offsets (``interval_calibration``),
                    the hyper-parameters and provenance, and (``config``) the
                    run config's data sections: samples, genome, features
                    (phasing, missingness model, SFS projection) and
                    ``predict.defaults`` (a data set's loci and population
                    mapping) with the reading options (subsampling, unphased
                    calls, sample matching, missing calls, SNP subsets), with
                    which ``popdl predict --model`` reads data
    history.json    loss (and accuracy) per epoch of the final fit

Copy the folder to another machine with popdl installed and::

    from popdl.model_io import load_model
    model = load_model("results/demo/model")
    pred = model.predict(images, distances, stats)
    pred.probabilities        # (n, scenarios) calibrated softmax
    pred.scenarios            # scenario names, the columns of probabilities
    pred.best                 # (n,) most probable scenario's name per example
    pred.estimates            # (n, parameters) estimate, natural units: the posterior mean on the
                              # learning scale (mean of midpoint quantiles), else the median
    pred.lower, pred.upper    # (n, parameters) interval bounds (e.g. 5 % and 95 %)
    pred.param_names          # columns of estimates / lower / upper
    pred.to_frame()           # one row per example (pandas)
    pred["probabilities"], pred["params"]   # mapping access; "params" is pred.quantiles:
                              # (n, parameters, levels) natural units, at the levels model.levels

Inputs are the raw arrays that ``popdl features`` writes for each example:
``images`` (n, haplotypes, snps) int8, ``distances`` (n, snps) float32,
``stats`` (n, statistics) float32 in the order of ``model.stat_names``.
Arrays the network does not read (``model.inputs``) may be ``None``.
Standardisation, log scales, the temperature and the interval offsets are
applied inside :meth:`PopdlModel.predict` (``calibrated=False``: neither).  Parameter estimates are conditional on the
scenario having that parameter: use ``model.scenario_params`` to read only
those of the scenario of interest.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from popdl.errors import PopdlError
from popdl.io import atomic_dir
from popdl.preprocess import Preprocessor

__all__ = ["save_bundle", "load_model", "read_bundle", "check_model_folder", "check_settings", "ModelError",
           "PopdlModel", "Prediction", "softmax"]

FORMAT = 1

#: The largest size a bundle may give any one dimension (haplotypes, SNPs,
#: statistics, names): more means a damaged file, refused before allocating.
MAX_SIZE = 1_000_000
#: The largest number of values of one example's input.
MAX_VALUES = 1 << 28
_INPUT_DIMS = {"image": 2, "distances": 1, "stats": 1}
#: Members of a Keras 3 ``.keras`` archive that loading needs.
_KERAS_MEMBERS = ("config.json", "model.weights.h5")


class ModelError(PopdlError):
    """A model folder that cannot be used (missing, truncated or damaged files), in one line."""


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def save_bundle(folder: str | Path, *, model, prep, scenarios: list[str], network: str, inputs: tuple[str, ...],
                shapes: dict, temperature: float, quantiles, tasks, hyper_parameters: dict,
                history: dict | None = None, provenance: dict | None = None,
                run_config: dict | None = None, calibration: dict | None = None,
                interval_calibration: dict | None = None) -> Path:
    """Write the model folder atomically (a killed job leaves no half-written model).

    ``calibration``: how ``temperature`` was chosen (:func:`popdl.calibration.calibrate`
    on examples the model did not train on), stored as the bundle's ``calibration``;
    ``interval_calibration``: the conformal offsets of the parameter intervals
    (:func:`popdl.calibration.interval_offsets`), applied by :meth:`PopdlModel.predict`."""
    folder = Path(folder)
    with atomic_dir(folder, kind="model") as tmp:
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
            "calibration": calibration or {},
            "interval_calibration": interval_calibration or {},
            "quantiles": [float(q) for q in quantiles],
            "preprocessing": prep.to_dict(),
            "hyper_parameters": hyper_parameters,
            "provenance": provenance or {},
            "config": run_config,
        }
        (tmp / "bundle.json").write_text(json.dumps(bundle, indent=2, default=_plain) + "\n")
        (tmp / "history.json").write_text(json.dumps(history or {}, indent=2) + "\n")
    return folder


def midpoint_levels(levels) -> bool:
    """Whether ``levels`` are the midpoints of k >= 4 equal bins of [0, 1]
    (0.05, 0.15, ..., 0.95 for k = 10): then the mean of the quantiles at
    them is the midpoint rule for the distribution's mean."""
    levels = np.asarray(levels, dtype=np.float64)
    k = levels.size
    return k >= 4 and bool(np.allclose(levels, (np.arange(k) + 0.5) / k, atol=1e-9))


def point_estimate(learning_quantiles: np.ndarray, levels) -> np.ndarray:
    """Per example and parameter, the estimate from the quantiles on the learning scale
    (n, parameters, levels): their mean when the levels are midpoints (:func:`midpoint_levels`),
    i.e. the posterior mean on the learning scale, the estimate of least squared error;
    otherwise the quantile nearest 0.5 (the posterior median)."""
    q = np.asarray(learning_quantiles, dtype=np.float64)
    if midpoint_levels(levels):
        return q.mean(axis=-1)
    return q[..., int(np.argmin(np.abs(np.asarray(levels, dtype=np.float64) - 0.5)))]


def apply_interval_offsets(quantiles: np.ndarray, offsets) -> np.ndarray:
    """Quantiles (n, parameters, levels; standardised scale, sorted) with the outer
    levels moved out by ``offsets`` (one per parameter), never past the middle level;
    the inner levels a narrowed interval passes are moved to its bounds, so that the
    quantiles stay sorted (the 5 % level never above the 15 % one)."""
    q = np.array(quantiles, dtype=np.float64, copy=True)
    off = np.asarray(offsets, dtype=np.float64)
    if q.ndim != 3 or q.shape[-1] < 2 or not off.size or not np.any(off):
        return q
    mid = q.shape[-1] // 2
    q[:, :, 0] = np.minimum(q[:, :, 0] - off[None, :], q[:, :, mid])
    q[:, :, -1] = np.maximum(q[:, :, -1] + off[None, :], q[:, :, mid])
    q[:, :, 1:-1] = np.clip(q[:, :, 1:-1], q[:, :, :1], q[:, :, -1:])
    return q


# ---------------------------------------------------------------------------- checks before loading
def _short(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE


def read_bundle(folder: str | Path) -> dict:
    """``bundle.json`` of a model folder, checked: raises :class:`ModelError` (one line) when it is
    missing, not JSON, or asks for sizes no trained model has (negative, zero, absurdly large)."""
    folder = Path(folder)
    path = folder / "bundle.json"
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found" if not folder.exists() else f"{folder} is not a folder")
    if not path.is_file():
        raise ModelError(f"{folder} is not a popdl model folder (no bundle.json)")
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a text file; the model folder is damaged (copy it again, or rerun popdl train)") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                         "the model folder is damaged (copy it again, or rerun popdl train)") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({(exc.strerror or str(exc)).lower()})") from None
    _check_bundle(bundle, path)
    return bundle


def _check_bundle(b, path: Path) -> None:
    def bad(message: str) -> ModelError:
        return ModelError(f"{path}: {message}; the model folder is damaged (copy it again, or rerun popdl train)")

    if not isinstance(b, dict):
        raise bad(f"holds {type(b).__name__}, not a JSON object")
    if b.get("format") != FORMAT:
        raise ModelError(f"{path}: unsupported model format {b.get('format')!r} (this popdl reads format {FORMAT})")
    for key, may_be_empty in (("scenarios", False), ("param_names", True), ("stat_names", True)):
        names = b.get(key)
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names) or not (names or may_be_empty):
            raise bad(f"{key!r} is {_short(names)}, not a list of names")
        if len(names) > MAX_SIZE:
            raise bad(f"{key!r} lists {len(names)} names")
    inputs = b.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(i in _INPUT_DIMS for i in inputs):
        raise bad(f"'inputs' is {_short(inputs)}, not a list of {', '.join(_INPUT_DIMS)}")
    shapes = b.get("shapes")
    if not isinstance(shapes, dict):
        raise bad(f"'shapes' is {_short(shapes)}, not a mapping")
    for name in inputs:
        shape = shapes.get(name)
        if not isinstance(shape, list) or len(shape) != _INPUT_DIMS[name] or not all(_size(n) for n in shape):
            raise bad(f"'shapes.{name}' is {_short(shape)}; sizes are {_INPUT_DIMS[name]} whole number(s) from 1 to {MAX_SIZE}")
        if math.prod(shape) > MAX_VALUES:
            raise bad(f"'shapes.{name}' is {shape}, {math.prod(shape)} values per example")
    if "stats" in inputs and shapes["stats"] != [len(b["stat_names"])]:
        raise bad(f"'shapes.stats' is {shapes['stats']} but {len(b['stat_names'])} statistics are named")
    if "image" in inputs and "distances" in inputs and shapes["image"][1] != shapes["distances"][0]:
        raise bad(f"'shapes.image' {shapes['image']} and 'shapes.distances' {shapes['distances']} disagree on the SNPs")
    t = b.get("temperature")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
        raise bad(f"'temperature' is {_short(t)}, not a positive number")
    ic = b.get("interval_calibration", {})
    offsets = ic.get("offsets", {}) if isinstance(ic, dict) else ic
    if not isinstance(offsets, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in offsets.values()):
        raise bad(f"'interval_calibration' is {_short(b.get('interval_calibration'))}, not offsets per parameter")
    q = b.get("quantiles")
    if (not isinstance(q, list) or not q or len(q) > 1000
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1 for x in q)):
        raise bad(f"'quantiles' is {_short(q)}, not a list of levels between 0 and 1")
    for key in ("preprocessing", "scenario_params"):
        if not isinstance(b.get(key), dict):
            raise bad(f"{key!r} is {_short(b.get(key))}, not a mapping")
    config = b.get("config")
    if config is not None:
        if not isinstance(config, dict):
            raise bad(f"'config' is {_short(config)}, not a mapping")
        _check_config_sizes(config, b, bad)


def _check_config_sizes(config: dict, bundle: dict, bad) -> None:
    """Sizes in the stored run config that prediction allocates from: sane, and those of the network."""
    shapes = bundle["shapes"]
    features = config.get("features") if isinstance(config.get("features"), dict) else {}
    snps = features.get("snps")
    if snps is not None:
        if not _size(snps):
            raise bad(f"'config.features.snps' is {_short(snps)}; it must be a whole number from 1 to {MAX_SIZE}")
        trained = (shapes.get("distances") or [None])[0] if "distances" in bundle["inputs"] else \
            (shapes.get("image") or [None, None])[1] if "image" in bundle["inputs"] else None
        if trained is not None and trained != snps:
            raise bad(f"'config.features.snps' is {snps} but the network takes {trained} SNPs")
    samples = config.get("samples")
    if samples is not None:
        if not isinstance(samples, dict) or not samples or not all(_size(n) for n in samples.values()):
            raise bad(f"'config.samples' is {_short(samples)}; each population needs a whole number of individuals "
                      f"from 1 to {MAX_SIZE}")
        per_individual = features.get("phased") is False and features.get("unphased_image", "genotypes") == "genotypes"
        rows, what = (sum(samples.values()), "individuals") if per_individual else (2 * sum(samples.values()), "haplotypes")
        if "image" in bundle["inputs"] and shapes["image"][0] != rows:
            raise bad(f"'config.samples' gives {rows} {what} but the network takes {shapes['image'][0]}")
    genome = config.get("genome") if isinstance(config.get("genome"), dict) else {}
    length, loci = genome.get("length"), genome.get("loci", 1)
    if length is not None and (isinstance(length, bool) or not isinstance(length, (int, float))
                               or not math.isfinite(length) or not 0 < length <= 1e12):
        raise bad(f"'config.genome.length' is {_short(length)}, not a length in bp")
    if not _size(loci):
        raise bad(f"'config.genome.loci' is {_short(loci)}; it must be a whole number from 1 to {MAX_SIZE}")


def check_keras_file(path: str | Path) -> None:
    """Raise :class:`ModelError` unless ``path`` is a complete ``.keras`` archive (every member's
    checksum is verified), so that a truncated or damaged file is one line, not a Keras traceback."""
    path = Path(path)
    damaged = "the model folder is damaged (copy it again, or rerun popdl train)"
    if not path.is_file():
        raise ModelError(f"{path}: not found; {damaged}")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the file is empty; {damaged}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [m for m in _KERAS_MEMBERS if m not in names]
            if missing:
                raise ModelError(f"{path}: not a Keras model archive (no {', '.join(missing)}); {damaged}")
            broken = zf.testzip()
    except zipfile.BadZipFile:
        raise ModelError(f"{path}: truncated or not a Keras model archive (no readable zip directory); {damaged}") from None
    except (OSError, EOFError, zlib.error, RuntimeError) as exc:
        raise ModelError(f"{path}: cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); {damaged}") from None
    if broken is not None:
        raise ModelError(f"{path}: its member {broken} fails its checksum; {damaged}")


def check_model_folder(folder: str | Path) -> dict:
    """Check a model folder without loading Keras: its ``bundle.json`` (:func:`read_bundle`) and
    ``model.keras`` (:func:`check_keras_file`).  Returns the bundle."""
    bundle = read_bundle(folder)
    check_keras_file(Path(folder) / "model.keras")
    return bundle


def check_settings(bundle: dict, settings: dict, *, folder: str | Path = "the model") -> None:
    """Raise :class:`ModelError` when ``settings`` (a predict slice) would build inputs of other sizes
    than the network takes, before any data are read or allocated."""
    shapes, inputs = bundle["shapes"], bundle["inputs"]
    snps = settings.get("features", {}).get("snps")
    trained = shapes["distances"][0] if "distances" in inputs else shapes["image"][1] if "image" in inputs else None
    if trained is not None and snps != trained:
        raise ModelError(f"features.snps is {snps} but the model in {folder} was trained on {trained} SNPs; "
                         "give the config the model was trained with")
    samples = settings.get("samples")
    # One image row per haplotype, or per individual for an unphased model (features.phased: false).
    phased = bool(settings.get("features", {}).get("phased", True))
    if "image" in inputs and isinstance(samples, dict):
        rows = (2 if phased else 1) * sum(samples.values())
        if rows != shapes["image"][0]:
            what = "haplotypes" if phased else "individuals (unphased: one image row each)"
            raise ModelError(f"samples give {rows} {what} but the model in {folder} was trained on images of "
                             f"{shapes['image'][0]} rows; give the config the model was trained with")


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

        self.folder = Path(folder)
        self.bundle = check_model_folder(self.folder)
        try:
            self.keras_model = keras.saving.load_model(self.folder / "model.keras", compile=False)
        except Exception as exc:  # Keras raises many types for a damaged archive
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.folder / 'model.keras'}: Keras cannot load it ({type(exc).__name__}: {detail[:200]})") from None
        self.prep = Preprocessor.from_dict(self.bundle["preprocessing"])
        self.scenarios = self.bundle["scenarios"]
        self.param_names = self.bundle["param_names"]
        self.scenario_params = self.bundle["scenario_params"]
        self.stat_names = self.bundle["stat_names"]
        self.inputs = tuple(self.bundle["inputs"])
        self.temperature = float(self.bundle["temperature"])
        #: The quantile levels (e.g. 0.05, 0.5, 0.95) of :attr:`Prediction.quantiles`
        #: (``bundle.json`` stores them under ``quantiles``).
        self.levels = list(self.bundle["quantiles"])
        #: Per parameter, how far the interval's ends move on the standardised scale
        #: (conformal calibration, :func:`popdl.calibration.interval_offsets`; 0 in older bundles).
        offsets = (self.bundle.get("interval_calibration") or {}).get("offsets") or {}
        self.interval_offsets = np.array([float(offsets.get(p, 0.0)) for p in self.param_names])

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
        return self.answer(self.raw_outputs(images, distances, stats, batch_size=batch_size), calibrated=calibrated)

    def answer(self, out: dict, *, calibrated: bool = True) -> Prediction:
        """:meth:`raw_outputs` -> :class:`Prediction`: with ``calibrated``, the temperature
        and the intervals' conformal offsets applied (neither without)."""
        logits = out.get("scenario")
        probs = softmax(logits, self.temperature if calibrated else 1.0) if logits is not None else None
        est = lower = upper = q = None
        if "params" in out:
            z = np.sort(out["params"], axis=-1)  # quantiles never cross
            raw = self.prep.unstandardise(z)
            learning = self.prep.unstandardise(apply_interval_offsets(z, self.interval_offsets)) if calibrated else raw
            q = self.prep.natural(learning)
            lower, upper = q[:, :, 0], q[:, :, -1]
            # The estimate from the network's own quantiles (the offsets move only the interval), kept inside it.
            est = np.clip(self.prep.natural(point_estimate(raw, self.levels)), lower, upper)
        return Prediction(self.scenarios, probs, logits, self.param_names, est, lower, upper, q, list(self.levels))


def load_model(folder: str | Path) -> PopdlModel:
    """Load a model folder written by ``popdl train`` (see the module docstring)."""
    return PopdlModel(folder)
