"""What is fitted on the training examples and travels with the model.

:class:`Preprocessor` holds the mean and standard deviation of every summary
statistic, and per parameter whether it is learned on a log10 scale
(log-uniform prior, or a derived parameter that is always positive) and the
mean and standard deviation on that scale.  Training fits it
(:mod:`popdl.training`); the model folder stores it (:mod:`popdl.model_io`)
and applies it to new inputs and to the network's outputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from popdl.dataset import Dataset

__all__ = ["Preprocessor"]


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

    @classmethod
    def fit(cls, dataset: Dataset, splits=("train",)) -> Preprocessor:
        """Fit on ``splits`` of ``dataset``, one shard at a time."""
        m = dataset.manifest
        priors = m.get("priors", {})
        names = m["param_names"]
        n_stats = len(m["stat_names"])
        s1 = np.zeros(n_stats)
        s2 = np.zeros(n_stats)
        ns = np.zeros(n_stats)
        pmin = np.full(len(names), np.inf)
        raw = []
        for split in splits:
            for shard in dataset.shards(split, ("stats", "params")):
                s = np.asarray(shard["stats"], dtype=np.float64)
                ok = np.isfinite(s)
                s = np.where(ok, s, 0.0)
                s1 += s.sum(0)
                s2 += (s**2).sum(0)
                ns += ok.sum(0)
                p = np.asarray(shard["params"], dtype=np.float64)
                pmin = np.fmin(pmin, np.nanmin(np.where(np.isnan(p), np.inf, p), axis=0))
                raw.append(p)
        mean = s1 / np.maximum(ns, 1)
        std = np.sqrt(np.maximum(s2 / np.maximum(ns, 1) - mean**2, 0.0))
        std = np.where(std > 1e-12, std, 1.0)
        params = np.concatenate(raw) if raw else np.zeros((0, len(names)))
        log_scale = []
        for j, name in enumerate(names):
            prior = priors.get(name, {})
            bounds = prior.get("bounds", [-math.inf, math.inf])
            derived_positive = not all(math.isfinite(b) for b in bounds) and pmin[j] > 0
            log_scale.append(bool(prior.get("log_scale", False) or derived_positive))
        z = cls._forward(params, np.array(log_scale, bool))
        pmean = np.nanmean(np.where(np.isfinite(z), z, np.nan), axis=0) if len(z) else np.zeros(len(names))
        pstd = np.nanstd(np.where(np.isfinite(z), z, np.nan), axis=0) if len(z) else np.ones(len(names))
        pmean = np.nan_to_num(pmean, nan=0.0)
        pstd = np.where(np.isfinite(pstd) & (pstd > 1e-12), pstd, 1.0)
        return cls(
            stat_names=list(m["stat_names"]), stat_mean=mean.tolist(), stat_std=std.tolist(),
            param_names=list(names), log_scale=log_scale, param_mean=pmean.tolist(), param_std=pstd.tolist(),
            scenario_params={k: list(v) for k, v in m.get("scenario_params", {}).items()},
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
        """Standardised learning-scale parameters, float32 (NaN kept: masked in the loss)."""
        z = self._forward(params, np.array(self.log_scale, bool))
        return ((z - np.array(self.param_mean)) / np.array(self.param_std)).astype(np.float32)

    def learning_scale(self, params: np.ndarray) -> np.ndarray:
        """Parameters on their learning scale (log10 where log_scale), not standardised."""
        return self._forward(params, np.array(self.log_scale, bool))

    def unstandardise(self, z: np.ndarray) -> np.ndarray:
        """Standardised values (parameters on the last axis but one or last) -> learning scale."""
        z = np.asarray(z, dtype=np.float64)
        mean, std = np.array(self.param_mean), np.array(self.param_std)
        if z.ndim == 3:  # (n, parameters, quantiles)
            return z * std[None, :, None] + mean[None, :, None]
        return z * std + mean

    def natural(self, learning: np.ndarray) -> np.ndarray:
        """Learning scale -> natural units (undo log10)."""
        learning = np.asarray(learning, dtype=np.float64)
        logs = np.array(self.log_scale, bool)
        if learning.ndim == 3:
            logs = logs[None, :, None]
        with np.errstate(over="ignore"):
            return np.where(logs, 10.0 ** np.clip(learning, -300, 300), learning)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessor:
        return cls(**d)
