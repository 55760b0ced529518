"""ABC baselines on the summary statistics, on the networks' simulations and test set.

Two classic methods, fitted on the reference table made of the dataset's
``train`` and ``validation`` splits (the simulations the final network is
trained on) and scored on its ``test`` split:

* **rejection ABC** (Pritchard et al. 1999; Beaumont 2002): statistics are
  standardised (z-scores on the reference table, constant ones dropped); for
  each target the ``tolerance`` fraction of simulations nearest in Euclidean
  distance are kept, weighted with the Epanechnikov kernel
  ``1 − (d/δ)²`` (δ the largest kept distance).  Scenario probabilities are
  the weighted proportions among the kept simulations.  Parameters get
  Beaumont's local-linear regression adjustment, ``θ*ᵢ = θᵢ − (sᵢ − s₀)ᵀβ``
  with β from a weighted (slightly ridge-regularised) least-squares fit; the
  estimate is the weighted median of the adjusted values and the interval
  their weighted equal-tailed quantiles.  The regression uses the leading
  principal components of the statistics (one per 10 kept simulations),
  as a fit on all statistics overfits when few simulations are kept.
* **ABC random forest** (Pudlo et al. 2016; Raynal et al. 2019): a
  scikit-learn :class:`~sklearn.ensemble.RandomForestClassifier` on the raw
  statistics gives scenario probabilities (vote proportions); one
  :class:`~sklearn.ensemble.RandomForestRegressor` per parameter gives the
  estimate (the forest's mean prediction) and, as in quantile-regression
  forests (Meinshausen 2006), intervals from weighted quantiles of the
  reference values, each weighted by how often it shares a leaf with the
  target.

Parameters are handled on the networks' learning scale: log10 for
parameters with a log-uniform prior (or derived and always positive),
natural otherwise; R² is computed on that scale.  A parameter is estimated
from, and scored on, the simulations of the scenarios that have it.

Outputs of :func:`run_abc` (``results/{run}/abc/``): ``metrics.json``
(accuracy, confusion matrix, per-parameter R², RMSE and interval coverage
of each method), ``test_predictions.tsv`` and ``empirical.json`` (answers
for each observed data set).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from popdl.dataset import Dataset
from popdl.io import provenance, write_json, write_table

__all__ = [
    "ReferenceTable",
    "load_reference",
    "Standardiser",
    "RejectionABC",
    "RandomForestABC",
    "METHODS",
    "get_method",
    "weighted_quantile",
    "epanechnikov",
    "score",
    "run_abc",
    "comparison_table",
    "method_order",
    "paired_differences",
    "who_won",
]

log = logging.getLogger("popdl.abc")


# ---------------------------------------------------------------------------- data
class ReferenceTable:
    """Statistics, labels and learning-scale parameters of a set of simulations."""

    def __init__(self, stats, labels, params, *, scenarios, param_names, stat_names, log_scale):
        self.stats = np.asarray(stats, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.params = np.asarray(params, dtype=np.float64)  # natural units, NaN where absent
        self.scenarios = list(scenarios)
        self.param_names = list(param_names)
        self.stat_names = list(stat_names)
        self.log_scale = np.asarray(log_scale, dtype=bool)

    def __len__(self) -> int:
        return self.labels.size

    @property
    def learning(self) -> np.ndarray:
        """Parameters on the learning scale (log10 where ``log_scale``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.log_scale, np.log10(self.params), self.params)


def _log_scale(manifest: dict, params: np.ndarray) -> list[bool]:
    """Same rule as the networks' preprocessing: log-uniform prior, or unbounded and always positive."""
    out = []
    for j, name in enumerate(manifest["param_names"]):
        prior = manifest.get("priors", {}).get(name, {})
        bounds = prior.get("bounds", [-math.inf, math.inf])
        col = params[:, j]
        col = col[np.isfinite(col)]
        positive = col.size > 0 and col.min() > 0
        out.append(bool(prior.get("log_scale", False) or (not all(math.isfinite(b) for b in bounds) and positive)))
    return out


def load_reference(dataset: str | Path | Dataset, splits=("train", "validation")) -> ReferenceTable:
    """The simulations of ``splits`` of a dataset folder as a :class:`ReferenceTable`."""
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    parts = [ds.load(s, ("stats", "labels", "params")) for s in splits if ds.size(s)]
    m = ds.manifest
    if not parts:
        raise ValueError(f"{ds.folder}: no simulations in the {'/'.join(splits)} split(s)")
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in ("stats", "labels", "params")}
    train = ds.load("train", ("params",))["params"] if ds.size("train") else arrays["params"]
    return ReferenceTable(
        arrays["stats"], arrays["labels"], arrays["params"], scenarios=m["scenarios"], param_names=m["param_names"],
        stat_names=m["stat_names"], log_scale=_log_scale(m, np.asarray(train, dtype=np.float64)),
    )


class Standardiser:
    """z-scores fitted on reference statistics; constant (or non-finite) statistics are dropped."""

    def __init__(self, stats: np.ndarray):
        s = np.where(np.isfinite(stats), stats, np.nan)
        self.mean = np.nanmean(s, axis=0)
        self.std = np.nanstd(s, axis=0)
        self.keep = np.isfinite(self.std) & (self.std > 1e-12 * np.maximum(1.0, np.abs(self.mean)))

    def __call__(self, stats: np.ndarray) -> np.ndarray:
        z = (np.asarray(stats, dtype=np.float64)[..., self.keep] - self.mean[self.keep]) / self.std[self.keep]
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


# ---------------------------------------------------------------------------- helpers
def epanechnikov(d: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """Epanechnikov weights ``1 − (d/δ)²`` (0 beyond δ); rows where δ = 0 get equal weights."""
    d = np.asarray(d, dtype=np.float64)
    bw = np.asarray(bandwidth, dtype=np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.clip(1.0 - (d / bw) ** 2, 0.0, None)
    w = np.where(bw > 0, w, 1.0)
    # The farthest kept simulation has weight 0 by construction; keep it tiny but positive.
    return np.maximum(w, 1e-6)


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q) -> np.ndarray:
    """Quantiles ``q`` of each row of ``values`` under ``weights`` (same shape; last axis is the sample).

    Uses the midpoint rule on the cumulative weights (interpolated), which
    gives the usual sample quantiles for equal weights.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    flat_v = values.reshape(-1, values.shape[-1])
    flat_w = weights.reshape(-1, weights.shape[-1])
    out = np.empty((flat_v.shape[0], q.size))
    for i in range(flat_v.shape[0]):
        ok = np.isfinite(flat_v[i]) & (flat_w[i] > 0)
        v, w = flat_v[i][ok], flat_w[i][ok]
        if v.size == 0:
            out[i] = np.nan
            continue
        order = np.argsort(v)
        v, w = v[order], w[order]
        cum = (np.cumsum(w) - 0.5 * w) / w.sum()
        out[i] = np.interp(q, cum, v)
    return out.reshape(*values.shape[:-1], q.size)


def _ridge_slopes(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, ridge: float) -> np.ndarray:
    """β of a weighted least-squares fit of ``y`` on centred ``x`` with an intercept (ridge on β)."""
    sw = w.sum()
    xm = (w[:, None] * x).sum(0) / sw
    ym = (w * y).sum() / sw
    xc, yc = x - xm, y - ym
    a = (xc * w[:, None]).T @ xc + ridge * sw * np.eye(x.shape[1])
    b = (xc * w[:, None]).T @ yc
    return np.linalg.solve(a, b)


# ---------------------------------------------------------------------------- methods
class ABCMethod:
    """Fitted on a reference table; answers scenario probabilities and parameter posteriors."""

    name = "base"
    label = "base"

    def fit(self, ref: ReferenceTable) -> "ABCMethod":
        raise NotImplementedError

    def predict(self, stats: np.ndarray, *, interval: float = 0.9) -> dict:
        """For targets ``stats`` (n, statistics): ``probs`` (n, scenarios) and, per parameter
        on the learning scale, ``estimate``, ``lower``, ``upper`` (each (n, parameters))."""
        raise NotImplementedError


METHODS: dict[str, type[ABCMethod]] = {}


def register(cls):
    METHODS[cls.name] = cls
    return cls


def get_method(name: str, **kwargs) -> ABCMethod:
    """An ABC method by name (``rejection`` or ``abc_rf``)."""
    if name not in METHODS:
        raise ValueError(f"unknown ABC method {name!r} (valid: {', '.join(METHODS)})")
    return METHODS[name](**kwargs)


@register
class RejectionABC(ABCMethod):
    """Rejection ABC with Epanechnikov weights and local-linear regression adjustment."""

    name = "rejection"
    label = "rejection ABC"

    def __init__(self, *, tolerance: float = 0.05, adjust: bool = True, ridge: float = 0.1, **_):
        self.tolerance = float(tolerance)
        self.adjust = adjust
        self.ridge = ridge

    def fit(self, ref: ReferenceTable) -> "RejectionABC":
        self.ref = ref
        self.scale = Standardiser(ref.stats)
        self.z = self.scale(ref.stats)
        self.theta = ref.learning
        return self

    def _neighbours(self, stats):
        zt = self.scale(np.atleast_2d(stats))
        n_ref = self.z.shape[0]
        k = int(min(n_ref, max(2, round(self.tolerance * n_ref))))
        # Squared distances in blocks of targets, keeping memory bounded.
        idx = np.empty((zt.shape[0], k), dtype=np.int64)
        dist = np.empty((zt.shape[0], k))
        zz = (self.z**2).sum(1)
        for a in range(0, zt.shape[0], 256):
            b = zt[a : a + 256]
            d2 = np.maximum((b**2).sum(1)[:, None] + zz[None, :] - 2 * b @ self.z.T, 0.0)
            part = np.argpartition(d2, k - 1, axis=1)[:, :k]
            pd2 = np.take_along_axis(d2, part, axis=1)
            order = np.argsort(pd2, axis=1)
            idx[a : a + 256] = np.take_along_axis(part, order, axis=1)
            dist[a : a + 256] = np.sqrt(np.take_along_axis(pd2, order, axis=1))
        return zt, idx, dist

    def predict(self, stats, *, interval: float = 0.9) -> dict:
        zt, idx, dist = self._neighbours(stats)
        w = epanechnikov(dist, dist[:, -1])
        n, k = idx.shape
        n_sc = len(self.ref.scenarios)
        labels = self.ref.labels[idx]
        probs = np.zeros((n, n_sc))
        for s in range(n_sc):
            probs[:, s] = (w * (labels == s)).sum(1)
        probs /= probs.sum(1, keepdims=True)
        q = [(1 - interval) / 2, 0.5, (1 + interval) / 2]
        n_par = self.theta.shape[1]
        est = np.full((n, n_par), np.nan)
        lo, hi = est.copy(), est.copy()
        for j in range(n_par):
            has = np.isfinite(self.theta[:, j])
            if not has.any():
                continue
            # Neighbours among the simulations that have the parameter (its scenarios only).
            sub = _SubRejection(self.z[has], self.theta[has, j], self.tolerance)
            e, l_, h_ = sub.posterior(zt, q=q, adjust=self.adjust, ridge=self.ridge,
                                      bounds=(np.nanmin(self.theta[:, j]), np.nanmax(self.theta[:, j])))
            est[:, j], lo[:, j], hi[:, j] = e, l_, h_
        return {"probs": probs, "estimate": est, "lower": lo, "upper": hi}


class _SubRejection:
    """Rejection + adjustment of one parameter among the simulations that have it.

    The regression uses the leading principal components of the standardised
    statistics, at most one per ``per_predictor`` kept simulations, so that
    the local fit never has more predictors than it can estimate.
    """

    def __init__(self, z, theta, tolerance, *, per_predictor: int = 10):
        self.z, self.theta, self.tolerance, self.per_predictor = z, theta, tolerance, per_predictor
        _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
        self.rotation = vt.T

    def posterior(self, zt, *, q, adjust, ridge, bounds):
        n_ref = self.z.shape[0]
        k = int(min(n_ref, max(2, round(self.tolerance * n_ref))))
        zz = (self.z**2).sum(1)
        out = np.empty((zt.shape[0], 3))
        for a in range(0, zt.shape[0], 256):
            b = zt[a : a + 256]
            d2 = np.maximum((b**2).sum(1)[:, None] + zz[None, :] - 2 * b @ self.z.T, 0.0)
            part = np.argpartition(d2, k - 1, axis=1)[:, :k]
            dist = np.sqrt(np.take_along_axis(d2, part, axis=1))
            w = epanechnikov(dist, dist.max(1))
            theta = self.theta[part]
            if adjust and k > 3:
                n_pc = max(1, min(self.rotation.shape[1], k // self.per_predictor))
                for i in range(b.shape[0]):
                    x = (self.z[part[i]] - b[i]) @ self.rotation[:, :n_pc]
                    beta = _ridge_slopes(x, theta[i], w[i], ridge=ridge)
                    theta[i] = np.clip(theta[i] - x @ beta, *bounds)
            out[a : a + 256] = weighted_quantile(theta, w, q)
        return out[:, 1], out[:, 0], out[:, 2]


@register
class RandomForestABC(ABCMethod):
    """ABC random forests: classification votes and quantile-regression-forest intervals."""

    name = "abc_rf"
    label = "ABC-RF"

    def __init__(self, *, trees: int = 100, min_samples_leaf: int = 5, seed: int = 0, threads: int = 1, **_):
        self.trees, self.min_samples_leaf, self.seed, self.threads = int(trees), int(min_samples_leaf), int(seed), int(threads)

    def fit(self, ref: ReferenceTable) -> "RandomForestABC":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        self.ref = ref
        x = np.nan_to_num(ref.stats, nan=0.0, posinf=0.0, neginf=0.0)
        common = dict(n_estimators=self.trees, min_samples_leaf=self.min_samples_leaf, random_state=self.seed,
                      n_jobs=self.threads)
        self.classifier = RandomForestClassifier(max_features="sqrt", **common).fit(x, ref.labels)
        theta = ref.learning
        self.regressors = []
        for j in range(theta.shape[1]):
            has = np.isfinite(theta[:, j])
            if has.sum() < 2:
                self.regressors.append(None)
                continue
            rf = RandomForestRegressor(max_features=1 / 3, **common).fit(x[has], theta[has, j])
            leaves = rf.apply(x[has])
            self.regressors.append((rf, leaves, theta[has, j]))
        return self

    def predict(self, stats, *, interval: float = 0.9) -> dict:
        x = np.nan_to_num(np.atleast_2d(np.asarray(stats, dtype=np.float64)), nan=0.0, posinf=0.0, neginf=0.0)
        probs = np.zeros((x.shape[0], len(self.ref.scenarios)))
        probs[:, self.classifier.classes_] = self.classifier.predict_proba(x)
        q = [(1 - interval) / 2, 0.5, (1 + interval) / 2]
        n_par = len(self.regressors)
        est = np.full((x.shape[0], n_par), np.nan)
        lo, hi = est.copy(), est.copy()
        for j, fitted in enumerate(self.regressors):
            if fitted is None:
                continue
            rf, leaves, theta = fitted
            est[:, j] = rf.predict(x)
            w = qrf_weights(leaves, rf.apply(x))
            qs = weighted_quantile(np.broadcast_to(theta, w.shape), w, q)
            lo[:, j], hi[:, j] = qs[:, 0], qs[:, 2]
        return {"probs": probs, "estimate": est, "lower": lo, "upper": hi}


def qrf_weights(train_leaves: np.ndarray, target_leaves: np.ndarray) -> np.ndarray:
    """Quantile-regression-forest weights (targets × reference): the mean over trees of
    1/|leaf| for the reference points in the target's leaf."""
    n_t, n_trees = target_leaves.shape
    n_ref = train_leaves.shape[0]
    w = np.zeros(n_t * n_ref)
    for t in range(n_trees):
        order = np.argsort(train_leaves[:, t], kind="stable")
        sorted_leaves = train_leaves[order, t]
        start = np.searchsorted(sorted_leaves, target_leaves[:, t], side="left")
        count = np.searchsorted(sorted_leaves, target_leaves[:, t], side="right") - start
        total = int(count.sum())
        if total == 0:
            continue
        rows = np.repeat(np.arange(n_t), count)
        first = np.repeat(np.cumsum(count) - count, count)
        cols = order[np.arange(total) - first + np.repeat(start, count)]
        np.add.at(w, rows * n_ref + cols, np.repeat(1.0 / np.maximum(count, 1), count))
    return w.reshape(n_t, n_ref) / n_trees


# ---------------------------------------------------------------------------- scoring
def score(pred: dict, ref: ReferenceTable, *, interval: float) -> dict:
    """Accuracy, confusion matrix and per-parameter R², RMSE and coverage of ``pred`` on ``ref`` (learning scale)."""
    chosen = pred["probs"].argmax(1)
    n_sc = len(ref.scenarios)
    confusion = np.zeros((n_sc, n_sc), dtype=int)
    np.add.at(confusion, (ref.labels, chosen), 1)
    truth = ref.learning
    params = {}
    for j, name in enumerate(ref.param_names):
        ok = np.isfinite(truth[:, j]) & np.isfinite(pred["estimate"][:, j])
        if ok.sum() < 2:
            continue
        t, e = truth[ok, j], pred["estimate"][ok, j]
        ss_tot = ((t - t.mean()) ** 2).sum()
        inside = (pred["lower"][ok, j] <= t) & (t <= pred["upper"][ok, j])
        params[name] = {
            "r2": float(1 - ((t - e) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
            "rmse": float(np.sqrt(((t - e) ** 2).mean())),
            "coverage": float(inside.mean()),
            "interval_width": float(np.mean(pred["upper"][ok, j] - pred["lower"][ok, j])),
            "n": int(ok.sum()),
            "scale": "log10" if ref.log_scale[j] else "natural",
        }
    return {
        "accuracy": float((chosen == ref.labels).mean()) if ref.labels.size else float("nan"),
        "confusion": confusion.tolist(),
        "log_loss": float(-np.mean(np.log(np.clip(pred["probs"][np.arange(len(chosen)), ref.labels], 1e-12, None)))),
        "params": params,
        "interval": interval,
    }


def answers(pred: dict, ref: ReferenceTable, i: int) -> dict:
    """One target's answer in natural units: scenario probabilities and parameter intervals."""
    out = {"probabilities": dict(zip(ref.scenarios, map(float, pred["probs"][i]))),
           "scenario": ref.scenarios[int(pred["probs"][i].argmax())], "params": {}}
    for j, name in enumerate(ref.param_names):
        vals = [pred[k][i, j] for k in ("estimate", "lower", "upper")]
        if not all(np.isfinite(vals)):
            continue
        if ref.log_scale[j]:
            vals = [10.0**v for v in vals]
        out["params"][name] = dict(zip(("estimate", "lower", "upper"), map(float, vals)))
    return out


def run_abc(
    dataset: str | Path,
    out: str | Path,
    *,
    tolerance: float = 0.05,
    trees: int = 100,
    min_samples_leaf: int = 5,
    interval: float = 0.9,
    seed: int = 0,
    threads: int = 1,
    observed: dict[str, np.ndarray] | None = None,
    config_hash: str,
) -> dict:
    """Fit both methods on train+validation, score them on test, answer the ``observed``
    statistics (name -> (statistics,) array); write ``out``/metrics.json,
    test_predictions.tsv and empirical.json.  Returns the metrics.

    ``config_hash``: the abc job's settings hash (:func:`popdl.stages.settings_hash`),
    recorded in metrics.json and empirical.json as their provenance.
    """
    out = Path(out)
    ds = Dataset(dataset)
    ref = load_reference(ds, ("train", "validation"))
    test = load_reference(ds, ("test",))
    test.log_scale = ref.log_scale
    observed = observed or {}
    for name, stats in observed.items():
        if np.asarray(stats).shape != (len(ref.stat_names),):
            raise ValueError(f"observed data set {name!r} has {np.asarray(stats).size} statistics, the simulations {len(ref.stat_names)}")
    metrics = {"methods": {}, "n_reference": len(ref), "n_test": len(test), "scenarios": ref.scenarios,
               "param_names": ref.param_names, "tolerance": tolerance, "interval": interval,
               "provenance": provenance(config_hash=config_hash, seeds={"root": seed})}
    empirical = {name: {} for name in observed}
    table = pd.DataFrame({"scenario": [ref.scenarios[i] for i in test.labels], "label": test.labels})
    settings = {"rejection": {"tolerance": tolerance}, "abc_rf": {"trees": trees, "min_samples_leaf": min_samples_leaf,
                                                                  "seed": seed, "threads": threads}}
    for name, kwargs in settings.items():
        start = time.perf_counter()
        method = get_method(name, **kwargs).fit(ref)
        pred = method.predict(test.stats, interval=interval)
        m = score(pred, test, interval=interval)
        m["label"] = method.label
        m["seconds"] = time.perf_counter() - start
        metrics["methods"][name] = m
        for s, sc in enumerate(ref.scenarios):
            table[f"{name}_p_{sc}"] = pred["probs"][:, s]
        for j, p in enumerate(ref.param_names):
            table[f"{name}_{p}"] = pred["estimate"][:, j]
        if observed:
            obs = method.predict(np.stack([np.asarray(v, dtype=np.float64) for v in observed.values()]), interval=interval)
            for i, data_name in enumerate(observed):
                empirical[data_name][name] = answers(obs, ref, i)
        log.info("abc %s: accuracy %.3f in %.1f s", name, m["accuracy"], m["seconds"])
    write_table(out / "test_predictions.tsv", table)
    write_json(out / "empirical.json", {"interval": interval, "data": empirical, "provenance": metrics["provenance"]})
    write_json(out / "metrics.json", metrics)
    return metrics


# ---------------------------------------------------------------------------- comparison
def method_order(methods: dict) -> list[str]:
    """The keys of ``methods``: those of :data:`METHODS` in its order, then any others."""
    return [k for k in METHODS if k in methods] + [k for k in methods if k not in METHODS]


def comparison_table(abc_metrics: dict, cnn_metrics: dict | None) -> pd.DataFrame:
    """One row per method (network, rejection ABC, ABC-RF): test accuracy, then R² and
    coverage of each parameter.  ``cnn_metrics`` is the network's evaluation summary
    (``accuracy`` and ``params: {name: {r2, coverage}}``), or None when absent."""
    rows = []
    if cnn_metrics:
        rows.append(("network", cnn_metrics))
    methods = abc_metrics["methods"]
    order = method_order(methods)
    rows += [(methods[k].get("label", k), methods[k]) for k in order]
    params = abc_metrics["param_names"]
    records = []
    for label, m in rows:
        rec = {"method": label, "accuracy": m.get("accuracy", float("nan"))}
        for p in params:
            pm = (m.get("params") or {}).get(p, {})
            rec[f"r2_{p}"] = pm.get("r2", float("nan"))
            rec[f"coverage_{p}"] = pm.get("coverage", float("nan"))
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _r2_resampled(y: np.ndarray, e: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """R² of estimates ``e`` of ``y`` on each row of resampled indices ``idx`` (draws, n)."""
    yy, ee = y[idx], e[idx]
    ss_tot = ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - ((yy - ee) ** 2).sum(axis=1) / ss_tot


def paired_differences(network: pd.DataFrame, abc_table: pd.DataFrame, abc_metrics: dict, *,
                       rng: np.random.Generator, draws: int = 2000, level: float = 0.95) -> dict[str, dict]:
    """How far the network's lead over each ABC method, per task, is beyond the test set's noise.

    ``network``: evaluation/test_predictions.tsv (probabilities ``p_{scenario}``, natural-unit
    estimates ``{name}`` and truths ``true_{name}``); ``abc_table``: abc/test_predictions.tsv (the
    same simulations in the same order, estimates on each parameter's learning scale); the
    test set is resampled ``draws`` times (paired: one resample serves every method) and each
    task's measure (accuracy; R² on the learning scale, over the simulations that have the
    parameter) recomputed.  Returns ``{task: {method label: {"difference", "ci"}}}``: the
    network's value minus the method's, and the ``level`` percentile interval of that
    difference over the resamples.  A task is left out when its values, recomputed from the
    tables, differ from abc_metrics' (tables not of the same simulations).
    """
    labels = abc_table["label"].to_numpy()
    if len(network) != len(abc_table) or not np.array_equal(network["label"].to_numpy(), labels):
        raise ValueError(f"the network's test predictions ({len(network)} rows) and the ABC baselines' "
                         f"({len(abc_table)} rows) are not the same simulations")
    methods = abc_metrics.get("methods", {})
    order = method_order(methods)
    tail = (1.0 - level) / 2.0
    out: dict[str, dict] = {}

    def record(task: str, net_value: np.ndarray, values: dict[str, np.ndarray], point: dict[str, float]) -> None:
        verdicts = {}
        for key, boot in values.items():
            if not math.isclose(float(boot[0]), point[key], rel_tol=1e-6, abs_tol=1e-9):
                log.warning("who won: %s of %s recomputed from the tables (%.6g) is not abc/metrics.json's (%.6g); "
                            "no interval for it", task, key, float(boot[0]), point[key])
                continue
            diff = net_value - boot
            lo, hi = np.nanquantile(diff[1:], [tail, 1.0 - tail])
            verdicts[methods[key].get("label", key)] = {"difference": float(diff[0]), "ci": [float(lo), float(hi)]}
        if verdicts:
            out[task] = verdicts

    scenarios = abc_metrics.get("scenarios", [])
    columns = [f"p_{s}" for s in scenarios]
    n = len(labels)
    if n >= 2 and scenarios and all(c in network for c in columns):
        idx = np.vstack([np.arange(n), rng.integers(0, n, size=(draws, n))])  # row 0: the test set itself
        net = (network[columns].to_numpy().argmax(axis=1) == labels)[idx].mean(axis=1)
        values = {k: (abc_table[[f"{k}_p_{s}" for s in scenarios]].to_numpy().argmax(axis=1) == labels)[idx].mean(axis=1)
                  for k in order if all(f"{k}_p_{s}" in abc_table for s in scenarios)}
        record("scenario", net, values, {k: float(methods[k].get("accuracy", np.nan)) for k in values})
    for name in abc_metrics.get("param_names", []):
        if f"true_{name}" not in network or name not in network:
            continue
        truth = network[f"true_{name}"].to_numpy(dtype=np.float64)
        estimate = network[name].to_numpy(dtype=np.float64)
        scored = {k: (methods[k].get("params") or {}).get(name) for k in order}
        scored = {k: v for k, v in scored.items() if v and f"{k}_{name}" in abc_table}
        if not scored:
            continue
        log10 = {v.get("scale") == "log10" for v in scored.values()}
        if len(log10) != 1:
            continue
        rows = np.flatnonzero(np.isfinite(truth) & np.isfinite(estimate))
        if rows.size < 2:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            y, e = (np.log10(truth[rows]), np.log10(estimate[rows])) if log10.pop() else (truth[rows], estimate[rows])
        idx = np.vstack([np.arange(rows.size), rng.integers(0, rows.size, size=(draws, rows.size))])
        net = _r2_resampled(y, e, idx)
        values = {k: _r2_resampled(y, abc_table[f"{k}_{name}"].to_numpy(dtype=np.float64)[rows], idx) for k in scored}
        record(name, net, values, {k: float(v.get("r2", np.nan)) for k, v in scored.items()})
    return out


def who_won(abc_metrics: dict, evaluation: dict, paired: dict | None = None) -> list[dict]:
    """One verdict per task on the shared test set: scenario accuracy, then the R² of
    each parameter (learning scale).  Each is ``{"task", "measure", "values": {method
    label: value}, "winner", "margin"}``: the network (``evaluation``, the network's
    evaluation/metrics.json) against each ABC method of ``abc_metrics``
    (abc/metrics.json); ``margin`` is the winner's lead over the runner-up; equal
    best values make ``winner`` "tie", with the methods in ``tied``.  With ``paired``
    (:func:`paired_differences`), ``versus`` holds the network's difference from the best
    ABC method on the task and its interval: ``{"method", "difference", "ci", "verdict"}``,
    the verdict "network" or the method's label when the interval excludes 0, else "level"."""
    methods = abc_metrics.get("methods", {})
    order = method_order(methods)
    tasks = []
    scenarios = abc_metrics.get("scenarios")
    if scenarios is None or len(scenarios) > 1:  # one scenario: nothing to choose
        tasks.append(("scenario", "accuracy", (evaluation.get("classification") or {}).get("accuracy"),
                      {k: methods[k].get("accuracy") for k in order}))
    reg = evaluation.get("regression") or {}
    for p in abc_metrics.get("param_names", []):
        tasks.append((p, "R²", (reg.get(p) or {}).get("r2"),
                      {k: ((methods[k].get("params") or {}).get(p) or {}).get("r2") for k in order}))
    out = []
    for task, measure, net, abc in tasks:
        values = {"network": net, **{methods[k].get("label", k): v for k, v in abc.items()}}
        ranked = sorted(((v, m) for m, v in values.items() if v is not None and math.isfinite(v)), reverse=True)
        if not ranked:
            continue
        margin = ranked[0][0] - ranked[1][0] if len(ranked) > 1 else float("nan")
        tied = [m for v, m in ranked if abs(v - ranked[0][0]) < 1e-12]
        verdict = {"task": task, "measure": measure, "values": values,
                   "winner": ranked[0][1] if len(tied) == 1 else "tie", "tied": tied if len(tied) > 1 else [],
                   "margin": margin}
        against = (paired or {}).get(task, {})
        baselines = sorted(((v, m) for m, v in values.items() if m in against and v is not None and math.isfinite(v)),
                           reverse=True)
        if baselines and net is not None and math.isfinite(net):
            best = baselines[0][1]
            diff, (lo, hi) = against[best]["difference"], against[best]["ci"]
            verdict["versus"] = {"method": best, "difference": diff, "ci": [lo, hi],
                                 "verdict": "network" if lo > 0 else best if hi < 0 else "level"}
        out.append(verdict)
    return out
