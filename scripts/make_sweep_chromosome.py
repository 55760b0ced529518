"""Write the simulated chromosome scanned by config/examples/sweeps.yaml (run once; the output is committed).

One msprime chromosome with a hard selective sweep at its centre, simulated
under the sweep scenario of a config with fixed parameter values, written as
a phased gzipped VCF plus a popmap and the truth (where the sweep is):

    python scripts/make_sweep_chromosome.py --configfile config/examples/sweeps.yaml \
        --scenario sweep --length 3000000 --out config/data --name sweep_chr
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from popdl.config import load_config
from popdl.scenarios import Scenario
from popdl.sweeps import simulate_chromosome, write_vcf

DEFAULT_PARAMS = {"N": 10000, "s": 0.02, "age": 50, "jitter": 0.0}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default="config/examples/sweeps.yaml")
    parser.add_argument("--scenario", default="sweep")
    parser.add_argument("--params", default=json.dumps(DEFAULT_PARAMS),
                        help="parameter values (JSON); missing ones are drawn from the priors")
    parser.add_argument("--length", type=float, default=3e6, help="chromosome length (bp)")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--name", default="sweep_chr")
    parser.add_argument("--out", default="config/data")
    args = parser.parse_args(argv)

    config = load_config(args.configfile)
    scenario = Scenario.from_config(args.scenario, config)
    import numpy as np

    params = scenario.draw(np.random.default_rng(args.seed))
    params.update(json.loads(args.params))
    genome = config["genome"]
    ts = simulate_chromosome(
        scenario, params, samples=config["samples"], length=args.length,
        recombination_rate=float(genome["recombination_rate"]), mutation_rate=float(genome["mutation_rate"]),
        seed=args.seed,
    )
    out = Path(args.out)
    vcf = out / f"{args.name}.vcf.gz"
    popmap = write_vcf(ts, vcf)
    (out / f"{args.name}_popmap.tsv").write_text("sample\tpopulation\n" + "".join(f"{s}\t{p}\n" for s, p in popmap))
    truth = {"scenario": args.scenario, "params": params, "seed": args.seed, "length": args.length}
    if scenario.sweep is not None:
        values = scenario.sweep.values(params, graph=scenario.graph(params), where=args.scenario)
        truth["sweep_position_bp"] = values["position"] * args.length
        truth["sweep"] = values
    (out / f"{args.name}_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    print(f"{vcf}: {ts.num_sites} sites, {ts.num_individuals} individuals")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
