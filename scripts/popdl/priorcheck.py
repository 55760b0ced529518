"""Before a run: do the data lie within what the config's priors simulate?

``popdl check-data --configfile C --vcf X --popmap Y --simulate [DRAWS]``
simulates and featurises the run's first ``DRAWS`` draws of every scenario (the
draws of chunk 0, with their seeds: the same simulations the run will make
first), through the same steps as the ``simulate`` and ``features`` jobs
(missing calls, thinning and filters included), and places the data's
summary statistics among them (:func:`score_prior`):

* per statistic, the observed value's mid-rank among the simulations, and
  whether it lies outside all of them;
* jointly, the posterior predictive machinery of :func:`popdl.fitcheck.score_fit`
  applied to the prior's draws (a p-value that cannot fall below
  1 / (simulations + 1)).

Statistics of diversity (segregating sites, π, Watterson's θ) and of
divergence (F_ST, d_xy) outside every simulation get a ``WARNING`` and the
priors to widen: a network trained on such a config can only answer at a
bound of its prior, and the run's misspecification and fit checks would say
so after hours of simulation and training.  The other statistics (the SFS
and Tajima's D, LD, haplotype diversity) get one when more of them lie
outside than chance leaves there: a statistic of a data set drawn as the
simulations were lies outside the range of ``n`` of them with probability
2 / (n + 1), so ``statistics × 2 / (n + 1)`` are expected outside
(:data:`CHANCE_FACTOR`).

Among few simulations a data set drawn from the priors lies outside them on
some diversity or divergence statistic often (about one time in eight among
60): the simulations themselves lie outside the others about as often.  When
at least :data:`CHANCE_SHARE` of them do, and one lies at least as far out as
the data (in shares of the range), the WARNING says so and asks for more
draws (``benchmarks/bench_prior_check.py`` measures the false alarms).

The workflow checks again by itself (:func:`check_chunks`, ``popdl prior-check``,
rule ``prior_check``): each data set among the first chunk of every scenario, as
soon as those chunks are featurised (they are simulated before the others), with
``predict.prior_check: stop`` to stop the run on a WARNING.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np

from popdl.fitcheck import score_fit, simulated_features, snapped, tajima_advice

__all__ = ["PRIOR_DRAWS", "simulate_prior", "score_prior", "prior_lines", "check_chunks"]

log = logging.getLogger("popdl.priorcheck")

#: Draws per scenario of ``check-data --simulate`` without a number.
PRIOR_DRAWS = 20

#: Statistics of diversity within a population, and of divergence between two, by their name's prefix.
DIVERSITY = ("segsites", "pi", "theta_w")
DIVERGENCE = ("fst", "dxy")
#: The kinds of statistic whose values the priors' scales set (sizes, times, rates).
SCALE_KINDS = ("diversity", "divergence")
#: What the other statistics describe, by their name's prefix.
SHAPES = {"tajimas_d": "the SFS", "sfs": "the SFS", "jsfs": "the joint SFS", "ld": "LD", "hap_diversity": "haplotypes"}
#: The other statistics get a warning when more than this many times the number chance leaves outside
#: (plus two) lie outside every simulation.
CHANCE_FACTOR = 3
#: A diversity or divergence statistic outside every simulation gets a caution beside its WARNING when
#: at least this share of the simulations lie outside the others so themselves (few simulations).
CHANCE_SHARE = 0.05


def simulate_prior(config: dict, draws: int, *, progress_every: float = 30.0) -> dict:
    """The summary statistics of the first ``draws`` draws of every scenario of a prepared
    ``config``, simulated and featurised as the run's chunk 0 is: ``stats`` (simulations,
    statistics), ``stat_names``, ``labels`` (the scenario of each) and ``seconds``."""
    from popdl.plan import plan_draws
    from popdl.scenarios import Scenario
    from popdl.stages import stage_config

    features_cfg = stage_config(config, "features")
    stats, labels, names = [], [], None
    start = time.perf_counter()
    for name in config["scenarios"]:
        cfg = stage_config(config, "simulate", name)
        scenario = Scenario.from_config(name, cfg)
        plan = plan_draws(scenario, root_seed=cfg["seed"], start=0, stop=draws)
        log.info("prior check: simulating %d draws of %s", len(plan), name)
        loaded = simulated_features(cfg, features_cfg, scenario, plan, progress_every=progress_every)
        stats.append(np.asarray(loaded["stats"], dtype=np.float64))
        labels += [name] * len(plan)
        names = [str(s) for s in loaded["stat_names"]]
    return {"stats": np.concatenate(stats), "stat_names": names, "labels": labels,
            "seconds": time.perf_counter() - start}


def _kind(stat: str) -> tuple[str, str]:
    """(``diversity``, ``divergence`` or ``other``; the populations the statistic is of, e.g. ``pop1``)."""
    for kind, prefixes in (("diversity", DIVERSITY), ("divergence", DIVERGENCE)):
        for prefix in prefixes:
            if stat.startswith(prefix + "_") and not re.fullmatch(r".*_\d+", stat):
                return kind, stat[len(prefix) + 1:].replace("_", "-")
    for prefix, what in SHAPES.items():
        if stat.startswith(prefix + "_"):
            return what, ""
    return "other", ""


def score_prior(observed: np.ndarray, simulated: np.ndarray, stat_names: list[str]) -> dict:
    """Where the observed statistics (statistics,) lie among the prior's simulations
    (simulations, statistics): each one's mid-rank, those outside every simulation (with
    the direction), and the joint p-value of :func:`popdl.fitcheck.score_fit`."""
    sim = np.asarray(simulated, dtype=np.float64)
    obs = snapped(observed, sim)
    # Jointly, the statistics every simulation has; one by one, each among the simulations that have it
    # (Tajima's D of a simulation without segregating sites is NaN, its neighbours' are not).
    finite = np.isfinite(obs) & np.isfinite(sim).all(axis=0)
    names = [n for n, f in zip(stat_names, finite) if f]
    joint = score_fit(obs[finite], sim[:, finite], names)
    some = np.isfinite(obs) & np.isfinite(sim).any(axis=0)
    lo = np.min(sim, axis=0, initial=np.inf, where=np.isfinite(sim))
    hi = np.max(sim, axis=0, initial=-np.inf, where=np.isfinite(sim))
    outside = []
    for j, stat in enumerate(stat_names):
        if not some[j] or lo[j] <= obs[j] <= hi[j]:
            continue
        kind, pops = _kind(stat)
        outside.append({"statistic": stat, "observed": float(obs[j]), "low": float(lo[j]), "high": float(hi[j]),
                        "side": "above" if obs[j] > hi[j] else "below", "kind": kind, "populations": pops})
    n = int(sim.shape[0])
    expected = len(stat_names) * 2 / (n + 1)
    shapes = [o for o in outside if o["kind"] not in SCALE_KINDS]
    many = len(shapes) > CHANCE_FACTOR * expected + 2
    scale = [j for j, stat in enumerate(stat_names) if _kind(stat)[0] in SCALE_KINDS]
    alone, furthest = _outside_the_others(obs, sim, scale)
    beyond = [(o["observed"] - o["high"] if o["side"] == "above" else o["low"] - o["observed"])
              / (o["high"] - o["low"]) if o["high"] > o["low"] else 1e6
              for o in outside if o["kind"] in SCALE_KINDS]
    return {"simulations": n, "statistics": int(len(stat_names)), "p_value": joint["p_value"],
            "quantiles": joint["quantiles"], "outside": outside, "expected_outside": expected,
            "shapes_beyond_chance": many, "warn": many or len(shapes) < len(outside),
            "simulations_outside": alone, "simulations_beyond": furthest,
            "beyond": float(max(beyond, default=0.0))}


def _outside_the_others(observed: np.ndarray, simulated: np.ndarray, columns: list[int]) -> tuple[int, float]:
    """How many simulations have a statistic of ``columns`` beyond the range of the other
    simulations and the data (how often a data set drawn as the simulations were would lie so,
    among this few, without lying beyond the priors), and the furthest any lies beyond, in
    shares of that range."""
    hits, furthest = set(), 0.0
    for j in columns:
        rows = np.flatnonzero(np.isfinite(simulated[:, j]))
        if rows.size < 3:
            continue
        values = simulated[rows, j]
        order = np.argsort(values, kind="stable")
        data = [observed[j]] if np.isfinite(observed[j]) else []
        for end, inner, other_end in ((order[-1], order[-2], order[0]), (order[0], order[1], order[-1])):
            bounds = [values[inner], values[other_end], *data]
            low, high = min(bounds), max(bounds)
            beyond = max(values[end] - high, low - values[end])
            if beyond > 0:
                hits.add(int(rows[end]))
                furthest = max(furthest, beyond / (high - low) if high > low else 0.0)
    return len(hits), float(furthest)


def _caution(result: dict, draws: int) -> str:
    """What tempers a diversity or divergence statistic outside every simulation: as many of the
    simulations lie outside the others (few simulations), and the data no further out than they."""
    alone, n = result["simulations_outside"], result["simulations"]
    if alone < CHANCE_SHARE * n or result["beyond"] > result["simulations_beyond"]:
        return ""
    return (f"but {alone} of the {n} simulations ({alone / n:.0%}) lie outside the others and the data on such "
            "a statistic too, one as far out: "
            + ("rerun with more draws (--simulate 100) to tell data beyond the priors from data near a bound"
               if draws else "the data may lie near a prior's bound rather than beyond it"))


def _advice(outside: list[dict], *, shapes_beyond_chance: bool, caution: str = "") -> list[str]:
    """What to widen, per kind of statistic and side (tempered by ``caution``); then what the
    other statistics say."""
    out = []
    for side, word in (("above", "more"), ("below", "less")):
        pops = sorted({o["populations"] for o in outside if o["kind"] == "diversity" and o["side"] == side})
        if pops:
            bound = "upper" if side == "above" else "lower"
            out.append(f"{word} diversity in {', '.join(pops)} than any simulation: move the {bound} bounds of the "
                       f"population-size priors {'up' if side == 'above' else 'down'}, or check genome.mutation_rate "
                       "and genome.length (the sequenced bp per locus)")
        pairs = sorted({o["populations"] for o in outside if o["kind"] == "divergence" and o["side"] == side})
        if pairs:
            way, other = ("up", "down") if side == "above" else ("down", "up")
            out.append(f"{word} divergence between {', '.join(pairs)} than any simulation: widen the split times' "
                       f"priors {way} (d_xy also grows with the ancestral size: its prior {way}; and the migration "
                       f"rates' {other})")
    if out:
        out[-1] += ": a network trained on this config could only answer at a prior's bound"
        if caution:
            out.append(caution)
    if shapes_beyond_chance:
        kinds = list(dict.fromkeys(o["kind"] for o in outside if o["kind"] not in SCALE_KINDS))
        out += tajima_advice({side: [o["statistic"] for o in outside if o["side"] == side]
                              for side in ("below", "above")}, among="simulation")
        out.append(f"the shape of {', '.join(kinds)} lies beyond every simulation: a history none of the scenarios "
                   "holds (growth or a bottleneck shifts the SFS and Tajima's D), or data filtered otherwise than the "
                   "simulations (features.min_maf, min_mac, the missing calls); the run's misspecification and fit "
                   "checks will weigh it")
    return out


def _value(x: float) -> str:
    return f"{x:.4g}"


def prior_lines(name: str, result: dict, *, draws: int = 0, scenarios: int = 0, seconds: float = 0.0,
                source: str | None = None) -> list[str]:
    """check-data's lines for a :func:`score_prior` result: among the run's first ``draws`` draws of
    each of ``scenarios`` scenarios, simulated in ``seconds``; or among the simulations ``source`` says."""
    source = source or (f"the run's first {draws} draws of each of {scenarios} scenario(s) "
                        f"({result['simulations']} simulations, {seconds:.0f} s)")
    head = f"{name}: prior check, {source}: "
    outside = result["outside"]
    if not outside:
        return [head + "every statistic lies within the simulations' range"]
    first = sorted(outside, key=lambda o: o["kind"] not in SCALE_KINDS)
    shown = "; ".join(f"{o['statistic']} {_value(o['observed'])} (simulations {_value(o['low'])} to "
                      f"{_value(o['high'])})" for o in first[:6])
    more = f" and {len(outside) - 6} more" if len(outside) > 6 else ""
    line = (head + ("WARNING, " if result["warn"] else "")
            + f"{len(outside)} of {result['statistics']} statistics outside every simulation (chance leaves about "
            f"{result['expected_outside']:.1f} there): {shown}{more}")
    advice = _advice(outside, shapes_beyond_chance=result["shapes_beyond_chance"], caution=_caution(result, draws))
    if advice:
        line += "; " + "; ".join(advice)
    else:
        line += "; no more than chance leaves outside"
    return [line]


def check_chunks(observed: str | Path, features: dict[str, str | Path], out: str | Path, *, stop: bool = False,
                 config_hash: str | None = None) -> dict:
    """The workflow's prior check (rule ``prior_check``): the statistics of ``observed`` (an
    observed.npz of ``popdl observe``) among the features of each scenario's chunk 0 (``features``:
    scenario -> features .npz), the first draws the run simulated, scored by :func:`score_prior`
    and written to ``out`` (JSON) with check-data's line.  ``stop``: a WARNING is a
    :class:`~popdl.errors.DataError` instead, and nothing is written, so that the run stops
    before it simulates the rest, tunes and trains (``predict.prior_check: stop``)."""
    from popdl.errors import DataError
    from popdl.features import load_features
    from popdl.io import provenance, write_json
    from popdl.predict import load_observed, read_observed_summary

    obs = load_observed(observed)
    name = str(read_observed_summary(observed).get("name") or Path(observed).parent.name)
    names = [str(s) for s in obs["stat_names"]]
    stats, counts = [], {}
    for scenario, path in features.items():
        try:
            loaded = load_features(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable features file of popdl features ({str(exc).splitlines()[0]})") \
                from None
        if [str(s) for s in loaded["stat_names"]] != names:
            raise DataError(f"{path}: its statistics are not those of {observed} (another config computed them)")
        stats.append(np.asarray(loaded["stats"], dtype=np.float64))
        counts[scenario] = int(stats[-1].shape[0])
    if not stats:
        raise DataError("a prior check needs the features of at least one scenario's chunk")
    result = score_prior(np.asarray(obs["stats"], dtype=np.float64), np.concatenate(stats), names)
    source = f"chunk 0 of each of {len(counts)} scenario(s) ({result['simulations']} simulations)"
    line = prior_lines(name, result, source=source)[0]
    if stop and result["warn"]:
        raise DataError(f"{line} (predict.prior_check: stop; widen the priors, or set it to warn to run on)")
    result.update(name=name, scenarios=counts, line=line,
                  provenance=provenance(config_hash=config_hash, observed=str(observed),
                                        features={k: str(v) for k, v in features.items()}))
    write_json(out, result)
    (log.warning if result["warn"] else log.info)("%s", line)
    return result
