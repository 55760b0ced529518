"""What each workflow stage needs from the config.

Each rule receives only its own slice of the configuration, written once as
canonical JSON to a file named by its hash (:func:`settings_file`) and passed
as ``--settings @FILE``; the file name is in the rule's ``params``, so
Snakemake reruns a job when the *meaning* of its slice changes (editing the
``features`` section reruns features and what follows, not the simulations),
and never because a config file was re-formatted.  The same slices are used
when a step is run by hand.

:data:`STAGES` is the table of stage -> slice.  A stage's slice is also its
outputs' provenance: the ``config_hash`` that every metrics, predictions,
scan and report file records is :func:`settings_hash` of the slice of the
job that wrote it, the same 16 hex digits as its settings file's name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from popdl.common import canonical_json, canonicalize, config_hash, text_hash
from popdl.observed import data_defaults, with_defaults
from popdl.plan import n_chunks
from popdl.scenarios import load_scenarios

__all__ = ["STAGES", "Stage", "stage_config", "stage_json", "settings_hash", "settings_file", "chunks",
           "prior_summary", "load_settings"]


#: Config sections that determine the simulated data: the dataset slice holds
#: their hash, and the train slice the sections themselves (the model bundle
#: carries them); model, tuning and later sections must not rerun the data.
DATA_KEYS = ("seed", "simulator", "fastsimcoal2", "samples", "genome", "scenarios", "simulations", "features")

#: How observed data are read (``predict`` options): stored in the model folder
#: with ``predict.defaults``, so that ``popdl predict --model DIR`` reads new data alike.
READING_KEYS = ("subsample", "allow_unphased", "strict_samples", "max_missing", "keep_filtered", "replicates")


def prior_summary(config: dict) -> dict:
    """Per parameter: whether it is learned on a log scale, and its prior bounds."""
    out: dict[str, dict] = {}
    for scenario in load_scenarios(config).values():
        for name, prior in scenario.priors.items():
            entry = out.setdefault(name, {"log_scale": prior.log_scale, "bounds": list(prior.bounds), "kinds": {}})
            entry["kinds"][scenario.name] = prior.describe()
    return out


def _data_entry(config: dict, section: str, name: str) -> dict:
    """The ``{section}.data`` entry called ``name``."""
    entries = {d["name"]: d for d in config[section]["data"]}
    if name not in entries:
        raise ValueError(f"no {section}.data entry named {name!r} (valid: {', '.join(entries)})")
    return entries[name]


# ---------------------------------------------------------------------------- one function per slice
def _simulate(config: dict, scenario: str) -> dict:
    """One scenario's simulations: its definition, the samples and genome, the simulator."""
    return {
        "seed": config["seed"],
        "simulator": config["simulator"],
        "fastsimcoal2": config["fastsimcoal2"],
        "samples": config["samples"],
        "genome": config["genome"],
        "scenarios": {scenario: config["scenarios"][scenario]},
        "simulations": {"max_tries": config["simulations"]["max_tries"]},
    }


def _plan(config: dict, scenario: str) -> dict:
    """The simulate slice plus how many draws to plan."""
    part = _simulate(config, scenario)
    part["simulations"]["per_scenario"] = config["simulations"]["per_scenario"]
    return part


def _features(config: dict) -> dict:
    return {"seed": config["seed"], "features": config["features"]}


def _dataset(config: dict) -> dict:
    """The split of the simulations into shards; the hash of the data sections
    stands for the data themselves (the dataset's provenance)."""
    return {
        "seed": config["seed"],
        "scenario_names": list(config["scenarios"]),
        "split": config["simulations"]["split"],
        "shard_size": config["simulations"]["shard_size"],
        "priors": prior_summary(config),
        "config_hash": config_hash({k: v for k, v in config.items() if k in DATA_KEYS}),
    }


def _observe(config: dict, data: str | None) -> dict:
    """Reading observed data as the simulations were featurised; ``data``
    names a predict.data entry (None: the options only, for by-hand runs)."""
    part = {
        "seed": config["seed"],
        "samples": config["samples"],
        "genome": config["genome"],
        "features": config["features"],
        "predict": {k: v for k, v in config["predict"].items() if k not in ("data", "fit_check", "prior_check")},
    }
    if data is not None:
        part["data"] = with_defaults(_data_entry(config, "predict", data), config["predict"].get("defaults"))
    else:  # by hand: the defaults a model trained on this config stores
        part["predict"]["defaults"] = data_defaults(config["predict"])
    return part


def _abc(config: dict) -> dict:
    return {"seed": config["seed"], "abc": config["abc"], "data": [d["name"] for d in config["predict"]["data"]]}


def _report(config: dict) -> dict:
    """The report shows the whole configuration."""
    return config


#: The final fit's own settings, left out of the sweep's slice so that changing
#: them does not rerun the sweep.
_FINAL_ONLY = ("epochs", "threads", "gpu", "calibration_fraction", "ensemble", "ensemble_trials", "cross_fit")


def _tune(config: dict) -> dict:
    """What the trials compute (the sweep and select_best)."""
    return {
        "run": config["run"],
        "seed": config["seed"],
        "task": config["task"],
        "network": config["network"],
        "tuning": config["tuning"],
        "train": {k: v for k, v in config["train"].items() if k not in _FINAL_ONLY},
    }


def _train(config: dict) -> dict:
    """The final fit.  The data sections travel into the model bundle, so that
    the model alone can later turn a VCF into the inputs it was trained on;
    they change only when the dataset changes, which reruns training anyway.
    So do the defaults of how a data set is read (``predict.defaults``: loci and
    population mapping, :func:`popdl.observed.data_defaults`) and the reading
    options (:data:`READING_KEYS`: subsampling, unphased calls, sample
    matching, missing calls, filtered records, SNP subsets), which rerun training only when they
    change."""
    return {"seed": config["seed"], "task": config["task"], "train": config["train"],
            "run_config": {**{k: config[k] for k in DATA_KEYS},
                           "predict": {"defaults": data_defaults(config["predict"]),
                                       **{k: config["predict"][k] for k in READING_KEYS}}}}


def _evaluate(config: dict) -> dict:
    """The evaluation, and the root seed of the interpretation's random streams."""
    return {"seed": config["seed"], "evaluate": config["evaluate"]}


def _scan(config: dict, data: str | None) -> dict:
    """Scanning a VCF with the model; ``data`` names a scan.data entry (None:
    the options only, for by-hand runs)."""
    part = {
        "seed": config["seed"],
        "samples": config["samples"],
        "genome": config["genome"],
        "features": config["features"],
        "predict": {k: config["predict"][k] for k in READING_KEYS if k != "replicates"},
        "scan": {k: v for k, v in config["scan"].items() if k != "data"},
    }
    mapping = data_defaults(config["predict"]).get("populations")
    if mapping is not None:  # what a scan.data entry without its own mapping takes
        part["predict"]["defaults"] = {"populations": mapping}
    if data is not None:
        part["data"] = _data_entry(config, "scan", data)
    return part


@dataclass(frozen=True)
class Stage:
    """How a stage's slice is cut from a prepared config.

    ``name`` says what :func:`stage_config`'s ``name`` argument names for this
    stage: ``"scenario"`` (required: one slice per scenario), ``"predict.data"``
    or ``"scan.data"`` (an entry of that list, optional), or None (the stage
    has one slice; a name given is ignored, as the features jobs' scenario).
    """

    cut: Callable[..., dict]
    name: str | None = None

    def slice(self, config: dict, stage: str, name: str | None) -> dict:
        if self.name is None:
            return self.cut(config)
        if self.name == "scenario" and name is None:
            raise ValueError(f"stage {stage!r} needs a scenario name")
        return self.cut(config, name)


#: Stage -> its slice of the config.  ``predict`` shares ``observe``'s slice
#: (the workflow's predict job gets the observe settings file) and
#: ``select_best`` shares ``tune``'s.
STAGES: dict[str, Stage] = {
    "plan": Stage(_plan, "scenario"),
    "simulate": Stage(_simulate, "scenario"),
    "features": Stage(_features),
    "dataset": Stage(_dataset),
    "tune": Stage(_tune),
    "select_best": Stage(_tune),
    "train": Stage(_train),
    "evaluate": Stage(_evaluate),
    "observe": Stage(_observe, "predict.data"),
    "predict": Stage(_observe, "predict.data"),
    "abc": Stage(_abc),
    "scan": Stage(_scan, "scan.data"),
    "report": Stage(_report),
}


def stage_config(config: dict, stage: str, name: str | None = None) -> dict:
    """The part of a prepared ``config`` that ``stage`` depends on, in canonical
    form (:func:`popdl.config.canonicalize`): a step run by hand from a config
    file gets exactly what the workflow's settings file holds.

    ``name`` is the scenario of ``plan`` and ``simulate``, the predict.data
    entry of ``observe`` and ``predict``, the scan.data entry of ``scan``
    (:attr:`Stage.name`), and None for the other stages.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (valid: {', '.join(STAGES)})")
    return canonicalize(STAGES[stage].slice(config, stage, name))


def stage_json(config: dict, stage: str, name: str | None = None) -> str:
    """The slice as canonical JSON text (sorted keys, integral floats as
    integers): equal meaning gives equal text."""
    return canonical_json(stage_config(config, stage, name))


def settings_hash(settings: dict) -> str:
    """The config hash of a job's outputs: the hash of its settings slice
    (:func:`popdl.config.config_hash`), equal to the ``{hash}`` of the
    ``{stage}-{hash}.json`` settings file that holds the slice."""
    return config_hash(settings)


def settings_file(text: str, folder: str | Path, *, stage: str, write: bool = True) -> Path:
    """The path ``folder/{stage}-{hash}.json`` of canonical settings ``text``,
    written there once (atomically; an existing file holds the same text)
    unless ``write`` is false (dry runs write nothing)."""
    path = Path(folder) / f"{stage}-{text_hash(text)}.json"
    if write and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    return path


def chunks(config: dict) -> list[int]:
    """Chunk indices of each scenario (the same for all scenarios)."""
    sims = config["simulations"]
    return list(range(n_chunks(sims["per_scenario"], sims["chunk"])))


def load_settings(text: str) -> dict:
    """Parse a ``--settings`` argument: JSON text, or ``@file`` holding JSON."""
    if text.startswith("@"):
        with open(text[1:]) as fh:
            return json.load(fh)
    return json.loads(text)
