"""Provenance: the config hash of an output is the hash of the settings slice of
the job that wrote it, and it changes when that slice changes, and only then.

(That every metrics, predictions, scan and report file of a real run carries
it is checked on the tiny workflow run in tests/test_report.py.)
"""

from __future__ import annotations

import copy

import pytest

from conftest import REPO, tiny_config

DATA = {"name": "obs", "vcf": "obs.vcf.gz", "popmap": "popmap.tsv"}
SCAN = {"name": "chr", "vcf": "chr.vcf.gz"}


def _set(path: str, value):
    """A probe: set the config key at dotted ``path`` (list entries by their name)."""

    def apply(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = next(d for d in node if d["name"] == key) if isinstance(node, list) else node[key]
        node[last] = value(node[last]) if callable(value) else value

    return apply


def _add_predict_entry(config):
    config["predict"]["data"].append({**config["predict"]["data"][0], "name": "obs2"})


#: One change per config key that some stage reads (and one, ``run``, that
#: almost none does), each applied alone to the prepared tiny config.
PROBES = {
    "run": _set("run", "other"),
    "seed": _set("seed", lambda v: v + 1),
    "simulator": _set("simulator", "fastsimcoal2"),
    "fastsimcoal2": _set("fastsimcoal2.executable", "fsc26"),
    "samples": _set("samples.pop1", lambda v: v + 1),
    "genome": _set("genome.length", lambda v: 2 * v),
    "scenario isolation": _set("scenarios.isolation.priors.N1.loguniform", [1000, 40000]),
    "scenario secondary_contact": _set("scenarios.secondary_contact.priors.N1.loguniform", [1000, 40000]),
    "per_scenario": _set("simulations.per_scenario", lambda v: v + 20),
    "chunk": _set("simulations.chunk", 10),
    "max_tries": _set("simulations.max_tries", 500),
    "split": _set("simulations.split", {"train": 0.5, "validation": 0.3, "test": 0.2}),
    "shard_size": _set("simulations.shard_size", 10),
    "features": _set("features.snps", 64),
    "task": _set("task", ["classify"]),
    "network": _set("network", "cnn2d"),
    "tuning": _set("tuning.max_epochs", lambda v: v + 1),
    "train (sweep too)": _set("train.regression_weight", 2),
    "train epochs": _set("train.epochs", 3),
    "train threads": _set("train.threads", 4),
    "evaluate": _set("evaluate.calibration_bins", 12),
    "abc": _set("abc.trees", 50),
    "predict alpha": _set("predict.alpha", 0.05),
    "predict max_missing": _set("predict.max_missing", 0.3),
    "predict entry": _set("predict.data.obs.popmap", "other.tsv"),
    "predict new entry": _add_predict_entry,
    "scan": _set("scan.step", 4),
    "scan entry": _set("scan.data.chr.vcf", "other.vcf.gz"),
}

SIMULATE = {"seed", "simulator", "fastsimcoal2", "samples", "genome", "scenario isolation", "max_tries"}
DATA_SECTIONS = {"seed", "simulator", "fastsimcoal2", "samples", "genome", "scenario isolation",
                 "scenario secondary_contact", "per_scenario", "chunk", "max_tries", "split", "shard_size", "features"}
OBSERVED = {"seed", "samples", "genome", "features"}
SWEEP = {"run", "seed", "task", "network", "tuning", "train (sweep too)"}

#: Stage -> (its name argument, the probes that must change its hash; no other may).
CHANGES = {
    "plan": ("isolation", SIMULATE | {"per_scenario"}),
    "simulate": ("isolation", SIMULATE),
    "features": (None, {"seed", "features"}),
    "dataset": (None, DATA_SECTIONS),
    "tune": (None, SWEEP),
    "select_best": (None, SWEEP),
    # the model stores the reading options (predict.max_missing...) with the data sections
    "train": (None, DATA_SECTIONS | {"task", "train (sweep too)", "train epochs", "train threads",
                                     "predict max_missing"}),
    "evaluate": (None, {"seed", "evaluate"}),
    "observe": ("obs", OBSERVED | {"predict alpha", "predict max_missing", "predict entry"}),
    "predict": ("obs", OBSERVED | {"predict alpha", "predict max_missing", "predict entry"}),
    "abc": (None, {"seed", "abc", "predict new entry"}),
    "scan": ("chr", OBSERVED | {"predict max_missing", "scan", "scan entry"}),
    "report": (None, set(PROBES)),
}


@pytest.fixture(scope="module")
def config():
    from popdl.config import prepare

    return prepare(tiny_config(predict={"data": [DATA]}, scan={"data": [SCAN]}), base_dirs=(REPO,))


def test_every_stage_is_covered():
    from popdl.stages import STAGES

    assert set(CHANGES) == set(STAGES)


@pytest.mark.parametrize("stage", sorted(CHANGES))
def test_hash_changes_with_the_stage_slice_and_only_then(config, stage):
    from popdl.stages import settings_hash, stage_config

    name, expected = CHANGES[stage]
    base = settings_hash(stage_config(config, stage, name))
    assert len(base) == 16 and int(base, 16) >= 0
    changed = set()
    for probe, apply in PROBES.items():
        other = copy.deepcopy(config)
        apply(other)
        assert other != config, probe  # the probe changes the config
        if settings_hash(stage_config(other, stage, name)) != base:
            changed.add(probe)
    assert changed == expected, f"{stage}: unexpected {sorted(changed - expected)}, missing {sorted(expected - changed)}"


@pytest.mark.parametrize("stage", sorted(CHANGES))
def test_hash_is_that_of_the_settings_file(config, stage, tmp_path):
    """The hash a job records equals the one in its settings file's name, from the file's contents."""
    from popdl.stages import load_settings, settings_file, settings_hash, stage_json

    name = CHANGES[stage][0]
    path = settings_file(stage_json(config, stage, name), tmp_path, stage=stage)
    assert path.name == f"{stage}-{settings_hash(load_settings(f'@{path}'))}.json"
