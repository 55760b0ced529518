"""Simulation throughput of the workflow's simulate step against a bare msprime loop.

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
  overhead.

Times are CPU seconds of this process (``time.process_time``), so the
figures are per core and other processes on the machine do not skew them.
Repetitions rotate which side runs first; the medians are reported.  The
genotype matrices of both sides are compared, so the two really simulate the
same thing.  Target: ratio >= 0.95.

    python benchmarks/bench_simulation.py [--draws N] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--draws", type=int, default=None, help="draws per repetition (default: the config's chunk size)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each side")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    if config["genome"]["loci"] != 1 or any(isinstance(config["genome"][k], dict) for k in ("mutation_rate", "recombination_rate")):
        raise SystemExit("this benchmark expects one locus and fixed rates")
    scenario = Scenario.from_config(SCENARIO, config)
    args.draws = args.draws or config["simulations"]["chunk"]
    settings = stage_json(config, "simulate", SCENARIO)
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

        def bare(record_provenance: bool = True) -> float:
            t = time.process_time()
            bare_loop(plan, samples=config["samples"], genome=config["genome"], record_provenance=record_provenance)
            return time.process_time() - t

        # Warm-up (imports, caches) and check that both sides simulate the same data.
        workflow()
        sims = load_sims(out)
        reference = bare_loop(plan.iloc[:20], samples=config["samples"], genome=config["genome"])
        off = sims["site_offsets"]
        same = all(np.array_equal(sims["genotypes"][off[i]:off[i + 1]], g) for i, g in enumerate(reference))
        print(f"same genotypes on both sides (first 20 draws): {same}")

        runs = {"workflow": workflow, "bare": bare, "bare_noprov": lambda: bare(False)}
        times = {side: [] for side in runs}
        sides = list(runs)
        for rep in range(args.reps):
            for side in sides[rep % 3:] + sides[: rep % 3]:  # rotate which side goes first
                times[side].append(runs[side]())
    w, b, bn = (statistics.median(times[s]) for s in sides)
    ratios = [bt / wt for wt, bt in zip(times["workflow"], times["bare"])]
    n = args.draws
    print(f"scenario {SCENARIO}, {n} draws a repetition, {args.reps} repetitions, samples {config['samples']}, "
          f"{config['genome']['length']:.0f} bp")
    print(f"workflow (popdl simulate: plan read + demes + from_demes + npz): {n / w:8.1f} draws/s per core (median)")
    print(f"bare msprime loop (sim_ancestry + sim_mutations + genotype_matrix): {n / b:8.1f} draws/s per core (median)")
    print(f"bare loop with record_provenance=False (as the workflow calls msprime): {n / bn:8.1f} draws/s per core (median)")
    print(f"throughput ratio workflow / bare: {b / w:.3f} (median of per-repetition ratios {statistics.median(ratios):.3f}; target >= 0.95)")
    print(f"throughput ratio workflow / bare without provenance (the pure overhead of plan, demes, from_demes and npz): {bn / w:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
