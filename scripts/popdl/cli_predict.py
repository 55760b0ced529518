"""Sub-commands for observed data: check-data, observe, predict, and the ABC baselines."""

from __future__ import annotations


import contextlib
import json
import logging
import sys
from pathlib import Path

import numpy as np

from popdl.calibration import probability_text
from popdl.cli import add_config_arguments, config_from_args, population_mapping
from popdl.priorcheck import PRIOR_DRAWS

log = logging.getLogger("popdl")
#: check-data warns of individuals missing more than this share of their calls (failed libraries).
SPARSE_INDIVIDUAL = 0.8


def _data_arguments(p, *, required: bool) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--vcf", nargs="+", help="VCF (.vcf, .vcf.gz) or BCF; several files (one per chromosome, "
                                                "or a quoted glob such as 'calls/chr*.vcf.gz') are read as one data "
                                                "set; unphased calls need an unphased model")
    group.add_argument("--fasta", nargs="+", help="aligned FASTA files, one per locus")
    p.add_argument("--popmap", required=required, help="sample -> population table")
    p.add_argument("--popmap-columns", nargs=2, metavar=("SAMPLE", "POPULATION"),
                   help="read the popmap as a sample sheet (a table whose first line holds the column titles) by these "
                        "two columns, each a title or a number counted from 1, e.g. --popmap-columns Tissue.num 'Song Type'")
    p.add_argument("--name", help="name of the data set (default: the file's name)")
    p.add_argument("--length", type=float, help="sequenced length in bp for per-bp statistics")
    p.add_argument("--populations", nargs="+", metavar="LABEL=POP", default=[],
                   help="the popmap's population labels -> the simulated populations, e.g. nuttalli=pop1 pugetensis=pop2")
    p.add_argument("--loci", choices=["contigs", "windows", "clusters", "ids"],
                   help="a VCF's loci: each contig (default); windows of genome.length bp along each contig; "
                        "clusters, a new locus wherever two SNPs lie more than genome.length apart (RAD/GBS reads "
                        "aligned to a reference); or ids, the locus each record's ID names (Stacks: LOCUS_COLUMN, "
                        "LOCUS:COLUMN:STRAND; needed for de novo Stacks 1 VCFs, all on contig 'un')")
    p.add_argument("--keep-filtered", action="store_true",
                   help="use a VCF's records that failed a filter (FILTER neither PASS nor '.'); by default they are "
                        "skipped (predict.keep_filtered)")


def add_commands(sub) -> None:
    p = sub.add_parser("check-data", help="validate a VCF or FASTA data set against a config and print what is kept")
    add_config_arguments(p, several=True)
    _data_arguments(p, required=True)
    p.add_argument("--suggest-config", nargs="?", const="-", metavar="FILE",
                   help="write the config settings that match the data (samples, genome.loci, features.phased, the "
                        "SFS projection, the missingness model, one SNP per locus and a minor-allele filter where the "
                        "data show them, the predict.data entry) to FILE, or print them alone on stdout (the report then "
                        "goes to stderr); every individual is kept")
    p.add_argument("--simulate", nargs="?", type=int, const=PRIOR_DRAWS, metavar="DRAWS",
                   help="also simulate the run's first DRAWS draws of each scenario (default "
                        f"{PRIOR_DRAWS}) as its jobs will, and say whether the data's summary statistics lie within "
                        "them: diversity or divergence beyond every simulation names the priors to widen before a "
                        "run (needs --configfile, the config as the run will use it)")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("observe", help="network inputs of one observed data set (predict.data entry)")
    add_config_arguments(p, several=True)
    p.add_argument("--data", help="the predict.data entry's name (with --configfile)")
    p.add_argument("--out", required=True, help="observed.npz to write")
    p.set_defaults(func=cmd_observe)

    p = sub.add_parser("predict", help="scenario probabilities and parameter estimates for observed data")
    p.add_argument("--model", required=True, help="the trained model folder (results/{run}/model)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--configfile", type=Path, nargs="+",
                       help="the run's config, in one file or several merged as Snakemake merges them (default: the "
                            "one stored with the model)")
    group.add_argument("--settings", help="the step's JSON config slice, as the workflow passes it (or @file)")
    _data_arguments(p, required=False)
    p.add_argument("--observed", help="an observed.npz made by `popdl observe` (instead of --vcf/--fasta)")
    p.add_argument("--dataset", help="dataset folder for the misspecification check (default: the model's sibling 'dataset')")
    p.add_argument("--out", help="output folder (default: predict-<name>)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("check-fit", help="simulate data from the network's answer for an observed data set and "
                                         "check that they look like the data (a posterior predictive check)")
    p.add_argument("--model", required=True, help="the trained model folder (results/{run}/model)")
    p.add_argument("--prediction", required=True,
                   help="the data set's predictions.json, or the folder holding it and its observed.npz "
                        "(popdl predict's --out)")
    p.add_argument("--observed", help="the data set's observed.npz (default: beside predictions.json)")
    p.add_argument("--replicates", type=int, default=200, help="data sets simulated from the answer (default 200)")
    p.add_argument("--out", help="the JSON to write (default: fit_check.json beside predictions.json)")
    p.set_defaults(func=cmd_check_fit)

    p = sub.add_parser("prior-check", help="an observed data set's summary statistics among the run's first "
                                           "simulations (each scenario's chunk 0): do the data lie within the priors?")
    p.add_argument("--observed", required=True, help="the data set's observed.npz (popdl observe)")
    p.add_argument("--features", required=True, nargs="+", metavar="[SCENARIO=]FILE",
                   help="features files of popdl features, one per scenario (SCENARIO: default the file's "
                        "folder, as in results/{run}/features/SCENARIO/0.npz)")
    p.add_argument("--settings", help="the observe step's JSON config slice (or @file), for the provenance")
    p.add_argument("--stop", action="store_true",
                   help="a WARNING is an error and nothing is written (config predict.prior_check: stop)")
    p.add_argument("--out", required=True, help="the JSON to write (results/{run}/predict/NAME/prior_check.json)")
    p.set_defaults(func=cmd_prior_check)

    p = sub.add_parser("abc", help="rejection ABC and ABC random forest on the dataset's summary statistics")
    add_config_arguments(p)
    p.add_argument("--dataset", required=True, help="dataset folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("observed", nargs="*", help="observed.npz files to answer (NAME=PATH or PATH; name: the file's folder)")
    p.set_defaults(func=cmd_abc)


def _entry(args) -> dict:
    source = args.vcf[0] if args.vcf else (args.fasta[0] if args.fasta else None)
    name = args.name or Path(source).name.split(".")[0]
    entry = {"name": name, "popmap": args.popmap}
    if args.popmap_columns:
        entry["popmap_columns"] = list(args.popmap_columns)
    if args.vcf:
        entry["vcf"] = args.vcf[0] if len(args.vcf) == 1 else list(args.vcf)
    else:
        entry["fasta"] = list(args.fasta)
    if args.length:
        entry["length"] = args.length
    if args.populations:
        entry["populations"] = population_mapping(args.populations)
    if args.loci:
        entry["loci"] = args.loci
    return entry


def _predict_settings(args, stage="predict") -> dict:
    from popdl.config import load_configs
    from popdl.stages import load_settings, stage_config

    if getattr(args, "configfile", None) is not None:
        return stage_config(load_configs(args.configfile), stage)
    return load_settings(args.settings)


def cmd_check_data(args) -> int:
    with _each_line_once():
        if args.suggest_config != "-":
            return _check_data(args, sys.stdout)
        # The suggested settings alone on stdout (`... --suggest-config > suggested.yaml` is a config file); the report
        # on stderr.
        out = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            return _check_data(args, out)


class _Once(logging.Filter):
    """Lets each log line through once (by level and text)."""

    def __init__(self):
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


@contextlib.contextmanager
def _each_line_once():
    """check-data reads a data set again when its first reading says how to read it (the loci its IDs name):
    the notes of the second reading (samples left out, htslib's messages) are those of the first, logged once."""
    once = _Once()
    handlers = {*logging.getLogger().handlers, *logging.getLogger("popdl").handlers}
    for handler in handlers:
        handler.addFilter(once)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(once)


def _check_data(args, out) -> int:
    """``check-data``'s report on stdout; the suggested settings, if printed, on ``out``."""
    from popdl.errors import ConfigError, DataError
    from popdl.features import allele_thresholds, minor_allele_filter, observed_features
    from popdl.observed import (HEADER_SHARE, allele_filter, allele_filter_advice, allele_filter_text,
                                available_individuals, catalogue_loci, cluster_loci, clustered_snps, missing_unit_advice,
                                missingness_profile, read_observed, SHARED_POSITIONS_NOTE, shared_positions, skipped_text, stacks_loci, thinned, thinning_advice,
                                with_defaults)
    from popdl.predict import position_check

    if args.simulate is not None:
        if args.suggest_config is not None:
            raise ConfigError("--simulate checks the config as the run will use it: run it after --suggest-config, "
                              "with the suggestion merged (--configfile YOUR_CONFIG.yaml SUGGESTION.yaml)")
        if args.configfile is None:
            raise ConfigError("--simulate needs the run's config (--configfile), not --settings")
        if args.simulate < 2:
            raise ConfigError(f"--simulate {args.simulate}: simulate at least 2 draws per scenario")
        from popdl.config import load_configs
        from popdl.stages import stage_config

        config = load_configs(args.configfile)  # the whole config, for the simulations; its observe slice, for the data
        settings = stage_config(config, "observe")
    else:
        config, settings = None, _predict_settings(args, "observe")
    entry = with_defaults(_entry(args), settings["predict"].get("defaults"))
    popt, genome = settings["predict"], settings["genome"]
    samples = settings["samples"]
    if args.suggest_config is not None:
        if "vcf" not in entry:
            raise DataError("--suggest-config reads a VCF (--vcf)")
        samples = available_individuals(entry, samples=samples)
        empty = [pop for pop, n in samples.items() if n == 0]
        if empty:
            raise DataError(f"{entry['name']}: no individual of population(s) {', '.join(empty)} in the data "
                            "(map the popmap's labels with --populations LABEL=POP)")
    def read(entry: dict):
        # Whatever the phasing, to tell which it is (a phased config would stop at the first unphased call).
        return read_observed(entry, samples=samples, seed=settings["seed"], subsample=popt["subsample"],
                             allow_unphased=True, max_missing=popt["max_missing"],
                             genome_length=float(genome["loci"]) * float(genome["length"]),
                             strict=popt.get("strict_samples", False), phased=False,
                             locus_length=float(genome["length"]),
                             keep_filtered=args.keep_filtered or popt.get("keep_filtered", False))

    data = read(entry)
    tags = stacks_loci(data.ids) if (entry.get("loci") or "contigs") != "ids" else 0  # Stacks loci the IDs name
    if args.suggest_config is not None and not args.loci and (entry.get("loci") or "contigs") == "contigs" \
            and tags > len(data.loci):
        # A reference-aligned Stacks catalogue: its IDs name the loci the contigs hold (as clusters below).
        print(f"{entry['name']}: the ID column names {tags} Stacks loci on {len(data.loci)} contigs: the report below "
              "and the suggestion read each Stacks locus as one locus (--loci ids, predict.data[].loci: ids)")
        entry["loci"], tags = "ids", 0
        data = read(entry)
    clustered = clustered_snps(data) if "vcf" in entry and (entry.get("loci") or "contigs") == "contigs" else None
    if clustered:
        switch = args.suggest_config is not None and not args.loci
        print(f"{entry['name']}: WARNING, the SNPs lie in clusters along contigs longer than a tag (the median gap "
              f"between neighbouring SNPs, {clustered['median']:.0f} bp, is {clustered['ratio']:.0%} of their mean; about 69% along "
              "sequenced contigs): RAD/GBS reads aligned to a reference. Read as whole contigs, they are compared with "
              "simulations of every base of each contig; read them as clusters, --loci clusters (predict.data[].loci: "
              f"clusters), with genome.length your tags' length (the gaps thin out beyond about {clustered['length']} bp)"
              + (f"; the report below and the suggestion read them so, with genome.length {clustered['length']}"
                 if switch else ""))
        if switch:
            entry["loci"] = "clusters"
            genome = settings["genome"] = {**genome, "length": clustered["length"]}
            data = cluster_loci(data, clustered["length"])
    # --suggest-config takes every individual available, which the config's SFS projection may not fit.
    fitted = settings["features"] if args.suggest_config is None else _projection_within(settings["features"], samples)
    feats = observed_features(data, features=fitted, genome=genome, seed=settings["seed"],
                               replicates=popt["replicates"])
    c = data.counts
    print(f"{entry['name']}: {c['snps']} biallelic SNPs on {len(data.loci)} {'locus' if len(data.loci) == 1 else 'loci'} from {c['records']} records"
          + (f" in {c['vcf_files']} files" if c.get("vcf_files", 1) > 1 else "") + "; "
          f"skipped {skipped_text(c, advice=True)}; {data.missing_rate:.2%} missing calls; {len(data.individuals)} of {c['individuals_in_file']} individuals kept; "
          f"{feats['images'].shape[0]} {'image' if feats['images'].shape[0] == 1 else 'images'} of "
          f"{feats['images'].shape[1]} × {feats['images'].shape[2]}")
    twice = shared_positions(data)
    if twice:
        many = twice["share"] >= SHARED_POSITIONS_NOTE
        print(f"{entry['name']}: {'WARNING, ' if many else ''}{twice['sites']} position(s) hold {twice['snps']} SNP records "
              f"({twice['share']:.2%} of the SNPs; the first in {twice['locus']}): multi-allelic sites split into biallelic "
              "records (bcftools norm -m-), or a site called twice; each record counts as a SNP, where the simulations "
              "place one mutation per site " + ("(bcftools norm -m+ joins them, and popdl then skips them as multi-allelic)"
                                                if many else f"(below {SHARED_POSITIONS_NOTE:.1%}: too few to matter)"))
    if c.get("subsampled"):
        print(f"{entry['name']}: subsampled to the config's samples ({', '.join(f'{p} {v}' for p, v in c['subsampled'].items())}),"
              f" which cost {c.get('snps_lost_to_subsampling', 0)} SNPs (monomorphic among the individuals kept)")
    profile = missingness_profile(data)
    rates = [r for pop in profile["individuals"].values() for r in pop]
    print(f"{entry['name']}: missing calls {profile['overall']:.1%}; per individual {min(rates):.1%}-{max(rates):.1%} "
          f"(median {np.median(rates):.1%}); per site median {profile['sites'][len(profile['sites']) // 2]:.1%}, "
          f"at most {profile['sites'][-1]:.1%}; "
          + (f"{c['depth_zero_calls']} of them called at depth 0 (FORMAT DP), read as missing; "
             if c.get("depth_zero_calls") else "")
          + (f"{c['filtered_calls']} of them failing a per-sample filter (FORMAT FT), read as missing "
             "(--keep-filtered keeps them); " if c.get("filtered_calls") else "")
          + "the config simulates "
          + ("the data's pattern (features.missing_individuals)" if settings["features"].get("missing_individuals")
             else f"{float(settings['features'].get('missing_rate', 0.0)):.1%} uniform"))
    if profile["whole_loci"] is not None:
        unit = settings["features"].get("missing_unit", "site")
        dropout = profile["unit"] == "locus"
        advice = missing_unit_advice(profile, settings["features"])
        print(f"{entry['name']}: {profile['whole_loci']:.0%} of the missing calls (loci of 2 SNPs or more) lie in loci "
              "an individual misses whole: " + ("allele dropout, as RAD/GBS tags without reads" if dropout
                                                 else "calls missing site by site")
              + f"; the config places missing calls by {unit} (features.missing_unit)"
              + (f"; WARNING, {advice}" if advice else ""))
    # The profile's rates run over the individuals in their order (grouped by population, as the data are).
    sparse = [(name, rate) for name, rate in zip(data.individuals, rates) if rate > SPARSE_INDIVIDUAL]
    if sparse:
        sparse.sort(key=lambda nr: -nr[1])
        print(f"{entry['name']}: WARNING, {len(sparse)} individual(s) miss more than {SPARSE_INDIVIDUAL:.0%} of their "
              f"calls ({', '.join(f'{n.strip()} {r:.0%}' for n, r in sparse[:5])}{', ...' if len(sparse) > 5 else ''}): "
              "each takes a simulated sample's place while adding little; leave them out of the popmap to drop them")
    projection, advice = _sfs_projection(data)
    current = settings["features"].get("sfs_projection")
    print(f"{entry['name']}: SFS: {advice}; the config projects onto "
          + (f"{current} (features.sfs_projection)" if current is not None else "each population's sample (no projection)"))
    for pop, individuals in _silent_populations(data):
        print(f"{entry['name']}: WARNING, no SNP segregates within {pop} ({individuals} individuals kept): each SNP "
              "holds one allele among them; check the popmap's labels of these samples (the wrong samples, one clone or "
              "inbred line) and the filters the data went through")
    het = c.get("phased_heterozygous", 0) + c.get("unphased_heterozygous", 0)
    trained = "phased" if settings["features"].get("phased", True) else "unphased"
    refused = trained == "phased" and data.phasing != "phased" and not popt["allow_unphased"]
    calls = (f"{data.phasing}, {c.get('unphased_heterozygous', 0)} of {het} heterozygous calls without phase" if het
             else "no heterozygous call among the individuals kept, so no phase to read (taken as phased)")
    print(f"{entry['name']}: {calls}; the config is {trained}"
          + ("; ERROR, a phased model refuses these data: set features.phased: false" if refused else ""))
    per_locus = np.bincount(data.locus, minlength=len(data.loci))
    configured = int(genome["loci"])
    found = len(data.loci)
    catalogue = catalogue_loci(data, entry.get("loci"))
    if catalogue.off(configured):
        advice = (f" (more than simulated: raise genome.loci to {catalogue.loci}{'' if catalogue.whole else ' or more'})"
                  if catalogue.loci > configured else
                  f" (more than the catalogue's {catalogue.loci} loci: lower genome.loci to {catalogue.loci})")
    elif found < configured and not catalogue.whole:
        advice = (f" ({configured - found} simulated loci have no SNP here: right if the catalogue holds {configured} "
                  "loci with and without SNPs)")
    else:
        advice = ""
    print(f"{entry['name']}: {found} loci ({entry.get('loci') or 'contigs'}) with a SNP"
          + (f" (the catalogue: {catalogue.loci} loci, from {catalogue.source})" if catalogue.loci != found else "")
          + f", against genome.loci {configured}{advice}; SNPs per locus: mean "
          f"{per_locus.mean():.1f}, median {np.median(per_locus):g}, range {per_locus.min()}-{per_locus.max()}")
    with_record = int(c.get("file_loci", found))
    if catalogue.whole and with_record < HEADER_SHARE * catalogue.loci:
        print(f"{entry['name']}: WARNING, only {with_record} of the VCF header's {catalogue.loci} tags hold a SNP record: a "
              "species of low diversity, or a reference written before filters dropped whole loci (vcftools "
              "--max-missing, bcftools view -i); in that case the catalogue is the loci that passed them: set "
              "genome.loci to their number")
    if thinned(data):
        how = settings["features"].get("one_snp_per_locus")
        advice = thinning_advice(data, settings["features"])
        print(f"{entry['name']}: every one of the {found} loci holds one SNP: a VCF thinned to one SNP per locus "
              "(Stacks populations --write-single-snp or --write-random-snp, vcftools --thin); "
              + (f"WARNING, {advice}" if advice else
                 f"the config thins the simulations alike (features.one_snp_per_locus: {how})"))
    alleles = allele_filter(data)
    thresholds = allele_thresholds(settings["features"])
    advice = allele_filter_advice(alleles, settings["features"])
    if thresholds:
        kept = minor_allele_filter(data.genotypes, **thresholds).size
        config_filter = (f"the config filters simulations and data alike (features.min_maf {thresholds['min_maf']:g}, "
                         f"min_mac {thresholds['min_mac']}), which keeps {kept} of the {data.genotypes.shape[0]} SNPs of the "
                         "individuals kept")
    else:
        config_filter = "the config keeps every SNP (features.min_maf, min_mac)"
    print(f"{entry['name']}: minor alleles: {allele_filter_text(alleles)}; {config_filter}"
          + (f"; WARNING, {advice}" if advice else ""))
    mode = entry.get("loci") or "contigs"
    if tags > len(data.loci):
        print(f"{entry['name']}: the ID column names {tags} Stacks loci, read as {len(data.loci)} loci ({mode}): "
              "--loci ids (predict.data[].loci: ids) makes each Stacks locus one locus")
    positions = position_check(data, float(genome["length"]))
    if positions["flagged"]:
        print(f"{entry['name']}: WARNING, {positions['note']}")
    if args.simulate is not None:
        _prior_check(config, args.simulate, entry["name"], feats, refused=refused)
    if args.suggest_config is not None:
        _write_suggestion(args.suggest_config, entry, data, samples=samples, genome=genome, profile=profile,
                          projection=projection, alleles=alleles["filter"], keep_filtered=args.keep_filtered, out=out,
                          clusters=clustered)
        return 0
    return 1 if refused else 0


def _prior_check(config: dict, draws: int, name: str, feats: dict, *, refused: bool) -> None:
    """check-data --simulate: the data's statistics among the run's first ``draws`` draws of each
    scenario of ``config`` (:mod:`popdl.priorcheck`)."""
    from popdl.priorcheck import prior_lines, score_prior, simulate_prior

    if refused:
        print(f"{name}: prior check skipped: the config refuses these data (above)")
        return
    simulated = simulate_prior(config, draws)
    if simulated["stat_names"] != [str(s) for s in feats["stat_names"]]:
        raise ValueError("the simulations' statistics differ from the data's")  # one config computes both
    result = score_prior(np.asarray(feats["stats"]), simulated["stats"], simulated["stat_names"])
    for line in prior_lines(name, result, draws=draws, scenarios=len(config["scenarios"]),
                            seconds=simulated["seconds"]):
        print(line)


def _projection_within(features: dict, samples: dict) -> dict:
    """``features`` with its ``sfs_projection`` lowered, per population, to at most the
    population's haplotypes in ``samples`` (individuals per population)."""
    given = features.get("sfs_projection")
    if given is None:
        return features
    per_pop = {pop: given for pop in samples} if not isinstance(given, dict) else given
    return {**features, "sfs_projection": {pop: min(int(m), 2 * int(samples[pop])) for pop, m in per_pop.items()
                                           if pop in samples}}


def _silent_populations(data) -> list[tuple[str, int]]:
    """The populations (with their individuals) among whose haplotypes no SNP of ``data`` has both alleles called."""
    pops = np.asarray(data.populations)
    silent = []
    for pop in dict.fromkeys(pops.tolist()):
        g = np.asarray(data.genotypes)[:, pops == pop]
        if not (((g == 0).any(axis=1)) & ((g == 1).any(axis=1))).any():
            silent.append((pop, int((pops == pop).sum()) // 2))
    return silent


def _sfs_projection(data) -> tuple[dict, str]:
    """Per population, the haplotypes onto which projecting the SFS keeps the most segregating sites
    (:func:`popdl.features.best_projection`), and a line saying what each choice keeps."""
    from popdl.features import MISSING, best_projection

    pops = np.asarray(data.populations)
    best, parts = {}, []
    for pop in dict.fromkeys(pops.tolist()):
        cols = np.flatnonzero(pops == pop)
        g = np.asarray(data.genotypes)[:, cols]
        called, derived = (g != MISSING).sum(axis=1), (g == 1).sum(axis=1)
        best[pop], kept = best_projection(derived, called, cols.size)
        parts.append(f"{pop} {int((called == cols.size).sum())} of {g.shape[0]} SNPs called in all {cols.size} "
                     f"haplotypes, projected onto {best[pop]} it keeps the most segregating sites ({kept:.0f})")
    return best, "; ".join(parts)


def _write_suggestion(where: str, entry: dict, data, *, samples: dict, genome: dict, profile: dict,
                      projection: dict, alleles: dict, keep_filtered: bool = False, out=None,
                      clusters: dict | None = None) -> None:
    """The config fragment that matches ``data``: printed on ``out`` (``where`` is ``-``) or written to the file ``where``."""
    import yaml

    from popdl.io import atomic_path
    from popdl.observed import MAX_TAG_LENGTH, catalogue_loci, thinned

    mode = entry.get("loci") or "contigs"
    length = data.counts.get("contig_length_median") if mode == "contigs" else None
    # Loci read by their Stacks IDs: the IDs' columns within the loci say how long a locus is at least
    # (the positions are a reference's where the tags were aligned to one).
    tag = data.counts.get("id_tag_length") if mode == "ids" else None
    from_ids = tag is not None and tag <= MAX_TAG_LENGTH
    if from_ids:
        length = tag
    # Without contig lengths, a de novo catalogue's SNPs (positions within their loci) say the same.
    furthest = data.counts.get("max_position", 0)
    from_snps = not length and mode in ("contigs", "ids") and 0 < furthest <= MAX_TAG_LENGTH
    if from_snps:
        length = furthest
    catalogue = catalogue_loci(data, mode)
    fragment = {
        "samples": {pop: int(n) for pop, n in samples.items()},
        "genome": {"loci": catalogue.loci, "length": length or genome["length"]},
        "features": {"phased": data.phasing == "phased",
                     "missing_individuals": profile["individuals"], "missing_sites": profile["sites"],
                     "missing_unit": profile["unit"],
                     **({"one_snp_per_locus": "random"} if thinned(data) else {}),
                     **alleles,
                     "sfs_projection": {pop: int(m) for pop, m in projection.items()}},
        "predict": {"data": [{k: entry[k] for k in ("name", "vcf", "popmap", "popmap_columns", "populations", "loci") if k in entry}]},
    }
    if keep_filtered:
        fragment["predict"]["keep_filtered"] = True
    text = (f"# popdl check-data --suggest-config: settings matching data set {entry['name']} "
            f"({len(data.individuals)} individuals, {data.counts['snps']} SNPs on {len(data.loci)} loci, "
            f"{data.phasing}); merge them into your config, or give this file after it:\n"
            "# snakemake --configfile YOUR_CONFIG.yaml THIS_FILE.yaml (the keys here replace the config's).\n"
            f"# genome.loci: {catalogue.reason}.\n"
            + (f"# genome.length: where the gaps between neighbouring SNPs thin out ({clusters['length']} bp), the SNPs read as "
               "clusters (RAD/GBS reads aligned to a reference):\n# set your tags' length if you know it.\n"
               if clusters and mode == "clusters" else
               "# genome.length: the furthest SNP position within a locus (the VCF header gives no contig lengths):\n"
               "# at least the catalogue's locus length; set that length if you know it.\n" if from_snps
               else "# genome.length: the furthest column within a locus that the Stacks IDs (LOCUS:COLUMN:STRAND) name, plus "
               "one:\n# at least the catalogue's locus length; set that length if you know it.\n" if from_ids
               else "# genome.length: the median length of the VCF header's contigs.\n" if length else "")
            + yaml.safe_dump(fragment, sort_keys=False, width=100))
    if where == "-":
        print(text, end="", file=out or sys.stdout)
        return
    with atomic_path(where) as tmp:
        Path(tmp).write_text(text)
    print(f"{entry['name']}: suggested settings written to {where}")


def _file_out(path: str | Path) -> Path:
    """An output file's path, refused before any work when it names a folder."""
    from popdl.io import OutputError

    path = Path(path)
    if path.is_dir():
        raise OutputError(f"--out {path} is a folder; give the file to write (e.g. {path}/observed.npz)")
    return path


def cmd_observe(args) -> int:
    from popdl.config import load_configs
    from popdl.errors import ConfigError
    from popdl.predict import observe
    from popdl.stages import stage_config

    out = _file_out(args.out)
    if args.configfile is not None:
        if not args.data:
            raise ConfigError("observe --configfile needs --data NAME (a predict.data entry)")
        settings = stage_config(load_configs(args.configfile), "observe", args.data)
    else:
        settings = config_from_args(args, "observe")
    if "data" not in settings:
        raise ConfigError("the settings name no predict.data entry")
    summary = observe(settings["data"], settings, out)
    log.info("observe: %s", json.dumps({k: summary[k] for k in ("name", "missing_rate", "replicates")}))
    return 0


def cmd_check_fit(args) -> int:
    from popdl.fitcheck import check_fit
    from popdl.model_io import check_model_folder

    check_model_folder(args.model)
    prediction = Path(args.prediction)
    if prediction.is_dir():
        prediction = prediction / "predictions.json"
    if not prediction.is_file():
        raise FileNotFoundError(f"{prediction}: no predictions.json (made by popdl predict)")
    observed = Path(args.observed) if args.observed else prediction.with_name("observed.npz")
    out = Path(args.out) if args.out else prediction.with_name("fit_check.json")
    result = check_fit(args.model, prediction, observed, replicates=args.replicates, out=out)
    print(f"{result['name']}: {'FITS' if result['fits'] else 'DOES NOT FIT'}: {result['summary']}; "
          f"{result['replicates']} replicates of {result['scenario']} ({result['seconds']:.0f} s); written to {out}")
    return 0


def cmd_prior_check(args) -> int:
    from popdl.priorcheck import check_chunks
    from popdl.stages import load_settings, settings_hash

    features: dict[str, list[Path]] = {}
    for item in args.features:
        scenario, sep, path = item.partition("=")
        path = Path(path) if sep else Path(item)
        features.setdefault(scenario if sep else path.parent.name, []).append(path)
    several = {k: v for k, v in features.items() if len(v) > 1}
    if several:
        raise ValueError(f"--features: one file per scenario, {', '.join(several)} has {max(map(len, several.values()))}")
    config_hash = settings_hash(load_settings(args.settings)) if args.settings else None
    result = check_chunks(args.observed, {k: v[0] for k, v in features.items()}, args.out, stop=args.stop,
                          config_hash=config_hash)
    print(result["line"])
    return 0


def cmd_predict(args) -> int:
    """Check the model folder, read the data, predict, and only then write: a failure writes nothing."""
    from popdl.errors import ConfigError
    from popdl.io import OutputError
    from popdl.model_io import check_model_folder, check_settings
    from popdl.predict import (load_observed, observed_inputs, predict_arrays, read_observed_summary, write_observed,
                               write_predictions)
    from popdl.stages import settings_hash

    model = Path(args.model)
    bundle = check_model_folder(model)  # bundle.json and model.keras, before any data are read
    settings = None
    feats = None
    if args.observed:
        observed = Path(args.observed)
        obs = load_observed(observed)
        summary = read_observed_summary(observed)
        name = summary.get("name", observed.parent.name)
        out = Path(args.out) if args.out else observed.parent
    else:
        if not (args.vcf or args.fasta) or not args.popmap:
            raise ConfigError("predict needs --vcf FILE or --fasta FILE..., and --popmap FILE (or --observed FILE)")
        settings = _model_settings(args, model)
        check_settings(bundle, settings, folder=model)
        if args.keep_filtered:
            settings["predict"]["keep_filtered"] = True
        entry = _entry(args)
        out = Path(args.out) if args.out else Path(f"predict-{entry['name']}")
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out} is a file; give a folder for observed.npz and the predictions")
        feats, summary = observed_inputs(entry, settings)
        obs, name = feats, summary["name"]
    dataset = Path(args.dataset) if args.dataset else model.parent / "dataset"
    if not (dataset / "manifest.json").is_file():
        if args.dataset:
            raise FileNotFoundError(f"dataset folder {dataset} has no manifest.json")
        log.warning("no dataset beside the model (%s): skipping the misspecification check", dataset)
        dataset = None
    if settings is None:
        settings = _model_settings(args, model)
    result = predict_arrays(obs, summary, name=name, model_dir=model, dataset_dir=dataset,
                            alpha=settings["predict"]["alpha"], config_hash=settings_hash(settings),
                            source=args.observed or (args.vcf or args.fasta)[0])
    created = not out.exists()
    written: list[Path] = []
    try:
        if feats is not None:
            write_observed(out / "observed.npz", feats, summary)
            written += [out / "observed.npz", out / "observed.json"]
        written += write_predictions(out, result)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    net = result["network"]
    shown = ", ".join(f"{k} {probability_text(v)}" for k, v in net["probabilities"].items())
    rel = result.get("reliability") or {"reliable": True, "reasons": []}
    verdict = "" if rel["reliable"] else f" UNRELIABLE ({'; '.join(rel['reasons'])});"
    print(f"{result['name']}:{verdict} {net.get('scenario', '-')} ({shown}); written to {out}/predictions.csv and "
          "predictions.json")
    estimates = _estimates_line(net)
    if estimates:
        print(f"{result['name']}: {estimates}")
    if result.get("misspecification", {}).get("flagged"):
        print(f"{result['name']}: WARNING, the data lie outside the simulations: {result['misspecification']['summary']}")
    if summary.get("positions", {}).get("flagged"):
        print(f"{result['name']}: WARNING, {summary['positions']['note']}")
    if net.get("scenario") or net.get("params"):
        print(f"{result['name']}: whether the answer reproduces the data: popdl check-fit --model {model} "
              f"--prediction {out}")
    return 0


def _number(v: float) -> str:
    """A parameter's value for the console: 12,307 for sizes and times, three significant digits otherwise."""
    if not np.isfinite(v):
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _estimates_line(net: dict) -> str:
    """The most probable scenario's parameter estimates with their intervals, as predictions.csv holds them."""
    names = (net.get("scenario_params") or {}).get(net.get("scenario")) or list(net.get("params", {}))
    params = net.get("params", {})
    edges = {e["parameter"]: e["side"] for e in net.get("prior_edges") or []}
    shown = [f"{k} {_number(params[k]['estimate'])} ({_number(params[k]['lower'])}-{_number(params[k]['upper'])})"
             + (f" AT ITS PRIOR'S {edges[k].upper()} BOUND" if k in edges else "") for k in names if k in params]
    if not shown:
        return ""
    low, high = net.get("interval", (0.05, 0.95))
    where = f" under {net['scenario']}" if net.get("scenario") else ""
    return f"estimates{where} ({low:.0%}-{high:.0%} interval): " + ", ".join(shown)


def _model_settings(args, model: Path) -> dict:
    """The predict slice: --settings / --configfile, else the run config stored in the model's bundle.json."""
    from popdl.config import stored_config
    from popdl.stages import stage_config

    if args.settings or args.configfile:
        return _predict_settings(args)
    return stage_config(stored_config(model), "predict")


def cmd_abc(args) -> int:
    from popdl.abc import run_abc
    from popdl.predict import load_observed
    from popdl.stages import settings_hash

    cfg = config_from_args(args, "abc")
    a = cfg["abc"]
    observed = {}
    for item in args.observed:
        name, _, path = item.rpartition("=") if "=" in item else (Path(item).parent.name, "", item)
        observed[name] = load_observed(path)["stats"]
    metrics = run_abc(args.dataset, args.out, tolerance=a["tolerance"], trees=a["trees"], min_samples_leaf=a["min_samples_leaf"],
                      interval=a["interval"], seed=cfg["seed"], threads=args.threads, observed=observed,
                      config_hash=settings_hash(cfg))
    for name, m in metrics["methods"].items():
        log.info("abc %s: test accuracy %.3f", name, m["accuracy"])
    return 0
