"""What each workflow stage needs from the config.

Each rule receives only its own slice of the configuration, written once as
canonical JSON to a file named by its hash (:func:`settings_file`) and passed
as ``--settings @FILE``; the file name is in the rule's ``params``, so
Snakemake reruns a job when the *meaning* of its slice changes (editing the
``features`` section reruns features and what follows, not the simulations),
and never because a config file was re-formatted.  The same slices are used
when a step is run by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from popdl.config import canonical_json, canonicalize, config_hash
from popdl.plan import n_chunks

__all__ = ["stage_config", "stage_json", "settings_file", "chunks", "prior_summary"]


#: Config sections that determine the simulated data (and so the dataset's
#: provenance hash); model, tuning and later sections must not rerun the data.
DATA_KEYS = ("seed", "simulator", "fastsimcoal2", "samples", "genome", "scenarios", "simulations", "features")


def _simulation_part(config: dict, scenario: str) -> dict:
    return {
        "seed": config["seed"],
        "simulator": config["simulator"],
        "fastsimcoal2": config["fastsimcoal2"],
        "samples": config["samples"],
        "genome": config["genome"],
        "scenarios": {scenario: config["scenarios"][scenario]},
        "simulations": {"max_tries": config["simulations"]["max_tries"]},
    }


def prior_summary(config: dict) -> dict:
    """Per parameter: whether it is learned on a log scale, and its prior bounds."""
    from popdl.scenarios import load_scenarios

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


def stage_config(config: dict, stage: str, scenario: str | None = None) -> dict:
    """The part of a prepared ``config`` that ``stage`` depends on, in canonical
    form (:func:`popdl.config.canonicalize`): a step run by hand from a config
    file gets exactly what the workflow's settings file holds."""
    return canonicalize(_slice(config, stage, scenario))


def _slice(config: dict, stage: str, scenario: str | None) -> dict:
    if stage == "plan":
        part = _simulation_part(config, scenario)
        part["simulations"]["per_scenario"] = config["simulations"]["per_scenario"]
        return part
    if stage == "simulate":
        return _simulation_part(config, scenario)
    if stage == "features":
        return {"seed": config["seed"], "features": config["features"]}
    if stage == "dataset":
        return {
            "seed": config["seed"],
            "scenario_names": list(config["scenarios"]),
            "split": config["simulations"]["split"],
            "shard_size": config["simulations"]["shard_size"],
            "priors": prior_summary(config),
            "config_hash": config_hash({k: v for k, v in config.items() if k in DATA_KEYS}),
        }
    if stage in ("observe", "predict"):
        # ``scenario`` names a predict.data entry here (None: options only, for by-hand runs).
        part = {
            "seed": config["seed"],
            "samples": config["samples"],
            "genome": config["genome"],
            "features": config["features"],
            "predict": {k: v for k, v in config["predict"].items() if k != "data"},
        }
        if scenario is not None:
            part["data"] = _data_entry(config, "predict", scenario)
        return part
    if stage == "abc":
        return {"seed": config["seed"], "abc": config["abc"], "data": [d["name"] for d in config["predict"]["data"]]}
    if stage == "report":
        return config
    if stage in ("tune", "select_best"):
        # What the trials compute; the final fit's own settings (epochs, threads,
        # gpu) are left out so that changing them does not rerun the sweep.
        final_only = ("epochs", "threads", "gpu")
        return {
            "run": config["run"],
            "seed": config["seed"],
            "task": config["task"],
            "network": config["network"],
            "tuning": config["tuning"],
            "train": {k: v for k, v in config["train"].items() if k not in final_only},
        }
    if stage == "train":
        # The data sections travel into the model bundle, so that the model alone
        # can later turn a VCF into the inputs it was trained on; they change only
        # when the dataset changes, which reruns training anyway.
        return {"seed": config["seed"], "task": config["task"], "train": config["train"],
                "run_config": {k: config[k] for k in DATA_KEYS}}
    if stage == "evaluate":
        return {"evaluate": config["evaluate"]}
    if stage == "scan":
        # ``scenario`` names a scan.data entry here (None: options only, for by-hand runs).
        part = {
            "seed": config["seed"],
            "samples": config["samples"],
            "genome": config["genome"],
            "features": config["features"],
            "predict": {k: config["predict"][k] for k in ("subsample", "allow_unphased", "max_missing")},
            "scan": {k: v for k, v in config["scan"].items() if k != "data"},
        }
        if scenario is not None:
            part["data"] = _data_entry(config, "scan", scenario)
        return part
    raise ValueError(f"unknown stage {stage!r}")


def stage_json(config: dict, stage: str, scenario: str | None = None) -> str:
    """The slice as canonical JSON text (sorted keys, integral floats as
    integers): equal meaning gives equal text."""
    return canonical_json(stage_config(config, stage, scenario))


def settings_file(text: str, folder: str | Path, *, stage: str, write: bool = True) -> Path:
    """The path ``folder/{stage}-{hash}.json`` of canonical settings ``text``,
    written there once (atomically; an existing file holds the same text)
    unless ``write`` is false (dry runs write nothing)."""
    path = Path(folder) / f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
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
