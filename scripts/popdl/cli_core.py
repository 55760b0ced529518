"""Sub-commands for checking configs, planning, simulating, features and datasets."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from popdl.cli import CONFIGFILE_HELP, add_config_arguments, config_from_args
from popdl.errors import ConfigError

log = logging.getLogger("popdl")


def add_commands(sub) -> None:
    p = sub.add_parser("check", help="validate a config file and print its scenarios")
    p.add_argument("--configfile", required=True, nargs="+", type=Path, help=CONFIGFILE_HELP)
    p.add_argument("--time", nargs="?", type=int, const=3, metavar="DRAWS",
                   help="also simulate and featurise the first DRAWS draws of each scenario (default 3), one at a "
                        "time as the jobs do, and print what the run will cost: CPU-hours, a chunk's minutes against "
                        "its rule's runtime, a simulate job's memory, the disk")
    p.add_argument("--cores", type=int, default=None,
                   help="cores the run will have, for --time's wall time (default: this machine's)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("plan", help="draw the parameters and seeds of a scenario's simulations")
    add_config_arguments(p)
    p.add_argument("--scenario", required=True)
    p.add_argument("--out", required=True, help="plan table (TSV)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("simulate", help="simulate one chunk of planned draws")
    add_config_arguments(p)
    p.add_argument("--scenario", required=True)
    p.add_argument("--plan", help="the scenario's plan table (default: plan the chunk's draws from the config, "
                   "the same rows as `popdl plan` writes)")
    p.add_argument("--start", type=int, required=True, help="first draw (inclusive)")
    p.add_argument("--stop", type=int, required=True, help="last draw (exclusive)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("features", help="genotype images and summary statistics of one chunk")
    add_config_arguments(p)
    p.add_argument("--sims", required=True, help="simulation chunk (.npz)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("dataset", help="stratified splits as streamable shards")
    add_config_arguments(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("features", nargs="+", help="features chunks (.npz)")
    p.set_defaults(func=cmd_dataset)


#: 4 N mu per bp above which ``popdl check`` warns that sites saturate.
SATURATED_THETA = 0.1


def _median_theta(scenario, plan, genome: dict) -> float:
    """The median over ``plan``'s draws of 4 N mu per bp, N a draw's largest population size."""
    from statistics import median

    values = []
    for params in plan[scenario.parameter_names].to_dict("records"):
        graph = scenario.graph(params)
        size = max(max(e.start_size, e.end_size) for d in graph.demes for e in d.epochs)
        values.append(4 * size * scenario.genome_value("mutation_rate", params, genome))
    return float(median(values)) if values else 0.0


def _check_data_files(config: dict, configfile: Path) -> None:
    """Every file of ``predict.data`` and ``scan.data`` is there (looked up as the workflow and
    ``popdl predict`` do: from the working folder, else beside the config file or in the folder
    above it, else in the repository): a missing VCF would otherwise stop the run when Snakemake
    builds its jobs, after ``check`` said the config was valid."""
    from popdl.errors import DataError
    from popdl.paths import located, repository, vcf_files

    folder, repo = configfile.resolve().parent, repository()
    bases = [folder, folder.parent, *([repo] if repo else [])]
    for section in ("predict", "scan"):
        for i, entry in enumerate((config.get(section) or {}).get("data") or []):
            for key in ("vcf", "fasta", "popmap"):
                value = entry.get(key)
                if not value:
                    continue
                items = [value] if isinstance(value, str) else list(value)
                for item in items:
                    found = False
                    for base in bases:
                        try:
                            found = all(p.exists() for p in vcf_files(item, base_dir=base)) if key == "vcf" \
                                else located(item, base).exists()
                        except DataError:
                            found = False
                        if found:
                            break
                    if not found:
                        raise ConfigError(f"config key '{section}.data[{i}].{key}': {item!r} not found (looked in the "
                                          f"working folder, {', '.join(map(str, bases))})")


def cmd_check(args) -> int:
    from popdl.config import load_configs
    from popdl.plan import plan_draws
    from popdl.scenarios import load_scenarios
    from popdl.stages import chunks

    if args.time is not None and args.time < 1:
        raise ValueError(f"--time {args.time}: measure at least one draw per scenario")
    if args.cores is not None and args.cores < 1:
        raise ValueError(f"--cores {args.cores}: at least 1")
    config = load_configs(args.configfile)
    n = len(chunks(config))
    _check_data_files(config, Path(args.configfile[0]))
    scenarios = load_scenarios(config)
    thetas = {}
    for name, sc in scenarios.items():  # every draw the run will simulate, as its plan jobs draw them (seconds)
        plan = plan_draws(sc, root_seed=config["seed"], start=0, stop=config["simulations"]["per_scenario"])
        thetas[name] = _median_theta(sc, plan.head(200), config["genome"])
    print(f"{' + '.join(map(str, args.configfile))}: valid. run {config['run']!r}, {config['simulations']['per_scenario']} draws per scenario in {n} chunk(s)")
    for name, sc in scenarios.items():
        priors = ", ".join(f"{p} {prior.describe()}" for p, prior in sc.priors.items())
        print(f"  {name} [{sc.simulator}]: {priors}")
    from popdl.tuning import split_warnings, sweep_warnings

    saturated = {name: t for name, t in thetas.items() if t > SATURATED_THETA}
    if saturated:
        name, theta = max(saturated.items(), key=lambda kv: kv[1])
        bp = float(config["genome"]["length"]) * int(config["genome"]["loci"])
        print(f"WARNING: 4 N mu per bp is {theta:.3g} in scenario {name!r} (the median over its first draws, N its "
              f"largest population size): most sites would carry several mutations, where real data have 0.001-0.05, "
              f"and a draw would simulate at least {theta * bp:.3g} mutations; genome.mutation_rate is per bp per "
              "generation")
    for line in split_warnings(config) + sweep_warnings(config):
        print(f"WARNING: {line}")
    if args.time is not None:
        import os

        from popdl.costs import extrapolate, measure, report_lines
        from popdl.device import cpu_name

        cores = args.cores or os.cpu_count() or 1
        sims = config["simulations"]
        costs = extrapolate(measure(config, args.time), per_scenario=sims["per_scenario"], chunk=sims["chunk"],
                            cores=cores)
        for line in report_lines(costs, machine=f"{cpu_name()}, {os.cpu_count()} cores here", tuning=config["tuning"]):
            print(line)
    return 0


def cmd_plan(args) -> int:
    from popdl.plan import write_plan
    from popdl.scenarios import Scenario

    cfg = config_from_args(args, "plan", args.scenario)
    scenario = Scenario.from_config(args.scenario, _with_defaults(cfg))
    summary = write_plan(scenario, args.out, root_seed=cfg["seed"], n=cfg["simulations"]["per_scenario"])
    log.info("plan: %d draws of %s, %.2f tries per draw", summary["draws"], args.scenario, summary["mean_tries"])
    return 0


def cmd_simulate(args) -> int:
    from popdl.plan import plan_draws, read_plan
    from popdl.scenarios import Scenario
    from popdl.simulate import simulate_chunk

    cfg = _with_defaults(config_from_args(args, "simulate", args.scenario))
    scenario = Scenario.from_config(args.scenario, cfg)
    if not 0 <= args.start < args.stop:
        raise ValueError(f"--start {args.start} --stop {args.stop}: no draws in that range")
    if args.plan:
        plan = read_plan(args.plan, start=args.start, stop=args.stop)
        if len(plan) != args.stop - args.start:
            raise ValueError(f"{args.plan} has no draws {args.start}..{args.stop - 1}")
    else:
        # Each draw's parameters and seeds depend only on (root seed, scenario, draw),
        # so a chunk plans its own rows: raising simulations.per_scenario adds
        # chunks without rerunning the ones already simulated.
        plan = plan_draws(scenario, root_seed=cfg["seed"], start=args.start, stop=args.stop)
    summary = simulate_chunk(cfg, scenario, plan, args.out)
    log.info("simulate: %s", json.dumps(summary))
    return 0


def cmd_features(args) -> int:
    from popdl.features import features_chunk

    cfg = config_from_args(args, "features")
    summary = features_chunk(cfg, args.sims, args.out)
    log.info("features: %s", json.dumps(summary))
    return 0


def cmd_dataset(args) -> int:
    from popdl.dataset import build_dataset
    from popdl.stages import settings_hash

    cfg = config_from_args(args, "dataset")
    build_dataset(
        args.features,
        args.out,
        scenarios=cfg["scenario_names"],
        fractions=cfg["split"],
        shard_size=cfg["shard_size"],
        root_seed=cfg["seed"],
        priors=cfg["priors"],
        config_hash=settings_hash(cfg),
    )
    return 0


def _with_defaults(cfg: dict) -> dict:
    """A simulation slice as a config that Scenario.from_config accepts."""
    cfg = dict(cfg)
    cfg.setdefault("simulations", {}).setdefault("max_tries", 10000)
    return cfg
