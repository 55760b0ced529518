"""What a config's simulations will cost, measured on a few of its own draws.

``popdl check --configfile C --time [DRAWS]`` simulates and featurises the first
``DRAWS`` draws of every scenario (the workflow's draws: the same parameters and
seeds as chunk 0's first rows), one draw at a time as the ``simulate`` and
``features`` jobs run them, in a temporary folder, and extrapolates:

* per scenario, seconds per draw (mean and range), sites per draw, bytes of
  simulations and features per draw;
* the run: CPU-hours of the simulate and features jobs, the wall time on the
  cores given, the minutes of one chunk against the runtime its rule asks of
  SLURM (:data:`RULE_RUNTIME`; ``profiles/slurm`` asks the same, times the
  attempt), the memory of one simulate job against its rule's
  (:data:`RULE_MEMORY`), the disk the simulations and features take;
* what bounds the sweep's time (:func:`tuning_line`).

A chunk that would run past half its rule's runtime, or a job whose memory
would pass its rule's, gets a ``WARNING`` line with the ``simulations.chunk``
or the ``set-resources`` that fits.  The draws' costs follow their parameters
(a population size drawn ten times larger coalesces more slowly), so a few
draws give a rough mean: the line says how many it rests on and their range.
Memory is this process's peak (:func:`_peak_mb`), reached while simulating one
draw as a job does: the simulate job spools each draw's sites to disk and the
features job reads them back one draw at a time (:mod:`popdl.simulate`), so a
job's peak is a draw's, whatever the chunk's size.
"""

from __future__ import annotations

import logging
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["RULE_RUNTIME", "RULE_MEMORY", "CHUNK_SHARE", "measure", "extrapolate", "report_lines", "tuning_line"]

log = logging.getLogger("popdl.costs")

#: Minutes of runtime the workflow's rules ask for (``resources: runtime``; workflow/rules/*.smk).
RULE_RUNTIME = {"simulate": 120, "features": 60}

#: Memory in MB the workflow's rules ask for (``resources: mem_mb``; workflow/rules/*.smk).
RULE_MEMORY = {"simulate": 2000, "features": 2000}

#: A simulate job's memory is warned of when the estimate times this passes its rule's, and the warning asks
#: for that much: a few draws fall short of a chunk's dearest (a GBS-sized chunk of 250 draws peaked at 1.0 GB
#: where its first three gave 0.88 GB).
MEMORY_MARGIN = 1.5

#: A chunk expected to take more than this share of its rule's runtime gets a warning: the mean rests
#: on a few draws, and a chunk's draws may be slower than they were.
CHUNK_SHARE = 0.5


def _rusage_mb(who) -> float:
    """``ru_maxrss`` in MB (kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _peak_mb() -> float:
    """Peak resident memory in MB of this process plus its largest child (fastsimcoal2 runs as one).

    This process's own is ``VmHWM`` (Linux): ``ru_maxrss`` keeps, across ``exec``, the size of the
    process that forked it (1.4 GB when a test runner with TensorFlow loaded starts ``popdl``).  A
    child's counts what it shared of this process when forked: on the side of too much."""
    own = None
    try:
        with open("/proc/self/status") as fh:
            own = next((int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:")), None)
    except (OSError, ValueError):
        own = None
    return (own if own is not None else _rusage_mb(resource.RUSAGE_SELF)) + _rusage_mb(resource.RUSAGE_CHILDREN)


def measure(config: dict, draws: int, *, workdir: str | Path | None = None) -> dict:
    """Simulate and featurise the first ``draws`` draws of every scenario of a prepared ``config``,
    one draw at a time; per scenario, the per-draw seconds, sites and file sizes."""
    from popdl.features import features_chunk
    from popdl.plan import plan_draws
    from popdl.scenarios import Scenario
    from popdl.simulate import load_sims, simulate_chunk
    from popdl.stages import stage_config

    if draws < 1:
        raise ValueError(f"--time {draws}: measure at least one draw per scenario")
    features_cfg = stage_config(config, "features")
    out = {"draws": draws, "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="popdl-time-", dir=workdir) as tmp:
        for name in config["scenarios"]:
            cfg = stage_config(config, "simulate", name)  # a prepared config's slice: max_tries included
            scenario = Scenario.from_config(name, cfg)
            plan = plan_draws(scenario, root_seed=cfg["seed"], start=0, stop=draws)
            rows = []
            for i in range(len(plan)):
                sims, feats = Path(tmp) / f"{name}.{i}.npz", Path(tmp) / f"{name}.{i}.features.npz"
                start = time.perf_counter()
                simulate_chunk(cfg, scenario, plan.iloc[i:i + 1], sims)
                simulated = time.perf_counter()
                features_chunk(features_cfg, sims, feats)
                done = time.perf_counter()
                loaded = load_sims(sims)
                rows.append({"simulate": simulated - start, "features": done - simulated,
                             "sites": int(loaded["site_offsets"][-1]),
                             "sims_bytes": sims.stat().st_size, "features_bytes": feats.stat().st_size})
                sims.unlink()
                feats.unlink()
                log.info("%s: draw %d of %d: simulate %.2f s, features %.2f s, %d sites", name, i + 1, len(plan),
                         rows[-1]["simulate"], rows[-1]["features"], rows[-1]["sites"])
            out["scenarios"][name] = {"simulator": scenario.simulator, "per_draw": rows}
    out["peak_mb"] = _peak_mb()
    return out


def extrapolate(measured: dict, *, per_scenario: int, chunk: int, cores: int) -> dict:
    """The run's costs from :func:`measure`'s draws: per scenario, mean seconds per draw and their range;
    the run's CPU-hours, wall hours on ``cores``, one chunk's minutes, one simulate job's memory and the disk;
    the warnings."""
    scenarios, warnings = {}, []
    chunk = min(chunk, per_scenario)  # a chunk holds no more draws than a scenario has
    for name, m in measured["scenarios"].items():
        rows = m["per_draw"]

        def mean(key, rows=rows):
            return statistics.fmean(r[key] for r in rows)

        scenarios[name] = {
            "simulator": m["simulator"], "draws_measured": len(rows),
            "simulate_s": mean("simulate"), "simulate_range": (min(r["simulate"] for r in rows), max(r["simulate"] for r in rows)),
            "features_s": mean("features"), "sites": mean("sites"),
            "sims_bytes": mean("sims_bytes"), "features_bytes": mean("features_bytes"),
            "chunk_minutes": {step: chunk * mean(step) / 60.0 for step in ("simulate", "features")},
        }
    n = len(scenarios)
    cpu = {step: per_scenario * sum(s[f"{step}_s"] for s in scenarios.values()) / 3600.0 for step in ("simulate", "features")}
    jobs = n * math.ceil(per_scenario / chunk)
    run = {
        "scenarios": n, "per_scenario": per_scenario, "chunk": chunk, "jobs_per_step": jobs, "cores": cores,
        "cpu_hours": cpu,
        # Jobs run side by side on the cores, each one draw after another: a step takes at least its longest chunk.
        "wall_hours": sum(max(cpu[step] / cores, max(s["chunk_minutes"][step] for s in scenarios.values()) / 60.0)
                          for step in cpu),
        "disk_gb": {kind: per_scenario * sum(s[f"{kind}_bytes"] for s in scenarios.values()) / 1e9
                    for kind in ("sims", "features")},
        # A simulate job holds one draw at a time (its chunk's sites are spooled to disk): a draw's peak.
        "simulate_mb": measured["peak_mb"],
    }
    for step in ("simulate", "features"):
        name, slowest = max(((k, s["chunk_minutes"][step]) for k, s in scenarios.items()), key=lambda kv: kv[1])
        limit = RULE_RUNTIME[step]
        if slowest > CHUNK_SHARE * limit:
            fits = max(1, int(CHUNK_SHARE * limit * 60.0 / scenarios[name][f"{step}_s"]))
            warnings.append(f"a chunk of {chunk} draws of {name} takes about {slowest:.0f} min to {step}, more than "
                            f"{CHUNK_SHARE:.0%} of the {limit} min the {step} rule asks of SLURM (profiles/slurm: "
                            f"{limit} x attempt): set simulations.chunk to {fits} or fewer")
    if run["simulate_mb"] * MEMORY_MARGIN > RULE_MEMORY["simulate"]:
        need = int(math.ceil(run["simulate_mb"] * MEMORY_MARGIN / 500.0) * 500)
        warnings.append(f"a simulate job needs about {run['simulate_mb']:.0f} MB, up to {need} MB with dearer draws than "
                        f"these, more than the {RULE_MEMORY['simulate']} MB its rule asks for: the first attempt may run "
                        f"out of memory on SLURM; in your profile, set-resources: simulate: mem_mb: {need} * attempt")
    return {"scenarios": scenarios, "run": run, "warnings": warnings}


def _size(gb: float) -> str:
    return f"{gb:.1f} GB" if gb >= 1 else f"{gb * 1000:.0f} MB"


def tuning_line(tuning: dict) -> str:
    """What bounds the sweep's time: the trials per worker and ``tuning.trial_seconds``."""
    trials, workers = int(tuning["trials"]), int(tuning["workers"])
    each = math.ceil(trials / workers)
    limit = tuning.get("trial_seconds")
    if limit:
        return (f"tuning: {trials} trials on {workers} worker(s), {each} each, a trial's training stopped after the first "
                f"epoch past {limit:g} s (tuning.trial_seconds): about {each * float(limit) / 60:.0f} min of training per "
                "worker, plus each trial's start and scoring; then the final fit")
    return (f"tuning: {trials} trials on {workers} worker(s), {each} each, without a time limit per trial "
            "(tuning.trial_seconds: null): the sweep's time follows the networks searched and the data; "
            "tuning.trial_seconds bounds it")


def report_lines(costs: dict, *, machine: str, tuning: dict | None = None) -> list[str]:
    """The lines ``popdl check --time`` prints."""
    run = costs["run"]
    draws = {s["draws_measured"] for s in costs["scenarios"].values()}
    lines = [f"costs measured on the first {'/'.join(map(str, sorted(draws)))} draw(s) of each scenario, one at a time "
             f"as the jobs run them ({machine}); a draw's cost follows its parameters, so these are rough means:"]
    for name, s in costs["scenarios"].items():
        lo, hi = s["simulate_range"]
        # Three significant digits: a tiny config's draws take milliseconds, which two decimals show as 0.00.
        lines.append(f"  {name} [{s['simulator']}]: simulate {s['simulate_s']:.3g} s per draw ({lo:.3g}-{hi:.3g}), "
                     f"features {s['features_s']:.3g} s; {s['sites']:.0f} sites per draw; "
                     f"{s['sims_bytes'] / 1e6:.2f} MB of simulations and {s['features_bytes'] / 1e6:.3f} MB of features per draw")
    chunk = run["chunk"]
    slow = {step: max(s["chunk_minutes"][step] for s in costs["scenarios"].values()) for step in ("simulate", "features")}
    lines.append(f"the run: {run['scenarios']} scenario(s) x {run['per_scenario']} draws, {run['jobs_per_step']} chunks of "
                 f"{chunk} per step: simulate {run['cpu_hours']['simulate']:.2f} CPU-hours, features "
                 f"{run['cpu_hours']['features']:.2f}; about {run['wall_hours']:.2f} h on {run['cores']} core(s)")
    lines.append(f"one chunk of {chunk} draws: up to {slow['simulate']:.1f} min to simulate (the rule asks SLURM for "
                 f"{RULE_RUNTIME['simulate']} min) and {slow['features']:.1f} min for its features "
                 f"({RULE_RUNTIME['features']} min); a simulate job's memory about {run['simulate_mb']:.0f} MB "
                 f"({RULE_MEMORY['simulate']} MB asked)")
    lines.append(f"disk: simulations {_size(run['disk_gb']['sims'])}, features {_size(run['disk_gb']['features'])}")
    if tuning:
        lines.append(tuning_line(tuning))
    lines += [f"WARNING: {w}" for w in costs["warnings"]]
    return lines
