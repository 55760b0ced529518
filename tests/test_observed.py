"""Observed data: VCF/FASTA + popmap reading and validation (popdl.observed), and their network inputs."""

from __future__ import annotations

import gzip
import subprocess
import sys

import numpy as np
import pytest

from popdl.config import prepare
from popdl.observed import read_fasta, read_observed, read_popmap, read_vcf
from popdl.errors import DataError
from popdl.features import MISSING, StatsSpec, add_missing, genotype_image, observed_features, summary_stats
from popdl.scenarios import Scenario
from popdl.simulate import population_labels, simulator_for

from conftest import REPO, tiny_config

SAMPLES = {"pop1": 2, "pop2": 2}
FEATURES = {"snps": 8, "snp_selection": "random", "sort_rows": True, "positions": True,
            "stats": ["segsites", "pi", "fst", "sfs"], "jsfs_bins": 4}
GENOME = {"loci": 1, "length": 1000}
HEADER = "##fileformat=VCFv4.2\n##contig=<ID=chr1,length=1000>\n##contig=<ID=chr2,length=1000>\n"
GT_LINE = '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
COLUMNS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT"
NAMES = ["a1", "a2", "b1", "b2"]
POPMAP = "sample\tpopulation\na1\tpop1\na2\tpop1\nb1\tpop2\nb2\tpop2\n"
GOOD_ROWS = [
    ("chr1", 10, "A", "G", ["0|1", "0|0", "1|1", "0|1"]),
    ("chr1", 20, "C", "T", ["1|0", "0|1", "0|0", "0|0"]),
    ("chr1", 35, "G", "A", ["0|0", "1|1", "0|1", "1|0"]),
    ("chr2", 5, "T", "C", ["0|1", "0|0", "0|0", "1|1"]),
]


def vcf_text(rows=GOOD_ROWS, *, names=NAMES, header=HEADER + GT_LINE, fmt="GT") -> str:
    lines = [header + COLUMNS + "".join(f"\t{n}" for n in names)]
    for chrom, pos, ref, alt, gts, *flt in rows:  # a sixth field: the FILTER column (default PASS)
        lines.append("\t".join([chrom, str(pos), ".", ref, alt, ".", flt[0] if flt else "PASS", ".", fmt, *gts]))
    return "\n".join(lines) + "\n"


def write(folder, name, text, *, gz=False):
    path = folder / name
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def load(folder, vcf=None, popmap=POPMAP, fasta=None, **kwargs):
    entry = {"name": "obs", "popmap": str(write(folder, "popmap.tsv", popmap))}
    if vcf is not None:
        entry["vcf"] = str(write(folder, "data.vcf", vcf))
    if fasta is not None:
        entry["fasta"] = [str(write(folder, f"locus{i}.fa", text)) for i, text in enumerate(fasta)]
    entry.update(kwargs.pop("entry", {}))
    return read_observed(entry, samples=kwargs.pop("samples", SAMPLES), seed=1, **kwargs)


def fasta_text(seqs: dict[str, str]) -> str:
    return "".join(f">{k}\n{v}\n" for k, v in seqs.items())


GOOD_FASTA = {"a1_1": "ACGTA", "a1_2": "ACGTT", "a2_1": "ACCTA", "a2_2": "ACGTA",
              "b1_1": "TCGTA", "b1_2": "ACGTA", "b2_1": "ACGTA", "b2_2": "ACGTA"}


def _row(i, gts):
    return ("chr1", 10 * (i + 1), "A", "G", gts)


FAM_FILE = (r"line 1: expected 2 columns \(sample, population\), found 6 \(a PLINK \.fam file: FID, IID, father, mother, "
            r"sex, phenotype; where FID is the population, awk -v OFS='\\t' '\{print \$2, \$1\}' makes the popmap\)$")
# (case id, input kwargs for load(), regex the one-line message must match)
MALFORMED = [
    ("vcf-missing-file", {"entry": {"vcf": "no/such.vcf.gz"}}, r"VCF no/such\.vcf\.gz: file not found"),
    ("vcf-empty-file", {"vcf": ""}, r"the file is empty"),
    ("vcf-not-a-vcf", {"vcf": "chrom\tpos\nchr1\t5\n"}, r"not a VCF file"),
    ("vcf-no-gt-field", {"vcf": vcf_text(header=HEADER + '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="d">\n', fmt="DP",
                                         rows=[("chr1", 10, "A", "G", ["3", "4", "5", "6"])])},
     r"chr1:10 has no genotypes: its FORMAT is 'DP', without GT$"),
    ("vcf-sample-not-in-popmap", {"vcf": vcf_text(names=["a1", "a2", "b1", "zz"]), "strict": True},
     r"1 sample\(s\) missing from the popmap: zz"),
    ("popmap-sample-not-in-vcf", {"vcf": vcf_text(), "popmap": POPMAP + "c9\tpop2\n", "strict": True},
     r"popmap sample\(s\) not in the data: c9"),
    ("population-not-simulated", {"vcf": vcf_text(), "popmap": POPMAP.replace("b2\tpop2", "b2\tpop3"), "strict": True},
     r"population\(s\) pop3 in the popmap are not simulated"),
    ("population-not-simulated-leaves-too-few", {"vcf": vcf_text(), "popmap": POPMAP.replace("b2\tpop2", "b2\tpop3")},
     r"population 'pop2' has 1 individual\(s\) but 2 were simulated; simulate 1 \(samples: \{pop2: 1\}; check-data "
     r"--suggest-config\), or map more labels to it \(population\(s\) pop3 of the popmap were left out\)$"),
    ("fewer-individuals-than-simulated", {"vcf": vcf_text(), "samples": {"pop1": 3, "pop2": 2}},
     r"population 'pop1' has 2 individual\(s\) but 3 were simulated"),
    ("more-individuals-no-subsampling", {"vcf": vcf_text(), "samples": {"pop1": 1, "pop2": 2}, "subsample": False},
     r"population 'pop1' has 2 individuals but 1 was simulated \(subsampling is off\)"),
    ("unphased-genotypes", {"vcf": vcf_text([_row(0, ["0|1", "0/1", "0|0", "1|1"])])}, r"sample a2 has an unphased heterozygous call"),
    ("haploid-calls", {"vcf": vcf_text([_row(0, ["0", "1", "0", "1"])])}, r"haploid genotype calls"),
    ("triploid-calls", {"vcf": vcf_text([_row(0, ["0|1|1", "0|0|0", "1|1|1", "0|0|1"])])}, r"ploidy 3"),
    ("no-records", {"vcf": vcf_text([])}, r"no variant records"),
    ("only-indels-and-multiallelic", {"vcf": vcf_text([("chr1", 5, "AT", "A", ["0|1"] * 4), ("chr1", 9, "A", "G,T", ["1|2"] * 4)])},
     r"no usable biallelic SNP among 2 records \(1 multi-allelic, 1 indel,"),
    ("too-many-missing-calls", {"vcf": vcf_text([_row(0, ["0|1", "./.", "./.", "./."]), _row(1, ["1|0", "./.", "./.", "0|1"])]),
                                "max_missing": 0.2}, r"62\.5% of genotype calls are missing, above predict\.max_missing \(20%\)"),
    ("popmap-missing-file", {"vcf": vcf_text(), "entry": {"popmap": "nowhere/popmap.tsv"}}, r"popmap nowhere/popmap\.tsv: file not found"),
    ("popmap-three-columns", {"vcf": vcf_text(), "popmap": "a1\tpop1\textra\n"},
     r"line 1: 3 columns \(a1, pop1, extra\), not two: read a sample sheet \(titles on line 1\) with --popmap-columns "
     r"a1 pop1 \(config popmap_columns\), or keep two columns \(cut -f1,2\)$"),
    ("popmap-third-column-after-the-first-line", {"vcf": vcf_text(), "popmap": "a1\tpop1\nb1\tpop2\textra\n"},
     r"line 2: expected 2 columns \(sample, population\), found 3 \(a sample sheet: read it with --popmap-columns "
     r"SAMPLE POPULATION, config popmap_columns\)$"),
    ("popmap-columns-unknown-title", {"vcf": vcf_text(), "popmap": "ID,Species\na1,pop1\n", "entry": {"popmap_columns": ["ID", "Pop"]}},
     r"popmap .*: no column titled 'Pop' for the populations; its titles: 'ID', 'Species'$"),
    ("popmap-columns-number-too-large", {"vcf": vcf_text(), "popmap": "ID,Species\na1,pop1\n", "entry": {"popmap_columns": [1, 3]}},
     r"popmap .*: the population column is number 3, but the table has 2 columns$"),
    ("popmap-columns-twice-the-same", {"vcf": vcf_text(), "popmap": "ID,Species\na1,pop1\n", "entry": {"popmap_columns": ["id", 1]}},
     r"popmap .*: the sample and population columns are both 'ID'$"),
    ("popmap-columns-duplicate-sample", {"vcf": vcf_text(), "popmap": "ID,Species\na1,pop1\na1,pop2\n",
                                         "entry": {"popmap_columns": ["ID", "Species"]}},
     r"popmap .* line 3: sample 'a1' is listed twice, as 'pop1' \(line 2\) and 'pop2'$"),
    ("popmap-duplicate-sample", {"vcf": vcf_text(), "popmap": POPMAP + "a1\tpop2\n"},
     r"line 6: sample 'a1' is listed twice, as 'pop1' \(line 2\) and 'pop2'$"),
    ("popmap-columns-reversed", {"vcf": vcf_text(), "popmap": "pop1\ta1\npop1\ta2\npop2\tb1\npop2\tb2\n"},
     r"line 2: sample 'pop1' is listed twice, as 'a1' \(line 1\) and 'a2'; the columns look reversed \(population, then "
     r"sample, as a PLINK \.fam's FID IID\?\): swap them \(awk -v OFS='\\t' '\{print \$2, \$1\}'\)$"),
    ("popmap-columns-reversed-one-sample-each", {"vcf": vcf_text(), "popmap": "p1\ta1\np2\ta2\np3\tb1\np4\tb2\n"},
     r"none of its 4 samples is in the popmap's first column, but 4 are in its second \(e\.g\. 'a1'\): the columns look "
     r"reversed \(population, then sample\); swap them"),
    ("popmap-a-plink-fam-file", {"vcf": vcf_text(), "popmap": "pop1 a1 0 0 1 -9\npop1 a2 0 0 2 -9\n"},
     FAM_FILE),
    ("popmap-a-tab-separated-plink-fam-file", {"vcf": vcf_text(), "popmap": "pop1\ta1\t0\t0\t1\t-9\n"},
     FAM_FILE),
    ("popmap-r-row-names", {"vcf": vcf_text(), "popmap": '"sample" "pop"\n"1" "a1" "pop1"\n"2" "a2" "pop1"\n'},
     r"line 2: expected 2 columns \(sample, population\), found 3, the first a number \(1\): row names, as R's "
     r"write\.table writes them \(write it with row\.names = FALSE, or keep its last two columns\)$"),
    ("popmap-empty", {"vcf": vcf_text(), "popmap": "# nothing\n\n"}, r"no samples listed"),
    ("both-vcf-and-fasta", {"vcf": vcf_text(), "fasta": [fasta_text(GOOD_FASTA)]}, r"give exactly one of vcf or fasta"),
    ("fasta-unequal-lengths", {"fasta": [fasta_text({**GOOD_FASTA, "b2_2": "ACG"})]}, r"sequences of different lengths"),
    ("fasta-haploid-individual", {"fasta": [fasta_text({k: v for k, v in GOOD_FASTA.items() if k != "b2_2"})]},
     r"individual 'b2' has one \(haploid\) sequence"),
    ("fasta-empty-alignment", {"fasta": [""]}, r"empty alignment \(no sequences\)"),
    ("fasta-zero-length", {"fasta": [fasta_text({k: "" for k in GOOD_FASTA})]}, r"empty alignment \(sequences of length 0\)"),
    ("fasta-invalid-characters", {"fasta": [fasta_text({**GOOD_FASTA, "a1_1": "AC9T!"})]}, r"invalid character\(s\) '!9'"),
    ("fasta-unknown-sequence-name", {"fasta": [fasta_text({**GOOD_FASTA, "zz_1": "ACGTA"})], "strict": True}, r"sequence 'zz_1' matches no popmap sample"),
    ("fasta-not-fasta", {"fasta": ["ACGT\nACGT\n"]}, r"not a FASTA file"),
    ("fasta-individuals-differ-between-loci",
     {"fasta": [fasta_text(GOOD_FASTA), fasta_text({k: v for k, v in GOOD_FASTA.items() if not k.startswith("b2")})]},
     r"individuals differ from .*: b2"),
    ("fasta-only-gap-columns", {"fasta": [fasta_text({k: "AC-" for k in GOOD_FASTA})]}, r"no biallelic SNP"),
]


@pytest.mark.parametrize("case,kwargs,message", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_is_one_clear_line(tmp_path, monkeypatch, case, kwargs, message):
    monkeypatch.chdir(tmp_path)
    kwargs = dict(kwargs)
    if "fasta" not in kwargs and "vcf" not in kwargs and "vcf" not in kwargs.get("entry", {}):
        kwargs["vcf"] = vcf_text()
    with pytest.raises(DataError, match=message) as info:
        load(tmp_path, **kwargs)
    text = str(info.value)
    assert "\n" not in text and len(text) < 300, text


def test_at_least_fifteen_malformed_cases():
    assert len(MALFORMED) >= 15


def test_vcf_reads_phased_genotypes_grouped_by_population(tmp_path):
    popmap = "b2\tpop2\na1\tpop1\nb1\tpop2\na2\tpop1\n"  # popmap order does not matter
    data = load(tmp_path, vcf=vcf_text(), popmap=popmap)
    assert data.individuals == ["a1", "a2", "b1", "b2"]
    assert data.populations.tolist() == ["pop1"] * 4 + ["pop2"] * 4
    assert data.genotypes.dtype == np.int8 and data.genotypes.shape == (4, 8)
    assert data.genotypes[0].tolist() == [0, 1, 0, 0, 1, 1, 0, 1]
    assert data.locus.tolist() == [0, 0, 0, 1] and data.loci == ["chr1", "chr2"]
    assert data.positions.tolist() == [10, 20, 35, 5]


def test_a_header_without_the_gt_definition_is_read_from_its_records_with_a_warning(tmp_path, caplog):
    # Hand-made VCFs and some converters write GT in every record but no ##FORMAT line for it.
    bare = load(tmp_path, vcf=vcf_text(header=HEADER))
    defined = load(tmp_path, vcf=vcf_text())
    np.testing.assert_array_equal(bare.genotypes, defined.genotypes)
    np.testing.assert_array_equal(bare.positions, defined.positions)
    assert "the header defines no GT (genotype) FORMAT field; reading GT from the records" in caplog.text


def test_skipped_sites_and_missing_calls_are_counted(tmp_path):
    rows = GOOD_ROWS[:3] + [
        ("chr1", 40, "A", "G,T", ["0|1", "0|2", "1|1", "0|0"]),
        ("chr1", 50, "AT", "A", ["0|1", "0|0", "1|1", "0|0"]),
        ("chr1", 60, "A", "G", ["0|0", "0|0", "0|0", "0|0"]),
        ("chr1", 70, "A", "G", ["0|1", "./.", "1|1", "0|0"]),
        ("chr1", 80, "AC", "GT", ["0|1", "0|0", "1|1", "0|0"]),  # an MNP, as FreeBayes writes them
        ("chr1", 90, "ACG", "TT", ["0|1", "0|0", "1|1", "0|0"]),  # complex: counted with the indels
    ]
    data = load(tmp_path, vcf=vcf_text(rows))
    c = data.counts
    assert (c["records"], c["snps"], c["multiallelic"], c["indels"], c["mnps"], c["monomorphic"], c["missing_calls"]) == \
        (9, 4, 1, 2, 1, 1, 1)
    assert c["empty_contigs"] == []  # chr2 has no record at all and is not a locus
    assert data.genotypes[3].tolist() == [0, 1, -1, -1, 1, 1, 0, 0]
    assert data.missing_rate == pytest.approx(2 / 32)


def test_records_that_failed_a_filter_or_are_mnps_are_skipped_and_counted(tmp_path):
    # GATK VariantFiltration marks records in the FILTER column: PASS or '.' pass; q10 is not declared in the header
    # (htslib adds it with a warning, as real files lacking a ##FILTER line are read).
    header = HEADER + '##FILTER=<ID=LowQual,Description="Low quality">\n' + GT_LINE
    mnp = ("chr1", 40, "AC", "GT", ["0|1", "0|0", "1|1", "0|0"])  # passes, and is skipped as a multi-nucleotide variant
    rows = [GOOD_ROWS[0], (*GOOD_ROWS[1], "LowQual"), (*GOOD_ROWS[2], "q10;LowQual"), mnp, (*GOOD_ROWS[3], ".")]
    data = load(tmp_path, vcf=vcf_text(rows, header=header))
    c = data.counts
    assert (c["records"], c["snps"], c["mnps"], c["filtered"], c["filters"]) == (5, 2, 1, 2, {"LowQual": 2, "q10": 1})
    assert data.positions.tolist() == [10, 5]
    kept = load(tmp_path, vcf=vcf_text(rows, header=header), keep_filtered=True)
    assert (kept.counts["snps"], kept.counts["filtered"], kept.positions.tolist()) == (4, 0, [10, 20, 35, 5])
    with pytest.raises(DataError, match=r"no usable biallelic SNP among 2 records \(.*2 failing a FILTER \(LowQual 2, "
                                        r"q10 1\); predict\.keep_filtered \(--keep-filtered\) would use them\)"):
        load(tmp_path, vcf=vcf_text(rows[1:3], header=header))
    vcf = write(tmp_path, "f.vcf", vcf_text(rows, header=header))
    popmap = write(tmp_path, "p.tsv", POPMAP)
    split = "1 MNP (bcftools norm -a or vcfallelicprimitives splits them into SNPs)"
    for flag, shown in (([], f"skipped 0 multi-allelic, 0 indels, 0 monomorphic, {split}, 2 failing a FILTER (LowQual 2, q10 1);"),
                        (["--keep-filtered"], f"skipped 0 multi-allelic, 0 indels, 0 monomorphic, {split};")):
        proc = subprocess.run([sys.executable, "-m", "popdl", "check-data", "--configfile", str(_config(tmp_path)),
                               "--vcf", str(vcf), "--popmap", str(popmap), *flag], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        assert shown in proc.stdout


def test_popmap_fields_keep_their_inner_spaces_between_tabs(tmp_path):
    text = "sample\tpopulation\nSample 01 \tLake Malawi\nb1\t pop2\t\nb2  pop2\na2 pop1\t\n"
    assert read_popmap(write(tmp_path, "p.tsv", text)) == {"Sample 01": "Lake Malawi", "b1": "pop2", "b2": "pop2", "a2": "pop1"}
    names = ["Sample 01", "a2", "b1", "b2"]
    data = load(tmp_path, vcf=vcf_text(names=names), popmap=text, entry={"populations": {"Lake Malawi": "pop1"}})
    assert data.individuals == names and data.populations.tolist() == ["pop1"] * 4 + ["pop2"] * 4


def test_a_hash_inside_a_popmap_label_is_kept_and_a_comment_after_the_columns_is_not(tmp_path):
    # 'Site #1' and 'Site #2' are two populations, not one 'Site'.
    text = "# field sites\na1\tSite #1\na2\tSite #1   # resampled\nb1\tSite #2\nb2 Pop#2\nc1\tpop3\t# note\n"
    assert read_popmap(write(tmp_path, "p.tsv", text)) == {"a1": "Site #1", "a2": "Site #1", "b1": "Site #2",
                                                         "b2": "Pop#2", "c1": "pop3"}


def test_a_popmap_r_wrote_with_its_quotes_reads_without_them(tmp_path):
    # write.table(quote = TRUE), R's default: every field in double quotes, separated by a tab or a space.
    tabbed = '"sample"\t"population"\n"a1"\t"pop1"\n"a2"\t"pop1"\n"b1"\t"pop2"\n"b2"\t"pop2"\n'
    assert read_popmap(write(tmp_path, "r.tsv", tabbed)) == {"a1": "pop1", "a2": "pop1", "b1": "pop2", "b2": "pop2"}
    spaced = '"a1" "Lake Malawi"\n"a2" "Lake Malawi"\n"b1" "pop2"\n'
    assert read_popmap(write(tmp_path, "r.txt", spaced)) == {"a1": "Lake Malawi", "a2": "Lake Malawi", "b1": "pop2"}


def test_popmap_exported_from_a_spreadsheet_as_csv_reads_as_a_table(tmp_path, caplog):
    import logging

    text = 'sample,population\n"Sample 01", "Lake Malawi"\na2 , pop1\nb1,pop2\nb2,pop2\n'
    with caplog.at_level(logging.INFO, logger="popdl"):
        popmap = read_popmap(write(tmp_path, "p.csv", text))
    assert popmap == {"Sample 01": "Lake Malawi", "a2": "pop1", "b1": "pop2", "b2": "pop2"}
    assert sum("read as comma-separated values" in r.getMessage() for r in caplog.records) == 1
    # Semicolons, as spreadsheets write CSV where the comma is the decimal mark.
    assert read_popmap(write(tmp_path, "q.csv", "a1;pop1\nb1;pop2\n")) == {"a1": "pop1", "b1": "pop2"}
    # A sample sheet's extra columns: one line saying so, and how to read it.
    with pytest.raises(DataError, match=r"line 1: 4 columns \(Sample, Pop, Lat, Lon\), not two: .* --popmap-columns "
                                        r"Sample Pop "):
        read_popmap(write(tmp_path, "s.csv", "Sample,Pop,Lat,Lon\na1,pop1,47.2,8.5\n"))
    # ... and a table without titles (a number on line 1) is told to keep two columns, not to read line 1 as titles.
    with pytest.raises(DataError, match=r"line 1: 4 columns \(a1, pop1, 47.2, 8.5\), not two, and no line of titles "
                                        r"\(a number among them\): keep the sample and population columns \(cut -f1,2 "):
        read_popmap(write(tmp_path, "r.csv", "a1,pop1,47.2,8.5\n"))
    # Words that float() reads ('NaN', 'Inf') are titles, not numbers.
    with pytest.raises(DataError, match=r"line 1: 3 columns \(Tissue, Song, NaN\), not two: read a sample sheet"):
        read_popmap(write(tmp_path, "t.csv", "Tissue,Song,NaN\na1,north,1\n"))


def test_csv_fields_with_spaces_split_at_the_comma_and_unknown_titles_are_left_out(tmp_path, caplog):
    import logging

    # 'a1, pop1' and '"b1","Lake Malawi"' split into two fields by spaces too ('a1,' 'pop1'): the comma wins.
    text = '"Sample ID","Pop label"\na1, pop1\na2,pop1\n"b1","Lake Malawi"\nb2,"Lake Malawi"\n'
    popmap = read_popmap(write(tmp_path, "p.csv", text))
    assert popmap == {"Sample ID": "Pop label", "a1": "pop1", "a2": "pop1", "b1": "Lake Malawi", "b2": "Lake Malawi"}
    # Titles popdl does not know ('Pop label'): line 1 names no sample of the data and no other line's
    # population, so it is read as titles, and left out without a warning, even with strict samples.
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = load(tmp_path, vcf=vcf_text(), popmap=text, entry={"populations": {"Lake Malawi": "pop2"}},
                    strict=True)
    assert data.individuals == NAMES and data.populations.tolist() == ["pop1"] * 4 + ["pop2"] * 4
    assert any("first line ('Sample ID', 'Pop label')" in r.getMessage() and "read as column titles" in r.getMessage()
               for r in caplog.records)
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    # A first sample whose population other lines share is a sample, missing from the data, and counted.
    with pytest.raises(DataError, match=r"1 popmap sample\(s\) not in the data: a0"):
        load(tmp_path, vcf=vcf_text(), popmap="a0\tpop1\n" + POPMAP.split("\n", 1)[1], strict=True)
    # Labels with a comma or a space are quoted in the lists that name them.
    with pytest.raises(DataError, match=r"population\(s\) 'Lake Malawi' of the popmap were left out"):
        load(tmp_path, vcf=vcf_text(), popmap=text)


def test_a_sample_renamed_in_the_popmap_but_not_in_the_vcf_is_named_by_the_number_both_names_keep(tmp_path, caplog):
    import logging

    # A specimen filed under another species after calling: 'A_wood_334171' in the VCF, 'A_cali_334171' in the
    # popmap.  Left out as before, with a line naming the pair; numbers shared by several names name no pair.
    names = ["A_wood_334171", "a2", "b1", "b2", "x_1234", "y_1234"]
    popmap = "A_cali_334171\tpop1\na1x\tpop1\na2\tpop1\nb1\tpop2\nb2\tpop2\nz_1234\tpop2\n"
    rows = [(c, p, r, a, g + ["0|0", "0|0"]) for c, p, r, a, g in GOOD_ROWS]
    with caplog.at_level(logging.INFO, logger="popdl"), pytest.raises(DataError, match="'pop1' has 1 individual"):
        load(tmp_path, vcf=vcf_text(rows, names=names), popmap=popmap)
    pairs = [r.getMessage() for r in caplog.records if "share the number" in r.getMessage()]
    assert len(pairs) == 1 and "sample 'A_wood_334171' of the data and 'A_cali_334171' of the popmap share the number " \
        "334171" in pairs[0]


def test_calls_at_depth_zero_are_missing_and_check_data_counts_them(tmp_path, caplog):
    import logging

    # bcftools call (and GATK 3) write 0/0 for a sample without a read: FORMAT DP 0.  A DP of '.' is no depth
    # known, not zero; a record without DP in its FORMAT keeps its calls.
    dp_line = '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n'
    rows = [("chr1", 10, "A", "G", ["0/1:7", "0/0:0", "1/1:5", "0/1:9"]),
            ("chr1", 20, "C", "T", ["1/0:3", "0/1:4", "0/0:0", "0/0:."]),
            ("chr2", 5, "T", "C", ["0/1:6", "./.:0", "0/0:8", "1/1:2"])]
    text = vcf_text(rows, header=HEADER + GT_LINE + dp_line, fmt="GT:DP")
    text += "chr2\t9\t.\tG\tA\t.\tPASS\t.\tGT\t0/0\t0/1\t0/0\t0/0\n"
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = load(tmp_path, vcf=text, phased=False, allow_unphased=True)
    g = data.genotypes  # haplotypes a1 a1 a2 a2 b1 b1 b2 b2
    assert g[0].tolist()[2:4] == [MISSING, MISSING] and g[1].tolist()[4:6] == [MISSING, MISSING]
    assert g[1].tolist()[6:8] == [0, 0] and g[3].tolist()[2:4] == [0, 1]  # DP '.', and no DP field: calls kept
    assert data.counts["depth_zero_calls"] == 2  # './.' at depth 0 was missing already
    assert any("2 genotype call(s) at depth 0 (FORMAT DP) read as missing" in r.getMessage() for r in caplog.records)
    vcf = write(tmp_path, "dp.vcf", text)
    proc = subprocess.run([sys.executable, "-m", "popdl", "check-data", "--configfile", str(_config(tmp_path)), "--vcf",
                           str(vcf), "--popmap", str(write(tmp_path, "p.tsv", POPMAP))], capture_output=True, text=True,
                          cwd=REPO)
    assert "2 of them called at depth 0 (FORMAT DP), read as missing;" in proc.stdout, proc.stdout
    assert proc.returncode == 1 and "a phased model refuses these data" in proc.stdout  # the tiny config is phased


def test_calls_failing_a_per_sample_filter_are_missing_unless_filtered_data_are_kept(tmp_path, caplog):
    import logging

    # GATK VariantFiltration --genotype-filter-expression marks calls in FORMAT FT and keeps their GT.
    ft_line = '##FORMAT=<ID=FT,Number=1,Type=String,Description="Genotype filter">\n'
    rows = [("chr1", 10, "A", "G", ["0/1:PASS", "1/1:LowGQ", "0/0:.", "0/1:DP;GQ"]),
            ("chr1", 20, "C", "T", ["1/0:PASS", "0/1:PASS", "0/0:PASS", "1/1:PASS"])]
    text = vcf_text(rows, header=HEADER + GT_LINE + ft_line, fmt="GT:FT")
    text += "chr2\t9\t.\tG\tA\t.\tPASS\t.\tGT\t0/0\t0/1\t1/1\t0/0\n"  # no FT in this record's FORMAT
    with caplog.at_level(logging.INFO, logger="popdl"):
        data = load(tmp_path, vcf=text, phased=False, allow_unphased=True)
    g = data.genotypes  # haplotypes a1 a1 a2 a2 b1 b1 b2 b2
    assert g[0].tolist() == [0, 1, MISSING, MISSING, 0, 0, MISSING, MISSING]
    assert MISSING not in g[1].tolist() + g[2].tolist() and data.counts["filtered_calls"] == 2
    assert "2 genotype call(s) failing a per-sample filter (FORMAT FT) read as missing" in caplog.text
    kept = load(tmp_path, vcf=text, phased=False, allow_unphased=True, keep_filtered=True)
    assert MISSING not in kept.genotypes[0].tolist() and not kept.counts.get("filtered_calls")
    vcf = write(tmp_path, "ft.vcf", text)
    proc = subprocess.run([sys.executable, "-m", "popdl", "check-data", "--configfile", str(_config(tmp_path)), "--vcf",
                           str(vcf), "--popmap", str(write(tmp_path, "p.tsv", POPMAP))], capture_output=True, text=True,
                          cwd=REPO)
    assert "2 of them failing a per-sample filter (FORMAT FT), read as missing (--keep-filtered keeps them);" in proc.stdout, \
        proc.stdout + proc.stderr


def test_a_popmap_line_pasted_twice_is_read_once_with_a_note(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="popdl"):
        popmap = read_popmap(write(tmp_path, "p.tsv", POPMAP + "a1\tpop1\nb2 \tpop2\n"))
        sheet = read_popmap(write(tmp_path, "s.csv", "ID,Site,Pop\na1,x,pop1\na1,x,pop1\nb1,y,pop2\n"), ["ID", "Pop"])
    assert popmap == dict(line.split("\t") for line in POPMAP.splitlines()[1:]) and sheet == {"a1": "pop1", "b1": "pop2"}
    notes = [r.getMessage() for r in caplog.records if "repeat a sample" in r.getMessage()]
    assert len(notes) == 2 and "2 line(s) repeat a sample with its population (a1, b2): read once" in notes[0]


def test_a_popmap_of_individuals_is_named_as_such(tmp_path):
    # Stacks' per-individual popmap (each sample its own population), given where one of populations belongs.
    popmap = "".join(f"{n}\t{n}\n" for n in NAMES)
    with pytest.raises(DataError, match=r"has 0 individual\(s\) but 2 were simulated; each of the popmap's 4 labels is "
                                        r"held by one sample \(the first: 'a1' 'a1'\): a popmap of individuals"):
        load(tmp_path, vcf=vcf_text(), popmap=popmap)


# A museum's sample sheet as a spreadsheet exports it: byte-order mark, CRLF, a title with a space, quoted
# fields holding commas, '#' inside a field, empty cells, rows of other populations and one without a label.
SHEET = ("\ufeffTissue.num,Species,Country,State,Preparator.num,Song Type,Latitude\r\n"
         "B01,PALUSTRIS,UNITED STATES,NORTH DAKOTA,LOSTWDS#2,EASTERN,48.56\r\n"
         "B02,PALUSTRIS,\"Mexico, Estado de\",,LOSTWDS#4,WESTERN,19.1\r\n"
         "B03,PALUSTRIS,UNITED STATES,,X#1,,40.0\r\n"
         ",,,,,,\r\n"
         "# a comment line\r\n"
         "B04 ,PALUSTRIS,UNITED STATES,IOWA,, EASTERN ,41.9\r\n")


def test_a_sample_sheet_is_read_by_the_two_columns_named_by_title_or_number(tmp_path, caplog):
    import logging

    path = write(tmp_path, "sheet.csv", SHEET)
    with pytest.raises(DataError, match=r"line 1: 7 columns \(Tissue.num, Species, Country, State and 3 more\), not two: "
                                        r".* --popmap-columns Tissue.num Species \(config popmap_columns\)"):
        read_popmap(path)
    want = {"B01": "EASTERN", "B02": "WESTERN", "B04": "EASTERN"}
    with caplog.at_level(logging.INFO, logger="popdl"):
        assert read_popmap(path, ["Tissue.num", "Song Type"]) == want
    assert any("left out 1 row(s) without a sample or population (B03)" in r.getMessage() for r in caplog.records)
    assert read_popmap(path, ["tissue num", "song_type"]) == want  # without case, spaces, '_', '.'
    assert read_popmap(path, ["1", 6]) == want  # numbers, counted from 1, as the CLI and YAML give them
    # Tab-separated, and a title that is a number (a column titled '2' is that column, not the second).
    tabbed = write(tmp_path, "sheet.tsv", "id\tx\t2\na1\t7\tpop1\nb1\t8\tpop2\n")
    assert read_popmap(tabbed, ["id", "2"]) == {"a1": "pop1", "b1": "pop2"}
    assert read_popmap(tabbed, ["id", 2]) == {"a1": "7", "b1": "8"}


def test_check_data_reads_a_sample_sheet_with_popmap_columns_and_suggests_them(tmp_path):
    sheet = "Tissue,Region,Song Type\n" + "".join(f"{n},north,{p}\n" for n, p in zip(NAMES, ["EAST", "EAST", "WEST", "WEST"]))
    vcf = write(tmp_path, "d.vcf", vcf_text())
    popmap = write(tmp_path, "sheet.csv", sheet)
    out = tmp_path / "suggest.yaml"
    cmd = [sys.executable, "-m", "popdl", "check-data", "--configfile", str(REPO / "config" / "config.yaml"), "--vcf",
           str(vcf), "--popmap", str(popmap), "--populations", "EAST=pop1", "WEST=pop2", "--suggest-config", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0 and "--popmap-columns Tissue Region" in proc.stderr
    proc = subprocess.run(cmd + ["--popmap-columns", "Tissue", "Song Type"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("samples read from the sample sheet's columns") == 1, proc.stderr  # read twice, said once
    import yaml

    entry = yaml.safe_load(out.read_text())["predict"]["data"][0]
    assert entry["popmap_columns"] == ["Tissue", "Song Type"] and entry["populations"] == {"EAST": "pop1", "WEST": "pop2"}
    assert yaml.safe_load(out.read_text())["samples"] == {"pop1": 2, "pop2": 2}
    # The suggestion over the default config is a valid config, and its data set reads through the sheet.
    from popdl.config import load_config, load_yaml

    config = load_config(REPO / "config" / "config.yaml", overrides=load_yaml(out, name="suggestion"))
    entry = config["predict"]["data"][-1]
    data = read_observed(entry, samples={"pop1": 2, "pop2": 2}, seed=1)
    assert data.individuals == NAMES and data.populations.tolist() == ["pop1"] * 4 + ["pop2"] * 4


@pytest.mark.parametrize("header", ["sample_ID,population", "INDIVIDUALS\tSTRATA", "Sample Name\tPop-ID",
                                    "ind\tsite", "id species"])
def test_popmap_header_lines_as_tools_and_spreadsheets_write_them_are_skipped(tmp_path, header):
    # radiator's strata files open with 'INDIVIDUALS STRATA'; sheets with 'sample_ID,population'.
    sep = "," if "," in header else "\t"
    popmap = read_popmap(write(tmp_path, "p.txt", f"{header}\na1{sep}pop1\nb1{sep}pop2\n"))
    assert popmap == {"a1": "pop1", "b1": "pop2"}


def test_a_popmap_whose_first_sample_is_named_like_a_title_is_not_a_header(tmp_path):
    # Only a first line of two column titles is a header: a sample 'id' of population 'pop1' is a sample.
    assert read_popmap(write(tmp_path, "p.txt", "id\tpop1\nb1\tpop2\n")) == {"id": "pop1", "b1": "pop2"}


def test_a_lone_dot_is_a_missing_diploid_call(tmp_path):
    # FreeBayes (and so dDocent's RAD VCFs) writes every missing call as '.', whatever the ploidy.
    rows = [("chr1", 10, "A", "G", ["0|1", ".", "1|1", "0|1"]),
            ("chr1", 20, "C", "T", [".", ".", ".", "."]),
            ("chr1", 30, "G", "A", [".", "0|0", "0|1", "./."])]
    data = load(tmp_path, vcf=vcf_text(rows))
    # missing calls of every biallelic record read, the all-missing (monomorphic) one included: 1 + 4 + 2
    assert (data.counts["snps"], data.counts["monomorphic"], data.counts["missing_calls"]) == (2, 1, 7)
    assert data.genotypes.tolist() == [[0, 1, -1, -1, 1, 1, 0, 1], [-1, -1, 0, 0, 0, 1, -1, -1]]
    with pytest.raises(DataError, match=r"chr1:10 has haploid genotype calls"):  # '1' is a haploid call, not missing
        load(tmp_path, vcf=vcf_text([("chr1", 10, "A", "G", ["0|1", ".", "1", "0|1"])]))


def test_gzipped_vcf_and_unphased_when_allowed(tmp_path):
    rows = [GOOD_ROWS[0], ("chr1", 20, "C", "T", ["0/1", "0/0", "1/1", "0|1"])]
    path = write(tmp_path, "x.vcf.gz", vcf_text(rows), gz=True)
    popmap = read_popmap(write(tmp_path, "p.tsv", POPMAP))
    data = read_vcf(path, popmap=popmap, samples=SAMPLES, seed=1, allow_unphased=True)
    assert data.counts["unphased_heterozygous"] == 1 and data.genotypes.shape == (2, 8)
    with pytest.raises(DataError, match="unphased"):
        read_vcf(path, popmap=popmap, samples=SAMPLES, seed=1)


def test_subsampling_is_reproducible(tmp_path):
    names = [f"a{i}" for i in range(6)] + ["b1", "b2"]
    popmap = "".join(f"{n}\tpop1\n" for n in names[:6]) + "b1\tpop2\nb2\tpop2\n"
    rows = [("chr1", 10 * (i + 1), "A", "G", ["0|1"] * 8) for i in range(3)]
    picks = {tuple(load(tmp_path, vcf=vcf_text(rows, names=names), popmap=popmap).individuals) for _ in range(3)}
    assert len(picks) == 1
    (pick,) = picks
    assert len(pick) == 4 and pick[-2:] == ("b1", "b2")
    assert len(set(pick[:2])) == 2 and set(pick[:2]) <= set(names[:6])  # any 2 of the 6, but always the same ones


def test_fasta_reads_alignment_columns(tmp_path):
    seqs = dict(GOOD_FASTA)
    seqs["a2_2"] = "NCGTA"  # missing call
    seqs["b2_1"] = "AC-TA"  # gap: column 3 is an indel column
    data = load(tmp_path, fasta=[fasta_text(seqs), fasta_text(GOOD_FASTA)])
    # locus 0: columns 1 and 5 (A/T) are SNPs, column 3 has a gap, column 4 is
    # monomorphic; locus 1: columns 1, 3 and 5.
    assert data.counts["indels"] == 1 and data.counts["missing_calls"] == 1
    assert data.locus.tolist() == [0, 0, 1, 1, 1] and data.length == 10
    assert data.genotypes[0].tolist() == [0, 0, 0, -1, 1, 0, 0, 0]
    assert data.genotypes[1].tolist() == [0, 1, 0, 0, 0, 0, 0, 0]


def test_fasta_two_records_with_the_sample_name(tmp_path):
    text = "".join(f">{k[:2]}\n{v}\n" for k, v in GOOD_FASTA.items())
    data = read_fasta([write(tmp_path, "l.fa", text)], popmap=read_popmap(write(tmp_path, "p", POPMAP)), samples=SAMPLES, seed=0)
    assert data.genotypes.shape[1] == 8 and data.counts["snps"] == 3


def test_features_from_vcf_equal_features_of_the_simulation(tmp_path):
    """A simulation written as a VCF and read back gives the same image and statistics."""
    config = prepare(tiny_config(), base_dirs=(REPO,))
    scenario = Scenario.from_config("isolation", config)
    sim = simulator_for(scenario, config)
    params = {"N_anc": 8000.0, "N1": 3000.0, "N2": 9000.0, "T_split": 4000.0}
    g = sim.simulate(scenario, params, {"seed_ancestry": 3, "seed_mutation": 4, "seed_fsc": 5})
    assert 4 < g.positions.size <= 32, g.positions.size
    positions = np.floor(g.positions).astype(int) + 1
    assert np.unique(positions).size == positions.size
    names = [f"{p}_{i}" for p, n in config["samples"].items() for i in range(n)]
    rows = []
    for k in range(g.positions.size):
        h = g.genotypes[k]
        rows.append(("chr1", positions[k], "A", "C", [f"{h[2 * i]}|{h[2 * i + 1]}" for i in range(len(names))]))
    popmap = "".join(f"{n}\t{n.split('_')[0]}\n" for n in names)
    features = {**FEATURES, "snps": 32, "stats": ["segsites", "pi", "theta_w", "tajimas_d", "hap_diversity", "fst", "dxy", "sfs", "jsfs"]}
    data = load(tmp_path, vcf=vcf_text(rows, names=names), popmap=popmap, samples=config["samples"],
                genome_length=config["genome"]["length"])
    got = observed_features(data, features=features, genome=config["genome"], seed=1, replicates=5)
    labels = population_labels(config["samples"])
    image, dist, n = genotype_image(g.genotypes.astype(np.int8), positions.astype(float), g.locus, populations=labels,
                                    snps=32, length=config["genome"]["length"], rng=np.random.default_rng(0))
    assert got["images"].shape == (1, labels.size, 32)  # fewer SNPs than columns: one image, no replicates
    np.testing.assert_array_equal(got["images"][0], image)
    np.testing.assert_allclose(got["distances"][0], dist, rtol=1e-6)
    spec = StatsSpec(stats=features["stats"], populations=labels, jsfs_bins=4)
    expected = summary_stats(g.genotypes.astype(np.int8), g.locus, spec=spec, total_length=config["genome"]["length"], loci=1)
    np.testing.assert_allclose(got["stats"], expected)
    assert got["stat_names"].tolist() == spec.names


def test_replicates_are_different_snp_subsets(tmp_path):
    rng = np.random.default_rng(5)
    rows = []
    for k in range(40):
        gts = rng.integers(0, 2, size=(4, 2))
        gts[0] = [0, 1]  # keep every site polymorphic
        rows.append(("chr1", 10 + 7 * k, "A", "G", [f"{a}|{b}" for a, b in gts]))
    data = load(tmp_path, vcf=vcf_text(rows))
    out = observed_features(data, features=FEATURES, genome=GENOME, seed=3, replicates=4)
    assert out["images"].shape == (4, 8, 8) and (out["n_snps"] == 8).all()
    assert len({img.tobytes() for img in out["images"]}) > 1
    again = observed_features(data, features=FEATURES, genome=GENOME, seed=3, replicates=4)
    np.testing.assert_array_equal(out["images"], again["images"])
    windows = observed_features(data, features={**FEATURES, "snp_selection": "central"}, genome=GENOME, seed=3, replicates=4)
    assert windows["images"].shape == (4, 8, 8)


def test_add_missing_rate_and_pairs():
    g = np.zeros((2000, 10), dtype=np.int8)
    out = add_missing(g, rate=0.1, rng=np.random.default_rng(0))
    missing = out == -1
    assert missing.mean() == pytest.approx(0.1, abs=0.01)
    np.testing.assert_array_equal(missing[:, 0::2], missing[:, 1::2])
    assert (g == 0).all()  # input untouched


def test_missing_rate_in_features_chunk(tmp_path):
    from popdl.features import features_chunk, load_features
    from popdl.plan import plan_draws
    from popdl.simulate import simulate_chunk

    config = prepare(tiny_config(), base_dirs=(REPO,))
    scenario = Scenario.from_config("isolation", config)
    plan = plan_draws(scenario, root_seed=7, start=0, stop=3)
    simulate_chunk(config, scenario, plan, tmp_path / "s.npz")
    fcfg = {**config["features"], "missing_rate": 0.3}
    features_chunk({"seed": 7, "features": fcfg}, tmp_path / "s.npz", tmp_path / "f.npz")
    features_chunk({"seed": 7, "features": config["features"]}, tmp_path / "s.npz", tmp_path / "g.npz")
    with_missing, without = load_features(tmp_path / "f.npz"), load_features(tmp_path / "g.npz")
    zeros = lambda f: (f["images"][:, :, :4] == 0).mean()  # noqa: E731  (first columns are always real SNPs)
    assert zeros(with_missing) > zeros(without) + 0.1


def test_shipped_example_reads(tmp_path):
    config = prepare(tiny_config(samples={"pop1": 10, "pop2": 10}), base_dirs=(REPO,))
    data = read_observed({"name": "example", "vcf": "config/data/example.vcf.gz", "popmap": "config/data/example_popmap.tsv"},
                          samples=config["samples"], seed=42, base_dir=REPO)
    assert data.counts["individuals_in_file"] == 21 and len(data.individuals) == 20
    assert data.counts["multiallelic"] == 1 and data.counts["indels"] == 1 and data.counts["snps"] > 100


def test_cli_error_is_one_line(tmp_path):
    vcf = write(tmp_path, "d.vcf", vcf_text([_row(0, ["0", "1", "0", "1"])]))
    popmap = write(tmp_path, "p.tsv", POPMAP)
    proc = subprocess.run([sys.executable, "-m", "popdl", "check-data", "--configfile", str(_config(tmp_path)),
                           "--vcf", str(vcf), "--popmap", str(popmap)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "haploid genotype calls" in proc.stderr


def _config(folder):
    from conftest import write_config

    return write_config(folder, tiny_config(samples=SAMPLES))


def test_record_batches_do_not_change_what_is_read(tmp_path, monkeypatch):
    """The reader checks and keeps the genotypes of its records in batches: any batch size gives the same
    genotypes, positions, loci, IDs and counts as one record at a time, with subsampling, missing calls,
    multi-allelic calls, phased and unphased heterozygotes, filters and a haploid contig among them."""
    import popdl.observed as observed

    rng = np.random.default_rng(3)
    names = [f"s{i}" for i in range(10)]
    calls = np.array(["0|0", "0|1", "1|0", "1|1", "./.", "0/1", "1|2"])
    rows = []
    for chrom, sites in (("chr1", 40), ("chr2", 25), ("chrX", 6)):
        for pos in range(1, sites + 1):
            gts = list(calls[rng.choice(7, size=10, p=[0.4, 0.15, 0.15, 0.15, 0.1, 0.04, 0.01])])
            if chrom == "chrX" and pos == 3:
                gts[0] = "1"  # a haploid call: the contig is left out
            rows.append((chrom, pos * 10, "A", "G,T" if pos % 13 == 0 else "G", gts,
                         "LowQual" if pos % 11 == 0 else "PASS"))
    path = tmp_path / "mixed.vcf"
    path.write_text(vcf_text(rows, names=names, header=HEADER.replace("chr2,length=1000>\n", "chr2,length=1000>\n"
                                                                       "##contig=<ID=chrX,length=1000>\n") + GT_LINE))
    popmap = {n: ("pop1" if i < 6 else "pop2") for i, n in enumerate(names)}
    read = []
    for batch in (1, 7, 1024):
        monkeypatch.setattr(observed, "RECORD_BATCH", batch)
        read.append(read_vcf(path, popmap=popmap, samples={"pop1": 3, "pop2": 2}, seed=5, allow_unphased=True))
    first = read[0]
    assert first.counts["snps_lost_to_subsampling"] > 0 and first.counts["multiallelic"] > 0
    assert first.counts["unphased_heterozygous"] > 0 and first.counts["haploid"] > 0 and first.counts["filtered"] > 0
    for other in read[1:]:
        assert np.array_equal(other.genotypes, first.genotypes) and other.genotypes.dtype == np.int8
        assert np.array_equal(other.positions, first.positions) and np.array_equal(other.locus, first.locus)
        assert other.ids == first.ids and other.loci == first.loci and other.counts == first.counts
        assert np.array_equal(other.file_alleles, first.file_alleles)
    # Unphased calls refused by a phased model: the first such record and sample, whatever the batch.
    messages = set()
    for batch in (1, 1024):
        monkeypatch.setattr(observed, "RECORD_BATCH", batch)
        with pytest.raises(DataError, match="has an unphased heterozygous call") as err:
            read_vcf(path, popmap=popmap, samples={"pop1": 3, "pop2": 2}, seed=5)
        messages.add(str(err.value))
    assert len(messages) == 1, messages


def test_records_out_of_order_read_as_the_sorted_file(tmp_path, caplog):
    """A VCF whose records go back in position, and whose contigs interleave (Stacks writes the loci of a
    reference-aligned catalogue by their start, a minus-strand locus's start being its last base), reads as
    the same file sorted by bcftools: genotypes, positions, loci and IDs; one log line counts the records."""
    rng = np.random.default_rng(11)
    names = [f"s{i}" for i in range(8)]
    calls = np.array(["0/0", "0/1", "1/1", "./."])
    rows = [(chrom, pos * 7 + 3, f"{chrom}_{pos}", [str(c) for c in rng.choice(calls, size=8, p=[0.5, 0.25, 0.15, 0.1])])
            for chrom, sites in (("chr1", 30), ("chr2", 20)) for pos in range(sites)]
    rows.append(("chr2", rows[-1][1], "chr2_twin", ["0/1"] * 8))  # two records at one position keep their file order

    def text(order):
        lines = [HEADER + GT_LINE + COLUMNS + "".join(f"\t{n}" for n in names)]
        lines += ["\t".join([c, str(p), i, "A", "G", ".", "PASS", ".", "GT", *g]) for c, p, i, g in (rows[k] for k in order)]
        return "\n".join(lines) + "\n"

    shuffled = list(rng.permutation(len(rows) - 1)) + [len(rows) - 1]
    shuffled.insert(0, shuffled.pop(shuffled.index(0)))  # chr1 first, so that contigs keep their order
    (tmp_path / "sorted.vcf").write_text(text(range(len(rows))))
    (tmp_path / "shuffled.vcf").write_text(text(shuffled))
    popmap = {n: ("pop1" if i < 4 else "pop2") for i, n in enumerate(names)}
    read = {}
    for name in ("sorted", "shuffled"):
        with caplog.at_level("INFO", logger="popdl.observed"):
            caplog.clear()
            read[name] = read_vcf(tmp_path / f"{name}.vcf", popmap=popmap, samples={"pop1": 4, "pop2": 4}, seed=5, phased=False)
        noted = [r.getMessage() for r in caplog.records if "out of position order" in r.getMessage()]
        assert len(noted) == (name == "shuffled")
    good, bad = read["sorted"], read["shuffled"]
    assert good.counts["out_of_order"] == 0 and bad.counts["out_of_order"] > 10
    assert np.array_equal(bad.genotypes, good.genotypes) and np.array_equal(bad.positions, good.positions)
    assert np.array_equal(bad.locus, good.locus) and bad.loci == good.loci == ["chr1", "chr2"]
    assert bad.ids == good.ids and bad.ids[-1] == "chr2_twin"
    assert np.all(np.diff(bad.positions[bad.locus == 0]) > 0)
    assert {k: v for k, v in bad.counts.items() if k != "out_of_order"} == {k: v for k, v in good.counts.items() if k != "out_of_order"}
