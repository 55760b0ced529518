"""The model folder carries how data are read: `popdl predict --model DIR --vcf X --popmap Y` alone reads
new data with the loci definition and population mapping the model was trained for, and a flag given
on the command line overrides each.  One TensorFlow start: the model is trained and the CLI runs in
this process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, TINY_MLP, tiny_config

from popdl.observed import data_defaults, with_defaults

MAPPING = {"nuttalli": "pop1", "pugetensis": "pop2"}


# ------------------------------------------------------------------------------ the defaults, without TensorFlow
def test_the_defaults_are_what_every_entry_shares_unless_given():
    one = {"name": "a", "vcf": "a.vcf", "popmap": "a.tsv", "loci": "windows", "populations": MAPPING}
    assert data_defaults({"data": [one]}) == {"loci": "windows", "populations": MAPPING}
    other = {"name": "b", "vcf": "b.vcf", "popmap": "b.tsv"}  # contigs, no mapping
    assert data_defaults({"data": [one, other]}) == {}
    assert data_defaults({"data": [one, dict(one, name="c")]}) == {"loci": "windows", "populations": MAPPING}
    fasta = {"name": "f", "fasta": ["l1.fa"], "popmap": "f.tsv", "populations": MAPPING}  # no loci of its own
    assert data_defaults({"data": [one, fasta]}) == {"loci": "windows", "populations": MAPPING}
    given = {"defaults": {"loci": "contigs", "populations": None}, "data": [one, other]}
    assert data_defaults(given) == {"loci": "contigs"}
    assert data_defaults({"data": []}) == {}
    # An entry's own settings win; a mapping replaces the default mapping whole.
    defaults = {"loci": "windows", "populations": MAPPING}
    assert with_defaults(other, defaults) == dict(other, **defaults)
    own = dict(other, loci="contigs", populations={"x": "pop1"})
    assert with_defaults(own, defaults) == own


def test_a_config_entry_takes_the_configured_defaults():
    from popdl.config import prepare
    from popdl.stages import stage_config

    entry = {"name": "obs", "vcf": "obs.vcf", "popmap": "p.tsv"}
    config = prepare(tiny_config(predict={"data": [entry, dict(entry, name="own", loci="contigs")],
                                          "defaults": {"loci": "windows", "populations": MAPPING}}),
                     base_dirs=(REPO,))
    assert stage_config(config, "observe", "obs")["data"]["loci"] == "windows"
    assert stage_config(config, "observe", "obs")["data"]["populations"] == MAPPING
    assert stage_config(config, "observe", "own")["data"]["loci"] == "contigs"
    assert stage_config(config, "train")["run_config"]["predict"]["defaults"] == {"loci": "windows",
                                                                                  "populations": MAPPING}


def test_a_scan_without_its_own_mapping_takes_the_default_one():
    from argparse import Namespace

    from popdl.cli_scan import _populations
    from popdl.config import prepare
    from popdl.stages import stage_config

    scan = {"name": "chr", "vcf": "chr.vcf", "popmap": "p.tsv"}
    config = prepare(tiny_config(predict={"defaults": {"populations": MAPPING}},
                                 scan={"data": [scan, dict(scan, name="own", populations={"x": "pop1"})]}),
                     base_dirs=(REPO,))
    flags = Namespace(populations=[])
    assert _populations(flags, stage_config(config, "scan", "chr")) == MAPPING
    assert _populations(flags, stage_config(config, "scan", "own")) == {"x": "pop1"}
    assert _populations(Namespace(populations=["a=pop2"]), stage_config(config, "scan", "own")) == {"a": "pop2"}
    no_default = prepare(tiny_config(scan={"data": [scan]}), base_dirs=(REPO,))
    assert not _populations(flags, stage_config(no_default, "scan", "chr"))


def test_an_unphased_models_image_has_a_row_per_individual():
    from popdl.model_io import ModelError, check_settings

    # An image network trained on unphased data of 10 + 7 individuals: one row each (the rad_unphased example).
    bundle = {"shapes": {"image": [17, 128], "distances": [128], "stats": [40]}, "inputs": ["image", "distances", "stats"]}
    unphased = {"features": {"snps": 128, "phased": False}, "samples": {"pop1": 10, "pop2": 7}}
    check_settings(bundle, unphased)
    with pytest.raises(ModelError, match=r"samples give 34 haplotypes but the model in the model was trained on "
                                         r"images of 17 rows"):
        check_settings(bundle, {**unphased, "features": {"snps": 128, "phased": True}})
    with pytest.raises(ModelError, match=r"samples give 18 individuals \(unphased: one image row each\)"):
        check_settings(bundle, {**unphased, "samples": {"pop1": 10, "pop2": 8}})


# ------------------------------------------------------------------------------ a tiny model, through the CLI
def _pseudo_chromosome(folder, *, windows: int, length: int):
    """A phased VCF of one contig spanning ``windows`` × ``length`` bp, 4 + 4 individuals labelled
    nuttalli and pugetensis (taxa, not the simulated populations' names); every tenth record failed a filter."""
    rng = np.random.default_rng(3)
    names = [f"n{k}" for k in range(4)] + [f"p{k}" for k in range(4)]
    positions = np.sort(rng.choice(np.arange(1, windows * length), size=90, replace=False))
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID=chrA,length={windows * length}>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *names])]
    for k, pos in enumerate(positions):
        h = (rng.random(16) < rng.uniform(0.1, 0.9)).astype(int)
        h[0], h[1] = 0, 1  # polymorphic
        lines.append("\t".join(["chrA", str(pos), ".", "A", "G", ".", "LowQual" if k % 10 == 9 else "PASS", ".", "GT",
                                *[f"{h[2 * i]}|{h[2 * i + 1]}" for i in range(8)]]))
    (folder / "taxa.vcf").write_text("\n".join(lines) + "\n")
    (folder / "taxa.tsv").write_text("".join(f"{n}\t{'nuttalli' if n[0] == 'n' else 'pugetensis'}\n" for n in names))
    return folder / "taxa.vcf", folder / "taxa.tsv"


@pytest.fixture(scope="module")
def model(tiny_dataset, tmp_path_factory):
    """A network trained for one epoch on the tiny dataset, by a config whose one data set is a
    pseudo-chromosome cut into windows, its taxa mapped onto pop1 and pop2."""
    from popdl.config import prepare
    from popdl.stages import stage_config
    from popdl.training import train_final

    folder = tmp_path_factory.mktemp("model_settings")
    vcf, popmap = _pseudo_chromosome(folder, windows=3, length=tiny_config()["genome"]["length"])
    config = prepare(tiny_config(predict={"data": [{"name": "taxa", "vcf": str(vcf), "popmap": str(popmap),
                                                     "loci": "windows", "populations": MAPPING}],
                                          "replicates": 3, "max_missing": 0.9, "allow_unphased": True},
                                 train={"epochs": 1, "ensemble": 1}), base_dirs=(REPO,))
    hyper = TINY_MLP
    train_final(stage_config(config, "train"), tiny_dataset, best={"hyper_parameters": hyper, "best_epoch": 1},
                out=folder / "model")
    return folder, vcf, popmap, tiny_dataset


def _predict(folder, out, vcf, popmap, dataset, *flags) -> dict:
    from popdl.cli import main

    rc = main(["predict", "--model", str(folder / "model"), "--vcf", str(vcf), "--popmap", str(popmap),
               "--dataset", str(dataset), "--out", str(folder / out), *flags])
    assert rc == 0
    return json.loads((folder / out / "observed.json").read_text())


def test_predict_with_the_model_alone_reads_data_as_the_model_was_trained_to(model):
    folder, vcf, popmap, dataset = model
    bundle = json.loads((folder / "model" / "bundle.json").read_text())
    assert bundle["config"]["predict"]["defaults"] == {"loci": "windows", "populations": MAPPING}
    # ... and the reading options: here not the schema's defaults (10 SNP subsets, 50 % missing, phased only)
    stored = {k: bundle["config"]["predict"][k] for k in ("replicates", "max_missing", "allow_unphased")}
    assert stored == {"replicates": 3, "max_missing": 0.9, "allow_unphased": True}
    summary = _predict(folder, "stored", vcf, popmap, dataset)
    assert summary["reading"] == {"loci": "windows", "populations": MAPPING}
    assert summary["replicates"] == 3
    assert (summary["counts"]["snps"], summary["counts"]["filters"]) == (81, {"LowQual": 9})  # keep_filtered: false
    assert len(summary["loci"]) == 3  # the contig cut into windows of genome.length
    assert [i[0] for i in summary["individuals"]] == ["n"] * 4 + ["p"] * 4  # nuttalli -> pop1 (first)
    assert (folder / "stored" / "predictions.json").is_file()


def test_flags_override_the_stored_settings(model):
    folder, vcf, popmap, dataset = model
    summary = _predict(folder, "flags", vcf, popmap, dataset, "--loci", "contigs",
                       "--populations", "nuttalli=pop2", "pugetensis=pop1", "--keep-filtered")
    assert (summary["counts"]["snps"], summary["counts"]["filtered"]) == (90, 0)
    assert summary["reading"] == {"loci": "contigs", "populations": {"nuttalli": "pop2", "pugetensis": "pop1"}}
    assert len(summary["loci"]) == 1  # the contig is one locus
    assert [i[0] for i in summary["individuals"]] == ["p"] * 4 + ["n"] * 4  # pugetensis -> pop1 (first)
