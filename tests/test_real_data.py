"""Real data as users bring them: their own sample and population names, extra samples on either side.

Each case is handled as described (read, counted, one log line) or refused
with one line and a non-zero exit, nothing written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, tiny_config

from popdl.errors import ConfigError, DataError
from popdl.observed import read_observed, read_popmap, read_vcf
from popdl.scan import read_scan_vcf

SAMPLES = {"pop1": 2, "pop2": 2}
HEADER = ("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=1000>\n"
          '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT")
CALLS = [["0|1", "0|0", "1|1", "0|1", "1|1"], ["1|0", "0|1", "0|0", "0|0", "0|1"], ["0|0", "1|1", "0|1", "1|0", "0|0"]]


def vcf(names: list[str]) -> str:
    lines = [HEADER + "".join(f"\t{n}" for n in names)]
    for i, calls in enumerate(CALLS):
        lines.append("\t".join(["chr1", str(10 * (i + 1)), ".", "A", "G", ".", "PASS", ".", "GT", *calls[: len(names)]]))
    return "\n".join(lines) + "\n"


def files(tmp_path, names, popmap: str):
    (tmp_path / "data.vcf").write_text(vcf(names))
    (tmp_path / "popmap.tsv").write_text(popmap)
    return {"name": "obs", "vcf": str(tmp_path / "data.vcf"), "popmap": str(tmp_path / "popmap.tsv")}


POPMAP = "a1\tpop1\na2\tpop1\nb1\tpop2\nb2\tpop2\n"
TAXA = "a1\tnuttalli\na2\tnuttalli\nb1\tpugetensis\nb2\tpugetensis\n"
MAPPING = {"nuttalli": "pop1", "pugetensis": "pop2"}


def run_popdl(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "popdl", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def config_file(tmp_path, **predict) -> str:
    config = tiny_config(samples=SAMPLES, genome={"loci": 1, "length": 1000, "mutation_rate": 1e-8,
                                                  "recombination_rate": 1e-8}, predict=predict)
    for scenario in config["scenarios"].values():
        scenario["graph"] = str(REPO / scenario["graph"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


# ------------------------------------------------------------------------------------ sample names
def test_sample_names_with_surrounding_spaces_match_the_popmap_with_one_log_line(tmp_path, caplog):
    entry = files(tmp_path, ["a1 ", "a2  ", " b1", "b2"], POPMAP)
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.individuals == ["a1", "a2", "b1", "b2"]
    assert data.counts["trimmed_names"] == 3 and data.genotypes.shape == (3, 8)
    lines = [r.getMessage() for r in caplog.records if "spaces" in r.getMessage()]
    assert len(lines) == 1 and "3 of 4 sample name(s) had leading or trailing spaces" in lines[0], lines


def test_sample_names_that_are_bam_files_match_the_popmap_by_their_file_name(tmp_path, caplog):
    # bcftools mpileup names each sample by its BAM file when the reads carry no read group.
    names = ["bams/a1.sorted.bam", "/data/run 2/a2.dedup.BAM", "b1.bam", "b2"]
    entry = files(tmp_path, names, POPMAP)
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.individuals == names and data.counts["not_in_popmap"] == 0
    assert np.array_equal(data.genotypes, read_observed(files(tmp_path, ["a1", "a2", "b1", "b2"], POPMAP),
                                                        samples=SAMPLES, seed=1).genotypes)
    lines = [r.getMessage() for r in caplog.records if "file names" in r.getMessage()]
    assert len(lines) == 1 and "3 sample name(s) are file names (e.g. 'bams/a1.sorted.bam')" in lines[0], lines
    # A stem that is another sample's name, or that the popmap lacks, matches nothing.
    for extra in ("x/a1.bam", "c7.bam"):
        data = read_observed(files(tmp_path, ["a1", extra, "a2", "b1", "b2"], POPMAP), samples=SAMPLES, seed=1)
        assert data.individuals == ["a1", "a2", "b1", "b2"] and data.counts["not_in_popmap"] == 1, extra


def _matched_as_the_popmap_names(tmp_path, caplog, names: list[str], phrase: str) -> list[str]:
    """Read data whose samples are ``names``, asserting each matched the popmap and the genotypes are those of the
    popmap's names; the log lines holding ``phrase``."""
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = read_observed(files(tmp_path, names, POPMAP), samples=SAMPLES, seed=1)
    assert data.individuals == [n.strip() for n in names] and data.counts["not_in_popmap"] == 0
    assert np.array_equal(data.genotypes, read_observed(files(tmp_path, ["a1", "a2", "b1", "b2"], POPMAP),
                                                        samples=SAMPLES, seed=1).genotypes)
    return [r.getMessage() for r in caplog.records if phrase in r.getMessage()]


def test_sample_names_that_differ_from_the_popmap_in_case_only_match_it(tmp_path, caplog):
    lines = _matched_as_the_popmap_names(tmp_path, caplog, ["A1", "a2", "B1 ", "b2"], "case is ignored")
    assert len(lines) == 1 and "2 sample name(s) match the popmap only when case is ignored (e.g. 'A1' is 'a1'" \
        in lines[0], lines
    # Two popmap names equal to it but for case: neither is guessed.
    entry = files(tmp_path, ["Ab", "a2", "b1", "b2"], "AB\tpop1\nab\tpop1\na2\tpop1\nb1\tpop2\nb2\tpop2\n")
    data = read_observed(entry, samples={"pop1": 1, "pop2": 2}, seed=1)
    assert data.individuals == ["a2", "b1", "b2"] and data.counts["not_in_popmap"] == 1


def test_numeric_sample_names_a_spreadsheet_rewrote_match_as_numbers(tmp_path, caplog):
    # The VCF's '0012' and '1001' are '12' and '1001.0' in a popmap saved from a spreadsheet.
    popmap = "12\tpop1\n1001.0\tpop1\n7\tpop2\n8\tpop2\n"
    entry = files(tmp_path, ["0012", "1001", "7", "08"], popmap)
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.individuals == ["0012", "1001", "7", "08"] and data.counts["not_in_popmap"] == 0
    lines = [r.getMessage() for r in caplog.records if "only as numbers" in r.getMessage()]
    assert len(lines) == 1 and "3 sample name(s) match the popmap only as numbers (e.g. '0012' is '12'" in lines[0]
    # Two popmap names of one number ('12', '012'): neither is guessed; a name that is not a number never is.
    entry = files(tmp_path, ["0012", "1001", "7", "8", "x1"], "12\tpop1\n012\tpop1\n1001\tpop1\n7\tpop2\n"
                  "8\tpop2\nx01\tpop2\n")
    data = read_observed(entry, samples={"pop1": 1, "pop2": 2}, seed=1)
    assert "0012" not in data.individuals and "x1" not in data.individuals and data.counts["not_in_popmap"] == 2


def test_plink_fid_iid_sample_names_match_the_popmap_by_their_iid(tmp_path, caplog):
    # plink --recode vcf names samples FID_IID: a population code or, with --double-id, the IID again.
    lines = _matched_as_the_popmap_names(tmp_path, caplog, ["nut_a1", "a2_a2", "pug_b1", "b2"],
                                         "after a prefix and an underscore")
    assert len(lines) == 1 and "3 sample name(s) are a popmap name after a prefix and an underscore (e.g. 'nut_a1' is "
    "'a1' there" in lines[0], lines
    # A name ending in two popmap names ('x_a_1': 'a_1' and '1') is not guessed.
    entry = files(tmp_path, ["x_a_1", "a2", "b1", "b2"], "a_1\tpop1\n1\tpop1\na2\tpop1\nb1\tpop2\nb2\tpop2\n")
    data = read_observed(entry, samples={"pop1": 1, "pop2": 2}, seed=1)
    assert data.individuals == ["a2", "b1", "b2"] and data.counts["not_in_popmap"] == 1


def test_popmap_labels_that_differ_from_a_population_in_case_only_map_to_it(tmp_path, caplog):
    entry = files(tmp_path, ["a1", "a2", "b1", "b2"], "a1\tPop1\na2\tPop1\nb1\tPOP2\nb2\tPOP2\n")
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.populations.tolist() == ["pop1"] * 4 + ["pop2"] * 4
    assert any("popmap label(s) POP2, Pop1 taken for the population(s) pop2, pop1" in r.getMessage() for r in caplog.records)
    # A mapping given for a label is the mapping: no guess by case.
    data = read_observed(dict(entry, populations={"Pop1": "pop2", "POP2": "pop1"}), samples=SAMPLES, seed=1)
    assert data.individuals == ["b1", "b2", "a1", "a2"]


def test_a_bcf_file_reads_as_its_vcf_and_a_truncated_one_is_one_line(tmp_path):
    import cyvcf2

    mapping = {"nuttalli": "pop1", "pugetensis": "pop2"}
    rad = read_observed(dict(RAD, name="rad", populations=mapping), samples={"pop1": 10, "pop2": 7}, seed=1, phased=False)
    source = cyvcf2.VCF(RAD["vcf"])
    writer = cyvcf2.Writer(str(tmp_path / "rad.bcf"), source, mode="wb")  # bcftools view -Ob
    for record in source:
        writer.write_record(record)
    writer.close()
    entry = dict(RAD, name="rad", vcf=str(tmp_path / "rad.bcf"), populations=mapping)
    bcf = read_observed(entry, samples={"pop1": 10, "pop2": 7}, seed=1, phased=False)
    assert np.array_equal(bcf.genotypes, rad.genotypes) and bcf.loci == rad.loci and bcf.individuals == rad.individuals
    data = (tmp_path / "rad.bcf").read_bytes()
    (tmp_path / "cut.bcf").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=r"cut\.bcf: the BGZF stream ends early: the file is truncated"):
        read_observed(dict(entry, vcf=str(tmp_path / "cut.bcf")), samples={"pop1": 10, "pop2": 7}, seed=1, phased=False)


def test_a_popmap_or_vcf_header_saved_as_windows_1252_keeps_its_accented_names(tmp_path, caplog):
    entry = files(tmp_path, ["a1", "a2", "b1", "b2"], POPMAP)
    Path(entry["popmap"]).write_bytes("a1\tLac L\u00e9man\na2\tLac L\u00e9man\nb1\tZ\u00fcrichsee\nb2\tZ\u00fcrichsee\n"
                                      .encode("cp1252"))
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = read_observed(dict(entry, populations={"Lac L\u00e9man": "pop1", "Z\u00fcrichsee": "pop2"}),
                             samples=SAMPLES, seed=1)
    assert data.populations.tolist() == ["pop1"] * 4 + ["pop2"] * 4
    assert any("not UTF-8 text; read as Windows-1252" in r.getMessage() for r in caplog.records)
    # Sample names typed on Windows in a VCF header (htslib's own reading of them fails) match a UTF-8 popmap.
    names = ["L\u00e9man_1", "L\u00e9man_2", "b1", "b2"]
    entry = files(tmp_path, names, "".join(f"{n}\t{p}\n" for n, p in zip(names, ["pop1", "pop1", "pop2", "pop2"])))
    Path(entry["vcf"]).write_bytes(vcf(names).encode("cp1252"))
    data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.individuals == names and data.genotypes.shape == (3, 8)
    # A contig name that is not UTF-8 is one line, not htslib's bytes failing to decode.
    Path(entry["vcf"]).write_bytes(vcf(names).replace("chr1", "chr\u00e9").encode("cp1252"))
    with pytest.raises(DataError, match=r"record 1: its contig name is not UTF-8 text"):
        read_observed(entry, samples=SAMPLES, seed=1)


def test_names_equal_once_trimmed_are_one_line(tmp_path):
    entry = files(tmp_path, ["a1", "a1 ", "b1", "b2"], POPMAP)
    with pytest.raises(DataError, match=r"samples 'a1' and 'a1 ' have the same name once spaces are trimmed"):
        read_observed(entry, samples=SAMPLES, seed=1)


# ------------------------------------------------------------------------------------ population labels
def test_population_labels_map_to_the_simulated_populations(tmp_path):
    entry = dict(files(tmp_path, ["a1", "a2", "b1", "b2"], TAXA), populations=MAPPING)
    data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.populations.tolist() == ["pop1"] * 4 + ["pop2"] * 4
    # The same genotypes as with the labels renamed in the popmap.
    renamed = read_observed(files(tmp_path, ["a1", "a2", "b1", "b2"], POPMAP), samples=SAMPLES, seed=1)
    assert np.array_equal(data.genotypes, renamed.genotypes)


def test_labels_without_a_mapping_say_which_labels_were_left_out(tmp_path):
    entry = files(tmp_path, ["a1", "a2", "b1", "b2"], TAXA)
    with pytest.raises(DataError, match=r"population 'pop1' has 0 individual\(s\) but 2 were simulated; "
                                        r"population\(s\) nuttalli, pugetensis of the popmap were left out "
                                        r"\(map a label to 'pop1' with --populations LABEL=pop1 or "
                                        r"predict.data\[\].populations: \{LABEL: pop1\}\)"):
        read_observed(entry, samples=SAMPLES, seed=1)
    with pytest.raises(DataError, match=r"population\(s\) nuttalli, pugetensis in the popmap are not simulated .*"
                                        r"map the popmap's labels to them with populations"):
        read_observed(entry, samples=SAMPLES, seed=1, strict=True)


def test_a_mapping_label_no_popmap_sample_holds_is_named_with_the_nearest_label(tmp_path, caplog):
    # A typo or a label's case: 'Nuttalli' for the popmap's 'nuttalli'.
    entry = dict(files(tmp_path, ["a1", "a2", "b1", "b2"], TAXA), populations={"Nuttalli": "pop1", "pugetensis": "pop2"})
    stray = (r"populations label\(s\) 'Nuttalli' \(did you mean 'nuttalli'\?\) held by no popmap sample; its labels: "
             r"nuttalli, pugetensis")
    with pytest.raises(DataError, match=r"population 'pop1' has 0 individual\(s\) but 2 were simulated; " + stray):
        read_observed(entry, samples=SAMPLES, seed=1)
    with pytest.raises(DataError, match=r"population\(s\) nuttalli in the popmap are not simulated .*; " + stray):
        read_observed(entry, samples=SAMPLES, seed=1, strict=True)
    # A label for another data set's popmap costs nothing but a warning.
    entry["populations"] = dict(MAPPING, nutalli_x="pop1")
    with caplog.at_level(logging.WARNING, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.populations.tolist() == ["pop1"] * 4 + ["pop2"] * 4
    assert "populations label(s) 'nutalli_x' (did you mean 'nuttalli'?) held by no popmap sample" in caplog.text
    # A stray label of another population does not hide what this one lacks.
    with pytest.raises(DataError, match=r"population 'pop1' \(popmap label\(s\) nuttalli\) has 2 individual\(s\) but 3 "
                                        r"were simulated; simulate 2 \(samples: \{pop1: 2\}"):
        read_observed(dict(entry, populations=dict(MAPPING, other="pop2")), samples={"pop1": 3, "pop2": 2}, seed=1)


def test_a_mapping_to_a_population_not_simulated_is_refused(tmp_path):
    entry = dict(files(tmp_path, ["a1", "a2", "b1", "b2"], TAXA), populations={"nuttalli": "pop1", "pugetensis": "pop3"})
    with pytest.raises(DataError, match=r"populations maps to pop3, not simulated \(config samples: pop1, pop2\)"):
        read_observed(entry, samples=SAMPLES, seed=1)
    config = tiny_config(samples=SAMPLES, predict={"data": [dict(entry, populations={"nuttalli": "pop3"})]})
    from popdl.config import validate

    with pytest.raises(ConfigError, match=r"predict\.data\.0\.populations\.nuttalli': 'pop3' is not a simulated population"):
        validate(config)


# ------------------------------------------------------------------------------------ extra samples
EXTRAS = {
    "vcf-sample-not-in-popmap": (["a1", "a2", "b1", "b2", "zz"], POPMAP, "not_in_popmap",
                                 r"1 sample\(s\) missing from the popmap: zz"),
    "popmap-sample-not-in-vcf": (["a1", "a2", "b1", "b2"], POPMAP + "c9\tpop2\n", "not_in_data",
                                 r"1 popmap sample\(s\) not in the data: c9"),
    "outgroup-label": (["a1", "a2", "b1", "b2", "zz"], POPMAP + "zz\toutgroup\n", "unsimulated_samples",
                       r"population\(s\) outgroup in the popmap are not simulated"),
}


@pytest.mark.parametrize("case", list(EXTRAS))
def test_extra_samples_are_left_out_and_counted_unless_strict(tmp_path, case, caplog):
    names, popmap, key, strict_error = EXTRAS[case]
    entry = files(tmp_path, names, popmap)
    with caplog.at_level(logging.WARNING, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.counts[key] == 1 and data.individuals == ["a1", "a2", "b1", "b2"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "left out 1 " in warnings[0] and "predict.strict_samples" in warnings[0], warnings
    with pytest.raises(DataError, match=strict_error):
        read_observed(entry, samples=SAMPLES, seed=1, strict=True)


def test_a_scan_maps_labels_too(tmp_path):
    entry = files(tmp_path, ["a1 ", "a2", "b1", "b2", "zz"], TAXA)
    data = read_scan_vcf(entry["vcf"], popmap=entry["popmap"], samples=SAMPLES, seed=1, populations=MAPPING)
    assert data.individuals == ["a1", "a2", "b1", "b2"] and data.counts["not_in_popmap"] == 1
    direct = read_vcf(entry["vcf"], popmap=read_popmap(entry["popmap"]), samples=SAMPLES, seed=1, populations=MAPPING)
    assert np.array_equal(direct.genotypes, data.genotypes)


# ------------------------------------------------------------------------------------ as the user runs it
def test_observe_with_the_config_mapping_records_the_counts(tmp_path):
    entry = dict(files(tmp_path, ["a1 ", "a2", "b1", "b2", "zz"], TAXA + "c9\tnuttalli\n"), populations=MAPPING)
    cfg = config_file(tmp_path, data=[entry])
    out = tmp_path / "out" / "observed.npz"
    proc = run_popdl("observe", "--configfile", cfg, "--data", "obs", "--out", out)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(out.with_name("observed.json").read_text())["counts"]
    assert (counts["trimmed_names"], counts["not_in_popmap"], counts["not_in_data"]) == (1, 1, 1)
    assert "left out 1 sample(s) not in the popmap (zz); 1 popmap sample(s) not in the data (c9)" in proc.stderr


def test_strict_samples_in_the_config_is_one_line_and_writes_nothing(tmp_path):
    entry = dict(files(tmp_path, ["a1", "a2", "b1", "b2", "zz"], TAXA), populations=MAPPING)
    cfg = config_file(tmp_path, data=[entry], strict_samples=True)
    out = tmp_path / "out" / "observed.npz"
    proc = run_popdl("observe", "--configfile", cfg, "--data", "obs", "--out", out)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "1 sample(s) missing from the popmap: zz" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_check_data_warns_of_a_population_in_which_no_snp_segregates(tmp_path):
    # pop1's two individuals carry one allele at every SNP: the wrong samples, or one clonal line.
    text = vcf(["a1", "a2", "b1", "b2"]).splitlines()
    rows = [line.split("\t") for line in text[-len(CALLS):]]
    for row in rows:
        row[9:11] = ["0|0", "0|0"]
    (tmp_path / "data.vcf").write_text("\n".join(text[:-len(CALLS)] + ["\t".join(r) for r in rows]) + "\n")
    (tmp_path / "popmap.tsv").write_text(POPMAP)
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", tmp_path / "data.vcf", "--popmap",
                     tmp_path / "popmap.tsv")
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stdout.splitlines() if "segregates" in line]
    assert warned == ["data: WARNING, no SNP segregates within pop1 (2 individuals kept): each SNP holds one allele "
                      "among them; check the popmap's labels of these samples (the wrong samples, one clone or inbred "
                      "line) and the filters the data went through"], proc.stdout


def test_check_data_takes_the_mapping_on_the_command_line(tmp_path):
    entry = files(tmp_path, ["a1", "a2", "b1", "b2"], TAXA)
    cfg = config_file(tmp_path)
    proc = run_popdl("check-data", "--configfile", cfg, "--vcf", entry["vcf"], "--popmap", entry["popmap"],
                     "--populations", "nuttalli=pop1", "pugetensis=pop2")
    assert proc.returncode == 0, proc.stderr
    assert "4 of 4 individuals kept" in proc.stdout and "segregates" not in proc.stdout, proc.stdout
    bad = run_popdl("check-data", "--configfile", cfg, "--vcf", entry["vcf"], "--popmap", entry["popmap"],
                    "--populations", "nuttalli")
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode != 0 and len(lines) == 1 and "--populations 'nuttalli': expected LABEL=POPULATION" in lines[0]


def test_populations_arguments_split_at_the_last_equals_sign_and_refuse_a_label_mapped_twice():
    from popdl.cli import population_mapping

    assert population_mapping(["site=3=pop1", " Lake Malawi = pop2"]) == {"site=3": "pop1", "Lake Malawi": "pop2"}
    assert population_mapping(["a=pop1", "a=pop1"]) == {"a": "pop1"}
    with pytest.raises(ConfigError, match=r"--populations: label 'a' is mapped twice, to 'pop1' and 'pop2'$"):
        population_mapping(["a=pop1", "b=pop2", "a=pop2"])


# ------------------------------------------------------------------------------------ unphased data
def _scrambled(g: np.ndarray, seed: int) -> np.ndarray:
    """``g`` with each individual's alleles swapped at random sites: another phase of the same genotypes."""
    from popdl.features import random_phase

    return random_phase(g, np.random.default_rng(seed))


@pytest.mark.parametrize("image", ["genotypes", "random_phase"])
def test_unphased_features_do_not_depend_on_the_phase(image):
    from popdl.features import Extractor, FeatureSettings

    rng = np.random.default_rng(3)
    g = (rng.random((60, 12)) < 0.15).astype(np.int8)
    g[rng.random(g.shape) < 0.05] = -1
    g[:, 1::2][g[:, 0::2] == -1] = -1  # a missing call misses both alleles, as ./. does
    loc = np.repeat(np.arange(15), 4)  # loci of 4 SNPs: some haplotypes repeat
    pos = np.tile([100.0, 300.0, 500.0, 700.0], 15)
    pops = np.repeat(["pop1", "pop2"], 6)
    settings = FeatureSettings(snps=16, stats=("segsites", "pi", "hap_diversity", "fst", "sfs"), phased=False,
                               unphased_image=image)
    ex = Extractor(settings, populations=pops, locus_length=1000)
    a = ex.extract(g, pos, loc, rng=np.random.default_rng(1), total_length=15000, loci=15)
    b = ex.extract(_scrambled(g, 9), pos, loc, rng=np.random.default_rng(1), total_length=15000, loci=15)
    assert np.array_equal(a.stats, b.stats) and np.array_equal(a.distances, b.distances)
    if image == "genotypes":
        assert a.image.shape == (6, 16) and ex.row_populations.tolist() == ["pop1"] * 3 + ["pop2"] * 3
        assert np.array_equal(a.image, b.image)
        assert set(np.unique(a.image)) <= {-1, 0, 1, 2}
    else:
        assert a.image.shape == (12, 16) and ex.row_populations.size == 12
    phased = Extractor(FeatureSettings(snps=16, stats=settings.stats), populations=pops, locus_length=1000)
    c = phased.extract(g, pos, loc, rng=np.random.default_rng(1), total_length=15000, loci=15)
    d = phased.extract(_scrambled(g, 9), pos, loc, rng=np.random.default_rng(1), total_length=15000, loci=15)
    assert not np.array_equal(c.stats, d.stats)  # the phased haplotype diversity does see the phase
    names = phased.stat_names
    same = [i for i, n in enumerate(names) if not n.startswith("hap_diversity")]
    assert np.array_equal(a.stats[same], c.stats[same])  # statistics from allele counts need no phase


def test_dosage_image_encodes_minor_allele_dosage():
    from popdl.features import encode_genotypes

    # Two sites, three individuals: site 0 derived allele minor, site 1 derived allele major.
    g = np.array([[0, 0, 0, 1, 1, 1], [1, 1, 1, 0, -1, -1]], np.int8)
    assert encode_genotypes(g).tolist() == [[-1, 1, 2], [-1, 1, 0]]


UNPHASED_CALLS = [["0/1", "0/0", "1/1", "0/1"], ["1/0", "0/1", "0/0", "0/0"], ["0/0", "1/1", "0/1", "1/0"]]


def _unphased_files(tmp_path, *, phased_calls: bool = False, calls=UNPHASED_CALLS):
    calls = [[c.replace("/", "|") for c in row] for row in calls] if phased_calls else calls
    lines = [HEADER + "".join(f"\t{n}" for n in ["a1", "a2", "b1", "b2"])]
    for i, row in enumerate(calls):
        lines.append("\t".join(["chr1", str(10 * (i + 1)), ".", "A", "G", ".", "PASS", ".", "GT", *row]))
    name = "phased.vcf" if phased_calls else "unphased.vcf"
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    (tmp_path / "popmap.tsv").write_text(POPMAP)
    return {"name": "obs", "vcf": str(tmp_path / name), "popmap": str(tmp_path / "popmap.tsv")}


def test_unphased_model_reads_unphased_calls_and_phased_ones_alike(tmp_path):
    from popdl.features import observed_features

    features = {"snps": 8, "snp_selection": "random", "sort_rows": True, "positions": True, "jsfs_bins": 4,
                "stats": ["segsites", "pi", "hap_diversity", "fst"], "phased": False, "unphased_image": "genotypes"}
    unphased = read_observed(_unphased_files(tmp_path), samples=SAMPLES, seed=1, phased=False)
    phased = read_observed(_unphased_files(tmp_path, phased_calls=True), samples=SAMPLES, seed=1, phased=False)
    assert unphased.phasing == "unphased" and phased.phasing == "phased"
    assert unphased.counts["unphased_heterozygous"] == 6
    a = observed_features(unphased, features=features, genome={"length": 1000}, seed=1)
    b = observed_features(phased, features=features, genome={"length": 1000}, seed=1)
    for key in ("images", "distances", "stats"):
        assert np.array_equal(a[key], b[key]), key
    assert a["images"].shape[1] == 4 and a["populations"].tolist() == ["pop1", "pop1", "pop2", "pop2"]


def test_a_phased_model_refuses_unphased_data_with_one_line(tmp_path):
    entry = _unphased_files(tmp_path)
    with pytest.raises(DataError, match=r"sample a1 has an unphased heterozygous call \(0/1\); the model is phased: "
                                        r"train with features\.phased: false"):
        read_observed(entry, samples=SAMPLES, seed=1)
    cfg = config_file(tmp_path, data=[entry])
    proc = run_popdl("observe", "--configfile", cfg, "--data", "obs", "--out", tmp_path / "out" / "observed.npz")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "features.phased: false" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
    check = run_popdl("check-data", "--configfile", cfg, "--vcf", entry["vcf"], "--popmap", entry["popmap"], "--name", "obs")
    assert check.returncode == 1
    assert "obs: unphased, 6 of 6 heterozygous calls without phase; the config is phased; ERROR" in check.stdout


def test_an_unphased_model_takes_phased_data_with_a_note(tmp_path):
    entry = _unphased_files(tmp_path, phased_calls=True)
    cfg = yaml.safe_load(open(config_file(tmp_path, data=[entry])))
    cfg["features"] = {"phased": False}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out" / "observed.npz"
    proc = run_popdl("observe", "--configfile", tmp_path / "config.yaml", "--data", "obs", "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.with_name("observed.json").read_text())
    assert summary["phasing"] == "phased" and summary["trained_phased"] is False
    assert any("the model unphased: their phase is discarded" in n for n in summary["notes"]), summary["notes"]
    check = run_popdl("check-data", "--configfile", tmp_path / "config.yaml", "--vcf", entry["vcf"], "--popmap",
                      entry["popmap"], "--name", "obs")
    assert check.returncode == 0 and "obs: phased, 0 of 6 heterozygous calls without phase; the config is unphased" \
        in check.stdout, check.stdout


def test_homozygous_calls_alone_have_no_phase_to_read_and_say_so(tmp_path):
    """A Stacks-style VCF ('/' everywhere) whose kept individuals carry no heterozygous call:
    a phased model takes it (there is no phase to lose), and check-data says why."""
    homozygous = [[{"0/1": "1/1", "1/0": "0/0"}.get(c, c) for c in row] for row in UNPHASED_CALLS]
    entry = _unphased_files(tmp_path, calls=homozygous)
    data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.counts["unphased_heterozygous"] == data.counts["phased_heterozygous"] == 0
    cfg = config_file(tmp_path, data=[entry])
    check = run_popdl("check-data", "--configfile", cfg, "--vcf", entry["vcf"], "--popmap", entry["popmap"], "--name", "obs")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "obs: no heterozygous call among the individuals kept, so no phase to read (taken as phased); the config " \
        "is phased" in check.stdout, check.stdout


# ------------------------------------------------------------------------------------ VCFs written by tskit
def test_a_tskit_vcf_of_binary_mutations_is_read_as_snps(tmp_path):
    """tskit writes msprime's BinaryMutationModel alleles as REF 0, ALT 1: SNPs like any other."""
    import msprime

    ts = msprime.sim_ancestry(4, sequence_length=20_000, population_size=5_000, recombination_rate=1e-8, random_seed=3)
    ts = msprime.sim_mutations(ts, rate=2e-8, model=msprime.BinaryMutationModel(), random_seed=4)
    names = [f"ind{i}" for i in range(4)]
    with open(tmp_path / "ts.vcf", "w") as fh:
        ts.write_vcf(fh, individual_names=names)
    text = (tmp_path / "ts.vcf").read_text()
    assert "\t0\t1\t" in text  # REF 0, ALT 1
    (tmp_path / "popmap.tsv").write_text("".join(f"{n}\tpop\n" for n in names))
    data = read_vcf(tmp_path / "ts.vcf", popmap=read_popmap(tmp_path / "popmap.tsv"), samples={"pop": 4}, seed=1)
    assert data.counts["snps"] == ts.num_sites and data.counts["other_variants"] == 0
    assert np.array_equal(data.genotypes, ts.genotype_matrix().astype(np.int8))


def test_no_usable_snp_counts_every_reason(tmp_path):
    rows = [("chr1", 5, "AT", "A"), ("chr1", 9, "A", "G,T"), ("chr1", 12, "C", "."), ("chr1", 20, "A", "A")]
    lines = [HEADER + "".join(f"\t{n}" for n in ["a1", "a2", "b1", "b2"])]
    for chrom, pos, ref, alt in rows:
        lines.append("\t".join([chrom, str(pos), ".", ref, alt, ".", "PASS", ".", "GT", *["0|1"] * 4]))
    (tmp_path / "d.vcf").write_text("\n".join(lines) + "\n")
    (tmp_path / "popmap.tsv").write_text(POPMAP)
    with pytest.raises(DataError, match=r"no usable biallelic SNP among 4 records \(1 multi-allelic, 1 indel, "
                                        r"1 monomorphic, 1 with ALT equal to REF\)"):
        read_vcf(tmp_path / "d.vcf", popmap=read_popmap(tmp_path / "popmap.tsv"), samples=SAMPLES, seed=1)


def test_htslib_warnings_are_counted_in_one_line(tmp_path, caplog):
    """Contigs missing from the header make htslib warn once per contig: one log line counts them."""
    header = HEADER.replace("##contig=<ID=chr1,length=1000>\n", "")
    lines = [header + "".join(f"\t{n}" for n in ["a1", "a2", "b1", "b2"])]
    for c in range(5):
        lines.append("\t".join([f"ctg{c}", "10", ".", "A", "G", ".", "PASS", ".", "GT", "0|1", "0|0", "1|1", "0|1"]))
    (tmp_path / "d.vcf").write_text("\n".join(lines) + "\n")
    (tmp_path / "popmap.tsv").write_text(POPMAP)
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = read_vcf(tmp_path / "d.vcf", popmap=read_popmap(tmp_path / "popmap.tsv"), samples=SAMPLES, seed=1)
    assert len(data.loci) == 5
    lines = [r.getMessage() for r in caplog.records if "htslib" in r.getMessage()]
    assert len(lines) == 1 and "htslib printed 5 message(s): 5 x " in lines[0], lines


# ------------------------------------------------------------------------------------ loci
def _sites_files(tmp_path, name: str, sites, calls) -> dict:
    """A VCF of ``sites`` ((contig, position) or (contig, position, ID), in order), the four
    samples' ``calls`` rotating by one sample per site, and its popmap: the data set entry."""
    lines = [HEADER.replace("##contig=<ID=chr1,length=1000>\n", "") + "".join(f"\t{n}" for n in ["a1", "a2", "b1", "b2"])]
    for chrom, pos, *record_id in sites:
        lines.append("\t".join([chrom, str(pos), record_id[0] if record_id else ".", "A", "G", ".", "PASS", ".", "GT",
                                 *calls]))
        calls = calls[1:] + calls[:1]
    (tmp_path / f"{name}.vcf").write_text("\n".join(lines) + "\n")
    (tmp_path / "popmap.tsv").write_text(POPMAP)
    return {"name": name, "vcf": str(tmp_path / f"{name}.vcf"), "popmap": str(tmp_path / "popmap.tsv")}


def _chromosome_files(tmp_path):
    """Two pseudo-chromosomes of 5 kb with SNPs every 250 bp."""
    sites = [(chrom, pos) for chrom in ("scaf1", "scaf2") for pos in range(100, 5000, 250)]
    return _sites_files(tmp_path, "chr", sites, ["0|1", "0|0", "1|1", "0|1"])


def test_window_loci_cut_pseudo_chromosomes_into_loci_of_the_simulated_length(tmp_path):
    from popdl.features import observed_features

    entry = _chromosome_files(tmp_path)
    contigs = read_observed(entry, samples=SAMPLES, seed=1)
    windows = read_observed(dict(entry, loci="windows"), samples=SAMPLES, seed=1, locus_length=1000)
    assert len(contigs.loci) == 2 and contigs.positions.max() > 4000
    assert len(windows.loci) == 10 and windows.loci[:2] == ["scaf1:1-1000", "scaf1:1001-2000"]
    assert windows.positions.min() >= 0 and windows.positions.max() < 1000
    assert np.bincount(windows.locus).tolist() == [4] * 10 and windows.counts["contigs"] == 2
    assert np.array_equal(windows.genotypes, contigs.genotypes)
    features = {"snps": 64, "snp_selection": "random", "sort_rows": True, "positions": True, "jsfs_bins": 4,
                "stats": ["segsites", "pi"]}
    d = observed_features(windows, features=features, genome={"length": 1000}, seed=1)["distances"]
    assert d.max() <= 1.0  # within a window below 1, across loci 1: as in training
    from popdl.predict import position_check

    assert position_check(contigs, 1000)["flagged"] and not position_check(windows, 1000)["flagged"]


def test_check_data_reports_loci_against_the_config(tmp_path):
    entry = _chromosome_files(tmp_path)
    cfg = config_file(tmp_path)
    proc = run_popdl("check-data", "--configfile", cfg, "--vcf", entry["vcf"], "--popmap", entry["popmap"],
                     "--loci", "windows")
    assert proc.returncode == 0, proc.stderr
    assert "chr: 10 loci (windows) with a SNP, against genome.loci 1 (more than simulated: raise genome.loci to 10 or more); SNPs per locus: mean 4.0" \
        in proc.stdout, proc.stdout


def test_check_data_warns_of_individuals_that_miss_most_of_their_calls(tmp_path):
    # b2 a failed library: 9 of its 10 calls missing.
    sites = [("chr1", 100 * k) for k in range(1, 11)]
    entry = _sites_files(tmp_path, "sparse", sites, ["0/1", "0/0", "1/1", "./."])
    lines = (tmp_path / "sparse.vcf").read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    body = [line.split("\t") for line in lines if not line.startswith("#")]
    for k, fields in enumerate(body):
        fields[12] = "0/1" if k == 0 else "./."
    (tmp_path / "sparse.vcf").write_text("\n".join([*header, *("\t".join(f) for f in body)]) + "\n")
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", entry["vcf"], "--popmap",
                     entry["popmap"])
    assert "sparse: WARNING, 1 individual(s) miss more than 80% of their calls (b2 90%)" in proc.stdout, \
        proc.stdout + proc.stderr


def _aligned_rad_files(tmp_path):
    """RAD tags aligned to two scaffolds: 3 SNPs within 120 bp per tag, four tags 3 kb apart from
    250 and one at 1,180 (each straddling an edge of a 300 bp window grid), then on scaffold 2 a
    dense stretch of SNPs every 100 bp over 1 kb (one cluster longer than a locus)."""
    sites = [("scaf1", start + d) for start in range(250, 12_000, 3_000) for d in (0, 60, 120)]
    sites += [("scaf2", 1_180 + d) for d in (0, 60, 120)] + [("scaf2", 50_000 + 100 * k) for k in range(11)]
    return _sites_files(tmp_path, "aligned", sites, ["0/1", "0/0", "1/1", "0/1"])


def test_cluster_loci_give_one_locus_per_aligned_tag(tmp_path):
    entry = _aligned_rad_files(tmp_path)
    read = dict(samples=SAMPLES, seed=1, phased=False, locus_length=300)
    contigs = read_observed(entry, **read)
    windows = read_observed(dict(entry, loci="windows"), **read)
    clusters = read_observed(dict(entry, loci="clusters"), **read)
    assert np.array_equal(clusters.genotypes, contigs.genotypes) and clusters.counts["contigs"] == 2
    # Five tags: one locus each (the grid of windows cuts each in two); the 1 kb dense stretch:
    # pieces of at most 300 bp from its first SNP.
    assert clusters.loci[:5] == [f"scaf1:{s}-{s + 120}" for s in range(250, 12_000, 3_000)] + ["scaf2:1180-1300"]
    assert clusters.loci[5:] == ["scaf2:50000-50200", "scaf2:50300-50500", "scaf2:50600-50800", "scaf2:50900-51000"]
    assert np.bincount(clusters.locus).tolist() == [3] * 8 + [2]
    assert len(windows.loci) == 2 * 5 + 4
    # Each locus keeps its SNPs' distances, centred in a locus of genome.length.
    assert clusters.positions.min() > 0 and clusters.positions.max() < 300
    assert clusters.positions[:3].tolist() == [90.0, 150.0, 210.0]
    for k in range(len(clusters.loci)):
        here = clusters.positions[clusters.locus == k]
        assert np.allclose(np.diff(here), np.diff(contigs.positions[clusters.locus == k]))
        assert here.min() + here.max() == pytest.approx(300)
    from popdl.predict import position_check

    assert position_check(contigs, 300)["flagged"] and not position_check(clusters, 300)["flagged"]
    # The config's genome.length is 1 kb: the stretch is then a piece of 10 SNPs and one of 1.
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", entry["vcf"], "--popmap",
                     entry["popmap"], "--loci", "clusters")
    assert "aligned: 7 loci (clusters) with a SNP, against genome.loci 1" in proc.stdout, proc.stdout + proc.stderr
    assert "range 1-10" in proc.stdout
    # SNPs 51 kb along a scaffold say nothing of a tag's length: the suggestion keeps the config's genome.length.
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", entry["vcf"], "--popmap",
                     entry["popmap"], "--suggest-config")
    suggested = yaml.safe_load(proc.stdout)  # stdout holds the suggestion alone, the report is on stderr
    assert proc.stdout.startswith("# popdl check-data --suggest-config") and "SNPs on" in proc.stderr
    assert suggested["genome"] == {"loci": 2, "length": 1000}, proc.stdout + proc.stderr


def _stacks1_denovo_files(tmp_path, by_column: bool = True):
    """A de novo Stacks 1 VCF: every SNP on contig 'un' at its column + 1 within its catalogue locus,
    the locus in the ID (``LOCUS_COLUMN``); sorted by that column across loci (as Stacks 1.4x
    writes them), else locus after locus."""
    snps = {"12": [4, 30, 61], "7": [10, 30], "305": [4, 77]}
    sites = [("un", col + 1, f"{locus}_{col}") for locus, cols in snps.items() for col in cols]
    if by_column:
        sites.sort(key=lambda site: site[1])
    return _sites_files(tmp_path, "stacks1" if by_column else "stacks1_loci", sites, ["0/1", "0/0", "1/1", "0/1"])


def test_a_de_novo_stacks1_vcf_is_read_by_its_ids_and_refused_by_position(tmp_path):
    entry = _stacks1_denovo_files(tmp_path)
    read = dict(samples=SAMPLES, seed=1, phased=False, locus_length=300)
    for loci in ("contigs", "windows", "clusters"):
        with pytest.raises(DataError, match=r"contig 'un' holds SNPs of 3 Stacks loci .*'12_4'.*loci: ids \(--loci ids\)"):
            read_observed(dict(entry, loci=loci), **read)
    as_read = read_vcf(entry["vcf"], popmap=read_popmap(entry["popmap"]), samples=SAMPLES, seed=1, phased=False)
    data = read_observed(dict(entry, loci="ids"), **read)
    # Loci in the order of their first SNP, each one's SNPs by column, named locus:first-last.
    assert data.loci == ["12:5-62", "305:5-78", "7:11-31"]
    assert np.bincount(data.locus).tolist() == [3, 2, 2]
    assert data.ids == ["12_4", "12_30", "12_61", "305_4", "305_77", "7_10", "7_30"]
    assert data.counts["id_loci"] == 3 and data.counts["contigs"] == 1
    # The genotype rows move with their SNPs; distances within a locus are the columns' distances, centred.
    rows = {x: k for k, x in enumerate(as_read.ids)}
    assert np.array_equal(data.genotypes, as_read.genotypes[[rows[x] for x in data.ids]])
    assert data.positions[:3].tolist() == [121.5, 147.5, 178.5]
    assert data.positions.min() > 0 and data.positions.max() < 300
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", entry["vcf"], "--popmap",
                     entry["popmap"])
    assert proc.returncode != 0 and "read the loci from the ID column: loci: ids (--loci ids)" in proc.stderr, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "error" in line] == [proc.stderr.splitlines()[-1]], proc.stderr
    out = tmp_path / "suggested.yaml"
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", entry["vcf"], "--popmap",
                     entry["popmap"], "--loci", "ids", "--suggest-config", out)
    assert "stacks1: 3 loci (ids) with a SNP, against genome.loci 1" in proc.stdout, proc.stdout + proc.stderr
    # No contig lengths in the header: the furthest column an ID names (77, + 1) bounds the locus length.
    text = out.read_text()
    assert yaml.safe_load(text)["genome"] == {"loci": 3, "length": 78} and "the furthest column within a locus" in text
    assert yaml.safe_load(text)["predict"]["data"][0]["loci"] == "ids"
    # Written locus after locus, the positions go back: read by position that is the same one line.
    by_locus = _stacks1_denovo_files(tmp_path, by_column=False)
    with pytest.raises(DataError, match=r"un:11 \(ID 7_10\) comes after un:62: a de novo Stacks 1 .*loci: ids"):
        read_observed(by_locus, **read)
    again = read_observed(dict(by_locus, loci="ids"), **read)
    assert again.loci == ["12:5-62", "7:11-31", "305:5-78"] and again.positions[:3].tolist() == [121.5, 147.5, 178.5]


def test_ids_group_reference_aligned_stacks2_tags_and_need_an_id_on_every_snp(tmp_path):
    # Stacks 2 on a reference: LOCUS:COLUMN:STRAND; tags 8 and 9 overlap (the same position twice).
    sites = [("scaf1", 1000, "8:10:+"), ("scaf1", 1040, "8:50:+"), ("scaf1", 1040, "9:95:-"),
             ("scaf1", 1100, "9:35:-"), ("scaf2", 500, "20:3:+")]
    entry = _sites_files(tmp_path, "stacks2", sites, ["0/1", "0/0", "1/1", "0/1"])
    read = dict(samples=SAMPLES, seed=1, phased=False, locus_length=300)
    data = read_observed(dict(entry, loci="ids"), **read)
    assert data.loci == ["8:1000-1040", "9:1040-1100", "20:500-500"]
    assert read_observed(entry, **read).loci == ["scaf1", "scaf2"]  # no contig 'un': contigs read as before
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", entry["vcf"], "--popmap",
                     entry["popmap"])
    assert "stacks2: the ID column names 3 Stacks loci, read as 2 loci (contigs): --loci ids" in proc.stdout, \
        proc.stdout + proc.stderr
    # Read by contig, the overlapping tags' two records at scaf1:1040 are one site called twice.
    assert "stacks2: WARNING, 1 position(s) hold 2 SNP records (40.00% of the SNPs; the first in scaf1): multi-allelic" \
        in proc.stdout
    # Stacks writes a minus-strand tag at its start, its last base: its SNPs come before the tag it overlaps.
    # Read sorted, as bcftools sort would; the suggestion's genome.length is the furthest column the IDs name + 1.
    in_stacks_order = _sites_files(tmp_path, "stacks2_order", [sites[2], sites[3], sites[0], sites[1], sites[4]],
                                   ["0/1", "0/0", "1/1", "0/1"])
    by_contig = read_observed(in_stacks_order, **read)
    assert by_contig.positions.tolist() == [1000, 1040, 1040, 1100, 500] and by_contig.counts["out_of_order"] == 1
    assert by_contig.ids == ["8:10:+", "9:95:-", "8:50:+", "9:35:-", "20:3:+"]
    from popdl.observed import layout_notes

    assert layout_notes(by_contig, {"loci": 2, "length": 300}, None) == [
        "1 position(s) hold 2 SNP records (the first in scaf1): multi-allelic sites split into biallelic records (bcftools "
        "norm -m-), or a site called twice; each counts as a SNP, where the simulations place one mutation per site"]
    assert layout_notes(read_observed(dict(in_stacks_order, loci="ids"), **read), {"loci": 3, "length": 300}, "ids") == []
    # Two records at one position among 405 SNPs (below SHARED_POSITIONS_NOTE, as two mutations a bp apart written
    # to one integer position): no note, and check-data says it without a WARNING.
    many = _sites_files(tmp_path, "many", sorted(sites[:4] + [("scaf3", 1000 + 10 * i, f"{30 + i}:5:+") for i in range(401)]),
                        ["0/1", "0/0", "1/1", "0/1"])
    assert layout_notes(read_observed(many, **read), {"loci": 2, "length": 300}, None) == []
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", many["vcf"], "--popmap", many["popmap"])
    assert "many: 1 position(s) hold 2 SNP records (0.49% of the SNPs; the first in scaf1)" in proc.stdout, proc.stdout
    assert "(below 0.5%: too few to matter)" in proc.stdout
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", in_stacks_order["vcf"], "--popmap",
                     in_stacks_order["popmap"], "--loci", "ids", "--suggest-config", "-")
    assert proc.returncode == 0 and "position(s) hold" not in proc.stderr, proc.stderr  # read by ID: two tags, two sites
    assert yaml.safe_load(proc.stdout)["genome"] == {"loci": 3, "length": 96}, proc.stdout
    assert "the furthest column within a locus that the Stacks IDs (LOCUS:COLUMN:STRAND) name" in proc.stdout
    # Without --loci, the suggestion reads the Stacks IDs all the same (as it reads clustered SNPs as clusters).
    auto = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", in_stacks_order["vcf"], "--popmap",
                     in_stacks_order["popmap"], "--suggest-config", "-")
    assert "the ID column names 3 Stacks loci on 2 contigs: the report below and the suggestion read each" in auto.stderr
    assert yaml.safe_load(auto.stdout) == yaml.safe_load(proc.stdout), auto.stdout + auto.stderr
    # Read twice (by contig, then by ID): the notes both readings log are logged once.
    notes = [line.split(" ", 2)[2] for line in auto.stderr.splitlines() if " popdl." in line]  # without the time
    assert len(notes) == len(set(notes)) and sum("out of position order" in n for n in notes) == 1, auto.stderr
    sites[2] = ("scaf1", 1040, ".")
    entry = _sites_files(tmp_path, "noid", sites, ["0/1", "0/0", "1/1", "0/1"])
    with pytest.raises(DataError, match=r"1 of 5 SNPs have no ID \(the first on scaf1 at 1040\); loci: ids"):
        read_observed(dict(entry, loci="ids"), **read)


def test_loci_read_from_the_ids_count_those_monomorphic_among_the_individuals_kept(tmp_path):
    """A Stacks locus whose SNP varies only in a sample the popmap leaves out (an outgroup) is a locus of the
    catalogue all the same: genome.loci counts the loci the IDs of every SNP record name."""
    from popdl.observed import catalogue_loci

    names = ["a1", "a2", "b1", "b2", "out1"]
    calls = {"1:5:+": ["0/1", "0/0", "1/1", "0/0", "0/0"], "2:40:-": ["0/0", "0/0", "0/0", "0/0", "1/1"],
             "3:12:+": ["0/0", "0/1", "0/0", "0/1", "0/0"], "4:7:+": ["0/0", "0/0", "0/0", "0/0", "0/1"]}
    lines = [HEADER.replace("##contig=<ID=chr1,length=1000>\n", "") + "".join(f"\t{n}" for n in names)]
    lines += ["\t".join(["scaf1", str(1000 * (k + 1)), i, "A", "G", ".", "PASS", ".", "GT", *g])
              for k, (i, g) in enumerate(calls.items())]
    (tmp_path / "out.vcf").write_text("\n".join(lines) + "\n")
    (tmp_path / "popmap.tsv").write_text(POPMAP + "out1\toutgroup\n")
    entry = {"name": "out", "vcf": str(tmp_path / "out.vcf"), "popmap": str(tmp_path / "popmap.tsv"), "loci": "ids"}
    data = read_observed(entry, samples=SAMPLES, seed=1, phased=False, locus_length=300)
    assert len(data.loci) == 2 and data.counts["file_id_loci"] == 4
    catalogue = catalogue_loci(data, "ids")
    assert catalogue.loci == 4 and "populations.log" in catalogue.reason and not catalogue.whole
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", entry["vcf"], "--popmap",
                     entry["popmap"], "--loci", "ids", "--suggest-config", "-")
    assert yaml.safe_load(proc.stdout)["genome"] == {"loci": 4, "length": 41}, proc.stdout + proc.stderr
    assert "2 loci (ids) with a SNP (the catalogue: 4 loci, from loci the IDs of the SNP records name" in proc.stderr
    # An all-sites VCF (Stacks populations --vcf-all): the invariant sites' IDs name the loci without a SNP too.
    lines.append("\t".join(["scaf1", "9000", "5:120:+", "A", ".", ".", "PASS", ".", "GT", *["0/0"] * 5]))
    (tmp_path / "out.vcf").write_text("\n".join(lines) + "\n")
    data = read_observed(entry, samples=SAMPLES, seed=1, phased=False, locus_length=300)
    assert data.counts["file_id_loci"] == 5 and data.counts["id_tag_length"] == 121
    assert catalogue_loci(data, "ids").source.startswith("loci the IDs of the SNP or invariant-site records name")
    # A prediction notes a genome.loci below the catalogue the IDs name.
    from popdl.observed import layout_notes

    notes = layout_notes(data, {"loci": 2, "length": 300}, "ids")
    assert len(notes) == 1 and "genome.loci is 2, the data's catalogue 5 loci" in notes[0] and "or more" in notes[0]


def test_every_way_of_cutting_loci_is_offered_by_the_cli_and_the_config_schema(tmp_path):
    """The ways ``read_observed`` cuts a VCF into loci (``LOCI``), the choices of ``--loci`` and the
    config schema's enums list the same ones, and a config using the newest validates."""
    import argparse

    from popdl.cli import build_parser
    from popdl.config import load_config
    from popdl.observed import LOCI

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("check-data", "predict"):
        loci = next(a for a in sub.choices[command]._actions if a.dest == "loci")
        assert tuple(loci.choices) == LOCI, command
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    predict = schema["properties"]["predict"]["properties"]
    assert tuple(predict["data"]["items"]["properties"]["loci"]["enum"]) == LOCI
    assert tuple(predict["defaults"]["properties"]["loci"]["enum"]) == (*LOCI, None)
    entry = dict(_stacks1_denovo_files(tmp_path), loci="ids")
    path = config_file(tmp_path, data=[entry], defaults={"loci": "ids"})
    config = load_config(path)
    assert config["predict"]["data"][0]["loci"] == config["predict"]["defaults"]["loci"] == "ids"


# ------------------------------------------------------------------------------------ guards on every prediction
def test_reliability_names_each_input_outside_the_simulations():
    from popdl.predict import reliability

    images = np.ones((2, 8, 10), np.int8)
    images[:, :, :2] = 0  # 20 % of the genotypes in the filled columns missing
    obs = {"images": images, "distances": np.full((2, 10), 0.1, np.float32), "n_snps": np.array([10, 10]),
           "stats": np.zeros(3)}
    ranges = {"distance_max": 1.0, "n_snps_min": 12, "n_snps_max": 10, "missing_max": 0.05}
    check = reliability(obs, ranges, misspecification={"flagged": True, "summary": "pi_pop1 outside"},
                        calibration={"at_bound": True, "fitted": 20.0})
    assert not check["reliable"] and len(check["reasons"]) == 3
    assert "10 SNPs fill the image where every simulation had at least 12" in check["reasons"][0]
    assert "20.0% of the image's genotypes are missing where the simulations had at most 5.0%" in check["reasons"][1]
    assert "statistics lie outside the simulations (pi_pop1 outside)" in check["reasons"][2]
    assert "temperature (20.0) was fitted at its bound" in check["warnings"][0]
    obs["distances"][0, 3] = 4.0
    far = reliability(obs, dict(ranges, n_snps_min=10, missing_max=0.3))
    assert far["reasons"] == [far["reasons"][0]] and "inter-SNP distances up to 4" in far["reasons"][0]
    assert reliability(obs, dict(ranges, n_snps_min=10, missing_max=0.3), inputs=("stats",))["reliable"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A dataset of the default scenarios (4 + 4 diploids, 20 kb, 30 draws each) and a cnn2d_stats
    network trained on it for one epoch, laid out as a run's results folder."""
    from popdl.config import prepare
    from popdl.dataset import build_dataset
    from popdl.features import features_chunk
    from popdl.plan import plan_draws
    from popdl.scenarios import Scenario
    from popdl.simulate import simulate_chunk
    from popdl.stages import prior_summary, stage_config
    from popdl.training import train_final

    results = tmp_path_factory.mktemp("run") / "results"
    config = prepare(tiny_config(samples=SAMPLES, features={"snps": 16}, train={"epochs": 1, "ensemble": 1}), base_dirs=(REPO,))
    files = []
    for name in config["scenarios"]:
        scenario = Scenario.from_config(name, config)
        simulate_chunk(config, scenario, plan_draws(scenario, root_seed=7, start=0, stop=30), results / f"{name}.npz")
        features_chunk(config, results / f"{name}.npz", results / f"{name}.f.npz")
        files.append(results / f"{name}.f.npz")
    build_dataset(files, results / "dataset", scenarios=list(config["scenarios"]),
                  fractions={"train": 0.6, "validation": 0.2, "test": 0.2}, shard_size=100, root_seed=7,
                  priors=prior_summary(config))
    hyper = {"network": "cnn2d_stats", "learning_rate": 1e-3, "lr_decay": "none", "lr_decay_rate": 0.5,
             "batch_size": 16, "optimizer": "adam", "momentum": 0.9, "dropout": 0.1, "batch_norm": False, "l1": 0.0,
             "l2": 0.0, "activation": "relu", "conv_layers": 1, "filters": 4, "kernel_size": 3, "pooling": "max",
             "dense_layers": 1, "dense_units": 8, "towers": "shared"}
    train_final(stage_config(config, "train"), results / "dataset", best={"hyper_parameters": hyper, "best_epoch": 1},
                out=results / "model")
    return config, results


def _observed_vcf(folder, sims_path, *, spread: float = 1.0, missing: float = 0.0):
    """Draw 0 of a simulation chunk as a phased VCF of one contig, positions × ``spread``,
    a share ``missing`` of the calls made ./."""
    from popdl.simulate import draw_genotypes, load_sims

    sims = load_sims(sims_path)
    off = sims["site_offsets"]
    g, pos = draw_genotypes(sims, 0), sims["positions"][off[0]:off[1]]
    rng = np.random.default_rng(5)
    names = [f"i{k}" for k in range(g.shape[1] // 2)]
    lines = [HEADER.replace("length=1000", "length=100000000") + "".join(f"\t{n}" for n in names)]
    last = 0
    for row, p in zip(g, pos):
        at = max(last + 1, int(p * spread) + 1)
        last = at
        calls = [f"{row[2 * k]}|{row[2 * k + 1]}" if rng.random() >= missing else ".|." for k in range(len(names))]
        lines.append("\t".join(["chr1", str(at), ".", "A", "G", ".", "PASS", ".", "GT", *calls]))
    (folder / "obs.vcf").write_text("\n".join(lines) + "\n")
    (folder / "popmap.tsv").write_text("".join(f"{n}\t{'pop1' if k < len(names) // 2 else 'pop2'}\n" for k, n in enumerate(names)))
    return {"name": "obs", "vcf": str(folder / "obs.vcf"), "popmap": str(folder / "popmap.tsv")}


@pytest.mark.parametrize("case", ["within", "distances", "missingness"])
def test_out_of_range_inputs_mark_the_prediction_unreliable_everywhere(tmp_path, tiny_run, case):
    import pandas as pd

    from popdl.predict import observed_inputs, predict_arrays, write_predictions
    from popdl.report import write_report
    from popdl.stages import stage_config

    config, results = tiny_run
    kwargs = {"within": {}, "distances": {"spread": 50.0}, "missingness": {"missing": 0.45}}[case]
    entry = _observed_vcf(tmp_path, results / "isolation.npz", **kwargs)
    settings = stage_config(dict(config, predict=dict(config["predict"], data=[entry])), "predict", "obs")
    feats, summary = observed_inputs(entry, settings)
    result = predict_arrays(feats, summary, name="obs", model_dir=results / "model", dataset_dir=results / "dataset",
                            config_hash="test")
    out = results / "predict" / "obs"
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out, result)
    rel = json.loads((out / "predictions.json").read_text())["reliability"]
    csv = pd.read_csv(out / "predictions.csv")
    write_report(dict(config, predict={"data": [entry]}), results, tmp_path / "report.html", config_hash="test")
    html = __import__("html").unescape((tmp_path / "report.html").read_text())
    assert html.index('<section id="answer">') < html.index('<section id="config">')  # the answer comes first
    assert set(csv["scenarios"].dropna()) and (csv.loc[csv["kind"] == "parameter", "scenarios"].str.len() > 0).all()
    expected = {"within": None, "distances": "inter-SNP distances up to", "missingness": "of the image's genotypes are missing"}
    if expected[case] is None:
        assert rel["reasons"] == [] or all("statistics" in r for r in rel["reasons"]), rel
        return
    assert not rel["reliable"] and any(expected[case] in r for r in rel["reasons"]), rel
    assert (csv["reliable"].astype(str).str.lower() == "false").all()
    assert csv["note"].str.contains("UNRELIABLE: ").all() and csv["note"].str.contains(expected[case], regex=False).all()
    assert "UNRELIABLE" in html and expected[case] in html


def test_an_estimate_at_a_bound_of_its_prior_is_named_in_the_csv_the_console_and_the_report(tmp_path, tiny_run):
    """An estimate within PRIOR_EDGE of its prior's range from a bound (on the prior's own scale: log10 for a
    log-uniform prior) says "at least" rather than "about": it is named wherever the answer is shown."""
    import pandas as pd

    from popdl.cli_predict import _estimates_line
    from popdl.predict import PRIOR_EDGE, observed_inputs, predict_arrays, prior_edges, write_predictions
    from popdl.report import write_report
    from popdl.stages import stage_config

    answer = {"scenario": "a", "scenario_params": {"a": ["N", "f", "T", "x"], "b": ["N", "m"]},
              "params": {"N": {"estimate": 29_900.0}, "f": {"estimate": 0.0502}, "T": {"estimate": 5_000.0},
                         "x": {"estimate": 2.0}, "m": {"estimate": 1e-3}}}
    scenarios = {"a": {"priors": {"N": {"loguniform": [1000, 30000]}, "f": {"uniform": [0.05, 0.3]},
                                  "T": {"loguniform": [1000, 30000]}, "x": {"expr": "f * 40"}}},
                 "b": {"priors": {"N": {"loguniform": [1000, 20000]}, "m": {"loguniform": [1e-4, 1e-3]}}}}
    edges = {e["parameter"]: e for e in prior_edges(answer, scenarios)}
    # N at the top of the union of its priors (log scale); f at the bottom of its uniform prior; T in the middle
    # (on the log scale; 5,000 is 14 % of the natural range); x derived; m not a parameter of the answer's scenario.
    assert set(edges) == {"N", "f"} and edges["N"]["side"] == "upper" and edges["f"]["side"] == "lower"
    assert edges["N"]["bound"] == 30000 and edges["N"]["position"] > 1 - PRIOR_EDGE
    assert prior_edges(dict(answer, params={"N": {"estimate": 20_000.0}}), scenarios) == []

    config, results = tiny_run
    entry = _observed_vcf(tmp_path, results / "isolation.npz")
    settings = stage_config(dict(config, predict=dict(config["predict"], data=[entry])), "predict", "obs")
    feats, summary = observed_inputs(entry, settings)
    result = predict_arrays(feats, summary, name="obs", model_dir=results / "model", dataset_dir=results / "dataset",
                            config_hash="test")
    # The same model read against a prior that ends just above its estimate: its bundle's config narrowed.
    model = tmp_path / "model"
    shutil.copytree(results / "model", model)
    bundle = json.loads((model / "bundle.json").read_text())
    top = result["network"]["params"]["N1"]["estimate"] * 1.0001
    for cfg in bundle["config"]["scenarios"].values():
        cfg["priors"]["N1"] = {"loguniform": [100, top]}
    (model / "bundle.json").write_text(json.dumps(bundle))
    result = predict_arrays(feats, summary, name="obs", model_dir=model, dataset_dir=results / "dataset", config_hash="test")
    net = result["network"]
    assert [e["parameter"] for e in net["prior_edges"]] == ["N1"] and net["prior_edges"][0]["side"] == "upper"
    assert any("N1's estimate" in w and "upper bound of its prior" in w for w in result["reliability"]["warnings"])
    out = results / "predict" / "obs"
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out, result)
    csv = pd.read_csv(out / "predictions.csv")
    assert csv["note"].str.contains("N1's estimate .* lies at the upper bound of its prior").all()
    assert re.search(r"N1 [\d,.e+-]+ \([^)]*\) AT ITS PRIOR'S UPPER BOUND", _estimates_line(net)), _estimates_line(net)
    write_report(dict(config, predict={"data": [entry]}), results, tmp_path / "report.html", config_hash="test")
    html = __import__("html").unescape((tmp_path / "report.html").read_text())
    answer_part = html[html.index('<section id="answer">'):html.index('<section id="config">')]
    assert "at its prior's upper bound" in answer_part and "widen the prior of N1 and rerun" in answer_part
    # The observed-data table marks every method's estimates against the config's priors: an ABC estimate whose
    # local-linear adjustment ran past the prior ends on its bound, interval and all.
    n_anc = config["scenarios"]["isolation"]["priors"]["N_anc"]["uniform"]
    (results / "abc").mkdir(exist_ok=True)
    (results / "abc" / "empirical.json").write_text(json.dumps({"data": {"obs": {"rejection": {
        "probabilities": {s: 1 / 3 for s in config["scenarios"]},
        "params": {"N_anc": {"estimate": n_anc[0], "lower": n_anc[0], "upper": n_anc[0]}}}}}}))
    try:
        write_report(dict(config, predict={"data": [entry]}), results, tmp_path / "report.html", config_hash="test")
    finally:  # the run's folder is shared by the module's tests
        (results / "abc" / "empirical.json").unlink()
    html = __import__("html").unescape((tmp_path / "report.html").read_text())
    observed_part = html[html.index('<section id="observed">'):]
    assert f"{n_anc[0]:.0f} ({n_anc[0]:.0f} – {n_anc[0]:.0f}) at its prior's lower bound" in observed_part
    assert 'means "at least" (or "at most"), not "about"' in observed_part


# ------------------------------------------------------------------------------------ missingness and the suggested config
def test_simulated_missingness_follows_the_observed_individuals_and_sites():
    from popdl.features import add_missing_like

    g = np.zeros((20000, 8), np.int8)
    pops = np.repeat(["pop1", "pop2"], 4)
    like = {"pop1": [0.0, 0.4], "pop2": [0.1]}
    a = add_missing_like(g, populations=pops, individuals=like, sites=[0.05, 0.15], rng=np.random.default_rng(1))
    b = add_missing_like(g, populations=pops, individuals=like, sites=[0.05, 0.15], rng=np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert np.array_equal(a[:, 0::2] == -1, a[:, 1::2] == -1)  # both haplotypes of an individual together
    rates = (a[:, 0::2] == -1).mean(axis=0)
    for rate in rates[:2]:  # pop1 individuals: 0 or 40 %
        assert min(abs(rate - 0.0), abs(rate - 0.4)) < 0.02
    assert np.allclose(rates[2:], 0.1, atol=0.02)
    per_site = (a[:, 4:][:, 0::2] == -1).mean(axis=1)  # pop2 (rate 0.1): sites at 0.5x or 1.5x that
    assert 0.04 < per_site.mean() < 0.16


def test_missing_calls_by_locus_drop_an_individuals_whole_loci_and_check_data_tells_which():
    from popdl.features import add_missing, add_missing_like
    from popdl.observed import Observed, missingness_profile

    g = np.zeros((6000, 8), np.int8)
    locus = np.repeat(np.arange(1000), 6)  # 1000 loci of 6 sites
    pops = np.repeat(["pop1", "pop2"], 4)
    like = {"pop1": [0.0, 0.4], "pop2": [0.1]}
    a = add_missing_like(g, populations=pops, individuals=like, sites=[0.05, 0.15], rng=np.random.default_rng(1),
                         locus=locus)
    assert np.array_equal(a, add_missing_like(g, populations=pops, individuals=like, sites=[0.05, 0.15],
                                              rng=np.random.default_rng(1), locus=locus))
    blocks = (a[:, 0::2] == -1).reshape(1000, 6, 4)  # (locus, site, individual)
    assert (blocks.all(axis=1) == blocks.any(axis=1)).all()  # each individual's locus all missing or all called
    rates = blocks[:, 0, :].mean(axis=0)
    assert all(min(abs(r - 0.0), abs(r - 0.4)) < 0.05 for r in rates[:2]) and np.allclose(rates[2:], 0.1, atol=0.04)
    b = add_missing(g, rate=0.2, rng=np.random.default_rng(2), locus=locus)
    blocks = (b[:, 0::2] == -1).reshape(1000, 6, 4)
    assert (blocks.all(axis=1) == blocks.any(axis=1)).all() and abs(blocks.mean() - 0.2) < 0.02

    def profile(genotypes):
        data = Observed(name="x", genotypes=genotypes, positions=np.tile(np.arange(6.0), 1000), locus=locus,
                        populations=pops, individuals=[f"i{k}" for k in range(4)], loci=[str(k) for k in range(1000)],
                        length=6000.0)
        return missingness_profile(data)

    dropout, by_site = profile(a), profile(add_missing(g, rate=0.2, rng=np.random.default_rng(3)))
    assert dropout["whole_loci"] == 1.0 and dropout["unit"] == "locus"
    assert by_site["whole_loci"] < 0.01 and by_site["unit"] == "site"  # 0.2 ** 5 of them by chance
    assert profile(g)["whole_loci"] is None and profile(g)["unit"] == "site"


def test_a_prediction_notes_data_sampled_otherwise_than_the_simulations():
    from popdl.features import add_missing
    from popdl.observed import Observed, sampling_notes

    rng = np.random.default_rng(0)
    g = (rng.random((600, 8)) < 0.3).astype(np.int8)
    locus = np.repeat(np.arange(100), 6)

    def data(genotypes, loc):
        return Observed(name="x", genotypes=genotypes, positions=np.arange(loc.size, dtype=float), locus=loc,
                        populations=np.repeat(["pop1", "pop2"], 4), individuals=["a", "b", "c", "d"],
                        loci=[str(k) for k in range(int(loc.max()) + 1)], length=6000.0)

    dropout = data(add_missing(g, rate=0.2, rng=np.random.default_rng(1), locus=locus), locus)
    [note] = sampling_notes(dropout, {"missing_rate": 0.2})
    assert "100% of the missing calls lie in loci an individual misses whole, but the simulations place them by " \
           "site: set features.missing_unit: locus" in note
    assert sampling_notes(dropout, {"missing_rate": 0.2, "missing_unit": "locus"}) == []
    assert sampling_notes(dropout, {}) == []  # no simulated missingness: the missing-rate note says so
    one = data(g[::6], np.arange(100))
    [note] = sampling_notes(one, {})
    assert "every locus holds one SNP" in note and "features.one_snp_per_locus: random" in note
    assert sampling_notes(one, {"one_snp_per_locus": "first"}) == []


def test_one_snp_per_locus_keeps_a_polymorphic_site_of_each_locus_and_check_data_spots_thinned_data(tmp_path):
    from popdl.features import one_snp_per_locus

    g = np.array([[0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0], [1, -1, 0, 0], [1, 1, -1, -1]], np.int8)
    pos = np.array([5.0, 9.0, 2.0, 1.0, 7.0, 3.0])
    locus = np.array([0, 0, 0, 1, 1, 2])  # locus 2: one allele among the called haplotypes
    assert one_snp_per_locus(g, pos, locus, how="first").tolist() == [2, 4]  # locus 0: site 2 at 2 bp
    draws = {tuple(one_snp_per_locus(g, pos, locus, how="random", rng=np.random.default_rng(k))) for k in range(40)}
    assert draws == {(1, 4), (2, 4)}
    assert np.array_equal(one_snp_per_locus(g, pos, locus, how="random", rng=np.random.default_rng(3)),
                          one_snp_per_locus(g, pos, locus, how="random", rng=np.random.default_rng(3)))
    # A RAD VCF thinned to its first SNP per locus: check-data names it, --suggest-config thins the simulations.
    meta, header, records = _vcf_lines(RAD["vcf"])
    first = [r for i, r in enumerate(records) if i == 0 or r[0] != records[i - 1][0]]
    vcf = _write_vcf(tmp_path / "single.vcf", meta, header, first)
    out = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", vcf, "--popmap", RAD["popmap"],
                    "--populations", "nuttalli=pop1", "pugetensis=pop2", "--suggest-config", "-")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loci holds one SNP: a VCF thinned to one SNP per locus" in out.stderr and \
        "WARNING, the config keeps every simulated SNP: set features.one_snp_per_locus" in out.stderr, out.stderr
    fragment = yaml.safe_load(out.stdout)
    assert fragment["features"]["one_snp_per_locus"] == "random"
    full = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", RAD["vcf"], "--popmap",
                     RAD["popmap"], "--populations", "nuttalli=pop1", "pugetensis=pop2", "--suggest-config", "-")
    assert "one_snp_per_locus" not in full.stdout and "thinned" not in full.stdout + full.stderr


RAD = {"vcf": str(REPO / "config" / "data" / "rad.vcf.gz"), "popmap": str(REPO / "config" / "data" / "rad_popmap.tsv")}


def _neutral_sample(seed: int = 3) -> np.ndarray:
    """The biallelic SNPs (sites, 40 haplotypes) of 20 diploids of one population, by msprime."""
    import msprime

    ts = msprime.sim_mutations(msprime.sim_ancestry(samples=20, population_size=10_000, sequence_length=2e5,
                                                    recombination_rate=1e-8, random_seed=seed), rate=1e-8,
                               random_seed=seed + 1)
    g = ts.genotype_matrix().astype(np.int8)
    return g[g.max(axis=1) <= 1]


def test_a_minor_allele_filter_is_read_off_the_data_and_applied_alike():
    from popdl.features import add_missing, minor_allele_filter, sites_kept
    from popdl.observed import Observed, allele_filter, sampling_notes

    # Counts among the called alleles of all haplotypes; a frequency equal to the threshold passes.
    g = np.array([[0, 0, 0, 1, 1, -1], [0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]], np.int8)
    assert minor_allele_filter(g).tolist() == [0, 1, 3]
    assert minor_allele_filter(g, min_mac=2).tolist() == [0] == minor_allele_filter(g, min_maf=0.4).tolist()
    assert minor_allele_filter(g, min_maf=0.41).size == 0

    def data(genotypes):
        n = genotypes.shape[0]
        return Observed(name="x", genotypes=genotypes, positions=np.arange(n, dtype=float),
                        locus=np.arange(n) // 10, populations=np.repeat(["pop1", "pop2"], 20),
                        individuals=[f"i{k}" for k in range(20)], loci=[str(k) for k in range(n // 10 + 1)],
                        length=2e5)

    raw = _neutral_sample()
    assert allele_filter(data(raw))["filter"] == {} and allele_filter(data(raw))["singletons"] > 0.1
    mac2 = raw[minor_allele_filter(raw, min_mac=2)]
    assert allele_filter(data(mac2))["filter"] == {"min_mac": 2}
    # With missing calls a frequency filter lets singletons through where few alleles are called: read as
    # a frequency filter, without a count filter that it implies where the data are called.
    patchy = add_missing(raw, rate=0.25, rng=np.random.default_rng(1))
    assert allele_filter(data(patchy))["filter"] == {}
    for maf in (0.05, 0.1):
        assert allele_filter(data(patchy[minor_allele_filter(patchy, min_maf=maf)]))["filter"] == {"min_maf": maf}
    filtered = data(patchy[minor_allele_filter(patchy, min_maf=0.1)])
    [note] = sampling_notes(filtered, {})
    assert "filtered by minor allele (frequency at least 0.1), but the config keeps the simulations' rarer " \
        "variants: set features.min_maf: 0.1 " in note, note
    assert sampling_notes(filtered, {"min_maf": 0.1}) == []
    # The filter comes before the thinning: the SNP a locus keeps passes it.
    locus = np.arange(raw.shape[0]) // 10
    keep = sites_kept(patchy, np.arange(locus.size), locus, {"min_mac": 3, "one_snp_per_locus": "first"},
                      thinning_rng=lambda: None)
    passing = minor_allele_filter(patchy, min_mac=3)
    assert set(keep) <= set(passing) and np.unique(locus[keep]).size == keep.size == np.unique(locus[passing]).size
    assert sites_kept(patchy, np.arange(locus.size), locus, {"min_maf": 0.0, "min_mac": 1}, thinning_rng=None) is None


def test_check_data_reads_a_minor_allele_filter_and_suggests_it(tmp_path):
    from popdl.config import load_config

    meta, header, records = _vcf_lines(RAD["vcf"])

    def minor(record):  # the minor allele's count among all the file's samples, as vcftools --mac counts it
        alleles = [a for call in record[9:] for a in call.split(":")[0].replace("|", "/").split("/")]
        return min(alleles.count("0"), alleles.count("1"))

    vcf = _write_vcf(tmp_path / "mac2.vcf", meta, header, [r for r in records if minor(r) >= 2])
    cfg = config_file(tmp_path)
    out = tmp_path / "suggested.yaml"
    proc = run_popdl("check-data", "--configfile", cfg, "--vcf", vcf, "--popmap", RAD["popmap"], "--populations",
                     "nuttalli=pop1", "pugetensis=pop2", "--suggest-config", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Read among the VCF's 20 samples, which the filter saw: the popmap leaves one out, and the singletons
    # that the others alone would show.
    assert "minor alleles: among the 20 samples, smallest minor-allele count 2" in proc.stdout and \
        "filtered by minor allele (count at least 2); the config keeps every SNP (features.min_maf, min_mac); " \
        "WARNING, the config keeps the simulations' rarer variants: set features.min_mac: 2" in proc.stdout, proc.stdout
    fragment = yaml.safe_load(out.read_text())
    assert fragment["features"]["min_mac"] == 2 and "min_maf" not in fragment["features"]
    config = yaml.safe_load(open(cfg))
    config["features"] = {**config.get("features", {}), "min_mac": 2}
    (tmp_path / "filtered.yaml").write_text(yaml.safe_dump(config))
    assert load_config(tmp_path / "filtered.yaml")["features"]["min_mac"] == 2
    proc = run_popdl("check-data", "--configfile", tmp_path / "filtered.yaml", "--vcf", vcf, "--popmap", RAD["popmap"],
                     "--populations", "nuttalli=pop1", "pugetensis=pop2", "--suggest-config", "-")
    assert "WARNING, the config keeps the simulations' rarer" not in proc.stderr and \
        "the config filters simulations and data alike (features.min_maf 0, min_mac 2), which keeps" in proc.stderr
    # Counted among the individuals kept (the filter's own counts run over the VCF's samples).
    kept = re.search(r"which keeps (\d+) of the (\d+) SNPs of the individuals kept", proc.stderr)
    read = re.search(r"(\d+) biallelic SNPs on", proc.stderr)
    assert kept and read and int(kept.group(2)) == int(read.group(1)) >= int(kept.group(1)), proc.stderr
    # The unfiltered example has its singletons: no filter read off it.
    proc = run_popdl("check-data", "--configfile", cfg, "--vcf", RAD["vcf"], "--popmap", RAD["popmap"], "--populations",
                     "nuttalli=pop1", "pugetensis=pop2", "--suggest-config", "-")
    assert "filtered by minor allele" not in proc.stderr and "min_mac" not in proc.stdout


def test_check_data_suggests_the_config_of_the_rad_example(tmp_path):
    from popdl.config import load_config

    cfg = config_file(tmp_path)
    out = tmp_path / "suggested.yaml"
    proc = run_popdl("check-data", "--configfile", cfg, "--vcf", RAD["vcf"], "--popmap", RAD["popmap"], "--name", "rad",
                     "--populations", "nuttalli=pop1", "pugetensis=pop2", "--suggest-config", out)
    assert proc.returncode == 0, proc.stderr
    fragment = yaml.safe_load(out.read_text())
    truth = json.loads((REPO / "config" / "data" / "rad_truth.json").read_text())
    assert fragment["samples"] == {"pop1": 12, "pop2": 7}  # every individual: one VCF sample is not in the popmap
    assert fragment["genome"]["length"] == truth["length"] and fragment["features"]["phased"] is False
    assert fragment["genome"]["loci"] == truth["loci"]  # the header's 400 tags, 360 of them with a SNP here
    assert max(fragment["features"]["missing_individuals"]["pop2"]) > 0.4
    assert fragment["features"]["missing_unit"] == "locus"  # the example's loci drop out whole per individual
    assert "rad: 100% of the missing calls (loci of 2 SNPs or more) lie in loci an individual misses whole" in proc.stdout
    assert fragment["predict"]["data"][0]["populations"] == {"nuttalli": "pop1", "pugetensis": "pop2"}
    # The SFS projection that keeps the most segregating sites: below the samples, with this missingness.
    assert 2 <= fragment["features"]["sfs_projection"]["pop1"] < 24 and 2 <= fragment["features"]["sfs_projection"]["pop2"] < 14
    assert "rad: SFS: pop1 " in proc.stdout and "the config projects onto each population's sample" in proc.stdout
    merged = yaml.safe_load(open(cfg))
    for key, value in fragment.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    (tmp_path / "merged.yaml").write_text(yaml.safe_dump(merged))
    assert load_config(tmp_path / "merged.yaml")["features"]["phased"] is False  # a valid config
    # Given after the config, Snakemake merges it the same way: the workflow plans the data set's prediction.
    from conftest import snakemake

    proc = snakemake(tmp_path, "-n", "-p", "results/tiny/predict/rad/predictions.json", "--configfile", cfg, str(out))
    assert "popdl observe" in proc.stdout and "rad.vcf.gz" in proc.stdout, proc.stdout[-2000:]
    # With the config's samples (2 + 2) the subsampling is reported with the SNPs it cost.
    proc = run_popdl("check-data", "--configfile", cfg, "--vcf", RAD["vcf"], "--popmap", RAD["popmap"], "--name", "rad",
                     "--populations", "nuttalli=pop1", "pugetensis=pop2")
    assert proc.returncode == 1 and "rad: subsampled to the config's samples (pop1 2 of 12, pop2 2 of 7), which cost " \
        in proc.stdout, proc.stdout
    assert "ERROR, a phased model refuses these data: set features.phased: false" in proc.stdout


def test_suggest_config_takes_fewer_individuals_than_the_configs_sfs_projection_fits(tmp_path):
    """The RAD example's config projects the SFS onto 16 and 8 haplotypes; data of 3 individuals per population
    get a suggestion (with their own projection), not an error about the config's."""
    (tmp_path / "popmap.tsv").write_text("".join(f"{p}_00{k}\t{t}\n" for p, t in (("NUT", "nuttalli"), ("PUG", "pugetensis"))
                                                 for k in (1, 2, 3)))
    proc = run_popdl("check-data", "--configfile", REPO / "config" / "examples" / "rad_unphased.yaml", "--vcf", RAD["vcf"],
                     "--popmap", tmp_path / "popmap.tsv", "--suggest-config", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    fragment = yaml.safe_load(proc.stdout)
    assert fragment["samples"] == {"pop1": 3, "pop2": 3}
    assert all(2 <= m <= 6 for m in fragment["features"]["sfs_projection"].values())


def test_suggest_config_counts_the_catalogues_loci_not_only_those_polymorphic_among_the_individuals_kept(tmp_path):
    """genome.loci is the catalogue's loci, SNPs or none: the simulations' loci without a SNP among the sampled
    individuals then match the data's. One pugetensis individual kept leaves 271 of the RAD example's loci
    polymorphic; the header lists the catalogue's 400 tags; without contig lines, the 368 contigs with a SNP record
    (the truth's loci with a segregating site among the 20 simulated individuals) are the lower bound."""
    truth = json.loads((REPO / "config" / "data" / "rad_truth.json").read_text())
    popmap = tmp_path / "popmap.tsv"
    popmap.write_text("".join(line for line in open(RAD["popmap"]) if not line.startswith("PUG") or "PUG_001" in line))
    meta, header, records = _vcf_lines(RAD["vcf"])
    bare = _write_vcf(tmp_path / "bare.vcf", [m for m in meta if not m.startswith("##contig")], header, records)
    found = {}
    for name, vcf in (("rad", RAD["vcf"]), ("bare", bare)):
        proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", vcf, "--popmap", popmap,
                         "--populations", "nuttalli=pop1", "pugetensis=pop2", "--name", name, "--suggest-config", "-")
        assert proc.returncode == 0, proc.stderr[-2000:]
        found[name] = (yaml.safe_load(proc.stdout)["genome"]["loci"], proc.stderr)
    assert "rad: 271 loci (contigs) with a SNP (the catalogue: 400 loci, from the VCF header's 400 contigs of at most " \
        "300 bp), against genome.loci 1 (more than simulated: raise genome.loci to 400)" in found["rad"][1], found["rad"][1]
    assert found["rad"][0] == truth["loci"]
    assert found["bare"][0] == truth["loci_with_snps"] == len({r[0] for r in records})
    assert "(the catalogue: 368 loci, from contigs with a SNP record, 271 of them polymorphic among the individuals " \
        "kept), against genome.loci 1 (more than simulated: raise genome.loci to 368 or more)" in found["bare"][1]
    # An all-sites VCF (Stacks populations --vcf-all) lists the loci without a SNP by their invariant sites (ALT '.'):
    # the catalogue whole.
    invariant = [[f"tag_only_{i}", str(10 + k), ".", "A", ".", ".", "PASS", ".", "GT"] + ["0/0"] * (len(header) - 9)
                 for i in range(truth["loci"] - truth["loci_with_snps"]) for k in range(3)]
    all_sites = _write_vcf(tmp_path / "all_sites.vcf", [m for m in meta if not m.startswith("##contig")], header,
                           records + invariant)
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", all_sites, "--popmap", popmap,
                     "--populations", "nuttalli=pop1", "pugetensis=pop2", "--suggest-config", "-")
    assert yaml.safe_load(proc.stdout)["genome"]["loci"] == truth["loci"], proc.stderr[-2000:]
    assert "contigs with a SNP or invariant-site record, 271 of them polymorphic" in proc.stderr
    # A header listing 600 more tags without a record: taken as the catalogue, with a warning that it may predate
    # the filters.
    wide = _write_vcf(tmp_path / "wide.vcf", meta + [f"##contig=<ID=tag{i},length=300>" for i in range(600)], header,
                      records)
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", wide, "--popmap", popmap,
                     "--populations", "nuttalli=pop1", "pugetensis=pop2", "--suggest-config", "-")
    assert yaml.safe_load(proc.stdout)["genome"]["loci"] == 1000 and \
        "WARNING, only 368 of the VCF header's 1000 tags hold a SNP record" in proc.stderr, proc.stderr[-2000:]
    assert "tags hold a SNP record" not in found["rad"][1]
    # A header of pseudo-chromosomes lists no catalogue: each contig is a locus (--loci contigs), 4 of them.
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", REPO / "config" / "data" / "rad_chrom.vcf.gz",
                     "--popmap", popmap, "--populations", "nuttalli=pop1", "pugetensis=pop2", "--loci", "contigs",
                     "--suggest-config", "-")
    assert proc.returncode == 0 and yaml.safe_load(proc.stdout)["genome"]["loci"] == 4, proc.stderr[-2000:]


def test_snps_in_clusters_along_long_contigs_read_as_reads_aligned_to_a_reference(tmp_path):
    """The RAD example's tags (300 bp) placed along four pseudo-chromosomes: read as whole contigs they would be
    compared with simulations of every base of 500 kb; check-data says so, and --suggest-config reads them as
    clusters with a tag length from the gaps. Whole-sequence data (the default example, the sweep chromosome)
    are not flagged."""
    from popdl.observed import clustered_snps, tag_length

    chrom = str(REPO / "config" / "data" / "rad_chrom.vcf.gz")
    args = ("--vcf", chrom, "--popmap", RAD["popmap"], "--populations", "nuttalli=pop1", "pugetensis=pop2")
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), *args)
    assert "rad_chrom: WARNING, the SNPs lie in clusters along contigs longer than a tag" in proc.stdout, proc.stdout
    assert "rad_chrom: 4 loci (contigs) with a SNP" in proc.stdout  # the config's reading, warned about, not changed
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), *args, "--suggest-config", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    fragment = yaml.safe_load(proc.stdout)
    assert fragment["predict"]["data"][0]["loci"] == "clusters" and 300 <= fragment["genome"]["length"] <= 600
    assert 330 <= fragment["genome"]["loci"] <= 368 and fragment["features"]["missing_unit"] == "locus", fragment
    assert "the report below and the suggestion read them so" in proc.stderr
    # --loci given: the reading asked for stays.
    proc = run_popdl("check-data", "--configfile", config_file(tmp_path), *args, "--loci", "contigs", "--suggest-config", "-")
    assert yaml.safe_load(proc.stdout)["genome"]["loci"] == 4 and "suggestion read them so" not in proc.stderr
    for name in ("example", "sweep_chr"):
        data = read_observed({"name": name, "vcf": str(REPO / "config" / "data" / f"{name}.vcf.gz"),
                              "popmap": str(REPO / "config" / "data" / f"{name}_popmap.tsv")},
                             samples={"pop1": 10, "pop2": 10} if name == "example" else {"pop1": 10}, seed=1, phased=False)
        assert clustered_snps(data) is None, name
    # Tags of 150 bp, two to four SNPs each, 5-50 kb apart: the gaps thin out from the tag's length on.
    rng = np.random.default_rng(3)
    gaps = np.concatenate([np.r_[rng.uniform(5000, 50000), np.diff(np.sort(rng.uniform(0, 150, rng.integers(2, 5))))]
                           for _ in range(400)])
    assert 135 <= tag_length(gaps[gaps > 0]) <= 165  # within 10 %


def test_a_prediction_notes_a_genome_the_data_were_not_sampled_from():
    """The notes a prediction carries: genome.loci off the header's catalogue of 400 tags, and a VCF of tags aligned
    to pseudo-chromosomes read as whole contigs; none for the RAD example's own config."""
    from popdl.observed import layout_notes

    mapping = {"nuttalli": "pop1", "pugetensis": "pop2"}
    rad = read_observed(dict(RAD, name="rad", populations=mapping), samples={"pop1": 10, "pop2": 7}, seed=1, phased=False)
    assert layout_notes(rad, {"loci": 400, "length": 300}, "contigs") == []
    few, many = layout_notes(rad, {"loci": 300, "length": 300}, None), layout_notes(rad, {"loci": 500, "length": 300}, None)
    assert len(few) == len(many) == 1 and "genome.loci is 300, the data's catalogue 400 loci" in few[0] and \
        "set genome.loci to 400" in many[0]
    assert layout_notes(rad, {"loci": 300, "length": 300}, "windows") == []  # loci cut otherwise: no catalogue
    chrom = read_observed(dict(RAD, vcf=str(REPO / "config" / "data" / "rad_chrom.vcf.gz"), name="chrom", populations=mapping),
                          samples={"pop1": 10, "pop2": 7}, seed=1, phased=False)
    notes = layout_notes(chrom, {"loci": 4, "length": 600_000}, "contigs")
    assert len(notes) == 1 and "the SNPs lie in clusters along contigs longer than a tag" in notes[0], notes


# ------------------------------------------------------------------------------------ the shipped examples, end to end
TINY_RUN = {
    "simulations": {"per_scenario": 15, "chunk": 15, "shard_size": 50,
                    "split": {"train": 0.6, "validation": 0.2, "test": 0.2}},
    "network": "cnn2d_stats",  # an image network: an unphased image has one row per individual
    "tuning": {"workers": 1, "trials": 1, "max_epochs": 2, "startup_trials": 1,
               "search_space": {"batch_size": 16, "dense_units": 16, "dense_layers": 1, "learning_rate": 0.003,
                                "filters": 4, "conv_layers": 1}},
    "train": {"epochs": 1, "threads": 1, "ensemble": 1},
    "abc": {"tolerance": 0.3, "trees": 20},
}


@pytest.mark.slow
def test_rad_examples_run_end_to_end(tmp_path):
    """The shipped RAD examples through the workflow at a tiny size: unphased calls, taxon
    labels, trailing spaces, extra samples and patchy missingness all taken as they come.
    rad_unphased runs to the report, with rad_chromosomes' data set (the same calls on
    pseudo-chromosomes, cut into loci: ``loci: windows``) as a second data set to predict on;
    rad_chromosomes differs from it only in that data set and its SFS projection, and
    its own config is checked by its dry run (test_workflow_dryrun.py).  A third data set
    holds the same calls as a de novo Stacks 1 catalogue writes them (contig 'un', each SNP
    at its column, the locus in the ID; ``loci: ids``), its samples named by their BAM files."""
    from conftest import snakemake

    config = yaml.safe_load((REPO / "config" / "examples" / "rad_unphased.yaml").read_text())
    chromosomes = yaml.safe_load((REPO / "config" / "examples" / "rad_chromosomes.yaml").read_text())
    for key, value in TINY_RUN.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    config["genome"]["loci"] = 60  # fewer loci than the data: the check says so, the run goes on
    for scenario in config["scenarios"].values():
        scenario["graph"] = str(REPO / scenario["graph"])
    config["predict"]["data"] += chromosomes["predict"]["data"]
    for entry in config["predict"]["data"]:
        entry["vcf"], entry["popmap"] = str(REPO / entry["vcf"]), str(REPO / entry["popmap"])
    assert [entry.get("loci") for entry in config["predict"]["data"]] == ["contigs", "windows"]
    config["predict"]["data"].append(dict(config["predict"]["data"][0], name="stacks1", loci="ids",
                                          vcf=_as_stacks1_denovo(RAD["vcf"], tmp_path / "stacks1.vcf")))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run = tmp_path / "results" / config["run"]
    snakemake(tmp_path, f"results/{config['run']}/report.html", configfile=tmp_path / "config.yaml")
    for entry in config["predict"]["data"]:
        name = entry["name"]
        pred = json.loads((run / "predict" / name / "predictions.json").read_text())
        observed = pred["observed"]
        assert observed["phasing"] == "unphased" and observed["trained_phased"] is False, name
        counts = observed["counts"]
        trimmed = 0 if name == "stacks1" else 8  # BAM names have no spaces
        assert counts["trimmed_names"] == trimmed and counts["not_in_popmap"] == 1 and counts["not_in_data"] == 2, name
        assert len(observed["individuals"]) == 17 and len(observed["loci"]) > 300, (name, len(observed["loci"]))
        assert "reliability" in pred and set(pred["network"]["probabilities"]) == set(config["scenarios"])
        csv = __import__("pandas").read_csv(run / "predict" / name / "predictions.csv")
        assert {"reliable", "note", "scenarios"} <= set(csv.columns)
    # Read as the same data set, the Stacks layout gives each locus the same SNPs and genotypes.
    read = dict(samples=config["samples"], seed=config["seed"], phased=False, locus_length=config["genome"]["length"])
    contigs = read_observed(config["predict"]["data"][0], **read)
    stacks1 = read_observed(dict(config["predict"]["data"][-1], name="rad"), **read)
    assert stacks1.individuals == [f"bams/{n.strip()}.sorted.bam" for n in contigs.individuals]

    def by_locus(data, key):
        return {key(name): data.genotypes[data.locus == k].tolist() for k, name in enumerate(data.loci)}

    assert by_locus(stacks1, lambda n: int(n.split(":")[0])) == by_locus(contigs, lambda n: int(n.removeprefix("locus")))
    html = (run / "report.html").read_text()
    assert html.index('<section id="answer">') < html.index('<section id="config">')
    # The model folder alone reads the data as the workflow did (the unphased image's rows, the mapping, the loci).
    proc = run_popdl("predict", "--model", run / "model", "--vcf", RAD["vcf"], "--popmap", RAD["popmap"],
                     "--out", tmp_path / "alone")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "absl::InitializeLog" not in proc.stderr and "cpu_feature_guard" not in proc.stderr, proc.stderr
    alone = json.loads((tmp_path / "alone" / "predictions.json").read_text())["network"]
    workflow = json.loads((run / "predict" / "rad" / "predictions.json").read_text())["network"]
    assert alone["probabilities"] == pytest.approx(workflow["probabilities"], abs=1e-6)
    # The replicates benchmark: new data sets of the example's truth, predicted by this model folder.
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_rad_replicates.py"), "--model",
                           str(run / "model"), "--replicates", "1", "--min-maf", "0.05", "--check-fit", "20"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed 11: P(isolation) = " in proc.stdout and "N1: truth 3000, median estimate " in proc.stdout, proc.stdout
    assert "filtered to minor-allele frequency >= 0.05" in proc.stdout and "; fit check p = " in proc.stdout


def _as_stacks1_denovo(source: str, out: Path) -> str:
    """The records of a VCF with one contig per locus (``locusNNNN``) as a de novo Stacks 1
    catalogue writes them: contig ``un``, sorted by position (the column + 1) across loci, the ID
    ``LOCUS_COLUMN``; each sample named by its BAM file."""
    import gzip

    header, records = [], []
    for line in gzip.open(source, "rt").read().splitlines():
        if line.startswith("##contig"):
            continue
        if line.startswith("#CHROM"):
            fields = line.split("\t")
            line = "\t".join(fields[:9] + [f"bams/{name.strip()}.sorted.bam" for name in fields[9:]])
        if line.startswith("#"):
            header.append(line)
            continue
        fields = line.split("\t")
        locus, pos = int(fields[0].removeprefix("locus")), int(fields[1])
        fields[:3] = ["un", str(pos), f"{locus}_{pos - 1}"]
        records.append((pos, fields))
    records.sort(key=lambda r: r[0])
    out.write_text("\n".join([*header, *("\t".join(f) for _, f in records)]) + "\n")
    return str(out)


def _vcf_lines(path: str) -> tuple[list[str], list[str], list[list[str]]]:
    """The ## lines, the #CHROM line's columns and the records' columns of the VCF ``path``."""
    import gzip

    lines = gzip.open(path, "rt").read().splitlines()
    return ([x for x in lines if x.startswith("##")], next(x for x in lines if x.startswith("#CHROM")).split("\t"),
            [x.split("\t") for x in lines if not x.startswith("#")])


def _write_vcf(path, meta, header, records, *, reverse_samples=False) -> str:
    order = list(range(9)) + (list(range(len(header) - 1, 8, -1)) if reverse_samples else list(range(9, len(header))))
    path.write_text("\n".join(meta + ["\t".join(r[i] for i in order) for r in [header, *records]]) + "\n")
    return str(path)


def test_a_vcf_per_chromosome_reads_as_the_one_file_they_were_cut_from(tmp_path):
    mapping = {"nuttalli": "pop1", "pugetensis": "pop2"}
    samples = {"pop1": 10, "pop2": 7}
    whole = read_observed(dict(RAD, name="rad", populations=mapping), samples=samples, seed=1, phased=False)
    meta, header, records = _vcf_lines(RAD["vcf"])
    # Cut at records 300 and 700, or just after, inside a contig: its records continue in the next file.
    cuts = [next(k for k in range(at, len(records)) if records[k][0] == records[k - 1][0]) for at in (300, 700)]
    # part_2 lists its samples the other way round; part_10 sorts after part_2 only by number.
    split = [_write_vcf(tmp_path / "part_1.vcf", meta, header, records[:cuts[0]]),
             _write_vcf(tmp_path / "part_2.vcf", meta, header, records[cuts[0]:cuts[1]], reverse_samples=True),
             _write_vcf(tmp_path / "part_10.vcf", meta, header, records[cuts[1]:])]
    for vcf_entry in (split, str(tmp_path / "part_*.vcf")):
        data = read_observed(dict(RAD, name="rad", vcf=vcf_entry, populations=mapping), samples=samples, seed=1,
                             phased=False)
        assert np.array_equal(data.genotypes, whole.genotypes) and np.array_equal(data.positions, whole.positions)
        assert np.array_equal(data.locus, whole.locus) and data.loci == whole.loci
        assert data.individuals == whole.individuals and data.length == whole.length
        assert {k: data.counts[k] for k in ("records", "snps", "missing_calls", "monomorphic")} == \
            {k: whole.counts[k] for k in ("records", "snps", "missing_calls", "monomorphic")}
        assert data.counts["vcf_files"] == 3
    config = config_file(tmp_path)
    out = run_popdl("check-data", "--configfile", config, "--vcf", *split, "--popmap", RAD["popmap"],
                    "--populations", "nuttalli=pop1", "pugetensis=pop2", "--name", "rad", "--suggest-config", "-")
    assert out.returncode == 0, out.stderr
    assert f"from {whole.counts['records']} records in 3 files;" in out.stderr, out.stderr
    fragment = yaml.safe_load(out.stdout)
    assert fragment["predict"]["data"][0]["vcf"] == split

    def refused(vcf_entry, message):
        with pytest.raises(DataError, match=message):
            read_observed(dict(RAD, name="rad", vcf=vcf_entry, populations=mapping), samples=samples, seed=1,
                          phased=False)

    refused([split[0], split[0]], r"part_1\.vcf: given twice among the data set's files")
    refused(str(tmp_path / "chr*.vcf"), r"VCF .*chr\*\.vcf: no file matches this pattern")
    # A contig whose records come back in a later file, after other contigs', is one line.
    back = _write_vcf(tmp_path / "back.vcf", meta, header, records[cuts[1]:] + records[:1])
    refused(split[:2] + [back], rf"back\.vcf: contig '{records[0][0]}' also has records in .*part_1\.vcf, which do "
                                r"not end where these begin \(give the files in order")
    # Files of one data set hold the same individuals.
    fewer = _write_vcf(tmp_path / "fewer.vcf", meta, header[:-1], [r[:-1] for r in records[cuts[1]:]])
    refused(split[:2] + [fewer], rf"fewer\.vcf: its samples are not those of .*part_1\.vcf \({header[-1].strip()} only in "
                                 r".*part_1\.vcf\); the files of one data set hold the same individuals")


def test_an_ipyrad_vcf_reads_as_the_calls_it_was_written_from(tmp_path):
    # ipyrad 0.9's de novo VCF: VCFv4.0 without contig lines, one contig RAD_<locus> per locus,
    # IDs loc_<locus>_pos_<column>, FORMAT GT:DP:CATG (base counts, commas inside a sample's field),
    # each call's alleles sorted (1/0 written 0/1), samples in alphanumeric order.
    mapping = {"nuttalli": "pop1", "pugetensis": "pop2"}
    samples = {"pop1": 12, "pop2": 7}  # every individual: nothing subsampled
    whole = read_observed(dict(RAD, name="rad", populations=mapping), samples=samples, seed=1, phased=False)
    meta, header, records = _vcf_lines(RAD["vcf"])
    meta = ["##fileformat=VCFv4.0", "##source=ipyrad_v.0.9.93", "##phasing=unphased",
            '##INFO=<ID=NS,Number=1,Type=Integer,Description="Number of Samples With Data">',
            '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
            '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read Depth">',
            '##FORMAT=<ID=CATG,Number=1,Type=String,Description="Base Counts (CATG)">']
    order = sorted(range(9, len(header)), key=lambda i: header[i].strip())
    rows = []
    for r in records:
        locus = int(r[0].removeprefix("locus")) - 1
        calls = ["./." if "." in r[i] else "/".join(sorted(r[i].replace("|", "/").split("/"))) for i in order]
        rows.append([f"RAD_{locus}", r[1], f"loc_{locus}_pos_{int(r[1]) - 1}", r[3], r[4], "13", "PASS",
                     f"NS={sum(c != './.' for c in calls)}", "GT:DP:CATG",
                     *(f"{c}:12:0,{12 - 3 * (c == '0/1')},{3 * (c == '0/1')},0" for c in calls)])
    path = tmp_path / "ipyrad.vcf"
    path.write_text("\n".join(meta + ["\t".join(header[:9] + [header[i] for i in order])]
                              + ["\t".join(r) for r in rows]) + "\n")

    def by_individual(data):  # each individual's calls, alleles sorted: ipyrad writes no phase
        g = np.sort(data.genotypes.reshape(len(data.genotypes), -1, 2), axis=2)
        return {name.strip(): g[:, i].tolist() for i, name in enumerate(data.individuals)}

    for loci in ("contigs", "ids"):
        data = read_observed(dict(RAD, name="rad", vcf=str(path), populations=mapping, loci=loci), samples=samples,
                             seed=1, phased=False, locus_length=300)
        assert data.counts["snps"] == whole.counts["snps"] and len(data.loci) == len(whole.loci), loci
        assert by_individual(data) == by_individual(whole), loci
        assert np.array_equal(np.diff(data.locus) != 0, np.diff(whole.locus) != 0), loci  # the same loci


def test_a_haploid_individual_is_named_and_once_left_out_of_the_popmap_costs_no_contig(tmp_path, caplog):
    # A haplodiploid species: the male m1 (a drone, a male ant) is called haploid on every contig.
    names = ["a1", "a2", "m1", "b1", "b2"]
    rows = [[f"c{k}", str(pos), [*calls[:2], "1" if calls[2][0] == "1" else "0", *calls[3:]]]
            for k in range(8) for pos, calls in ((10, CALLS[0]), (20, CALLS[1]))]
    text = ("##fileformat=VCFv4.2\n" + "".join(f"##contig=<ID=c{k},length=1000>\n" for k in range(8))
            + HEADER.split("\n", 2)[2] + "".join(f"\t{n}" for n in names) + "\n"
            + "".join("\t".join([c, p, ".", "A", "G", ".", "PASS", ".", "GT", *calls]) + "\n" for c, p, calls in rows))
    (tmp_path / "data.vcf").write_text(text)
    (tmp_path / "popmap.tsv").write_text(POPMAP + "m1\tpop1\n")
    entry = {"name": "obs", "vcf": str(tmp_path / "data.vcf"), "popmap": str(tmp_path / "popmap.tsv")}
    with pytest.raises(DataError, match=r"haploid genotype calls on 8 of the 8 contigs with SNPs, by m1 on 8 contig\(s\): "
                                        r"haploid individuals .* leave them out of the popmap"):
        read_observed(entry, samples=SAMPLES, seed=1)
    # Left out of the popmap, the male's haploid calls take no contig with them.
    (tmp_path / "popmap.tsv").write_text(POPMAP)
    with caplog.at_level(logging.WARNING, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.loci == [f"c{k}" for k in range(8)] and len(data.positions) == 16
    assert data.individuals == ["a1", "a2", "b1", "b2"] and not data.counts.get("haploid")
    assert "haploid genotype calls" not in caplog.text


def test_a_record_repeated_by_overlapping_files_is_read_once_and_a_split_site_stays(tmp_path, caplog):
    # chr1:20 written twice (two regions concatenated with an overlap: the same record) is one SNP;
    # chr1:35's two records (a multi-allelic site split by bcftools norm -m-) differ in their calls and stay.
    rows = [["chr1", "10", CALLS[0]], ["chr1", "20", CALLS[1]], ["chr1", "20", CALLS[1]],
            ["chr1", "35", CALLS[2]], ["chr1", "35", ["0|0", "0|1", "1|0", "0|0", "0|0"]]]
    text = HEADER + "".join(f"\t{n}" for n in ["a1", "a2", "b1", "b2"]) + "\n" + "".join(
        "\t".join([c, p, ".", "A", "G", ".", "PASS", ".", "GT", *calls[:4]]) + "\n" for c, p, calls in rows)
    (tmp_path / "data.vcf").write_text(text)
    (tmp_path / "popmap.tsv").write_text(POPMAP)
    entry = {"name": "obs", "vcf": str(tmp_path / "data.vcf"), "popmap": str(tmp_path / "popmap.tsv")}
    with caplog.at_level(logging.WARNING, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.positions.tolist() == [10, 20, 35, 35] and data.counts["repeated"] == 1
    assert "left out 1 SNP record(s) that repeat the one before them (same position, ID and genotypes; the first at " \
           "chr1:20)" in caplog.text
    from popdl.observed import skipped_text

    assert skipped_text(data.counts).endswith("1 repeating the record before")


def test_contigs_with_haploid_calls_are_left_out_and_counted(tmp_path, caplog):
    # bcftools call --ploidy GRCh37: a male's X outside the pseudo-autosomal region, and the
    # mitochondrion, are called haploid; the autosomes diploid.
    names = ["a1", "a2", "b1", "b2"]  # a2 and b2 are males
    rows = [["chr1", "10", ["0|1", "0|0", "1|1", "0|1"]], ["chr1", "20", ["1|0", "0|1", "0|0", "0|0"]],
            ["chrX", "100", ["0|1", "1|0", "0|0", "1|1"]],  # pseudo-autosomal: diploid in males too
            ["chrX", "5000", ["0|1", "1", "0|0", "0"]], ["chrX", "6000", ["1|1", "0", "0|1", "1"]],
            ["chrM", "50", ["0", "1", "1", "0"]], ["chr2", "30", ["0|0", "1|1", "0|1", "0|0"]]]
    text = HEADER.replace("##contig=<ID=chr1,length=1000>\n", "") + "".join(f"\t{n}" for n in names) + "\n" + "".join(
        "\t".join([c, p, ".", "A", "G", ".", "PASS", ".", "GT", *calls]) + "\n" for c, p, calls in rows)
    (tmp_path / "data.vcf").write_text(text)
    (tmp_path / "popmap.tsv").write_text(POPMAP)
    entry = {"name": "obs", "vcf": str(tmp_path / "data.vcf"), "popmap": str(tmp_path / "popmap.tsv")}
    with caplog.at_level(logging.WARNING, logger="popdl"):
        data = read_observed(entry, samples=SAMPLES, seed=1)
    assert data.loci == ["chr1", "chr2"] and data.positions.tolist() == [10, 20, 30]
    assert data.counts["haploid"] == 4 and data.counts["haploid_contigs"] == {"chrX": 3, "chrM": 1}
    assert "chrX" not in data.counts["empty_contigs"]
    assert any("left out 2 contig(s) with haploid genotype calls" in r.getMessage() and "by a2 on 2, b2 on 2, a1 on 1, b1 on 1 "
               "contig(s)" in r.getMessage() for r in caplog.records)
    out = run_popdl("check-data", "--configfile", config_file(tmp_path), "--vcf", entry["vcf"], "--popmap",
                    entry["popmap"])
    assert "4 on 2 contig(s) with haploid calls (chrX, chrM)" in out.stdout.splitlines()[0], out.stdout + out.stderr
    # Haploid calls on every contig: the data are not diploid, one line.
    (tmp_path / "data.vcf").write_text("".join(x + "\n" for x in text.splitlines() if not x.startswith("chr1\t")
                                              and not x.startswith("chr2\t")))
    with pytest.raises(DataError, match=r"data\.vcf: chrX:5000 has haploid genotype calls; popdl simulates diploid"):
        read_observed(entry, samples=SAMPLES, seed=1)
