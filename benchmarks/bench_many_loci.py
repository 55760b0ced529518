"""Many short loci: popdl's one-call simulation against one msprime call per locus.

A RAD or GBS data set is thousands of short, unlinked loci.  For the same
draws (the default config's ``isolation_migration`` scenario, parameters
drawn from its priors, seeds planned by popdl), on one core, in this process:

* per-locus loop: for each locus, ``sim_ancestry`` + ``sim_mutations`` +
  ``genotype_matrix`` (one msprime call per locus, as a hand-written loop does);
* replicates + sim_mutations per locus: one ``sim_ancestry`` call
  (``num_replicates``), then one ``sim_mutations`` per locus (popdl's path
  until its mutations were placed at once);
* popdl: :meth:`popdl.simulators.msprime_sim.MsprimeSimulator.simulate` with
  ``genome.loci``: one msprime simulator for all loci (the replicates of
  ``sim_ancestry(num_replicates=...)``: the same demography, independent
  genealogies, read as table columns) and the mutations of all loci placed
  at once;
* coalescent alone: the same replicates from msprime's simulator, without
  mutations or genotypes (``popdl.simulators.msprime_sim._replicate_tables``):
  the floor of any path that runs msprime's coalescent once per locus;
* with ``--alternatives N`` (default 40 loci; 0 skips them): the two other
  one-call layouts, on N loci only because they grow faster than linearly
  with the loci: one genome with a recombination rate of log 2 between loci
  (msprime's multiple-chromosome recipe: its coalescent merges lineages of
  unrelated loci), and the same genome under the SMC(k=0) model; each beside
  popdl on the same N loci.

Times are CPU seconds of this process (``time.process_time``): figures per
core, whatever else runs on the machine.  The per-locus mean number of
segregating sites of both sides is printed as a sanity check (the
distributions themselves are tested in ``tests/test_many_loci.py``).
Target: per-locus loop / popdl >= 10.

    python benchmarks/bench_many_loci.py [--loci 2000] [--length 64] [--diploids 130] [--draws 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import msprime
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from popdl.config import load_config  # noqa: E402
from popdl.plan import plan_draws  # noqa: E402
from popdl.scenarios import Scenario  # noqa: E402
from popdl.simulators.msprime_sim import MsprimeSimulator, _replicate_tables, demography_from_graph  # noqa: E402

SCENARIO = "isolation_migration"


def per_locus_loop(scenario, params: dict, seeds: dict, *, samples: dict, genome: dict) -> int:
    """One ``sim_ancestry`` + ``sim_mutations`` per locus; returns the number of sites."""
    demography = demography_from_graph(scenario.graph(params))
    words = np.random.SeedSequence([seeds["seed_ancestry"], seeds["seed_mutation"]]).generate_state(
        2 * genome["loci"], dtype=np.uint32) % (2**31 - 2) + 1
    sites = []
    for locus in range(genome["loci"]):
        ts = msprime.sim_ancestry(samples=samples, demography=demography, sequence_length=genome["length"],
                                  recombination_rate=genome["recombination_rate"], ploidy=2,
                                  random_seed=int(words[2 * locus]), record_provenance=False)
        ts = msprime.sim_mutations(ts, rate=genome["mutation_rate"], model=msprime.BinaryMutationModel(),
                                   discrete_genome=False, random_seed=int(words[2 * locus + 1]),
                                   record_provenance=False)
        sites.append(ts.genotype_matrix().shape[0])
    return sum(sites)


def replicates_then_mutations(scenario, params: dict, seeds: dict, *, samples: dict, genome: dict) -> int:
    """popdl's path before its mutations were placed at once: one ``sim_ancestry``
    call (``num_replicates``), then ``sim_mutations`` + ``genotype_matrix`` per locus."""
    replicates = msprime.sim_ancestry(samples=samples, demography=demography_from_graph(scenario.graph(params)),
                                      sequence_length=genome["length"], recombination_rate=genome["recombination_rate"],
                                      ploidy=2, random_seed=seeds["seed_ancestry"], num_replicates=genome["loci"],
                                      record_provenance=False)
    words = np.random.SeedSequence(seeds["seed_mutation"]).generate_state(genome["loci"], dtype=np.uint32)
    sites = []
    for ts, seed in zip(replicates, (words.astype(np.int64) % (2**31 - 2) + 1).tolist()):
        ts = msprime.sim_mutations(ts, rate=genome["mutation_rate"], model=msprime.BinaryMutationModel(),
                                   discrete_genome=False, random_seed=seed, record_provenance=False)
        sites.append(ts.genotype_matrix().shape[0])
    return sum(sites)


def coalescent_alone(scenario, params: dict, seeds: dict, *, samples: dict, genome: dict) -> int:
    """The replicate genealogies popdl's draw mutates, and nothing else; returns the edges."""
    args = dict(samples=samples, demography=demography_from_graph(scenario.graph(params)), model=None,
                sequence_length=float(genome["length"]), recombination_rate=genome["recombination_rate"], ploidy=2,
                random_seed=seeds["seed_ancestry"])
    return sum(edges["parent"].size for _, edges in _replicate_tables(args, genome["loci"]))


def one_genome(scenario, params: dict, seed: int, *, samples: dict, genome: dict, model=None) -> int:
    """All loci as one genome, a recombination rate of log 2 between neighbours
    (the last link of each locus), in one ``sim_ancestry`` call; returns the trees."""
    loci, length = genome["loci"], int(genome["length"])
    position, rate = [0.0], []
    for locus in range(loci):
        position += [position[-1] + length - 1, position[-1] + length]
        rate += [genome["recombination_rate"], math.log(2) if locus < loci - 1 else genome["recombination_rate"]]
    ts = msprime.sim_ancestry(samples=samples, demography=demography_from_graph(scenario.graph(params)),
                              recombination_rate=msprime.RateMap(position=position, rate=rate), ploidy=2,
                              model=model, random_seed=seed, record_provenance=False)
    return ts.num_trees


def cpu(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.process_time()
    value = fn(*args, **kwargs)
    return time.process_time() - start, value


def popdl_sites(simulator, scenario, params: dict, seeds: dict) -> int:
    return simulator.simulate(scenario, params, seeds).positions.size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--loci", type=int, default=2000)
    parser.add_argument("--length", type=int, default=64, help="bp per locus")
    parser.add_argument("--diploids", type=int, default=130, help="individuals, split evenly between pop1 and pop2")
    parser.add_argument("--draws", type=int, default=3, help="draws from the priors, each timed on both sides")
    parser.add_argument("--alternatives", type=int, default=40, help="loci for the other one-call layouts (0: skip)")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    config["samples"] = {"pop1": args.diploids // 2, "pop2": args.diploids - args.diploids // 2}
    genome = {"loci": args.loci, "length": args.length, "mutation_rate": 1e-8, "recombination_rate": 1e-8}
    config["genome"] = dict(config["genome"], **genome)
    scenario = Scenario.from_config(SCENARIO, config)
    plan = plan_draws(scenario, root_seed=config["seed"], start=0, stop=args.draws)
    names = scenario.parameter_names
    simulator = MsprimeSimulator(genome=config["genome"], samples=config["samples"])
    print(f"{args.loci} loci x {args.length} bp, {args.diploids} diploids ({SCENARIO}), {args.draws} draws, CPU s")
    times: dict[str, list[float]] = {"loop": [], "replicates": [], "popdl": [], "coalescent": []}
    sites: dict[str, list[float]] = {side: [] for side in times if side != "coalescent"}
    for i, row in enumerate(plan.to_dict("records")):
        params = {n: float(row[n]) for n in names}
        seeds = {k: int(row[k]) for k in ("seed_ancestry", "seed_mutation")}
        kwargs = {"samples": config["samples"], "genome": genome}
        sides = [("popdl", popdl_sites, (simulator, scenario, params, seeds), {}),
                 ("replicates", replicates_then_mutations, (scenario, params, seeds), kwargs),
                 ("loop", per_locus_loop, (scenario, params, seeds), kwargs),
                 ("coalescent", coalescent_alone, (scenario, params, seeds), kwargs)]
        # Rotate which side runs first, so none always gets a warm cache.
        for side, fn, fargs, fkwargs in sides[i % len(sides):] + sides[:i % len(sides)]:
            seconds, count = cpu(fn, *fargs, **fkwargs)
            times[side].append(seconds)
            if side in sites:
                sites[side].append(count / args.loci)
        print(f"draw {i}: per-locus loop {times['loop'][-1]:.3f} s, replicates + sim_mutations per locus "
              f"{times['replicates'][-1]:.3f} s, popdl {times['popdl'][-1]:.3f} s, "
              f"coalescent alone {times['coalescent'][-1]:.3f} s")
    median = {side: statistics.median(t) for side, t in times.items()}
    print("sites per locus (mean over draws): " + ", ".join(f"{s} {statistics.mean(v):.3f}" for s, v in sites.items()))
    print(f"median per draw: per-locus loop {median['loop']:.3f} s, replicates + sim_mutations per locus "
          f"{median['replicates']:.3f} s, popdl {median['popdl']:.3f} s, "
          f"coalescent alone {median['coalescent']:.3f} s ({median['coalescent'] / median['popdl']:.0%} of popdl's)")
    print(f"speed-up replicates + sim_mutations per locus / popdl: {median['replicates'] / median['popdl']:.2f}x")
    print(f"speed-up per-locus loop / popdl: {median['loop'] / median['popdl']:.1f}x (target >= 10)")
    print(f"per-locus loop / coalescent alone: {median['loop'] / median['coalescent']:.1f}x (the most that any path "
          "running msprime's coalescent once per locus can reach)")

    if args.alternatives > 0:
        small = dict(genome, loci=args.alternatives)
        config["genome"] = dict(config["genome"], **small)
        few = MsprimeSimulator(genome=config["genome"], samples=config["samples"])
        row = plan.to_dict("records")[0]
        params = {n: float(row[n]) for n in names}
        seeds = {k: int(row[k]) for k in ("seed_ancestry", "seed_mutation")}
        ours, _ = cpu(few.simulate, scenario, params, seeds)
        print(f"other one-call layouts, draw 0, {args.alternatives} loci (popdl {ours:.3f} s):")
        for label, model in (("one genome, log 2 between loci (Hudson)", None),
                             ("one genome, log 2 between loci, SMC(k=0)", msprime.SMCK(k=0))):
            seconds, trees = cpu(one_genome, scenario, params, seeds["seed_ancestry"], samples=config["samples"],
                                 genome=small, model=model)
            print(f"  {label}: {seconds:.3f} s ancestry alone ({trees} trees), {seconds / ours:.1f}x popdl's draw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
