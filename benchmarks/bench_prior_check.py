"""The prior check on data sets drawn from the priors themselves: how often it warns.

A run's features (``results/RUN/features/SCENARIO/*.npz``) are simulations
drawn from the priors.  Each trial takes ``--draws`` of them per scenario as
the prior check's simulations (check-data ``--simulate DRAWS``, or the
workflow's chunk 0) and one more, of a scenario drawn at random, as the data,
and scores the data with :func:`popdl.priorcheck.score_prior`.  Such a data
set lies within the priors, so every WARNING is a false alarm; the benchmark
prints how many there were, how many came from a diversity or divergence
statistic outside every simulation (the rest: the SFS's shape), how many of
these the caution tempers (as many simulations outside the others), and the
median share of simulations outside the others.

    python benchmarks/bench_prior_check.py --run results/demo --draws 20 --trials 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run folder with features/SCENARIO/*.npz")
    parser.add_argument("--draws", type=int, default=20, help="simulations per scenario (check-data --simulate)")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from popdl.features import load_features
    from popdl.priorcheck import SCALE_KINDS, prior_lines, score_prior

    pools, names = {}, None
    for folder in sorted(p for p in (Path(args.run) / "features").iterdir() if p.is_dir()):
        loaded = [load_features(f) for f in sorted(folder.glob("*.npz"))]
        names = [str(s) for s in loaded[0]["stat_names"]]
        pools[folder.name] = np.concatenate([np.asarray(x["stats"], dtype=np.float64) for x in loaded])
    if not pools:
        raise SystemExit(f"{args.run}/features: no scenario's features")
    if min(len(v) for v in pools.values()) <= args.draws:
        raise SystemExit(f"--draws {args.draws}: a scenario has no more simulations than that")
    rng = np.random.default_rng(args.seed)
    warned = scale = tempered = 0
    shares = []
    for _ in range(args.trials):
        chosen = list(pools)[rng.integers(len(pools))]
        simulated = []
        for scenario, pool in pools.items():
            order = rng.permutation(len(pool))
            simulated.append(pool[order[:args.draws]])
            if scenario == chosen:
                observed = pool[order[args.draws]]
        result = score_prior(observed, np.concatenate(simulated), names)
        line = prior_lines("data", result, draws=args.draws, scenarios=len(pools))[0]
        shares.append(result["simulations_outside"] / result["simulations"])
        if result["warn"]:
            warned += 1
            if any(o["kind"] in SCALE_KINDS for o in result["outside"]):
                scale += 1
                tempered += "lie outside the others and the data" in line
    print(f"{args.run}: {len(pools)} scenario(s) x {args.draws} simulations, {len(names)} statistics, "
          f"{args.trials} data sets drawn from the priors: WARNING on {warned} ({warned / args.trials:.1%}), "
          f"{scale} of them on a diversity or divergence statistic, {tempered} of these with the caution; "
          f"simulations outside the others: median share {np.median(shares):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
