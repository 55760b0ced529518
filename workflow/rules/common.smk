# Shared by every rule: config validation, paths, input functions.
import os
import sys
from pathlib import Path

from snakemake.utils import validate

REPO = Path(workflow.basedir).parent
SCRIPTS = REPO / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
# Jobs (local or on a cluster node) import the same package.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(SCRIPTS)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)

import yaml

from popdl.config import ConfigError, deep_update, prepare
from popdl.stages import chunks, stage_json

DEFAULT_CONFIG = REPO / "config" / "config.yaml"
if not workflow.overwrite_configfiles:
    # No --configfile: the embedded default, with any --config overrides on top.
    with open(DEFAULT_CONFIG) as fh:
        _merged = deep_update(yaml.safe_load(fh), dict(config))
    config.clear()
    config.update(_merged)

try:
    prepare(config, base_dirs=(REPO,))
except ConfigError as exc:
    sys.stderr.write(f"popdl: config error: {exc}\n")
    sys.exit(1)
validate(config, "../schemas/config.schema.yaml")

RUN = config["run"]
RESULTS = f"results/{RUN}"
SCENARIOS = list(config["scenarios"])
CHUNKS = chunks(config)


def python():
    """The interpreter for jobs: the env's own under conda, else Snakemake's."""
    from snakemake_interface_executor_plugins.settings import DeploymentMethod

    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return "python"
    return sys.executable


PY = python()


wildcard_constraints:
    scenario="|".join(SCENARIOS),
    chunk=r"\d+",


def chunk_start(wildcards):
    """First draw (inclusive) of a chunk."""
    return int(wildcards.chunk) * config["simulations"]["chunk"]


def chunk_stop(wildcards):
    """Last draw (exclusive) of a chunk."""
    return min(chunk_start(wildcards) + config["simulations"]["chunk"], config["simulations"]["per_scenario"])


def settings(stage):
    """Input function: the JSON config slice of a stage (a rerun trigger)."""

    def get(wildcards):
        return stage_json(config, stage, wildcards.get("scenario"))

    return get


def all_features(wildcards):
    return expand(f"{RESULTS}/features/{{scenario}}/{{chunk}}.npz", scenario=SCENARIOS, chunk=CHUNKS)


def all_targets():
    return [f"{RESULTS}/dataset/manifest.json"]
