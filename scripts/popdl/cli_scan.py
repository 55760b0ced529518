"""Sub-command ``scan``: class probabilities in sliding windows along a VCF's contigs."""

from __future__ import annotations

import logging
from pathlib import Path

from popdl.cli import population_mapping

log = logging.getLogger("popdl")


def add_commands(sub) -> None:
    p = sub.add_parser(
        "scan",
        help="slide the trained network along each contig of a VCF (e.g. a sweep scan); TSV, BED and PNG",
    )
    p.add_argument("--model", required=True, help="the trained model folder (results/{run}/model)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--configfile", type=Path, nargs="+",
                       help="the config the model was trained with, in one file or several merged as Snakemake merges "
                            "them (default: the one stored in the model's bundle.json)")
    group.add_argument("--settings", help="the step's JSON config slice, as the workflow passes it (or @file)")
    p.add_argument("--vcf", required=True, nargs="+",
                   help="VCF (.vcf, .vcf.gz) or BCF; several files (one per chromosome, or a quoted glob such as "
                        "'calls/chr*.vcf.gz') are read as one; every contig is scanned")
    p.add_argument("--popmap", help="sample -> population table (optional with one simulated population)")
    p.add_argument("--popmap-columns", nargs=2, metavar=("SAMPLE", "POPULATION"),
                   help="read the popmap as a sample sheet (a table whose first line holds the column titles) by these "
                        "two columns, each a title or a number counted from 1 (default: the scan.data entry's)")
    p.add_argument("--populations", nargs="+", metavar="LABEL=POP", default=[],
                   help="the popmap's population labels -> the simulated populations (default: the scan.data entry's)")
    p.add_argument("--keep-filtered", action="store_true",
                   help="use a VCF's records that failed a filter (FILTER neither PASS nor '.'); by default they are "
                        "skipped (predict.keep_filtered)")
    p.add_argument("--step", type=int, help="SNPs between consecutive window centres (default: scan.step)")
    p.add_argument("--target", help="scenario whose probability is scored and plotted (default: scan.target, "
                                    "else 'sweep' if the model has it, else the last scenario)")
    p.add_argument("--name", help="name of the data set in the outputs (default: the VCF's name)")
    p.add_argument("--out", required=True, help="output prefix: PREFIX.tsv, PREFIX.bed, PREFIX.png, PREFIX.json")
    p.set_defaults(func=cmd_scan)


def scan_settings(args, model: Path) -> dict:
    """The scan slice: --settings / --configfile, else the run config stored in the model's bundle.json."""
    from popdl.config import load_configs, stored_config
    from popdl.errors import ConfigError
    from popdl.stages import load_settings, stage_config

    if args.settings:
        try:
            return load_settings(args.settings)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"--settings is not valid JSON: {exc}") from None
    if args.configfile is not None:
        return stage_config(load_configs(args.configfile), "scan")
    return stage_config(stored_config(model), "scan")


def _populations(args, settings: dict) -> dict | None:
    """The popmap's labels -> the simulated populations: --populations, else the scan.data
    entry's own mapping, else ``predict.defaults.populations`` (which a model folder stores)."""
    if args.populations:
        return population_mapping(args.populations)
    own = (settings.get("data") or {}).get("populations")
    return own if own is not None else ((settings["predict"].get("defaults") or {}).get("populations"))


def cmd_scan(args) -> int:
    from popdl.model_io import load_model
    from popdl.scan import read_scan_vcf, run_scan
    from popdl.stages import settings_hash

    model_dir = Path(args.model)
    if not (model_dir / "bundle.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a popdl model folder (no bundle.json)")
    settings = scan_settings(args, model_dir)
    popt, sopt = settings["predict"], settings["scan"]
    step = args.step if args.step is not None else sopt["step"]
    data = read_scan_vcf(
        args.vcf[0] if len(args.vcf) == 1 else args.vcf, popmap=args.popmap, samples=settings["samples"],
        popmap_columns=args.popmap_columns or (settings.get("data") or {}).get("popmap_columns"), seed=settings["seed"], name=args.name,
        subsample=popt["subsample"], allow_unphased=popt["allow_unphased"], max_missing=popt["max_missing"],
        populations=_populations(args, settings),
        strict=popt.get("strict_samples", False), phased=settings["features"].get("phased", True),
        keep_filtered=args.keep_filtered or popt.get("keep_filtered", False),
    )
    model = load_model(model_dir)
    snps = int(settings["features"]["snps"])
    trained = model.bundle.get("shapes", {}).get("distances")
    if trained and int(trained[0]) != snps:
        raise ValueError(f"features.snps is {snps} but the model was trained on {trained[0]} SNPs; give the model's config")

    def predict(x: dict):
        return model.predict(x["images"], x["distances"], x["stats"]).probabilities

    table = run_scan(
        data, predict, scenarios=list(model.scenarios), features=settings["features"], genome=settings["genome"],
        step=step, seed=settings["seed"], out=args.out, target=args.target or sopt.get("target"),
        config_hash=settings_hash(settings),
    )
    target = args.target or sopt.get("target") or _default(model.scenarios)
    best = table.loc[table[f"p_{target}"].idxmax()]
    print(f"{data.name}: {len(table)} windows on {table['contig'].nunique()} contig(s); highest p({target}) "
          f"{best[f'p_{target}']:.3f} at {best['contig']}:{int(best['centre'])}; written to {args.out}.tsv/.bed/.png")
    return 0


def _default(scenarios):
    from popdl.scan import default_target

    return default_target(list(scenarios))
