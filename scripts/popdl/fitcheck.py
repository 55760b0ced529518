"""Does the answer reproduce the data?  A posterior predictive check of the network's answer.

The misspecification check (:mod:`popdl.misspec`) asks whether an observed
data set looks like *any* of the simulations (a prior-predictive check).
This check asks more: whether data simulated from the network's *answer* -
its most probable scenario, with parameter values drawn from its estimates -
look like the observed data.  A history that fits leaves the observed
summary statistics among those of its replicates; one that does not (a
scenario the config lacks, a filter or a sampling the simulations do not
reproduce) leaves some far out.

For data set ``name`` (:func:`check_fit`):

* ``replicates`` parameter sets of the answer's scenario, each free
  parameter drawn from the network's marginal posterior: the inverse of its
  quantile function, interpolated (on a log scale for positive parameters)
  between the quantile levels it predicts, at a uniform level between the
  outer two (the random stream :func:`popdl.seeds.fit_check`).  Parameters the
  network does not estimate (fixed ones) take their prior; derived ones their
  expression; the scenario's constraints hold by rejection.  The marginals
  are drawn independently (the network predicts no correlations), so the
  replicates spread wider than the joint posterior: a statistic far outside
  them is all the more telling;
* each replicate is simulated and featurised exactly as the training
  simulations were (:func:`popdl.simulate.simulate_chunk`,
  :func:`popdl.features.features_chunk`: the same simulator, genome, samples,
  missing calls and filters), as draw :data:`FIT_DRAWS` + i of the scenario
  (seeds beyond any planned draw);
* per statistic, the posterior predictive p-value: twice the smaller tail of
  the observed value's mid-rank among the replicates;
* jointly, the Mahalanobis distance of the observed statistics on the
  replicates' principal components (statistics standardised by the
  replicates; the components of :data:`VARIANCE` of their variance, at most
  one per :data:`PER_COMPONENT` replicates, which a covariance fitted on a
  few hundred replicates supports), and its p-value: the fraction of
  replicates at least as far, each measured on the components of the others
  (left out of the fit, as the data are: the two are then exchangeable when
  the answer fits, and the p-value is not biased by the fitting).  The
  distance follows the correlations between statistics: a strong deviation
  along a few components stands out where the average over all statistics
  would dilute it.  A statistic constant among the replicates that the data
  do not share fails the check outright.

* how many statistics lie outside the replicates' range, against how many
  of each replicate's lie outside the range of the others (and of the data):
  its p-value is the share of the n + 1 data sets with at least as many.
  Deviations along directions of little variance among the replicates, which
  the components leave out, are counted there.

The data set *fits* unless the joint p-value or the count's is below
:data:`ALPHA` (so the check's false alarms stay below twice that); the
statistics with the smallest p-values say where it does not.  Written to
``results/{run}/predict/{name}/fit_check.json`` (the workflow's
``check_fit`` rule, ``predict.fit_check`` replicates; 0 skips it) and shown in
the report.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from popdl import seeds
from popdl.errors import DataError
from popdl.model_io import read_bundle
from popdl.plan import SEED_COLUMNS
from popdl.scenarios import Scenario

__all__ = ["check_fit", "parameter_draws", "score_fit", "simulated_features", "tajima_advice", "FIT_DRAWS", "ALPHA", "MIN_REPLICATES"]

log = logging.getLogger("popdl.fitcheck")

#: The replicates are draws FIT_DRAWS + i of the answer's scenario: their simulator seeds and missing calls
#: come from streams no planned draw uses.
FIT_DRAWS = 1 << 40
#: A data set whose joint p-value is below this does not fit its answer.
ALPHA = 0.01
#: Fewest replicates of a fit check (a p-value cannot fall below 1 / (replicates + 1)).
MIN_REPLICATES = 20
#: The joint check keeps the principal components of this share of the replicates' variance ...
VARIANCE = 0.95
#: ... and at most one per this many replicates.
PER_COMPONENT = 10


def parameter_draws(scenario: Scenario, answer: dict, *, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` parameter sets of ``scenario`` drawn from the network's ``answer`` (a predictions.json
    ``network`` entry with ``levels`` and each parameter's ``quantiles``), one row each, in the
    scenario's parameter order."""
    levels = np.asarray(answer.get("levels") or [], dtype=np.float64)
    samplers = {}
    for name in scenario.parameter_names:
        prior = scenario.priors[name]
        q = np.asarray((answer.get("params", {}).get(name) or {}).get("quantiles") or [], dtype=np.float64)
        if prior.derived or prior.kind == "fixed" or q.size != levels.size or q.size < 2 or not np.isfinite(q).all():
            continue
        q = np.sort(q)
        positive = bool((q > 0).all())
        scale = np.log10(q) if positive else q

        def sample(r, scale=scale, positive=positive, bounds=prior.bounds):
            x = float(np.interp(r.uniform(levels[0], levels[-1]), levels, scale))
            x = 10.0**x if positive else x
            return min(max(x, bounds[0]), bounds[1])

        samplers[name] = sample
    rows = []
    for _ in range(n):
        values, _tries = scenario.draw_with_tries(rng, samplers=samplers)
        rows.append(values)
    return pd.DataFrame(rows, columns=scenario.parameter_names)


def _two_sided(quantile: np.ndarray, n: int) -> np.ndarray:
    """Two-sided p-values of mid-rank quantiles among ``n`` replicates (never below 1 / n)."""
    return np.minimum(1.0, 2 * np.minimum(quantile, 1 - quantile) + 1.0 / n)


def _components(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centre, the first ``k`` principal axes and their variances of the rows of ``z``."""
    centre = z.mean(axis=0)
    _, sv, vt = np.linalg.svd(z - centre, full_matrices=False)
    var = sv[:k] ** 2 / max(1, z.shape[0] - 1)
    return centre, vt[:k].T, np.maximum(var, 1e-12)


def _distance(z_fit: np.ndarray, x: np.ndarray, k: int) -> float:
    """Mahalanobis distance of ``x`` on the first ``k`` principal components of ``z_fit``'s rows."""
    centre, axes, var = _components(z_fit, k)
    scores = (np.asarray(x) - centre) @ axes
    return float(np.sqrt((scores**2 / var).sum()))


#: Relative difference below which an observed statistic equals a simulated one: the simulations' statistics are
#: stored as float32 (about 7 digits), the data's are computed in float64.
SAME = 1e-6


def snapped(observed: np.ndarray, simulated: np.ndarray) -> np.ndarray:
    """``observed`` (statistics,) with each value that equals its nearest simulated value (simulations,
    statistics) within :data:`SAME` replaced by it: an r² of 1 in a population of one individual, or a
    statistic every simulation has the same value of, is not beyond the simulations by a rounding."""
    obs = np.array(observed, dtype=np.float64)
    sim = np.asarray(simulated, dtype=np.float64)
    if not sim.size:
        return obs
    gap = np.abs(np.where(np.isfinite(sim), sim, np.inf) - obs)
    nearest = np.argmin(gap, axis=0)
    value = sim[nearest, np.arange(sim.shape[1])]
    close = np.isfinite(obs) & np.isfinite(value) & (np.abs(value - obs) <= SAME * np.maximum(np.abs(value), 1e-12))
    obs[close] = value[close]
    return obs


def _outside_count_p(obs: np.ndarray, rep: np.ndarray) -> float:
    """The p-value of how many statistics of ``obs`` lie outside the range of the replicates ``rep``:
    the share of the n + 1 data sets (the replicates and the data, exchangeable when the answer fits)
    with at least as many statistics outside the range of the n others.  Correlated statistics leave
    many outside together; counting so among the replicates themselves accounts for it."""
    finite = np.isfinite(obs) & np.isfinite(rep).all(axis=0)
    if not finite.any():
        return 1.0
    pool = np.vstack([rep[:, finite], obs[None, finite]])
    ordered = np.sort(pool, axis=0)
    # A member lies below the others' range when it is below the pool's second smallest value (above: the
    # second largest): only the strict minimum (maximum) can be.
    counts = (pool < ordered[1]).sum(axis=1) + (pool > ordered[-2]).sum(axis=1)
    return float((counts >= counts[-1]).sum() / pool.shape[0])


def score_fit(observed: np.ndarray, replicates: np.ndarray, stat_names: list[str], *, alpha: float = ALPHA) -> dict:
    """The posterior predictive check of ``observed`` statistics (statistics,) against the
    ``replicates``' (replicates, statistics); see the module docstring."""
    rep = np.asarray(replicates, dtype=np.float64)
    obs = snapped(observed, rep)
    n = rep.shape[0]
    ordered = np.sort(rep, axis=0)
    lo = np.array([np.searchsorted(ordered[:, j], obs[j], "left") for j in range(obs.size)])
    hi = np.array([np.searchsorted(ordered[:, j], obs[j], "right") for j in range(obs.size)])
    q_obs = (lo + 0.5 * (hi - lo)) / n
    p_stat = _two_sided(q_obs, n)
    # Jointly: on the statistics that vary among the replicates, standardised by them.
    spread = rep.std(axis=0)
    varies = spread > 0
    constant_differs = [stat_names[j] for j in np.flatnonzero(~varies) if obs[j] != rep[0, j]]
    centre, scale = rep[:, varies].mean(axis=0), spread[varies]
    z_rep, z_obs = (rep[:, varies] - centre) / scale, (obs[varies] - centre) / scale
    k = 0
    if varies.any():
        _, sv, _ = np.linalg.svd(z_rep - z_rep.mean(axis=0), full_matrices=False)
        share = np.cumsum(sv**2) / (sv**2).sum()
        k = int(max(1, min(np.searchsorted(share, VARIANCE) + 1, n // PER_COMPONENT, sv.size)))
    d_obs = _distance(z_rep, z_obs, k) if k else 0.0
    # Each replicate against the others (left out of the fit, as the observed data are).
    d_rep = np.array([_distance(np.delete(z_rep, i, axis=0), z_rep[i], k) for i in range(n)]) if k else np.zeros(n)
    p_joint = float((1 + (d_rep >= d_obs).sum()) / (1 + n)) if not constant_differs else 1.0 / (1 + n)
    order = np.argsort(p_stat, kind="stable")
    worst = [{"statistic": stat_names[j], "p": round(float(p_stat[j]), 4), "quantile": round(float(q_obs[j]), 4),
              "observed": float(obs[j]), "replicates_median": float(np.median(rep[:, j]))} for j in order[:8]]
    outside = [stat_names[j] for j in range(obs.size) if obs[j] < ordered[0, j] or obs[j] > ordered[-1, j]]
    p_count = _outside_count_p(obs, rep)
    fits = p_joint >= alpha and p_count >= alpha
    hints = [] if fits else tajima_advice({"below": [stat_names[j] for j in range(obs.size) if obs[j] < ordered[0, j]],
                                           "above": [stat_names[j] for j in range(obs.size) if obs[j] > ordered[-1, j]]},
                                          among="replicate")
    return {
        "fits": bool(fits),
        "p_value": p_joint,
        "distance": d_obs,
        "components": k,
        "alpha": alpha,
        "constant_differs": constant_differs,
        "quantiles": {name: round(float(v), 4) for name, v in zip(stat_names, q_obs)},
        "p_values": {name: round(float(v), 4) for name, v in zip(stat_names, p_stat)},
        "worst": worst,
        "outside": outside,
        "p_outside": p_count,
        "summary": (f"the data lie among the replicates of the answer (p = {p_joint:.3g}; "
                    f"{len(outside)} of {obs.size} statistics outside their range, p = {p_count:.3g})" if fits else
                    "the answer does not reproduce the data: "
                    + "; ".join(([f"they lie farther from its replicates than {1 - p_joint:.1%} of them "
                                  f"(p = {p_joint:.3g} < {alpha:g})"] if p_joint < alpha else [])
                                + [f"{len(outside)} of {obs.size} statistics outside the replicates' range"
                                   + (f", more than for {1 - p_count:.1%} of the replicates (p = {p_count:.3g} < "
                                      f"{alpha:g})" if p_count < alpha else "")])
                    + ", furthest " + ", ".join(f"{w['statistic']} (p = {w['p']:.2g})" for w in worst[:3])
                    + "".join(f"; {h}" for h in hints)),
    }


def _config(bundle: dict) -> dict:
    config = dict(bundle.get("config") or {})
    missing = [k for k in ("seed", "samples", "genome", "scenarios", "features", "simulator") if k not in config]
    if missing:
        raise DataError(f"the model folder's bundle.json has no {', '.join(missing)} in its config: a model of an "
                        "earlier popdl, which cannot simulate its answer; retrain it")
    return config


#: Tajima's D of one population, by its name's prefix.
TAJIMA = "tajimas_d_"
#: The overlay that adds a scenario with growth to a two-population config.
GROWTH_OVERLAY = "config/overlays/growth.yaml"


def tajima_advice(sides: dict[str, list[str]], *, among: str) -> list[str]:
    """What a Tajima's D outside every ``among`` (``simulation``, ``replicate``) says: ``sides``
    maps ``below`` and ``above`` to statistics outside on that side (others are ignored)."""
    pops = {side: [s[len(TAJIMA):] for s in sides.get(side, []) if s.startswith(TAJIMA)] for side in ("below", "above")}
    out = []
    if pops["below"]:
        out.append(f"Tajima's D below every {among} in {', '.join(pops['below'])} (more rare variants than any "
                   f"{among}): population growth, which constant sizes cannot make ({GROWTH_OVERLAY} adds a scenario "
                   "with it to a two-population config)")
    if pops["above"]:
        out.append(f"Tajima's D above every {among} in {', '.join(pops['above'])} (fewer rare variants than any "
                   f"{among}): a recent bottleneck, structure within a population, or rare alleles filtered out of "
                   "the data and not out of the simulations (features.min_maf, min_mac)")
    return out


def simulated_features(sim_config: dict, features_config: dict, scenario: Scenario, plan: pd.DataFrame, *,
                       root_seed: int | None = None, progress_every: float = 30.0) -> dict:
    """The features of ``plan``'s draws of ``scenario``, simulated and featurised as a chunk's
    ``simulate`` and ``features`` jobs make them (their configs' slices), in a temporary folder."""
    from popdl.features import features_chunk, load_features
    from popdl.simulate import simulate_chunk

    with tempfile.TemporaryDirectory(prefix="popdl-sims-") as tmp:
        sims, feats = Path(tmp) / "sims.npz", Path(tmp) / "features.npz"
        simulate_chunk(sim_config, scenario, plan, sims, progress_every=progress_every)
        features_chunk(features_config, sims, feats, root_seed=root_seed, progress_every=progress_every)
        return load_features(feats)


def check_fit(model: str | Path, prediction: str | Path, observed: str | Path, *, replicates: int, out: str | Path,
              progress_every: float = 30.0) -> dict:
    """Simulate ``replicates`` data sets from the network's answer in ``prediction`` (a
    predictions.json) with the model folder ``model``'s config, score ``observed`` (the data
    set's observed.npz) against them (:func:`score_fit`) and write the result to ``out`` (JSON)."""
    from popdl.io import provenance, write_json
    from popdl.predict import load_observed

    if replicates < MIN_REPLICATES:
        raise DataError(f"a fit check needs at least {MIN_REPLICATES} replicates, got {replicates}")
    bundle = read_bundle(model)
    config = _config(bundle)
    try:
        pred = json.loads(Path(prediction).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{prediction}: not a readable predictions.json ({str(exc).splitlines()[0]})") from None
    answer = pred.get("network") or {}
    name = str(pred.get("name") or Path(prediction).parent.name)
    scenario_name = answer.get("scenario") or (next(iter(config["scenarios"])) if len(config["scenarios"]) == 1 else None)
    if scenario_name not in config["scenarios"]:
        raise DataError(f"{prediction}: the network's answer names no scenario of the model ({scenario_name!r})")
    if answer.get("params") and "levels" not in answer:
        raise DataError(f"{prediction}: no parameter quantiles (a prediction of an earlier popdl); predict again")
    obs = load_observed(observed)
    scenario = Scenario.from_config(scenario_name, config)
    root = int(config["seed"])
    draws = parameter_draws(scenario, answer, n=int(replicates), rng=seeds.fit_check(root, name))
    index = FIT_DRAWS + np.arange(len(draws), dtype=np.int64)
    plan = pd.DataFrame({"draw": index, "tries": 1})
    for column, values in zip(SEED_COLUMNS, zip(*(seeds.simulator_seeds(root, scenario_name, int(d)) for d in index))):
        plan[column] = np.asarray(values, dtype=np.int64)
    plan = pd.concat([plan, draws], axis=1)
    start = time.perf_counter()
    log.info("%s: simulating %d replicates of %s from the network's answer", name, len(plan), scenario_name)
    simulated = simulated_features(config, config, scenario, plan, root_seed=root, progress_every=progress_every)
    names = [str(s) for s in simulated["stat_names"]]
    if [str(s) for s in obs["stat_names"]] != names:
        raise DataError(f"{observed}: its statistics are not those the model's config computes; run popdl observe "
                        "with the model's settings")
    result = score_fit(np.asarray(obs["stats"], dtype=np.float64), simulated["stats"], names)
    result.update(name=name, scenario=scenario_name, replicates=int(len(plan)),
                  seconds=round(time.perf_counter() - start, 1),
                  parameters={p: {"median": float(np.median(draws[p])), "lower": float(np.quantile(draws[p], 0.05)),
                                  "upper": float(np.quantile(draws[p], 0.95))} for p in draws.columns},
                  provenance=provenance(config_hash=(bundle.get("provenance") or {}).get("config_hash"),
                                        model=str(model), prediction=str(prediction)))
    write_json(out, result)
    (log.info if result["fits"] else log.warning)("%s: %s", name, result["summary"])
    return result
