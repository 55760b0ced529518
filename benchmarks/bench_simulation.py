"""Simulation throughput of the workflow's simulate and features steps against a bare msprime loop.

Both sides simulate the same draws (the same parameters and seeds) of the
default config's ``isolation`` scenario, on one core, in this process:

* workflow: ``popdl simulate`` through the command-line entry point
  (:func:`popdl.cli.main`), as the workflow's job runs it: reads the JSON
  settings, builds the scenario, plans the chunk's draws (prior sampling and
  seeds), builds each draw's demes graph and
  ``msprime.Demography.from_demes``, simulates and writes the ``.npz``;
* bare loop: the demography built by hand with msprime's API, then
  ``sim_ancestry`` + ``sim_mutations`` + ``genotype_matrix``, nothing written;
  also timed with ``record_provenance=False`` as the workflow calls msprime
  (it never stores the tree sequence), which isolates the workflow's own
  overhead;
* features: ``popdl features`` on the workflow's chunk (images, distances
  and the config's statistics of every draw), through the same entry point.

Times are CPU seconds of this process (``time.process_time``), so the
figures are per core and other processes on the machine do not skew them.
Repetitions rotate which side runs first; the medians are reported.  The
genotype matrices of both sides are compared, so the two really simulate the
same thing.  Targets: simulate ÷ bare >= 0.95; simulate + features ÷ bare
>= 0.8.

The start-up of a job (``python -m popdl simulate`` / ``features`` in a
fresh process on a one-draw chunk: interpreter, imports, config, the draw,
the file) is measured apart, as the CPU seconds and wall seconds of that
child process (medians of ``--startup-reps``); target < 1.5 s.  The last
line folds both jobs' start-up into a chunk of ``--draws`` draws.

    python benchmarks/bench_simulation.py [--draws N] [--reps 5] [--startup-reps 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msprime
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from popdl.cli import main as popdl_main  # noqa: E402
from popdl.config import load_config  # noqa: E402
from popdl.plan import plan_draws  # noqa: E402
from popdl.scenarios import Scenario  # noqa: E402
from popdl.simulate import load_sims  # noqa: E402
from popdl.stages import stage_json  # noqa: E402

SCENARIO = "isolation"


def bare_loop(plan, *, samples: dict, genome: dict, record_provenance: bool = True) -> list[np.ndarray]:
    """What one would write by hand: msprime's API, no demes, no files."""
    out = []
    for row in plan.itertuples(index=False):
        demography = msprime.Demography()
        demography.add_population(name="anc", initial_size=row.N_anc)
        demography.add_population(name="pop1", initial_size=row.N1)
        demography.add_population(name="pop2", initial_size=row.N2)
        demography.add_population_split(time=row.T_split, derived=["pop1", "pop2"], ancestral="anc")
        ts = msprime.sim_ancestry(
            samples=samples,
            demography=demography,
            sequence_length=genome["length"],
            recombination_rate=genome["recombination_rate"],
            ploidy=2,
            random_seed=row.seed_ancestry,
            record_provenance=record_provenance,
        )
        ts = msprime.sim_mutations(
            ts,
            rate=genome["mutation_rate"],
            model=msprime.BinaryMutationModel(),
            discrete_genome=False,
            random_seed=row.seed_mutation,
            record_provenance=record_provenance,
        )
        out.append(ts.genotype_matrix())
    return out


def child_times(cmd: list[str], *, cwd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of ``cmd`` run to completion in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--draws", type=int, default=None, help="draws per repetition (default: the config's chunk size)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each side")
    parser.add_argument("--startup-reps", type=int, default=5, help="fresh processes timed per job (0: skip)")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    if config["genome"]["loci"] != 1 or any(isinstance(config["genome"][k], dict) for k in ("mutation_rate", "recombination_rate")):
        raise SystemExit("this benchmark expects one locus and fixed rates")
    scenario = Scenario.from_config(SCENARIO, config)
    args.draws = args.draws or config["simulations"]["chunk"]
    settings = stage_json(config, "simulate", SCENARIO)
    feature_settings = stage_json(config, "features")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plan = plan_draws(scenario, root_seed=config["seed"], start=0, stop=args.draws)
        out = tmp / "sims.npz"
        # As the workflow's simulate job: the chunk plans its own draws (the same rows as `plan`).
        cli = ["--quiet", "simulate", "--settings", settings, "--scenario", SCENARIO,
               "--start", "0", "--stop", str(args.draws), "--out", str(out)]

        def workflow() -> float:
            t = time.process_time()
            if popdl_main(cli) != 0:
                raise SystemExit("popdl simulate failed")
            return time.process_time() - t

        def features() -> float:
            t = time.process_time()
            if popdl_main(["--quiet", "features", "--settings", feature_settings, "--sims", str(out),
                           "--out", str(tmp / "features.npz")]) != 0:
                raise SystemExit("popdl features failed")
            return time.process_time() - t

        def bare(record_provenance: bool = True) -> float:
            t = time.process_time()
            bare_loop(plan, samples=config["samples"], genome=config["genome"], record_provenance=record_provenance)
            return time.process_time() - t

        # Warm-up (imports, caches) and check that both sides simulate the same data.
        workflow()
        features()
        sims = load_sims(out)
        reference = bare_loop(plan.iloc[:20], samples=config["samples"], genome=config["genome"])
        off = sims["site_offsets"]
        same = all(np.array_equal(sims["genotypes"][off[i]:off[i + 1]], g) for i, g in enumerate(reference))
        print(f"same genotypes on both sides (first 20 draws): {same}")

        runs = {"workflow": workflow, "bare": bare, "bare_noprov": lambda: bare(False), "features": features}
        times = {side: [] for side in runs}
        sides = list(runs)
        for rep in range(args.reps):
            for side in sides[rep % 4:] + sides[: rep % 4]:  # rotate which side goes first
                times[side].append(runs[side]())

        # Job start-up: each job in a fresh process, on a one-draw chunk.
        startup = {"simulate": [], "features": []}
        (tmp / "sim.json").write_text(settings)
        (tmp / "features.json").write_text(feature_settings)
        python = [sys.executable, "-m", "popdl", "--quiet"]
        one = [*python, "simulate", "--settings", f"@{tmp / 'sim.json'}", "--scenario", SCENARIO, "--start", "0",
               "--stop", "1", "--out", str(tmp / "one.npz")]
        one_features = [*python, "features", "--settings", f"@{tmp / 'features.json'}", "--sims", str(tmp / "one.npz"),
                        "--out", str(tmp / "one_features.npz")]
        for _ in range(args.startup_reps):
            startup["simulate"].append(child_times(one, cwd=ROOT))
            startup["features"].append(child_times(one_features, cwd=ROOT))
    w, b, bn, f = (statistics.median(times[s]) for s in sides)
    ratios = [bt / wt for wt, bt in zip(times["workflow"], times["bare"])]
    both = [bt / (wt + ft) for wt, bt, ft in zip(times["workflow"], times["bare"], times["features"])]
    n = args.draws
    print(f"scenario {SCENARIO}, {n} draws a repetition, {args.reps} repetitions, samples {config['samples']}, "
          f"{config['genome']['length']:.0f} bp")
    print(f"workflow (popdl simulate: plan read + demes + from_demes + npz): {n / w:8.1f} draws/s per core (median)")
    print(f"bare msprime loop (sim_ancestry + sim_mutations + genotype_matrix): {n / b:8.1f} draws/s per core (median)")
    print(f"bare loop with record_provenance=False (as the workflow calls msprime): {n / bn:8.1f} draws/s per core (median)")
    print(f"throughput ratio workflow / bare: {b / w:.3f} (median of per-repetition ratios {statistics.median(ratios):.3f}; target >= 0.95)")
    print(f"throughput ratio workflow / bare without provenance (the pure overhead of plan, demes, from_demes and npz): {bn / w:.3f}")
    print(f"features (popdl features: images, distances, {len(config['features']['stats'])} statistics): {n / f:8.1f} draws/s "
          f"per core (median), {1000 * f / n:.2f} ms a draw")
    print(f"throughput ratio simulate + features / bare: {b / (w + f):.3f} (median of per-repetition ratios "
          f"{statistics.median(both):.3f}; target >= 0.8)")
    if args.startup_reps:
        cpu = {job: statistics.median(c for c, _ in runs) for job, runs in startup.items()}
        wall = {job: statistics.median(t for _, t in runs) for job, runs in startup.items()}
        print(f"job start-up, a one-draw chunk in a fresh process (median of {args.startup_reps}): "
              + ", ".join(f"{job} {cpu[job]:.2f} CPU s ({wall[job]:.2f} s wall)" for job in startup) + "; target < 1.5 s")
        print(f"throughput ratio with both jobs' start-up in a chunk of {n} draws: "
              f"{b / (w + f + cpu['simulate'] + cpu['features']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
