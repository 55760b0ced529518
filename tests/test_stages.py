"""The table of stage -> config slice: what each stage's settings hold, and nothing else."""

from __future__ import annotations

import pytest

from conftest import REPO, tiny_config

DATA = {"name": "obs", "vcf": "obs.vcf.gz", "popmap": "popmap.tsv"}
SCAN = {"name": "chr", "vcf": "chr.vcf.gz"}

#: Per stage: the name argument, the slice's top-level keys, and the config
#: sections it must not carry (with their distinctive sub-keys where a section
#: of the same name is cut down).
EXPECTED = {
    "plan": ("isolation", {"seed", "simulator", "fastsimcoal2", "samples", "genome", "scenarios", "simulations"}),
    "simulate": ("isolation", {"seed", "simulator", "fastsimcoal2", "samples", "genome", "scenarios", "simulations"}),
    "features": (None, {"seed", "features"}),
    "dataset": (None, {"seed", "scenario_names", "split", "shard_size", "priors", "config_hash"}),
    "tune": (None, {"run", "seed", "task", "network", "tuning", "train"}),
    "select_best": (None, {"run", "seed", "task", "network", "tuning", "train"}),
    "train": (None, {"seed", "task", "train", "run_config"}),
    "evaluate": (None, {"evaluate", "seed"}),
    "observe": ("obs", {"seed", "samples", "genome", "features", "predict", "data"}),
    "predict": ("obs", {"seed", "samples", "genome", "features", "predict", "data"}),
    "abc": (None, {"seed", "abc", "data"}),
    "scan": ("chr", {"seed", "samples", "genome", "features", "predict", "scan", "data"}),
    "report": (None, None),  # the whole config
}


@pytest.fixture(scope="module")
def config():
    from popdl.config import prepare

    return prepare(tiny_config(predict={"data": [DATA]}, scan={"data": [SCAN]}), base_dirs=(REPO,))


def test_the_table_covers_every_stage():
    from popdl.stages import STAGES

    assert set(STAGES) == set(EXPECTED)


@pytest.mark.parametrize("stage", sorted(EXPECTED))
def test_stage_slice(config, stage):
    from popdl.common import canonicalize
    from popdl.stages import DATA_KEYS, READING_KEYS, stage_config, stage_json

    name, keys = EXPECTED[stage]
    part = stage_config(config, stage, name)
    assert part == canonicalize(part)  # canonical: what the settings file holds
    assert stage_json(config, stage, name).startswith("{")
    if keys is None:
        assert part == config
        return
    assert set(part) == keys
    if "seed" in keys:
        assert part["seed"] == config["seed"]
    if stage in ("plan", "simulate"):
        assert list(part["scenarios"]) == ["isolation"]  # one scenario, not the others
        assert part["scenarios"]["isolation"] == config["scenarios"]["isolation"]
        assert ("per_scenario" in part["simulations"]) == (stage == "plan")
        assert set(part["simulations"]) <= {"max_tries", "per_scenario"}  # not the split, chunk or shards
    elif stage == "features":
        assert part["features"] == config["features"]
    elif stage == "dataset":
        assert part["scenario_names"] == list(config["scenarios"]) and part["split"] == config["simulations"]["split"]
        assert set(part["priors"]) >= {"N1", "T_split"} and len(part["config_hash"]) == 16
    elif stage in ("tune", "select_best"):
        assert part["tuning"] == config["tuning"] and part["network"] == config["network"]
        assert not {"epochs", "threads", "gpu"} & set(part["train"])  # the final fit's own settings
    elif stage == "train":
        assert part["train"] == config["train"] and set(part["run_config"]) == set(DATA_KEYS) | {"predict"}
        assert "tuning" not in part["run_config"]
        # the model stores how data are read: the one entry's loci and population mapping
        assert part["run_config"]["predict"] == {"defaults": {"loci": "contigs", "populations": {}},
                                                 **{k: config["predict"][k] for k in READING_KEYS}}
    elif stage == "evaluate":
        assert part["evaluate"] == config["evaluate"]
    elif stage in ("observe", "predict"):
        assert part["data"] == config["predict"]["data"][0] and part["data"]["vcf"] == DATA["vcf"]
        # Neither the fit check's nor the prior check's settings rerun observe or predict.
        assert not {"data", "fit_check", "prior_check"} & set(part["predict"])
        assert {k: v for k, v in config["predict"].items()
                if k not in ("data", "fit_check", "prior_check")} == part["predict"]
    elif stage == "abc":
        assert part["abc"] == config["abc"] and part["data"] == ["obs"]
    elif stage == "scan":
        assert part["data"] == config["scan"]["data"][0] and part["data"]["vcf"] == SCAN["vcf"]
        assert "data" not in part["scan"]
        assert set(part["predict"]) == {"subsample", "allow_unphased", "max_missing", "strict_samples", "keep_filtered",
                                       "defaults"}
        assert part["predict"]["defaults"] == {"populations": {}}  # the one predict.data entry maps nothing
    # Sections of other stages never travel.
    for other in ("tuning", "abc", "evaluate", "scan", "network"):
        if other not in keys:
            assert other not in part, other


@pytest.mark.parametrize("stage", ["observe", "predict", "scan"])
def test_data_stages_without_a_name_carry_the_options_only(config, stage):
    from popdl.stages import stage_config

    part = stage_config(config, stage)
    assert "data" not in part and "data" not in part["predict"]


def test_bad_stage_or_name_is_one_clear_error(config):
    from popdl.stages import stage_config

    with pytest.raises(ValueError, match="unknown stage 'simulations'.*valid: plan"):
        stage_config(config, "simulations")
    with pytest.raises(ValueError, match="needs a scenario"):
        stage_config(config, "simulate")
    with pytest.raises(ValueError, match="no predict.data entry named 'nope' \\(valid: obs\\)"):
        stage_config(config, "observe", "nope")
