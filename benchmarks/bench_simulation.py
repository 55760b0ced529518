"""Simulation throughput of the workflow's simulate and features steps against a bare msprime loop.

Both sides simulate the same draws (the same parameters and seeds) of the
default config's ``isolation`` scenario, with its genome (``genome.loci``
independent loci of ``genome.length`` bp; ``--loci`` overrides the number),
on one core, in this process:

* workflow: ``popdl simulate`` through the command-line entry point
  (:func:`popdl.cli.main`), as the workflow's job runs it: reads the JSON
  settings, builds the scenario, plans the chunk's draws (prior sampling and
  seeds), builds each draw's demes graph and
  ``msprime.Demography.from_demes``, simulates and writes the ``.npz``;
* bare loop: what one writes by hand with msprime's API, nothing written:
  per draw, the demography built by hand, then for each locus a tree sequence
  from ``sim_ancestry``, ``sim_mutations`` and ``genotype_matrix``.  The loci
  come in either of the two natural ways, both timed:
  ``sim_ancestry(..., num_replicates=loci)`` with the draw's ancestry seed
  (the loci popdl simulates: its replicates are those of this call), or one
  ``sim_ancestry`` call per locus (locus ``i``: ancestry seed + ``i``).
  Locus ``i`` gets its mutations from ``sim_mutations`` with the draw's
  mutation seed + ``i``, so one locus is exactly popdl's single-locus
  simulation.  The faster of the two loops is the reference ("bare") of the
  ratios: measured on the default config (10 loci of 100 kb, README), that
  is ``num_replicates`` (one call per locus also parses the arguments and
  sets up msprime's simulator again for every locus).  The replicate loop is
  also timed with ``record_provenance=False`` as the workflow calls msprime
  (it never stores the tree sequence), which isolates the workflow's own
  overhead;
* features: ``popdl features`` on the workflow's chunk (images, distances
  and the config's statistics of every draw), through the same entry point.

Times are CPU seconds of this process (``time.process_time``), so the
figures are per core and other processes on the machine do not skew them.
Repetitions rotate which side runs first; the medians are reported.

Both sides are checked to simulate the same thing.  With one locus, their
genotype matrices are compared byte for byte (first 20 draws).  With several
loci they cannot be: popdl places the mutations of all loci at once from one
NumPy generator on the draw's mutation seed (the same process as
``sim_mutations``: binary, infinite sites, Poisson on every edge), so the
sites differ.  The genealogies are the replicate loop's (with recombination
an event time can rarely differ in its last bits, see
:func:`popdl.simulators.msprime_sim._replicate_tables`), so each locus's
number of segregating sites is compared instead (first 20 draws × loci):
the totals of both sides, two independent Poisson counts of one mean given
the genealogies (z = difference ÷ √sum), and the correlation of the
per-locus counts across loci and draws, which shared genealogies make close
to 1 (independent genealogies of the same draw would not).  The line ends
with whether both hold (|z| < 4, correlation > 0.9).

Targets: simulate ÷ bare >= 0.95; simulate + features ÷ bare >= 0.8.

The start-up of a job (``python -m popdl simulate`` / ``features`` in a
fresh process on a one-draw chunk: interpreter, imports, config, the draw,
the file) is measured apart, as the CPU seconds and wall seconds of that
child process (medians of ``--startup-reps``); target < 1.5 s.  The last
line folds both jobs' start-up into a chunk of ``--draws`` draws.

    python benchmarks/bench_simulation.py [--draws N] [--loci L] [--reps 5] [--startup-reps 5]
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
from popdl.simulate import draw_genotypes, load_sims  # noqa: E402
from popdl.stages import stage_json  # noqa: E402

SCENARIO = "isolation"


def bare_loop(plan, *, samples: dict, genome: dict, record_provenance: bool = True,
              replicates: bool = True) -> list[list[np.ndarray]]:
    """What one would write by hand: msprime's API, no demes, no files.

    Returns each draw's genotype matrices, one per locus (sites × haplotypes).
    ``replicates``: the loci from one ``sim_ancestry(num_replicates=loci)``
    call, else one ``sim_ancestry`` call per locus (ancestry seed + locus).
    """
    loci = int(genome["loci"])
    out = []
    for row in plan.itertuples(index=False):
        demography = msprime.Demography()
        demography.add_population(name="anc", initial_size=row.N_anc)
        demography.add_population(name="pop1", initial_size=row.N1)
        demography.add_population(name="pop2", initial_size=row.N2)
        demography.add_population_split(time=row.T_split, derived=["pop1", "pop2"], ancestral="anc")
        ancestry = dict(
            samples=samples,
            demography=demography,
            sequence_length=genome["length"],
            recombination_rate=genome["recombination_rate"],
            ploidy=2,
            record_provenance=record_provenance,
        )
        if replicates:
            genealogies = msprime.sim_ancestry(**ancestry, random_seed=row.seed_ancestry, num_replicates=loci)
        else:
            genealogies = (msprime.sim_ancestry(**ancestry, random_seed=row.seed_ancestry + i) for i in range(loci))
        matrices = []
        for i, ts in enumerate(genealogies):
            ts = msprime.sim_mutations(
                ts,
                rate=genome["mutation_rate"],
                model=msprime.BinaryMutationModel(),
                discrete_genome=False,
                random_seed=row.seed_mutation + i,
                record_provenance=record_provenance,
            )
            matrices.append(ts.genotype_matrix())
        out.append(matrices)
    return out


def compare(sims: dict, reference: list[list[np.ndarray]], *, loci: int) -> tuple[str, bool]:
    """Whether the workflow's first draws (``sims``) and the bare replicate
    loop's (``reference``) simulate the same thing: a line to print, and the verdict."""
    off = sims["site_offsets"]
    n = len(reference)
    if loci == 1:
        same = all(np.array_equal(draw_genotypes(sims, i), g[0]) for i, g in enumerate(reference))
        return f"same genotypes on both sides (first {n} draws): {same}", same
    ours = np.stack([np.bincount(sims["locus"][off[i]:off[i + 1]], minlength=loci) for i in range(n)]).ravel()
    theirs = np.array([m.shape[0] for g in reference for m in g])
    z = (int(ours.sum()) - int(theirs.sum())) / np.sqrt(max(int(ours.sum() + theirs.sum()), 1))
    r = float(np.corrcoef(ours, theirs)[0, 1]) if ours.std() and theirs.std() else float("nan")
    ok = bool(abs(z) < 4 and r > 0.9)
    return (f"same process on both sides (first {n} draws x {loci} loci; same genealogies, mutations from different "
            f"generators): segregating sites {ours.sum()} vs {theirs.sum()} (z = {z:+.2f}), per-locus correlation "
            f"{r:.3f}: {ok}"), ok


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
    parser.add_argument("--loci", type=int, default=None, help="independent loci per draw (default: the config's genome.loci)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each side")
    parser.add_argument("--startup-reps", type=int, default=5, help="fresh processes timed per job (0: skip)")
    args = parser.parse_args(argv)

    if args.loci is not None and args.loci < 1:
        raise SystemExit(f"--loci must be at least 1, not {args.loci}")
    config = load_config(args.config, overrides=None if args.loci is None else {"genome": {"loci": args.loci}})
    if any(isinstance(config["genome"][k], dict) for k in ("mutation_rate", "recombination_rate")):
        raise SystemExit("this benchmark expects fixed mutation and recombination rates (genome.*_rate without priors)")
    loci = int(config["genome"]["loci"])
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

        def bare(record_provenance: bool = True, replicates: bool = True) -> float:
            t = time.process_time()
            bare_loop(plan, samples=config["samples"], genome=config["genome"], record_provenance=record_provenance,
                      replicates=replicates)
            return time.process_time() - t

        # Warm-up (imports, caches) and check that both sides simulate the same data.
        workflow()
        features()
        line, same = compare(load_sims(out), bare_loop(plan.iloc[:20], samples=config["samples"], genome=config["genome"]),
                          loci=loci)
        print(line)

        runs = {"workflow": workflow, "bare_replicates": bare, "bare_per_locus": lambda: bare(replicates=False),
                "bare_noprov": lambda: bare(False), "features": features}
        if loci == 1:  # one locus: both loops are the same calls
            del runs["bare_per_locus"]
        times = {side: [] for side in runs}
        sides = list(runs)
        for rep in range(args.reps):
            k = rep % len(sides)
            for side in sides[k:] + sides[:k]:  # rotate which side goes first
                times[side].append(runs[side]())
        loops = [s for s in ("bare_replicates", "bare_per_locus") if s in times]
        reference = min(loops, key=lambda s: statistics.median(times[s]))
        times["bare"] = times[reference]

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
    w, b, bn, f = (statistics.median(times[s]) for s in ("workflow", "bare", "bare_noprov", "features"))
    ratios = [bt / wt for wt, bt in zip(times["workflow"], times["bare"])]
    both = [bt / (wt + ft) for wt, bt, ft in zip(times["workflow"], times["bare"], times["features"])]
    n = args.draws
    print(f"scenario {SCENARIO}, {n} draws a repetition, {args.reps} repetitions, samples {config['samples']}, "
          f"{loci} loci of {config['genome']['length']:.0f} bp a draw")
    print(f"workflow (popdl simulate: plan read + demes + from_demes + npz): {n / w:8.1f} draws/s per core (median)")
    names = {"bare_replicates": "sim_ancestry(num_replicates=loci)", "bare_per_locus": "one sim_ancestry call per locus"}
    for loop in loops:
        print(f"bare msprime loop, {names[loop]} + sim_mutations + genotype_matrix per locus: "
              f"{n / statistics.median(times[loop]):8.1f} draws/s per core (median)")
    print(f"reference bare loop (the faster): {names[reference]}")
    print(f"bare loop, num_replicates, with record_provenance=False (as the workflow calls msprime): "
          f"{n / bn:8.1f} draws/s per core (median)")
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
    if not same:  # the speeds compare different simulations: no ratio above means anything
        print("ERROR: the workflow and the bare loop do not simulate the same data (see the check above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
