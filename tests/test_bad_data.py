"""Safe outputs and bad observed data.

* An output folder (``popdl dataset --out``, ``popdl train --out``) replaces
  only an absent, empty or popdl-written folder; any other is refused before
  work, and nothing of it is touched.  Temporaries a killed job left behind
  are removed by the next write of the same destination.
* Broken observed data (VCF, popmap) and broken model folders are refused by
  ``popdl observe`` and ``popdl predict`` with one line on stderr naming the
  file and the problem, a non-zero exit, no traceback and nothing written.

Every command runs as the user runs it, ``python -m popdl ...`` in a
subprocess; none of them starts TensorFlow (every refusal comes before Keras).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_config

from popdl.io import MARKER, OutputError, atomic_dir, atomic_path, check_output_dir

EXAMPLE_VCF = REPO / "config" / "data" / "example.vcf.gz"
EXAMPLE_POPMAP = REPO / "config" / "data" / "example_popmap.tsv"
# The shipped example: 11 + 10 phased diploids on ten 100 kb contigs (chr1..chr10).
SAMPLES = {"pop1": 10, "pop2": 10}
GENOME = {"loci": 10, "length": 100000, "mutation_rate": 1.0e-8, "recombination_rate": 1.0e-8}  # the shipped example's
SNPS = 32

_TEXT = gzip.decompress(EXAMPLE_VCF.read_bytes()).decode()
HEADER = [line for line in _TEXT.splitlines() if line.startswith("#")]
RECORDS = [line for line in _TEXT.splitlines() if not line.startswith("#")]
POPMAP = EXAMPLE_POPMAP.read_text()
N_COLUMNS = len(HEADER[-1].split("\t"))


# ---------------------------------------------------------------------------------- helpers
def run_popdl(*args, cwd=REPO, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "popdl", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (asserting there is exactly one, and no traceback)."""
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("popdl:"), lines[0]
    return lines[0]


def listing(folder: Path) -> dict[str, int]:
    """Every entry under ``folder`` (hidden ones too) with its size; {} when absent."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1) for p in sorted(folder.rglob("*"))}


def absolute_graphs(config: dict) -> dict:
    for scenario in config["scenarios"].values():
        if isinstance(scenario.get("graph"), str):
            scenario["graph"] = str(REPO / scenario["graph"])
    return config


def config_file(folder: Path, *, tiny: bool = False, **overrides) -> Path:
    """The tiny config (``tiny``: as the tiny dataset was made; else for the shipped example) as config.yaml."""
    settings = {} if tiny else {"samples": SAMPLES, "genome": GENOME, "features": {"snps": SNPS}}
    config = absolute_graphs(tiny_config(**{**settings, **overrides}))
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def vcf_text(records=RECORDS[:40], header=HEADER) -> str:
    return "\n".join([*header, *records]) + "\n"


def with_field(index: int, column: int, value: str, records=RECORDS[:40]) -> list[str]:
    """The records, with column ``column`` of record ``index`` replaced by ``value``."""
    out = list(records)
    fields = out[index].split("\t")
    fields[column] = value
    out[index] = "\t".join(fields)
    return out


def with_record(index: int, change, records=RECORDS[:40]) -> list[str]:
    """The records, with record ``index``'s fields replaced by ``change(fields)``."""
    out = list(records)
    out[index] = "\t".join(change(out[index].split("\t")))
    return out


def with_genotypes(index: int, genotypes: list[str]) -> list[str]:
    out = list(RECORDS[:40])
    fields = out[index].split("\t")
    out[index] = "\t".join(fields[:9] + genotypes + fields[9 + len(genotypes):])
    return out


BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def bgzf(data: bytes, *, block: int = 4000, eof: bool = True) -> tuple[bytes, list[int]]:
    """``data`` as BGZF (what bgzip writes): gzip blocks with the BC extra field; and the block ends."""
    out, ends = b"", []
    for i in range(0, len(data), block):
        chunk = data[i:i + block]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        comp = c.compress(chunk) + c.flush()
        out += (b"\x1f\x8b\x08\x04\0\0\0\0\0\xff\x06\0BC\x02\0" + struct.pack("<H", len(comp) + 25) + comp
                + struct.pack("<II", zlib.crc32(chunk), len(chunk)))
        ends.append(len(out))
    return out + (BGZF_EOF if eof else b""), ends


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------- a model folder
def model_folder(folder: Path, *, bundle_change=None, keras_bytes: bytes | None = None) -> Path:
    """A model folder with a complete bundle.json (the tiny config, SNPS columns) and a model.keras
    archive with the members Keras 3 writes; every refusal tested here comes before Keras loads it."""
    from popdl.config import prepare
    from popdl.stages import DATA_KEYS

    config = prepare(absolute_graphs(tiny_config(samples=SAMPLES, genome=GENOME, features={"snps": SNPS})), base_dirs=(REPO,))
    haplotypes = 2 * sum(SAMPLES.values())
    bundle = {
        "format": 1, "scenarios": list(config["scenarios"]), "param_names": ["N1"],
        "scenario_params": {s: ["N1"] for s in config["scenarios"]}, "stat_names": [], "network": "cnn2d",
        "inputs": ["image", "distances"], "shapes": {"image": [haplotypes, SNPS], "distances": [SNPS]},
        "tasks": ["classify", "regress"], "temperature": 1.0, "quantiles": [0.05, 0.5, 0.95],
        "preprocessing": {}, "hyper_parameters": {}, "provenance": {}, "config": {k: config[k] for k in DATA_KEYS},
    }
    if bundle_change is not None:
        bundle_change(bundle)
    folder.mkdir(parents=True)
    (folder / "bundle.json").write_text(json.dumps(bundle))
    if keras_bytes is None:
        keras_bytes = keras_archive()
    (folder / "model.keras").write_bytes(keras_bytes)
    return folder


def keras_archive(members=("metadata.json", "config.json", "model.weights.h5")) -> bytes:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"popdl-test-{os.getpid()}.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in members:
            zf.writestr(name, json.dumps({"member": name, "padding": "x" * 3000}))
    data = path.read_bytes()
    path.unlink()
    return data


def flip_byte_inside(data: bytes, member: str) -> bytes:
    """The archive with one byte of ``member``'s compressed data changed (its CRC no longer matches)."""
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    pos = start + info.compress_size // 2
    return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:]


def set_key(path: str, value):
    def change(bundle):
        *parents, last = path.split(".")
        d = bundle
        for p in parents:
            d = d[p]
        d[last] = value
    return change


# ---------------------------------------------------------------------------------- bad data cases
# Each case: (id, builder, regex).  builder(tmp) writes the bad input(s) in tmp and returns
# {"vcf": ..., "popmap": ...}; "via" (default observe; predict, scan) picks the command.  The one stderr
# line must match the regex.
def _vcf(text_or_bytes, name="data.vcf"):
    return lambda tmp: {"vcf": write(tmp, name, text_or_bytes), "popmap": EXAMPLE_POPMAP}


def _popmap(text_or_bytes):
    return lambda tmp: {"vcf": EXAMPLE_VCF, "popmap": write(tmp, "popmap.tsv", text_or_bytes)}


_FULL = vcf_text(RECORDS)
_GZ = gzip.compress(_FULL.encode())
_BGZ, _BLOCK_ENDS = bgzf(_FULL.encode())
_POP_LINES = POPMAP.splitlines()


def _corrupt_gzip() -> bytes:
    data = bytearray(_GZ)
    for i in range(len(data) // 2, len(data) // 2 + 40):
        data[i] ^= 0x5A
    return bytes(data)


DATA_CASES = [
    # --- cut short: plain, gzip, BGZF
    ("vcf-plain-cut-mid-record", _vcf(_FULL[: len(_FULL) * 2 // 3]),
     r"data\.vcf: the file ends in the middle of a record \(its last line has \d+ of 30 columns\): it is truncated"),
    ("vcf-plain-cut-in-header", _vcf("\n".join(HEADER[:4]) + "\n"), r"data\.vcf: no #CHROM header line"),
    ("vcf-gzip-cut", _vcf(_GZ[: len(_GZ) * 2 // 3], "data.vcf.gz"), r"data\.vcf\.gz: .*gzip.*truncated"),
    ("vcf-gzip-corrupt", _vcf(_corrupt_gzip(), "data.vcf.gz"), r"data\.vcf\.gz: the gzip data are damaged"),
    ("vcf-bgzf-cut-mid-block", _vcf(_BGZ[: _BLOCK_ENDS[2] + 100], "data.vcf.gz"),
     r"data\.vcf\.gz: the BGZF stream ends early: the file is truncated"),
    ("vcf-bgzf-cut-at-block-end", _vcf(_BGZ[: _BLOCK_ENDS[2]], "data.vcf.gz"),
     r"data\.vcf\.gz: the file ends in the middle of a record .* it is truncated"),
    ("vcf-gzip-cut-via-predict", dict(via="predict", build=_vcf(_GZ[: len(_GZ) // 2], "data.vcf.gz")),
     r"data\.vcf\.gz: .*gzip.*truncated"),
    ("vcf-bgzf-cut-via-scan", dict(via="scan", build=_vcf(_BGZ[: _BLOCK_ENDS[1] + 50], "data.vcf.gz")),
     r"data\.vcf\.gz: the BGZF stream ends early: the file is truncated"),
    # --- malformed records
    ("vcf-non-numeric-pos", _vcf(vcf_text(with_field(5, 1, "12x4"))),
     r"record 6 \(after chr1:\d+\) cannot be parsed: Could not parse the position '12x4'"),
    ("vcf-short-line", _vcf(vcf_text(with_record(5, lambda f: f[:20]))),
     r"record 6 .*cannot be parsed: Number of columns at chr1:\d+ does not match the number of samples \(11 vs 21\)"),
    ("vcf-no-format-columns", _vcf(vcf_text(with_record(5, lambda f: f[:8]))),
     r"chr1:\d+ has no FORMAT and sample columns \(8 columns; the header has 30\)"),
    ("vcf-format-without-gt", _vcf(vcf_text(with_record(5, lambda f: [*f[:8], "DP"] + ["7"] * 21))),
     r"chr1:\d+ has no genotypes: its FORMAT is 'DP', without GT"),
    ("vcf-gt-cut-0|", _vcf(vcf_text(with_genotypes(3, ["0|"]))), r"record 4 .*cannot be parsed: Couldn't read GT data"),
    ("vcf-gt-bases-not-indexes", _vcf(vcf_text(with_genotypes(0, ["A|G"]))), r"record 1 cannot be parsed: Couldn't read GT data"),
    ("vcf-gt-empty-via-scan", dict(via="scan", build=_vcf(vcf_text(with_genotypes(9, ["0|0", ""])))),
     r"record 10 \(after chr1:\d+\) cannot be parsed: Couldn't read GT data"),
    ("vcf-ploidy-3", _vcf(vcf_text(with_genotypes(2, ["0|1|1"]))), r"chr1:\d+ has genotype calls of ploidy 3"),
    ("vcf-haploid-calls", _vcf(vcf_text(with_genotypes(2, ["0", "1"]))), r"chr1:\d+ has haploid genotype calls"),
    ("vcf-unphased", _vcf(vcf_text(with_genotypes(4, ["0/1"]))), r"chr1:\d+ sample pop1_01 has an unphased heterozygous call"),
    ("vcf-space-separated-records", _vcf(vcf_text([r if i != 7 else r.replace("\t", " ") for i, r in enumerate(RECORDS[:40])])),
     r"record 8 is not tab-separated"),
    ("vcf-most-calls-missing", _vcf(vcf_text([with_record(i, lambda f: f[:9] + [".|."] * 15 + f[24:])[i] for i in range(40)])),
     r"data set 'obs': 7\d\.\d% of genotype calls are missing, above predict\.max_missing \(50%\)"),
    ("vcf-only-indels", _vcf(vcf_text([with_field(i, 3, "AT")[i] for i in range(10)][:10])),
     r"no usable biallelic SNP among 10 records"),
    ("vcf-gvcf", _vcf(vcf_text(with_field(4, 4, "<NON_REF>"))),
     r"chr1:\d+ has the allele <NON_REF>: a gVCF or bcftools mpileup's output, whose sites are not genotyped yet; "
     r"genotype it first \(GATK GenotypeGVCFs, bcftools call -mv\)"),
    ("vcf-mpileup-via-scan", dict(via="scan", build=_vcf(vcf_text(with_field(2, 4, "G,<*>")))),
     r"chr1:\d+ has the allele <\*>: a gVCF or bcftools mpileup's output"),
    # --- header problems
    ("vcf-empty-file", _vcf(""), r"data\.vcf: the file is empty"),
    ("vcf-header-only", _vcf(vcf_text([])), r"data\.vcf: no variant records"),
    ("vcf-no-samples", _vcf(vcf_text([]).replace("\tFORMAT\t" + "\t".join(HEADER[-1].split("\t")[9:]), "")),
     r"data\.vcf: no sample columns"),
    ("vcf-duplicated-sample", _vcf(vcf_text(header=[*HEADER[:-1], HEADER[-1].replace("pop1_02", "pop1_01")])),
     r"sample\(s\) pop1_01 appear twice in the header"),
    ("vcf-chrom-line-with-spaces", _vcf(vcf_text(header=[*HEADER[:-1], HEADER[-1].replace("\t", " ")])),
     r"the #CHROM header line is not tab-separated"),
    ("vcf-column-9-not-format", _vcf(vcf_text(header=[*HEADER[:-1], HEADER[-1].replace("FORMAT", "FMT")])),
     r"column 9 of the #CHROM header line is 'FMT', not FORMAT"),
    ("vcf-byte-order-mark", _vcf("\ufeff" + _FULL), r"starts with a UTF-8 byte-order mark"),
    ("vcf-no-fileformat-line", _vcf(vcf_text(header=HEADER[1:])), r"not a VCF file"),
    ("vcf-is-the-popmap", lambda tmp: {"vcf": EXAMPLE_POPMAP, "popmap": EXAMPLE_POPMAP}, r"example_popmap\.tsv: not a VCF file"),
    ("vcf-is-a-folder", lambda tmp: {"vcf": tmp, "popmap": EXAMPLE_POPMAP}, r"VCF .*: is a folder, not a file"),
    ("vcf-missing", lambda tmp: {"vcf": tmp / "nowhere.vcf.gz", "popmap": EXAMPLE_POPMAP}, r"nowhere\.vcf\.gz: file not found"),
    ("vcf-lacks-a-popmap-sample", _vcf(vcf_text([r.rsplit("\t", 1)[0] for r in RECORDS[:40]],
                                               header=[*HEADER[:-1], HEADER[-1].rsplit("\t", 1)[0]])),
     r"1 popmap sample\(s\) not in the data: pop2_10"),
    # --- popmap problems
    ("popmap-unknown-population", _popmap(POPMAP.replace("pop2_10\tpop2", "pop2_10\tpop3")),
     r"population\(s\) pop3 in the popmap are not simulated"),
    ("popmap-empty", _popmap(""), r"popmap .*popmap\.tsv: no samples listed"),
    ("popmap-header-only", _popmap("sample\tpopulation\n"), r"popmap .*popmap\.tsv: no samples listed"),
    ("popmap-csv-sample-sheet", _popmap(POPMAP.replace("\t", ",").replace("\n", ",47.2,8.5\n")),
     r"line 1: 4 columns \(sample, population, 47\.2, 8\.5\), not two: read a sample sheet \(titles on line 1\) with "
     r"--popmap-columns sample population"),
    ("popmap-space-in-population", _popmap(POPMAP.replace("pop1_03\tpop1", "pop1_03 pop 1")), r"line 4: expected 2 columns .*found 3"),
    ("popmap-gzipped", _popmap(gzip.compress(POPMAP.encode())), r"popmap .*: is gzip-compressed"),
    ("popmap-utf16", _popmap(POPMAP.encode("utf-16")), r"popmap .*: is UTF-16 text"),
    ("popmap-duplicate-sample", _popmap(POPMAP + "pop1_01\tpop2\n"), r"sample 'pop1_01' is listed twice"),
    ("popmap-lacks-a-sample", _popmap("\n".join(line for line in _POP_LINES if line != "pop1_07\tpop1") + "\n"),
     r"1 sample\(s\) missing from the popmap: pop1_07"),
    ("popmap-fewer-than-simulated", _popmap(POPMAP.replace("pop2_09\tpop2", "pop2_09\tpop1").replace("pop2_10\tpop2", "pop2_10\tpop1")),
     r"population 'pop2' has 8 individual\(s\) but 10 were simulated; simulate 8 \(samples: \{pop2: 8\}; "
     r"check-data --suggest-config\)"),
    # Sample names from another source (run accessions for the VCF's plate wells): no name in common.
    ("popmap-names-from-elsewhere", _popmap(POPMAP.replace("pop1_", "SRR0").replace("pop2_", "SRR1")),
     r"none of its 21 samples is in the popmap \(21 samples\): the names differ \(e\.g\. 'pop1_01' in the data, "
     r"'SRR001' in the popmap\)"),
]


def _case_parts(case):
    name, spec, regex = case
    if callable(spec):
        spec = {"via": "observe", "build": spec}
    return name, spec["via"], spec["build"], regex


def _model_args(command, tmp, files):
    """``popdl predict`` or ``popdl scan`` of the files with a model folder (its stored config)."""
    model = tmp / "model"
    if not model.exists():
        model_folder(model)
    out = tmp / "out" if command == "predict" else tmp / "out" / "scan"
    return [command, "--model", model, "--vcf", files["vcf"], "--popmap", files["popmap"], "--out", out]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, case):
    name, via, build, regex = _case_parts(case)
    files = build(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the user's\n")
    before = listing(out)
    if via == "observe":
        cfg = config_file(tmp_path, predict={"data": [{"name": "obs", "vcf": str(files["vcf"]), "popmap": str(files["popmap"])}],
                                             "strict_samples": True})
        proc = run_popdl("observe", "--configfile", cfg, "--data", "obs", "--out", out / "observed.npz")
    else:
        proc = run_popdl(*_model_args(via, tmp_path, files))
    line = one_line_error(proc)
    assert re.search(regex, line), line
    assert listing(out) == before


def test_enough_distinct_bad_data_cases():
    assert len(DATA_CASES) >= 30 and len({c[0] for c in DATA_CASES}) == len(DATA_CASES)


# ---------------------------------------------------------------------------------- bad model folders
_GOOD_DATA = {"vcf": EXAMPLE_VCF, "popmap": EXAMPLE_POPMAP}
_KERAS = keras_archive()

MODEL_CASES = [
    ("keras-truncated", dict(keras_bytes=_KERAS[: len(_KERAS) // 2]), r"model\.keras: truncated or not a Keras model archive"),
    ("keras-empty", dict(keras_bytes=b""), r"model\.keras: the file is empty"),
    ("keras-not-a-zip", dict(keras_bytes=b"\x89HDF\r\n\x1a\n" + b"\0" * 2000), r"model\.keras: truncated or not a Keras model archive"),
    ("keras-without-weights", dict(keras_bytes=keras_archive(("metadata.json", "config.json"))),
     r"model\.keras: not a Keras model archive \(no model\.weights\.h5\)"),
    ("keras-member-damaged", dict(keras_bytes=flip_byte_inside(_KERAS, "model.weights.h5")),
     r"model\.keras: (its member model\.weights\.h5 fails its checksum|cannot be read)"),
    ("bundle-not-json", dict(bundle_text='{"format": 1, "scenarios": ["a", '), r"bundle\.json: not valid JSON \(Expecting value at line 1"),
    ("bundle-empty", dict(bundle_text=""), r"bundle\.json: not valid JSON"),
    ("bundle-binary", dict(bundle_text=b"\xff\xfe\x00garbage\x80"), r"bundle\.json: not a text file"),
    ("bundle-a-list", dict(bundle_text="[1, 2, 3]"), r"bundle\.json: holds list, not a JSON object"),
    ("bundle-format-2", dict(bundle_change=set_key("format", 2)), r"bundle\.json: unsupported model format 2"),
    ("bundle-interval-offset-not-a-number", dict(bundle_change=set_key("interval_calibration", {"offsets": {"N1": "wide"}})),
     r"'interval_calibration' is \{.offsets.*not offsets per parameter"),
    ("bundle-negative-shape", dict(bundle_change=set_key("shapes.image", [-40, SNPS])), r"'shapes\.image' is \[-40, 32\]"),
    ("bundle-snps-10-to-12", dict(bundle_change=lambda b: (set_key("shapes.image", [40, 10**12])(b), set_key("shapes.distances", [10**12])(b))),
     r"'shapes\.image' is \[40, 1000000000000\]"),
    ("bundle-config-snps-10-to-12", dict(bundle_change=set_key("config.features.snps", 10**12)),
     r"'config\.features\.snps' is 1000000000000; it must be a whole number from 1 to 1000000"),
    ("bundle-config-negative-samples", dict(bundle_change=set_key("config.samples", {"pop1": -10, "pop2": 10})),
     r"'config\.samples' is .*-10"),
    ("bundle-temperature-nan", dict(bundle_text_change=lambda t: t.replace('"temperature": 1.0', '"temperature": NaN')),
     r"'temperature' is NaN, not a positive number"),
    ("bundle-quantiles-out-of-range", dict(bundle_change=set_key("quantiles", [5, 50, 95])), r"'quantiles' is \[5, 50, 95\]"),
    ("bundle-inputs-unknown", dict(bundle_change=set_key("inputs", ["pixels"])), r"'inputs' is \[\"pixels\"\]"),
    ("bundle-missing", dict(remove="bundle.json"), r"model is not a popdl model folder \(no bundle\.json\)"),
    ("keras-missing", dict(remove="model.keras"), r"model\.keras: not found"),
    ("model-is-a-file", dict(model_is_file=True), r"model is not a folder"),
    ("configfile-other-snps", dict(configfile_snps=64), r"features\.snps is 64 but the model in .*model was trained on 32 SNPs"),
]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_folder_is_one_line_and_writes_nothing(tmp_path, case):
    name, spec, regex = case
    model = tmp_path / "model"
    if spec.get("model_is_file"):
        model.write_text("not a folder\n")
    else:
        model_folder(model, bundle_change=spec.get("bundle_change"), keras_bytes=spec.get("keras_bytes"))
    if "bundle_text" in spec:
        text = spec["bundle_text"]
        (model / "bundle.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    if "bundle_text_change" in spec:
        (model / "bundle.json").write_text(spec["bundle_text_change"]((model / "bundle.json").read_text()))
    if "remove" in spec:
        (model / spec["remove"]).unlink()
    out = tmp_path / "out"
    args = ["predict", "--model", model, "--vcf", _GOOD_DATA["vcf"], "--popmap", _GOOD_DATA["popmap"], "--out", out]
    if spec.get("configfile_snps"):
        cfg = absolute_graphs(tiny_config(samples=SAMPLES, genome=GENOME, features={"snps": spec["configfile_snps"]}))
        (tmp_path / "other.yaml").write_text(yaml.safe_dump(cfg))
        args += ["--configfile", tmp_path / "other.yaml"]
    line = one_line_error(run_popdl(*args))
    assert re.search(regex, line), line
    assert not out.exists()  # no observed.npz / observed.json left behind


def test_enough_distinct_model_cases():
    assert len(MODEL_CASES) >= 15 and len({c[0] for c in MODEL_CASES}) == len(MODEL_CASES)


def test_observed_file_problems_are_one_line(tmp_path):
    model = model_folder(tmp_path / "model")
    (tmp_path / "obs").mkdir()
    broken = write(tmp_path / "obs", "observed.npz", b"PK\x03\x04 not really a zip")
    line = one_line_error(run_popdl("predict", "--model", model, "--observed", broken))
    assert re.search(r"observed\.npz: not a readable observed\.npz", line), line
    assert sorted(os.listdir(tmp_path / "obs")) == ["observed.npz"]


# ---------------------------------------------------------------------------------- what works
def test_popmap_with_a_byte_order_mark_and_mixed_separators_works(tmp_path):
    popmap = write(tmp_path, "popmap.tsv", ("\ufeff" + POPMAP.replace("pop1_05\tpop1", "pop1_05   pop1")).encode("utf-8"))
    cfg = config_file(tmp_path, predict={"data": [{"name": "obs", "vcf": str(EXAMPLE_VCF), "popmap": str(popmap)}]})
    proc = run_popdl("--quiet", "observe", "--configfile", cfg, "--data", "obs", "--out", tmp_path / "out" / "observed.npz")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "observed.json").read_text())
    assert summary["counts"]["individuals"] == 20 and summary["positions"]["flagged"] is False
    assert proc.stderr.strip() == ""


def test_bgzf_and_gzip_example_read_like_the_plain_text(tmp_path):
    from popdl.observed import read_popmap, read_vcf

    popmap = read_popmap(EXAMPLE_POPMAP)
    plain = read_vcf(write(tmp_path, "a.vcf", _FULL), popmap=popmap, samples=SAMPLES, seed=1)
    for name, data in (("b.vcf.gz", _BGZ), ("c.vcf.gz", _GZ)):
        other = read_vcf(write(tmp_path, name, data), popmap=popmap, samples=SAMPLES, seed=1)
        assert other.counts == plain.counts and (other.genotypes == plain.genotypes).all()


def test_positions_far_beyond_genome_length_are_flagged(tmp_path):
    """A VCF of regions at 5 Mb of their contigs with 100 kb simulated loci: a one-line warning, recorded in the summary."""
    shifted = [with_field(i, 1, str(5_000_000 + int(r.split("\t")[1])), RECORDS)[i] for i, r in enumerate(RECORDS)]
    vcf = write(tmp_path, "region.vcf", vcf_text(shifted))
    cfg = config_file(tmp_path, predict={"data": [{"name": "region", "vcf": str(vcf), "popmap": str(EXAMPLE_POPMAP)}]})
    proc = run_popdl("--quiet", "observe", "--configfile", cfg, "--data", "region", "--out", tmp_path / "out" / "observed.npz")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(r"beyond genome\.length \(100000 bp; the furthest at chr\d+:50\d{5}\)", lines[0]), proc.stderr
    summary = json.loads((tmp_path / "out" / "observed.json").read_text())
    assert summary["positions"]["flagged"] is True and summary["positions"]["beyond_length"] == summary["counts"]["snps"]
    assert any("beyond genome.length" in note for note in summary["notes"])


# ---------------------------------------------------------------------------------- outputs
def test_observe_out_folder_and_predict_out_file_are_refused(tmp_path):
    cfg = config_file(tmp_path, predict={"data": [{"name": "obs", "vcf": str(EXAMPLE_VCF), "popmap": str(EXAMPLE_POPMAP)}]})
    folder = tmp_path / "results"
    folder.mkdir()
    line = one_line_error(run_popdl("observe", "--configfile", cfg, "--data", "obs", "--out", folder))
    assert re.search(r"--out .*results is a folder; give the file to write", line), line
    assert list(folder.iterdir()) == []
    model = model_folder(tmp_path / "model")
    target = write(tmp_path, "target.txt", "mine\n")
    line = one_line_error(run_popdl("predict", "--model", model, "--vcf", EXAMPLE_VCF, "--popmap", EXAMPLE_POPMAP, "--out", target))
    assert re.search(r"--out .*target\.txt is a file", line), line
    assert target.read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only (chmod 555) folder anyway")
def test_read_only_results_folder_is_one_line(tmp_path):
    cfg = config_file(tmp_path, predict={"data": [{"name": "obs", "vcf": str(EXAMPLE_VCF), "popmap": str(EXAMPLE_POPMAP)}]})
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_line_error(run_popdl("observe", "--configfile", cfg, "--data", "obs", "--out", folder / "observed.npz"))
    finally:
        folder.chmod(0o755)
    assert re.search(r"cannot write .*ro/observed\.npz: permission denied", line), line
    assert list(folder.iterdir()) == []


def test_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    """ENOSPC while writing observed.npz (simulated: the write raises it as a full disk does)."""
    import errno

    import numpy as np

    from popdl.cli import main

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    cfg = config_file(tmp_path, predict={"data": [{"name": "obs", "vcf": str(EXAMPLE_VCF), "popmap": str(EXAMPLE_POPMAP)}]})
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(np.lib.format, "write_array", full)
    out = tmp_path / "out"
    assert main(["--quiet", "observe", "--configfile", str(cfg), "--data", "obs", "--out", str(out / "observed.npz")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and re.search(r"^popdl: error: cannot write .*out/observed\.npz: no space left on device", err[0]), err
    assert list(out.iterdir()) == []  # the temporary file is gone too


# ---------------------------------------------------------------------------------- output folders
def test_atomic_dir_replaces_only_what_popdl_wrote(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target, kind="model") as tmp:
        (tmp / "bundle.json").write_text("{}")
    marker = json.loads((target / MARKER).read_text())
    assert marker["written_by"] == "popdl" and marker["kind"] == "model"
    with atomic_dir(target, kind="model") as tmp:  # a popdl folder is replaced
        (tmp / "history.json").write_text("{}")
    assert sorted(os.listdir(target)) == [MARKER, "history.json"]
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary or old folder left
    (tmp_path / "empty").mkdir()
    with atomic_dir(tmp_path / "empty") as tmp:  # an empty folder is fine
        (tmp / "x").write_text("1")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work\n")
    for path in (mine, write(tmp_path, "afile", "data\n")):
        with pytest.raises(OutputError, match=re.escape(str(path))):
            with atomic_dir(path) as tmp:
                raise AssertionError("the body must not run")
    assert (mine / "thesis.tex").read_text() == "years of work\n"
    assert sorted(os.listdir(tmp_path)) == ["afile", "empty", "mine", "model"]
    # A folder popdl wrote before the marker existed (exact layout) is recognised; the same names elsewhere are not.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("model.keras", "bundle.json", "history.json"):
        (legacy / name).write_text("x")
    assert check_output_dir(legacy, kind="model") == legacy
    with pytest.raises(OutputError, match="popdl did not write"):
        check_output_dir(legacy, kind="dataset")


def test_destination_that_appears_during_the_work_is_not_replaced(tmp_path):
    target = tmp_path / "dataset"
    with pytest.raises(OutputError, match="popdl did not write"):
        with atomic_dir(target, kind="dataset") as tmp:
            (tmp / "manifest.json").write_text("{}")
            target.mkdir()
            (target / "someone-elses.txt").write_text("x")
    assert os.listdir(target) == ["someone-elses.txt"] and sorted(os.listdir(tmp_path)) == ["dataset"]


def test_stale_temporaries_are_removed_by_the_next_write(tmp_path):
    old = time.time() - 3600
    stale = [tmp_path / ".dataset.k2j4h5g6.tmp", tmp_path / ".dataset.a1b2c3d4.old", tmp_path / ".observed.npz.zz99yy88.npz"]
    stale[0].mkdir()
    (stale[0] / "train").mkdir()
    stale[1].mkdir()
    stale[2].write_bytes(b"half")
    young = tmp_path / ".dataset.qwertyui.tmp"  # could be another job's: too recent to be stale
    young.mkdir()
    others = [tmp_path / ".dataset2.k2j4h5g6.tmp", tmp_path / ".dataset.k2j4h5g6.tmp.bak", tmp_path / "notes.npz"]
    for p in others:
        p.write_text("not popdl's temporary\n")
    for p in [*stale, *others]:
        os.utime(p, (old, old))
    with atomic_dir(tmp_path / "dataset", kind="dataset") as tmp:
        (tmp / "manifest.json").write_text("{}")
    with atomic_path(tmp_path / "observed.npz") as tmp:
        tmp.write_bytes(b"done")
    assert not any(p.exists() for p in stale)
    assert young.exists() and all(p.exists() for p in others)


def _features(tiny_dataset) -> list[Path]:
    return sorted((tiny_dataset.parent / "features").glob("*/*.npz"))


def test_dataset_and_train_refuse_a_folder_of_other_files(tiny_dataset, tmp_path):
    cfg = config_file(tmp_path, tiny=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    before = listing(tmp_path)
    line = one_line_error(run_popdl("dataset", "--configfile", cfg, "--out", mine, *_features(tiny_dataset)))
    assert re.search(r"mine holds 1 entry popdl did not write \(e\.g\. 'notes\.txt'\)", line), line
    best = write(tmp_path, "best.json", json.dumps({"hyper_parameters": {"network": "mlp"}}))
    before = listing(tmp_path)
    line = one_line_error(run_popdl("train", "--configfile", cfg, "--dataset", tiny_dataset, "--best", best, "--out", mine))
    assert re.search(r"mine holds 1 entry popdl did not write", line), line
    assert listing(tmp_path) == before and (mine / "notes.txt").read_text() == "mine\n"


def test_dataset_out_dot_in_a_working_folder_is_refused(tiny_dataset, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "analysis.R").write_text("# mine\n")
    (work / "data").mkdir()
    cfg = config_file(tmp_path, tiny=True)
    before = listing(tmp_path)
    line = one_line_error(run_popdl("dataset", "--configfile", cfg, "--out", ".", *_features(tiny_dataset), cwd=work))
    assert re.search(r"work \(the working folder\) holds 2 entries popdl did not write", line), line
    assert listing(tmp_path) == before


def test_dataset_replaces_its_own_folder_and_cleans_a_killed_run(tiny_dataset, tmp_path):
    cfg = config_file(tmp_path, tiny=True)
    out = tmp_path / "dataset"
    proc = run_popdl("--quiet", "dataset", "--configfile", cfg, "--out", out, *_features(tiny_dataset))
    assert proc.returncode == 0, proc.stderr
    assert (out / MARKER).is_file() and (out / "manifest.json").is_file()
    first = (out / "manifest.json").read_bytes()
    # A killed second run left its temporary folder; the third run removes it and replaces the folder.
    killed = tmp_path / ".dataset.x7y8z9w0.tmp"
    (killed / "train" / "shard-00000").mkdir(parents=True)
    (killed / "train" / "shard-00000" / "images.npy").write_bytes(b"\x93NUMPY half")
    os.utime(killed, (time.time() - 600, time.time() - 600))
    proc = run_popdl("--quiet", "dataset", "--configfile", cfg, "--out", out, *_features(tiny_dataset))
    assert proc.returncode == 0, proc.stderr
    assert not killed.exists() and sorted(os.listdir(tmp_path)) == ["config.yaml", "dataset"]
    assert (out / "manifest.json").read_bytes() == first
