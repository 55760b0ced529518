"""Does an observed data set look like the simulations? (a prior-predictive check)

A network or an ABC method answers for any input, even one unlike anything
simulated; its answer then means little.  Two checks on the summary
statistics, against the reference simulations (all scenarios pooled):

* **per statistic**, the prior-predictive quantile of the observed value
  (mid-rank: the fraction of simulations below it, ties counted half);
  0 or 1 means outside the simulated range;
* **jointly**, the Mahalanobis distance of the observed statistics on the
  principal components of the standardised statistics (enough components
  for 95 % of the variance), with its p-value: the fraction of simulations
  at least as far from the centre.

A data set is flagged when the p-value is below ``alpha`` or a statistic
lies outside the simulated range.  :func:`pca_figure` draws the simulations
on the first two components, coloured by scenario, with the observed point.
"""

from __future__ import annotations

import numpy as np

from popdl import seeds
from popdl.abc import Standardiser

__all__ = ["Misspecification", "pca_figure"]


class Misspecification:
    """PCA of the reference statistics; scores observed statistics against it."""

    def __init__(self, reference: np.ndarray, *, stat_names, labels=None, scenarios=None, variance: float = 0.95):
        self.reference = np.asarray(reference, dtype=np.float64)
        self.stat_names = list(stat_names)
        self.labels = labels
        self.scenarios = scenarios
        self.scale = Standardiser(self.reference)
        z = self.scale(self.reference)
        self.center = z.mean(0)
        _, sv, vt = np.linalg.svd(z - self.center, full_matrices=False)
        var = sv**2 / max(1, z.shape[0] - 1)
        frac = np.cumsum(var) / var.sum() if var.sum() > 0 else np.ones_like(var)
        self.k = int(min(len(var), np.searchsorted(frac, variance) + 1))
        self.rotation = vt[: self.k].T
        self.var = np.maximum(var[: self.k], 1e-12)
        self.explained = (var / var.sum()).tolist() if var.sum() > 0 else []
        self.ref_scores = self.project(self.reference)
        self.ref_distance = self._distance(self.ref_scores)

    def project(self, stats: np.ndarray) -> np.ndarray:
        """Principal-component scores of statistics (n, statistics) -> (n, components)."""
        return (self.scale(np.atleast_2d(stats)) - self.center) @ self.rotation

    def _distance(self, scores: np.ndarray) -> np.ndarray:
        return np.sqrt((scores**2 / self.var).sum(1))

    def score(self, observed: np.ndarray, *, alpha: float = 0.01) -> dict:
        """The check of one observed statistics vector (statistics,)."""
        obs = np.asarray(observed, dtype=np.float64)
        ref = self.reference
        below = (ref < obs).sum(0)
        ties = (ref == obs).sum(0)
        quantile = (below + 0.5 * ties) / ref.shape[0]
        lo, hi = np.nanmin(ref, 0), np.nanmax(ref, 0)
        outside = [n for n, v, a, b in zip(self.stat_names, obs, lo, hi) if v < a or v > b]
        scores = self.project(obs)
        distance = float(self._distance(scores)[0])
        p_value = float((1 + (self.ref_distance >= distance).sum()) / (1 + self.ref_distance.size))
        flagged = p_value < alpha or bool(outside)
        reasons = []
        if p_value < alpha:
            reasons.append(f"farther from the simulations than {1 - p_value:.1%} of them (p = {p_value:.3g} < {alpha:g})")
        if outside:
            shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
            reasons.append(f"{len(outside)} statistic(s) outside the simulated range: {shown}")
        extreme = sorted(zip(self.stat_names, quantile), key=lambda t: -abs(t[1] - 0.5))[:5]
        return {
            "flagged": flagged,
            "summary": "; ".join(reasons) if reasons else "within the simulations",
            "distance": distance,
            "p_value": p_value,
            "alpha": alpha,
            "components": self.k,
            "explained_variance": self.explained[: self.k],
            "pc_scores": scores[0].tolist(),
            "quantiles": dict(zip(self.stat_names, map(float, quantile))),
            "outside_range": outside,
            "most_extreme": [{"statistic": n, "quantile": float(q)} for n, q in extreme],
        }


def pca_figure(model: Misspecification, observed: dict[str, np.ndarray], *, root_seed: int, max_points: int = 3000):
    """Matplotlib figure: reference simulations on PC1/PC2 by scenario, observed data sets as stars.

    At most ``max_points`` simulations are drawn, chosen by the report's stream
    (:func:`popdl.seeds.report`) of the run's ``root_seed``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = model.ref_scores
    rng = seeds.report(root_seed, "misspecification PCA")
    idx = rng.permutation(scores.shape[0])[:max_points]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if scores.shape[1] < 2:
        scores = np.column_stack([scores, np.zeros(scores.shape[0])])
    labels = model.labels if model.labels is not None else np.zeros(scores.shape[0], int)
    names = model.scenarios or ["simulations"]
    for s, name in enumerate(names):
        sel = idx[labels[idx] == s]
        ax.scatter(scores[sel, 0], scores[sel, 1], s=6, alpha=0.4, label=name)
    for name, stats in observed.items():
        p = model.project(stats)[0]
        ax.scatter([p[0]], [p[1] if p.size > 1 else 0.0], marker="*", s=220, c="black", edgecolors="white", zorder=5)
        ax.annotate(name, (p[0], p[1] if p.size > 1 else 0.0), textcoords="offset points", xytext=(6, 6))
    ev = model.explained + [0.0, 0.0]
    ax.set_xlabel(f"PC1 ({ev[0]:.0%})")
    ax.set_ylabel(f"PC2 ({ev[1]:.0%})")
    ax.set_title("Summary statistics: simulations and observed data")
    ax.legend(markerscale=2, fontsize=8)
    fig.tight_layout()
    return fig
