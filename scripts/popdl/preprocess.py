"""What is fitted on the training examples and travels with the model.

:class:`Preprocessor` holds the mean and standard deviation of every summary
statistic (and of log10 of the skewed non-negative ones, below), and per
parameter whether it is learned on a log10 scale (log-uniform prior, or a
derived parameter that is always positive), its bounds, and the mean and
standard deviation of its training targets.
Training fits it
(:mod:`popdl.training`); the model folder stores it (:mod:`popdl.model_io`)
and applies it to new inputs and to the network's outputs.

Scales of a parameter:

natural
    its units (generations, individuals, per-generation rates).
learning
    log10 of the natural value where ``log_scale``, the natural value
    otherwise; metrics (R², RMSE) and the ABC baselines work on it.
target
    what the network learns: for a parameter with bounds, the logit of its
    position between them on the learning scale, ``logit((ℓ − ℓ_lo) /
    (ℓ_hi − ℓ_lo))`` (clipped to ``[BOUND_EPS, 1 − BOUND_EPS]``), then
    standardised; without bounds, the standardised learning value.  Any
    real network output maps back (:meth:`Preprocessor.unstandardise`)
    inside the bounds, so every quantile, hence every interval, lies within
    the prior's support.

Bounds: those of a uniform, log-uniform or truncated-normal prior; for a
derived parameter (``expr``), whose support depends on other parameters,
the range of its training values (which lies inside that support); none for
a normal prior.

Statistics are standardised as they are. For a statistic whose training
values are all non-negative and right-skewed (skewness above
:data:`LOG_SKEW`: segregating sites, π, θ_W, d_xy, SFS bins when the priors
span orders of magnitude of θ), the preprocessor also records ε, the 1 %
quantile of its positive training values (skewness and quantile taken on a
systematic sample of at most :data:`FIT_SAMPLE_VALUES` values, every row
below that), and the mean and standard
deviation of ``log10(x + ε)``: a network built with the hyper-parameter
``stat_scale: log`` takes those statistics on that scale
(:class:`popdl.models.LogStatistics`, a fixed first layer). A random forest
does not care about a monotone transform; a network's first layer, linear
in its inputs, does, and which scale helps depends on the task (measured
with ``benchmarks/bench_stat_scale.py``: the log raised the default
scenarios' T_split, T_sc and f_sc, and lowered divergence_order's split
times and accuracy), so the sweep chooses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from popdl.dataset import Dataset

__all__ = ["Preprocessor", "BOUND_EPS", "LOG_SKEW", "FIT_SAMPLE_VALUES", "parameter_bounds"]

#: Positions within a parameter's bounds are clipped to [BOUND_EPS, 1 − BOUND_EPS]
#: before the logit (a value at a bound would map to infinity).
BOUND_EPS = 1e-4

#: A non-negative statistic whose training skewness exceeds this gets a log10(x + ε) scale.
LOG_SKEW = 1.0

#: At most this many statistic values (rows x statistics, float32: 64 MB) are held while
#: fitting, for each statistic's skewness and 1 % quantile; a training set above it gives
#: them from every k-th row (k the smallest that fits).  Means and standard deviations are
#: accumulated shard by shard over every row, whatever the size.
FIT_SAMPLE_VALUES = 1 << 24


def parameter_bounds(prior: dict, values: np.ndarray) -> list[float] | None:
    """``[lo, hi]`` (natural units) within which a parameter is learned, or None.

    ``prior``: the dataset manifest's entry (``bounds``, ``kinds``);
    ``values``: the parameter's training values (NaN where absent).  A prior
    with two finite, distinct bounds gives them (widened to the training
    values if another scenario defines the parameter differently); a derived
    parameter (every ``kinds`` entry an expression, ``"= ..."``) the range
    of its training values; anything else None (unbounded).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    lo, hi = (float(b) for b in prior.get("bounds", [-math.inf, math.inf]))
    kinds = list(prior.get("kinds", {}).values())
    if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
        if v.size:
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
        return [lo, hi]
    if kinds and all(str(k).startswith("=") for k in kinds) and v.size and v.max() > v.min():
        return [float(v.min()), float(v.max())]
    return None


@dataclass
class Preprocessor:
    """Standardisation of statistics and parameters, fitted on training data."""

    stat_names: list[str]
    stat_mean: list[float]
    stat_std: list[float]
    param_names: list[str]
    log_scale: list[bool]
    param_mean: list[float]
    param_std: list[float]
    scenario_params: dict[str, list[str]] = field(default_factory=dict)
    #: Per parameter ``[lo, hi]`` in natural units (learned through a logit), or None.
    #: Empty in bundles written before bounds existed: no bounded transform.
    bounds: list = field(default_factory=list)
    #: Per statistic the ε of ``log10(x + ε)`` (module docstring), or None (no log scale),
    #: and the mean and standard deviation of ``log10(x + ε)`` (None where no ε).
    #: Empty in bundles written before the log scale existed.
    stat_log_offset: list = field(default_factory=list)
    stat_log_mean: list = field(default_factory=list)
    stat_log_std: list = field(default_factory=list)

    @classmethod
    def fit(cls, dataset: Dataset, splits=("train",)) -> Preprocessor:
        """Fit on ``splits`` of ``dataset``, read one shard at a time (twice for the
        statistics: their log scale needs ε first); memory is bounded by
        :data:`FIT_SAMPLE_VALUES` whatever the number of examples."""
        m = dataset.manifest
        priors = m.get("priors", {})
        names = m["param_names"]
        n_stats = len(m["stat_names"])
        total = sum(dataset.size(split) for split in splits)
        stride = max(1, -(-total * n_stats // FIT_SAMPLE_VALUES))  # keep every stride-th row
        pmin = np.full(len(names), np.inf)
        raw, sample = [], []
        moments, row = _Moments(n_stats), 0
        for split in splits:
            for shard in dataset.shards(split, ("stats", "params")):
                stats = shard["stats"]
                moments.add(stats)
                sample.append(np.array(stats[(-row) % stride::stride], dtype=np.float32))
                row += len(stats)
                p = np.asarray(shard["params"], dtype=np.float64)
                pmin = np.fmin(pmin, np.nanmin(np.where(np.isnan(p), np.inf, p), axis=0))
                raw.append(p)
        sample = np.concatenate(sample) if sample else np.zeros((0, n_stats), np.float32)
        offsets = [_log_offset(sample[:, j].astype(np.float64)) for j in range(n_stats)]
        del sample
        mean, std = moments.result()
        logged = np.array([o is not None for o in offsets], dtype=bool)
        log_moments = _Moments(int(logged.sum()))
        if logged.any():
            for split in splits:
                for shard in dataset.shards(split, ("stats",)):
                    log_moments.add(_log_stats(shard["stats"][:, logged], [o for o in offsets if o is not None]))
        log_mean, log_std = np.full(n_stats, np.nan), np.full(n_stats, np.nan)
        log_mean[logged], log_std[logged] = log_moments.result()
        params = np.concatenate(raw) if raw else np.zeros((0, len(names)))
        log_scale, bounds = [], []
        for j, name in enumerate(names):
            prior = priors.get(name, {})
            prior_bounds = prior.get("bounds", [-math.inf, math.inf])
            derived_positive = not all(math.isfinite(b) for b in prior_bounds) and pmin[j] > 0
            log_scale.append(bool(prior.get("log_scale", False) or derived_positive))
            b = parameter_bounds(prior, params[:, j]) if len(params) else None
            if b is not None and log_scale[-1] and b[0] <= 0:
                b = None  # no log10 of a non-positive bound
            bounds.append(b)
        z = _to_target(cls._forward(params, np.array(log_scale, bool)), _learning_bounds(bounds, log_scale))
        pmean = np.nanmean(np.where(np.isfinite(z), z, np.nan), axis=0) if len(z) else np.zeros(len(names))
        pstd = np.nanstd(np.where(np.isfinite(z), z, np.nan), axis=0) if len(z) else np.ones(len(names))
        pmean = np.nan_to_num(pmean, nan=0.0)
        pstd = np.where(np.isfinite(pstd) & (pstd > 1e-12), pstd, 1.0)
        return cls(
            stat_names=list(m["stat_names"]), stat_mean=mean.tolist(), stat_std=std.tolist(),
            param_names=list(names), log_scale=log_scale, param_mean=pmean.tolist(), param_std=pstd.tolist(),
            scenario_params={k: list(v) for k, v in m.get("scenario_params", {}).items()}, bounds=bounds,
            stat_log_offset=offsets,
            stat_log_mean=[float(v) if b else None for v, b in zip(log_mean, logged)],
            stat_log_std=[float(v) if b else None for v, b in zip(log_std, logged)],
        )

    @staticmethod
    def _forward(params, log_scale):
        params = np.asarray(params, dtype=np.float64)
        if params.ndim == 3:  # (n, parameters, quantiles)
            log_scale = np.asarray(log_scale)[None, :, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(log_scale, np.log10(params), params)

    def stats(self, stats: np.ndarray) -> np.ndarray:
        """Standardised statistics, float32; non-finite values become 0 (the mean)."""
        z = (np.asarray(stats, dtype=np.float32) - np.float32(self.stat_mean)) / np.float32(self.stat_std)
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)

    def params(self, params: np.ndarray) -> np.ndarray:
        """Standardised targets (module docstring), float32 (NaN kept: masked in the loss)."""
        z = self.target(params)
        mean, std = np.array(self.param_mean), np.array(self.param_std)
        if z.ndim == 3:
            mean, std = mean[None, :, None], std[None, :, None]
        return ((z - mean) / std).astype(np.float32)

    def target(self, params: np.ndarray) -> np.ndarray:
        """Natural units -> the target scale, not standardised (logit within the bounds)."""
        return _to_target(self.learning_scale(params), self._learning_bounds())

    def stat_log(self) -> dict | None:
        """The constants of :class:`popdl.models.LogStatistics` (which statistics get a
        log scale, and how), or None where no statistic has one."""
        if not any(o is not None for o in self.stat_log_offset):
            return None
        on = [o is not None for o in self.stat_log_offset]
        fill = lambda values, default: [float(v) if b else default for v, b in zip(values, on)]  # noqa: E731
        return {"mean": list(map(float, self.stat_mean)), "std": list(map(float, self.stat_std)),
                "offset": fill(self.stat_log_offset, 1.0), "log_mean": fill(self.stat_log_mean, 0.0),
                "log_std": fill(self.stat_log_std, 1.0), "mask": on}

    def _learning_bounds(self):
        return _learning_bounds(self.bounds or [None] * len(self.param_names), self.log_scale)

    def learning_scale(self, params: np.ndarray) -> np.ndarray:
        """Parameters on their learning scale (log10 where log_scale), not standardised."""
        return self._forward(params, np.array(self.log_scale, bool))

    def unstandardise(self, z: np.ndarray) -> np.ndarray:
        """Standardised targets (parameters on the last axis but one or last) -> learning
        scale; bounded parameters land within their bounds whatever ``z``."""
        z = np.asarray(z, dtype=np.float64)
        mean, std = np.array(self.param_mean), np.array(self.param_std)
        if z.ndim == 3:  # (n, parameters, quantiles)
            t = z * std[None, :, None] + mean[None, :, None]
        else:
            t = z * std + mean
        return _from_target(t, self._learning_bounds())

    def natural(self, learning: np.ndarray) -> np.ndarray:
        """Learning scale -> natural units (undo log10); bounded parameters are
        kept within their bounds (10 ** log10(hi) may round above hi)."""
        learning = np.asarray(learning, dtype=np.float64)
        logs = _broadcast(np.array(self.log_scale, bool), learning.ndim)
        with np.errstate(over="ignore"):
            out = np.where(logs, 10.0 ** np.clip(learning, -300, 300), learning)
        bounds = self.bounds or [None] * len(self.param_names)
        lo = np.array([b[0] if b else -np.inf for b in bounds], dtype=np.float64)
        hi = np.array([b[1] if b else np.inf for b in bounds], dtype=np.float64)
        return np.clip(out, _broadcast(lo, out.ndim), _broadcast(hi, out.ndim))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessor:
        return cls(**d)


def _log_offset(values: np.ndarray) -> float | None:
    """ε of ``log10(x + ε)`` for one statistic's training values, or None (kept linear)."""
    v = values[np.isfinite(values)]
    if v.size < 3 or v.min() < 0:
        return None
    sd = v.std()
    if sd <= 0 or float(np.mean((v - v.mean()) ** 3)) / sd**3 <= LOG_SKEW:
        return None
    return float(np.quantile(v[v > 0], 0.01))


class _Moments:
    """Per column mean and standard deviation of the finite values, added a block of
    rows at a time (Chan et al.'s pairwise update: exact whatever the order of
    magnitude of the mean); std 1 where constant."""

    def __init__(self, columns: int):
        self.n = np.zeros(columns)
        self.mean = np.zeros(columns)
        self.m2 = np.zeros(columns)

    def add(self, block) -> None:
        x = np.asarray(block, dtype=np.float64)
        ok = np.isfinite(x)
        nb = ok.sum(0).astype(np.float64)
        if not nb.any():
            return
        xb = np.where(ok, x, 0.0)
        mb = xb.sum(0) / np.maximum(nb, 1)
        m2b = (np.where(ok, x - mb, 0.0) ** 2).sum(0)
        n = self.n + nb
        delta = mb - self.mean
        share = np.divide(nb, n, out=np.zeros_like(n), where=n > 0)
        self.m2 = self.m2 + m2b + delta**2 * self.n * share
        self.mean = self.mean + delta * share
        self.n = n

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        std = np.sqrt(np.maximum(self.m2 / np.maximum(self.n, 1), 0.0))
        return self.mean.copy(), np.where(std > 1e-12, std, 1.0)


def _log_stats(stats: np.ndarray, offsets: list) -> np.ndarray:
    """``stats`` with ``log10(x + ε)`` in the columns that have an ε (negatives, which
    training never saw, are clipped to 0 first); NaN stays NaN."""
    out = np.array(stats, dtype=np.float64, copy=True)
    for j, eps in enumerate(offsets):
        if eps is not None:
            with np.errstate(invalid="ignore"):
                out[..., j] = np.log10(np.maximum(out[..., j], 0.0) + eps)
    return out


def _learning_bounds(bounds, log_scale) -> tuple[np.ndarray, np.ndarray]:
    """Per parameter ``(lo, hi)`` on the learning scale; NaN where unbounded."""
    lo = np.full(len(log_scale), np.nan)
    hi = lo.copy()
    for j, (b, log) in enumerate(zip(bounds, log_scale)):
        if b is not None and b[0] is not None and b[1] is not None:
            lo[j], hi[j] = (math.log10(b[0]), math.log10(b[1])) if log else (float(b[0]), float(b[1]))
    return lo, hi


def _broadcast(v: np.ndarray, ndim: int) -> np.ndarray:
    return v[None, :, None] if ndim == 3 else v


def _to_target(learning: np.ndarray, bounds) -> np.ndarray:
    """Learning scale -> target scale: logit of the position within the bounds where bounded."""
    learning = np.asarray(learning, dtype=np.float64)
    lo, hi = (_broadcast(b, learning.ndim) for b in bounds)
    bounded = np.isfinite(lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.clip((learning - lo) / (hi - lo), BOUND_EPS, 1.0 - BOUND_EPS)
        logit = np.log(u) - np.log1p(-u)
    return np.where(bounded & np.isfinite(learning), logit, learning)


def _from_target(t: np.ndarray, bounds) -> np.ndarray:
    """Target scale -> learning scale (the inverse of :func:`_to_target` within the clip)."""
    lo, hi = (_broadcast(b, t.ndim) for b in bounds)
    bounded = np.isfinite(lo)
    with np.errstate(over="ignore", invalid="ignore"):
        u = 0.5 * (1.0 + np.tanh(0.5 * t))  # the logistic function, without overflow
        inside = np.clip(lo + (hi - lo) * u, lo, hi)
    return np.where(bounded, inside, t)
