# Shared by every rule: config validation, paths, input functions.
import os
import re
import sys
import time
from pathlib import Path

from snakemake.utils import validate

# The repository holding this file: found from this file itself (not from the
# main Snakefile), so that popdl also runs as a module of another workflow
# (`module popdl: snakefile: "<clone>/workflow/Snakefile"`) from any folder.
REPO = Path(str(workflow.current_basedir)).resolve().parents[1]
SCRIPTS = REPO / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
# Jobs (local or on a cluster node) import the same package, and their shell
# commands' `python3` is the interpreter running Snakemake (its folder first on
# PATH); with --software-deployment-method conda, the activated env's bin/
# comes before it, so the env's own python3 runs the job.
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [str(SCRIPTS)]
        + [
            p
            for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and p != str(SCRIPTS)
        ]
    ),
    PATH=os.pathsep.join(
        [os.path.dirname(sys.executable)]
        + [
            p
            for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
            if p != os.path.dirname(sys.executable)
        ]
    ),
)


from popdl.common import canonical_json
from popdl.config import deep_update, load_yaml, prepare
from popdl.errors import ConfigError, DataError
from popdl.paths import located, vcf_files
from popdl.stages import chunks, settings_file, stage_config, stage_json

DEFAULT_CONFIG = REPO / "config" / "config.yaml"
try:
    # Snakemake has read the --configfile files already; read them once more
    # with popdl's bounded loader, which refuses duplicate keys (Snakemake's
    # loader keeps the last one silently) and alias bombs.
    for _path in workflow.overwrite_configfiles or ():
        load_yaml(_path, name=f"config file {str(_path)!r}")
    if not workflow.overwrite_configfiles:
        # No --configfile: the embedded default, with any --config overrides on top.
        _merged = deep_update(load_yaml(DEFAULT_CONFIG), dict(config))
        config.clear()
        config.update(_merged)
except ConfigError as exc:
    sys.stderr.write(f"popdl: config error: {exc}\n")
    sys.exit(1)


def uses_conda():
    """True when rules run in their conda environments (which bring fastsimcoal2)."""
    from snakemake_interface_executor_plugins.settings import DeploymentMethod

    return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method


try:
    # Graph files: relative to the working directory, the config file's folder, or the repository.
    prepare(
        config,
        base_dirs=(
            *(Path(f).parent for f in workflow.overwrite_configfiles or ()),
            REPO,
        ),
        check_executables=not uses_conda(),
    )
except ConfigError as exc:
    sys.stderr.write(f"popdl: config error: {exc}\n")
    sys.exit(1)
validate(config, "../schemas/config.schema.yaml")
if workflow.is_main_process:
    from popdl.tuning import split_warnings, sweep_warnings

    for line in split_warnings(config) + sweep_warnings(config):
        sys.stderr.write(f"popdl: WARNING: {line}\n")

RUN = config["run"]
RESULTS = f"results/{RUN}"
# When this run began: the summary at its end speaks only of a report this run wrote.
RUN_STARTED = time.time()
SCENARIOS = list(config["scenarios"])
CHUNKS = chunks(config)


wildcard_constraints:
    scenario="|".join(SCENARIOS),
    chunk=r"\d+",
    worker=r"\d+",
    data="|".join(re.escape(d["name"]) for d in config["predict"]["data"]) or "(?!)",


def simulate_env(wildcards):
    """The simulate rule's conda env: with fastsimcoal2 when the scenario uses it."""
    spec = config["scenarios"][wildcards.scenario]
    simulator = spec.get("simulator") or config["simulator"]
    name = "fastsimcoal2" if simulator == "fastsimcoal2" else "simulate"
    return str(REPO / "envs" / f"{name}.yaml")


def check_fit_env(wildcards):
    """The check_fit rule's conda env: it simulates the answer's scenario, with fastsimcoal2
    when any scenario uses it (the answer is known only when the job runs)."""
    uses = any(
        (spec.get("simulator") or config["simulator"]) == "fastsimcoal2"
        for spec in config["scenarios"].values()
    )
    return str(REPO / "envs" / f"{'fastsimcoal2' if uses else 'simulate'}.yaml")


def first_chunk_first(wildcards):
    """Each scenario's chunk 0 is simulated and featurised before its other chunks: the
    prior checks read them (predict.prior_check), early in the run."""
    return 10 if int(wildcards.chunk) == 0 else 0


def chunk_start(wildcards):
    """First draw (inclusive) of a chunk."""
    return int(wildcards.chunk) * config["simulations"]["chunk"]


def chunk_stop(wildcards):
    """Last draw (exclusive) of a chunk."""
    return min(
        chunk_start(wildcards) + config["simulations"]["chunk"],
        config["simulations"]["per_scenario"],
    )


SETTINGS_DIR = f"{RESULTS}/settings"


def settings_arg(stage, text):
    """`@FILE` for a job's `--settings`: its config slice, stored once under
    results/{run}/settings/ in a file named by the slice's hash. The name is
    the rerun trigger (a params change), and shell commands stay short."""
    path = settings_file(text, SETTINGS_DIR, stage=stage, write=not workflow.dryrun)
    return f"@{path}"


def settings(stage):
    """Params function: the `--settings` argument of a stage's job."""

    def get(wildcards):
        return settings_arg(stage, stage_json(config, stage, wildcards.get("scenario")))

    return get


def all_features(wildcards):
    return expand(
        f"{RESULTS}/features/{{scenario}}/{{chunk}}.npz",
        scenario=SCENARIOS,
        chunk=CHUNKS,
    )


def tune_workers(wildcards):
    """The done-files of all tune workers (select_best waits for every one)."""
    return expand(
        f"{RESULTS}/tuning/worker-{{worker}}.json",
        worker=range(config["tuning"]["workers"]),
    )


SCAN_DATA = {d["name"]: d for d in config["scan"]["data"]}


def _data_path(path):
    """A data file named in the config: relative to the working directory, else to the repository."""
    if path and located(path, REPO) != Path(path):
        return str(REPO / path)
    return path


def scan_vcf(wildcards):
    """The VCF file(s) of scan.data entry {name}."""
    return _vcf_paths(SCAN_DATA[wildcards.name]["vcf"])


def scan_popmap(wildcards):
    """The popmap of scan.data entry {name} (none: every sample in the only population)."""
    popmap = SCAN_DATA[wildcards.name].get("popmap")
    return [_data_path(popmap)] if popmap else []


def scan_popmap_arg(wildcards):
    """`--popmap PATH` as a list (each item quoted by `:q`), or nothing."""
    popmap = scan_popmap(wildcards)
    return ["--popmap", popmap[0]] if popmap else []


def scan_settings(wildcards):
    """The `--settings` argument of scan entry {name}."""
    return settings_arg("scan", stage_json(config, "scan", wildcards.name))


def scan_targets():
    return expand(f"{RESULTS}/scan/{{name}}.tsv", name=list(SCAN_DATA))


PREDICT_DATA = {d["name"]: d for d in config["predict"]["data"]}


def _resolved_entry(name):
    """predict.data entry {name} with its files found (working directory, else repository)."""
    entry = dict(PREDICT_DATA[name])
    if entry.get("popmap"):
        entry["popmap"] = _data_path(entry["popmap"])
    if entry.get("vcf"):
        files = _vcf_paths(entry["vcf"])
        entry["vcf"] = files[0] if len(files) == 1 else files
    if entry.get("fasta"):
        fasta = entry["fasta"]
        entry["fasta"] = [
            _data_path(f) for f in ([fasta] if isinstance(fasta, str) else fasta)
        ]
    return entry


def _vcf_paths(vcf):
    """The files of a data set's vcf (a path, a list, glob patterns), found as _data_path finds
    a file; a pattern that matches nothing stays as written, for Snakemake to report missing.
    """
    items = [vcf] if isinstance(vcf, str) else list(vcf)
    files = []
    for item in items:
        try:
            files += [str(p) for p in vcf_files(item, base_dir=REPO)]
        except DataError:
            files.append(item)
    return files


def predict_data_files(wildcards):
    """The VCF or FASTA files and the popmap of predict.data entry {data}."""
    entry = _resolved_entry(wildcards.data)
    vcf = entry.get("vcf")
    files = (
        ([vcf] if isinstance(vcf, str) else list(vcf)) if vcf else list(entry["fasta"])
    )
    return files + [entry["popmap"]]


def observe_settings(wildcards):
    """The `--settings` argument of entry {data}: the observe slice, file paths resolved."""
    part = stage_config(config, "observe", wildcards.data)
    part["data"] = _resolved_entry(wildcards.data)
    return settings_arg("observe", canonical_json(part))


def all_observed(wildcards):
    return expand(f"{RESULTS}/predict/{{data}}/observed.npz", data=list(PREDICT_DATA))


def abc_observed_args(wildcards):
    """NAME=PATH arguments of `popdl abc` for every observed data set (a list: `:q` quotes each)."""
    return [f"{name}={RESULTS}/predict/{name}/observed.npz" for name in PREDICT_DATA]


def all_predictions(wildcards):
    return expand(
        f"{RESULTS}/predict/{{data}}/predictions.json", data=list(PREDICT_DATA)
    )


def classification_figures():
    """The confusion matrix and reliability curve, written when the network classifies."""
    if "classify" not in config["task"]:
        return {}
    return {
        name: report(
            f"{RESULTS}/evaluation/{stem}.png",
            caption=f"../report/{stem}.rst",
            category="Evaluation",
        )
        for name, stem in (
            ("confusion", "confusion_matrix"),
            ("calibration", "calibration"),
        )
    }


def report_inputs(wildcards):
    """Everything the HTML report shows (sections without their input say so)."""
    inputs = [f"{RESULTS}/plan/{s}.tsv" for s in SCENARIOS]
    inputs += [
        f"{RESULTS}/dataset/manifest.json",
        f"{RESULTS}/abc/metrics.json",
        f"{RESULTS}/abc/empirical.json",
        f"{RESULTS}/abc/test_predictions.tsv",
    ]
    inputs += [
        f"{RESULTS}/evaluation/metrics.json",
        f"{RESULTS}/evaluation/test_predictions.tsv",
        f"{RESULTS}/evaluation/interpretation.json",
        f"{RESULTS}/evaluation/interpretation.npz",
        f"{RESULTS}/tuning/best.json",
        f"{RESULTS}/tuning/trials.csv",
    ]
    return (
        inputs
        + all_predictions(wildcards)
        + all_prior_checks()
        + all_fit_checks()
        + scan_targets()
    )


def all_prior_checks():
    """The prior check of every predict.data entry, unless predict.prior_check is off."""
    # YAML 1.1 reads a bare off as false
    if config["predict"]["prior_check"] in ("off", False):
        return []
    return expand(
        f"{RESULTS}/predict/{{data}}/prior_check.json", data=list(PREDICT_DATA)
    )


def all_fit_checks():
    """The fit check of every predict.data entry, unless predict.fit_check is 0 or the
    network names no scenario to simulate (it does not classify among several)."""
    unnamed = "classify" not in config["task"] and len(config["scenarios"]) > 1
    if not config["predict"]["fit_check"] or unnamed:
        return []
    return expand(f"{RESULTS}/predict/{{data}}/fit_check.json", data=list(PREDICT_DATA))


def all_targets():
    return (
        [f"{RESULTS}/dataset/manifest.json", f"{RESULTS}/evaluation/metrics.json"]
        + scan_targets()
        + [f"{RESULTS}/report.html"]
    )


def print_run_summary():
    """At the end of a successful run (Snakemake calls no handler after a dry run): what it
    found, in a few lines read from the files it wrote, if this run wrote the report."""
    html = Path(RESULTS) / "report.html"
    if not html.is_file() or html.stat().st_mtime < RUN_STARTED:
        return
    from popdl.report import run_summary

    # A summary must never fail a finished run.
    try:
        lines = run_summary(RESULTS, list(PREDICT_DATA))
    except (OSError, ValueError, KeyError) as exc:
        lines = [f"no summary ({exc}); see {html}"]
    for line in lines:
        print(f"popdl: {line}", flush=True)
