"""fastsimcoal2 vs msprime: simulations per second on the same scenario and draws.

Runs the default config's scenarios (its genome and samples) through both
backends on the same planned draws and prints the throughput of each and the
ratio fastsimcoal2 / msprime.  Needs an fsc program on PATH (or
``--executable``); exits 0 with a message when there is none.

    python benchmarks/bench_fastsimcoal2.py [--draws 20] [--scenario isolation]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None) -> int:
    from popdl.config import load_config
    from popdl.errors import ConfigError
    from popdl.plan import SEED_COLUMNS, plan_draws
    from popdl.scenarios import Scenario
    from popdl.simulators import get_simulator
    from popdl.simulators.fastsimcoal2 import find_executable

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=20, help="draws per scenario (default 20)")
    parser.add_argument("--scenario", action="append", help="scenario(s) to time (default: all)")
    parser.add_argument("--executable", default=None, help="fastsimcoal2 program (default: search PATH)")
    args = parser.parse_args(argv)
    try:
        exe = find_executable(args.executable)
    except ConfigError as exc:
        print(f"bench_fastsimcoal2: skipped: {exc}")
        return 0
    config = load_config(ROOT / "config" / "config.yaml")
    names = args.scenario or list(config["scenarios"])
    print(f"fastsimcoal2 program: {exe}; genome {config['genome']}; samples {config['samples']}; {args.draws} draws/scenario")
    totals = {"msprime": 0.0, "fastsimcoal2": 0.0}
    for name in names:
        scenario = Scenario.from_config(name, config)
        plan = plan_draws(scenario, root_seed=config["seed"], start=0, stop=args.draws)
        rate = {}
        for backend in ("msprime", "fastsimcoal2"):
            settings = {"executable": exe} if backend == "fastsimcoal2" else {}
            sim = get_simulator(backend, genome=config["genome"], samples=config["samples"], **settings)
            start = time.perf_counter()
            sites = 0
            for _, row in plan.iterrows():
                params = {p: float(row[p]) for p in scenario.parameter_names}
                seeds = {c: int(row[c]) for c in SEED_COLUMNS}
                sites += sim.simulate(scenario, params, seeds).positions.size
            seconds = time.perf_counter() - start
            totals[backend] += seconds
            rate[backend] = args.draws / seconds
            print(f"  {name:20s} {backend:13s} {rate[backend]:8.2f} sims/s  ({sites / args.draws:.0f} sites/sim)")
        print(f"  {name:20s} ratio fastsimcoal2/msprime = {rate['fastsimcoal2'] / rate['msprime']:.3f}")
    n = args.draws * len(names)
    print(
        f"overall: msprime {n / totals['msprime']:.2f} sims/s, fastsimcoal2 {n / totals['fastsimcoal2']:.2f} sims/s, "
        f"ratio fastsimcoal2/msprime = {totals['msprime'] / totals['fastsimcoal2']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
