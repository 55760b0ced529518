"""Calibration of the scenario probabilities: reliability, and temperature scaling.

The final network's probabilities are ``softmax(logits / T)``.  The
temperature ``T`` is fitted by :func:`calibrate` for the model it is applied
to, on examples that model never trained on: the *calibration part* of the
validation split, which the final fit leaves out (``train.calibration_fraction``;
:func:`popdl.training.calibration_mask` draws it).  ``T`` minimises the
negative log-likelihood (NLL) there, within ``[TEMPERATURE_BOUNDS]``.  A
temperature is one parameter fitted on a few hundred examples, so it must
first show that it is more than noise: a likelihood-ratio test of ``T = 1``
against the fitted ``T`` (twice the summed NLL gain, chi-squared with one
degree of freedom under ``T = 1``) must reject at :data:`TEMPERATURE_TEST_LEVEL`;
otherwise ``T = 1``.  (On the default config, a fitted ``T`` of 1.18 on 225
examples lowered the NLL by 1.4 %, p = 0.27, and raised the test set's ECE
from 0.024 to 0.032.)  When the test rejects, the temperature used is not the
fitted one but the end nearest 1 of its likelihood-ratio confidence interval at
the same level (the temperatures ``T`` with ``2 n (NLL(T) - NLL(fitted))``
below the test's critical value): the smallest change of the logits the
calibration examples show, where the best fit on a few hundred examples
overshoots (on the default config, 1.68 fitted on 225 examples, where the 450
test simulations were best served by about 1.3: the interval's end, 1.25,
lowered their ECE from 0.021 to 0.012, the fitted 1.68 raised it to 0.024).
With many examples the interval shrinks to the fitted value.  That ``T`` is
kept if it does not raise the expected calibration error (ECE) on the same
examples; otherwise the temperature nearest it on the geometric path to 1
that lowers the NLL without raising the ECE is kept, if one does (the ECE of
a few hundred examples is noisy: a smaller step often keeps part of the
gain), else ``T = 1``.
A fitted ``T`` at one
of its bounds is reported (``at_bound``) and logged as a warning: the logits
are then far from calibrated, which no temperature fixes.

The ECE here is that of the top-class probability in equal-width bins
(Guo et al. 2017), as :func:`reliability` computes it.

The parameter intervals are calibrated on the same held-out examples by
conformalized quantile regression (Romano et al. 2019): per parameter, the
conformity score of an example is how far its true value lies outside the
network's interval (negative inside), on the standardised target scale the
network predicts; the interval's two ends are moved out (or in) by the
``ceil((n + 1)(1 - a)) / n`` empirical quantile of the scores, which gives
intervals of coverage at least ``1 - a`` on exchangeable data
(:func:`interval_offsets`).  The offset is applied on the network's scale,
before the bounded transform, so the intervals stay inside the priors.
With a cross-fitted ensemble (``train.cross_fit``), the scores are those of
every example the final fit trained on, each by the member that left its fold
out (cross-conformal calibration, Vovk 2015; Barber et al. 2021): about 17
times the examples of the calibration part, which parameters of one scenario
need.  A single member is less accurate than the ensemble of k members, so
these offsets fit a member, and the ensemble's intervals then cover more than
nominal (measured on the default config's test set: 0.94 rather than 0.90 for
N1 and N2, whose members disagree most relative to their errors).
:func:`ensemble_narrowing` corrects for it on the calibration part, which no
member trained on: with the cross-conformal offsets, per example, whether the
ensemble's interval covers the true value minus the fraction of members' that
do.  The mean of that paired difference is the coverage the averaging adds;
its one-sided lower confidence bound at :data:`ENSEMBLE_GAIN_LEVEL` (zero if
negative) is what the ensemble's intervals surely add.  The offset is lowered,
down the cross-conformal scores, to the smallest at which the members'
coverage there plus that lower bound of the gain (measured again at the
lower offset, where the averaging gains more) still reaches nominal.  A gain
the few hundred calibration examples cannot tell from noise thus leaves the
offset as it was, and the intervals err on the wide side.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from popdl.model_io import softmax

log = logging.getLogger("popdl.calibration")

__all__ = ["TEMPERATURE_BOUNDS", "TEMPERATURE_TEST_LEVEL", "likelihood_ratio_p", "confidence_end", "reliability", "negative_log_likelihood", "fit_temperature", "calibrate",
           "interval_offsets", "MIN_CONFORMAL_EXAMPLES", "ensemble_narrowing", "ENSEMBLE_GAIN_LEVEL",
           "probability_text"]

#: Fewer held-out examples of a parameter than this: its interval is left as the network gives it.
MIN_CONFORMAL_EXAMPLES = 20

#: One-sided level of the lower confidence bound on the coverage an ensemble adds to its members'
#: (:func:`ensemble_narrowing`): the intervals are narrowed by no more than the calibration part shows.
ENSEMBLE_GAIN_LEVEL = 0.05

#: The temperatures :func:`fit_temperature` searches between.
TEMPERATURE_BOUNDS = (0.05, 20.0)

#: The fitted temperature is used only if the likelihood-ratio test of T = 1 rejects at this level.
TEMPERATURE_TEST_LEVEL = 0.05


def probability_text(p: float) -> str:
    """A scenario probability for people to read: three decimals, but "> 0.999" and "< 0.001"
    rather than "1.000" and "0.000" or "5.82e-06".  A probability calibrated on a few hundred
    simulations says nothing at the fourth decimal, and a network's softmax never gives
    exactly 1 or 0; an ABC method's vote share can, and is then written 1 or 0.  The files
    (predictions.csv, predictions.json) keep the numbers as computed."""
    p = float(p)
    if not math.isfinite(p):
        return "–"
    if p in (0.0, 1.0):
        return f"{p:.0f}"
    if p < 0.0005:
        return "< 0.001"
    if p > 0.9995:
        return "> 0.999"
    return f"{p:.3f}"


def likelihood_ratio_p(nll_one: float, nll_fitted: float, n: int) -> float:
    """p-value of the likelihood-ratio test of ``T = 1`` against a fitted temperature, from the
    mean NLLs of ``n`` examples: ``2 n (nll_one - nll_fitted)`` is chi-squared with one degree of
    freedom under ``T = 1``, whose survival function is ``erfc(sqrt(x / 2))``."""
    statistic = max(0.0, 2.0 * n * (nll_one - nll_fitted))
    return float(math.erfc(math.sqrt(statistic / 2.0)))


def confidence_end(logits: np.ndarray, labels: np.ndarray, fitted: float, *,
                   level: float = TEMPERATURE_TEST_LEVEL) -> float:
    """The end nearest 1 of the likelihood-ratio confidence interval of the temperature at
    ``level``: the T between 1 and ``fitted`` (the NLL's minimum) at which
    ``2 n (NLL(T) - NLL(fitted))`` equals the chi-squared critical value with one degree of
    freedom; 1 when 1 lies inside the interval."""
    from scipy.optimize import brentq
    from scipy.stats import chi2

    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0 or fitted == 1.0:
        return 1.0
    best = negative_log_likelihood(logits, labels, fitted)
    excess = float(chi2.isf(level, 1)) / (2.0 * labels.size)

    def gap(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, math.exp(log_t)) - best - excess

    if gap(0.0) <= 0.0:
        return 1.0
    # The NLL is convex in 1/T, hence falls monotonically from T = 1 to the fitted T: one root between.
    return float(math.exp(brentq(gap, 0.0, math.log(fitted), xtol=1e-10)))


def reliability(labels: np.ndarray, probabilities: np.ndarray, *, bins: int = 10) -> dict:
    """Reliability curve and expected calibration error of the top-class probability.

    Returns ``{"ece": float, "curve": [{low, high, confidence, accuracy, n}, ...]}``
    (one entry per equal-width bin; NaN confidence and accuracy in empty bins).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    conf = probabilities.max(axis=1)
    correct = (np.argmax(probabilities, axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    curve, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        if n:
            c, a = float(conf[sel].mean()), float(correct[sel].mean())
            ece += n / len(labels) * abs(a - c)
        else:
            c = a = float("nan")
        curve.append({"low": float(edges[b]), "high": float(edges[b + 1]), "confidence": c, "accuracy": a, "n": n})
    return {"ece": float(ece), "curve": curve}


def _log_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return float("nan")
    return float(-_log_softmax(logits, temperature)[np.arange(labels.size), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T in :data:`TEMPERATURE_BOUNDS` minimising the negative
    log-likelihood of ``softmax(logits / T)`` for ``labels`` (1 when there is nothing to fit)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    lo, hi = TEMPERATURE_BOUNDS
    res = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
                          bounds=(math.log(lo), math.log(hi)), method="bounded")
    return float(math.exp(res.x)) if res.success else 1.0


def calibrate(logits: np.ndarray, labels: np.ndarray, *, bins: int = 10) -> dict:
    """Fit the temperature on held-out ``logits`` / ``labels`` and decide whether to keep it.

    Returns ``temperature`` (the one to use: the fitted one, or 1), ``fitted``
    (what the fit found), ``kept``, ``reason``, ``at_bound``, ``n``, and the NLL
    and ECE on these examples before (T = 1) and after (the temperature used).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    out = {"n": int(labels.size), "fitted": 1.0, "temperature": 1.0, "kept": False, "at_bound": False,
           "bounds": list(TEMPERATURE_BOUNDS)}
    if labels.size == 0:
        out["reason"] = "no calibration examples (train.calibration_fraction is 0): T = 1"
        return out
    before = {"nll": negative_log_likelihood(logits, labels), "ece": reliability(labels, softmax(logits), bins=bins)["ece"]}
    t = fit_temperature(logits, labels)
    fitted = {"nll": negative_log_likelihood(logits, labels, t),
              "ece": reliability(labels, softmax(logits, t), bins=bins)["ece"]}
    lo, hi = TEMPERATURE_BOUNDS
    out["fitted"] = t
    out["at_bound"] = bool(t <= lo * 1.001 or t >= hi / 1.001)
    if out["at_bound"]:
        log.warning("the fitted temperature %.4g is at its bound [%g, %g]: the logits are far from calibrated "
                    "on the %d calibration examples", t, lo, hi, labels.size)
    p = likelihood_ratio_p(before["nll"], fitted["nll"], int(labels.size))
    out["p_value"] = p
    if fitted["nll"] < before["nll"] and p >= TEMPERATURE_TEST_LEVEL:
        out["reason"] = (f"T = {t:.3g} lowers the NLL on the {labels.size} calibration examples by "
                         f"{1 - fitted['nll'] / before['nll']:.1%}, which a likelihood-ratio test does not tell "
                         f"from chance (p = {p:.2g} >= {TEMPERATURE_TEST_LEVEL:g}): T = 1")
        after = before
    elif fitted["nll"] >= before["nll"]:
        out["reason"] = f"T = {t:.3g} would not lower the NLL on the calibration examples: T = 1"
        after = before
    else:
        # The end of the fitted T's confidence interval nearest 1: the change the examples show.
        end = confidence_end(logits, labels, t)
        chosen = {"nll": negative_log_likelihood(logits, labels, end),
                  "ece": reliability(labels, softmax(logits, end), bins=bins)["ece"]}
        out["confidence_end"] = end
        near = (f"T = {t:.3g} fits best (likelihood-ratio test of T = 1: p = {p:.2g}); T = {end:.3g} is the end "
                f"nearest 1 of its {1 - TEMPERATURE_TEST_LEVEL:.0%} confidence interval")
        if chosen["nll"] < before["nll"] and chosen["ece"] <= before["ece"]:
            out.update(temperature=end, kept=True,
                       reason=f"{near}, which lowers the NLL without raising the ECE on the calibration examples")
            after = chosen
        else:
            shrunk, after = _shrink(logits, labels, end, before, bins=bins)
            if shrunk is not None:
                out.update(temperature=shrunk, kept=True, shrunk=True,
                           reason=f"{near}, which would raise the ECE on the calibration examples; T = {shrunk:.3g}, "
                                  "the nearest to it on the way to 1 that lowers the NLL without raising the ECE there")
            else:
                out["reason"] = f"{near}, which would raise the ECE on the calibration examples, as would every " \
                                "temperature between it and 1: T = 1"
    out.update(nll_before=before["nll"], nll_after=after["nll"], ece_before=before["ece"], ece_after=after["ece"],
               nll_fitted=fitted["nll"], ece_fitted=fitted["ece"])
    log.info("calibration on %d held-out examples: T = %.3f (fitted %.3f, %s); NLL %.4f -> %.4f, ECE %.4f -> %.4f",
             labels.size, out["temperature"], t, "used" if out["kept"] else "not used", before["nll"], after["nll"],
             before["ece"], after["ece"])
    return out


#: Steps of the geometric path from the fitted temperature to 1 that :func:`calibrate` tries.
SHRINK_STEPS = 20


def _shrink(logits, labels, fitted: float, before: dict, *, bins: int) -> tuple[float | None, dict]:
    """The temperature nearest ``fitted`` on the geometric path ``fitted ** (j / SHRINK_STEPS)``
    (j = SHRINK_STEPS - 1 ... 1) that lowers the NLL and does not raise the ECE of T = 1
    (``before``), with its NLL and ECE; ``(None, before)`` if none does."""
    for j in range(SHRINK_STEPS - 1, 0, -1):
        t = float(fitted ** (j / SHRINK_STEPS))
        scores = {"nll": negative_log_likelihood(logits, labels, t),
                  "ece": reliability(labels, softmax(logits, t), bins=bins)["ece"]}
        if scores["nll"] < before["nll"] and scores["ece"] <= before["ece"]:
            return t, scores
    return None, before


def interval_offsets(quantiles: np.ndarray, true: np.ndarray, *, levels, param_names) -> dict:
    """Conformalized quantile regression offsets, one per parameter (module docstring).

    ``quantiles`` (n, parameters, levels) and ``true`` (n, parameters; NaN
    where the example's scenario lacks the parameter) on the network's
    standardised scale.  Returns ``{"offsets": {name: float}, "n": {name: int},
    "coverage_before": {...}, "coverage_after": {...}, "nominal": float}``;
    the offset is 0 for a parameter with fewer than
    :data:`MIN_CONFORMAL_EXAMPLES` held-out examples.
    """
    q = np.sort(np.asarray(quantiles, dtype=np.float64), axis=-1)
    true = np.asarray(true, dtype=np.float64)
    levels = [float(x) for x in levels]
    nominal = levels[-1] - levels[0]
    out = {"nominal": nominal, "offsets": {}, "n": {}, "coverage_before": {}, "coverage_after": {}}
    for j, name in enumerate(param_names):
        has = np.isfinite(true[:, j]) if true.size else np.zeros(0, bool)
        n = int(has.sum())
        out["n"][name] = n
        if n < MIN_CONFORMAL_EXAMPLES:
            out["offsets"][name] = 0.0
            continue
        y = true[has, j]
        offset = float(np.sort(_scores(q[has, j], y))[_conformal_rank(n, nominal) - 1])
        out["offsets"][name] = offset
        out["coverage_before"][name] = float(_covers(q[has, j], y, 0.0).mean())
        out["coverage_after"][name] = float(_covers(q[has, j], y, offset).mean())
    if out["coverage_after"]:
        log.info("interval calibration (nominal %.2f) on the held-out examples: %s", nominal,
                 ", ".join(f"{p} {out['coverage_before'][p]:.2f} -> {out['coverage_after'][p]:.2f} "
                           f"(offset {out['offsets'][p]:+.3f}, n {out['n'][p]})" for p in out["coverage_after"]))
    return out


def _scores(q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Conformity scores: how far ``y`` lies outside the interval of sorted quantiles ``q``
    (..., levels) (negative inside)."""
    return np.maximum(q[..., 0] - y, y - q[..., -1])


def _covers(q: np.ndarray, y: np.ndarray, offset: float) -> np.ndarray:
    """Whether the interval of quantiles ``q`` (..., levels), moved out by ``offset``, holds ``y``."""
    return (y >= q[..., 0] - offset) & (y <= q[..., -1] + offset)


def _conformal_rank(n: int, level: float) -> int:
    """The rank (1-based) of the conformal quantile at ``level`` among ``n`` scores."""
    return max(1, min(n, math.ceil((n + 1) * level)))


def ensemble_narrowing(record: dict, scores_quantiles: np.ndarray, scores_true: np.ndarray, *,
                       members: np.ndarray, ensemble: np.ndarray, true: np.ndarray, levels, param_names) -> dict:
    """Narrow cross-conformal offsets (``record``, :func:`interval_offsets` on single
    members' out-of-fold quantiles ``scores_quantiles`` against ``scores_true``) for the
    ensemble that averages the members (module docstring).

    ``members`` (k, n, parameters, levels): every member's quantiles on n examples none of
    them trained on; ``ensemble`` (n, parameters, levels): the ensemble's on the same;
    ``true`` (n, parameters; NaN where absent).  All on the standardised scale.
    Returns ``record`` with the offsets narrowed and, under ``ensemble``, per parameter
    the coverage gain measured at the cross-conformal offset (mean, standard error, n),
    the gain used (its lower confidence bound at the narrowed offset, not below 0) and
    the change of offset (never positive); parameters with fewer
    than :data:`MIN_CONFORMAL_EXAMPLES` examples there are left as they were.
    """
    from scipy.stats import norm

    levels = [float(x) for x in levels]
    nominal = levels[-1] - levels[0]
    z = float(norm.ppf(1.0 - ENSEMBLE_GAIN_LEVEL))
    q_scores = np.sort(np.asarray(scores_quantiles, dtype=np.float64), axis=-1)
    y_scores = np.asarray(scores_true, dtype=np.float64)
    mem = np.sort(np.asarray(members, dtype=np.float64), axis=-1)
    ens = np.sort(np.asarray(ensemble, dtype=np.float64), axis=-1)
    true = np.asarray(true, dtype=np.float64)
    out = {**record, "offsets": dict(record["offsets"]), "ensemble": {}}
    for j, name in enumerate(param_names):
        has = np.isfinite(true[:, j]) if true.size else np.zeros(0, bool)
        scored = np.isfinite(y_scores[:, j]) if y_scores.size else np.zeros(0, bool)
        n, n_scores = int(has.sum()), int(scored.sum())
        if n < MIN_CONFORMAL_EXAMPLES or n_scores < MIN_CONFORMAL_EXAMPLES or mem.shape[0] < 2:
            continue
        offset = float(record["offsets"][name])
        y = true[has, j]
        scores = np.sort(_scores(q_scores[scored, j], y_scores[scored, j]))

        def gain_at(c, y=y, ens_j=ens[has, j], mem_j=mem[:, has, j]):
            diff = _covers(ens_j, y, c).astype(np.float64) - _covers(mem_j, y, c).mean(axis=0)
            se = float(diff.std(ddof=1) / math.sqrt(diff.size))
            return float(diff.mean()), se, max(0.0, float(diff.mean()) - z * se)

        gain, se, used = gain_at(offset)
        narrowed, at = offset, (gain, se, used)
        # Down the members' scores: the smallest offset at which the members' cross-conformal coverage
        # plus the ensemble's gain there (lower bound) still reaches the nominal coverage.
        for r in range(_conformal_rank(n_scores, nominal) - 1, 0, -1):
            c = float(scores[r - 1])
            if c >= narrowed:
                continue
            g = gain_at(c)
            if r < _conformal_rank(n_scores, nominal - g[2]) or g[2] <= 0:
                break
            narrowed, at = c, g
        out["offsets"][name] = narrowed
        out["ensemble"][name] = {"coverage_gain": gain, "standard_error": se, "n": n, "gain_used": at[2],
                                 "offset_change": narrowed - offset}
    if out["ensemble"]:
        log.info("interval calibration, ensemble of %d: coverage gain over its members on the calibration part %s",
                 mem.shape[0], ", ".join(f"{p} {e['coverage_gain']:+.3f} (se {e['standard_error']:.3f}; offset "
                                          f"{e['offset_change']:+.3f})" for p, e in out["ensemble"].items()))
    return out
