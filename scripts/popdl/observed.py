"""Reading and validating observed data: VCF or FASTA files and a popmap into a genotype matrix.

Two kinds of input, each with a *popmap* (a two-column text file:
sample, population; tab or space separated, UTF-8 (a byte-order mark is
ignored), ``#`` comments and a ``sample population`` header line allowed):

* a VCF (plain, gzipped or bgzipped), read with cyvcf2 (htslib); phased
  diploid genotypes (``0|1``); every contig is a locus;
* FASTA alignments, one file per locus; each individual contributes two
  phased sequences named ``<sample>_1``/``<sample>_2`` (also ``_a``/``_b``,
  ``.1``/``.2``) or two records both named ``<sample>``.

Samples are matched to the popmap after trimming spaces around their names,
and the popmap's population labels to the simulated populations through a
data set's ``populations`` mapping (labels named as a simulated population
map to it).  Samples of the data absent from the popmap, popmap samples
absent from the data and samples of a label that maps to no simulated
population are left out, counted and logged (errors with
``predict.strict_samples``).

Everything is validated before any feature is computed, and each problem is
one line naming it (:class:`DataError`): fewer individuals
than were simulated, no GT field, haploid calls only, unphased heterozygous calls,
empty files; files cut short (a plain VCF whose last line
stops mid-record, a gzip or BGZF stream that ends early), malformed headers
and records (the first error htslib reports, with the record's place).
htslib's own messages are collected rather than printed.  Sites that cannot enter a biallelic SNP
matrix — multi-allelic sites, indels, gap columns, monomorphic sites — are
skipped and counted, and so are contigs with haploid calls (a male's X, a Y,
a mitochondrion); missing calls (``./.``, ``N``) become −1 and are counted.
Records out of position order within a file (Stacks writes reference-aligned
loci so) are sorted in memory, as ``bcftools sort`` would, and counted.
When a population has more individuals than were simulated, a reproducible
subset is kept (seeded by the run's seed and the data set's name).

:func:`popdl.features.observed_features` then builds the networks' inputs
from an :class:`Observed` with the extractor the simulations go through.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import logging
import math
import os
import re
import shlex
import sys
import tempfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from popdl import seeds
from popdl.errors import DataError
from popdl.features import MISSING, NO_ALLELE_FILTER, allele_thresholds
from popdl.paths import located, vcf_files

__all__ = [
    "Observed",
    "LOCI",
    "window_loci",
    "cluster_loci",
    "id_locus",
    "id_loci",
    "shared_positions",
    "SHARED_POSITIONS_NOTE",
    "stacks_loci",
    "stacks_tag_length",
    "catalogue_loci",
    "Catalogue",
    "clustered_snps",
    "tag_length",
    "MAX_TAG_LENGTH",
    "HEADER_SHARE",
    "available_individuals",
    "missingness_profile",
    "read_popmap",
    "choose_individuals",
    "read_vcf",
    "filtered_text",
    "skipped_text",
    "thinned",
    "sampling_notes",
    "layout_notes",
    "missing_unit_advice",
    "allele_filter",
    "allele_filter_advice",
    "allele_filter_text",
    "thinning_advice",
    "read_fasta",
    "read_observed",
    "DATA_DEFAULT_KEYS",
    "data_defaults",
    "with_defaults",
]

log = logging.getLogger("popdl.observed")

_BASES = {"A": 0, "C": 1, "G": 2, "T": 3}
_MISSING_CHARS = set("NRYSWKMBDHV?")  # unknown or ambiguous (unphased) base
_GAP_CHARS = set("-.")
_FASTA_SUFFIX = re.compile(r"^(?P<sample>.+?)[._-](?:[12ab]|[AB])$")
#: How the SNPs of a VCF group into loci (a data set's ``loci``).
LOCI = ("contigs", "windows", "clusters", "ids")
#: The placeholder ALT alleles of not yet genotyped files: GATK gVCFs (``<NON_REF>``), bcftools mpileup (``<*>``).
_UNCALLED_ALLELES = ("<NON_REF>", "<*>")
#: A Stacks locus ID: ``LOCUS_COLUMN`` (Stacks 1) or ``LOCUS:COLUMN:STRAND`` (Stacks 2).
_STACKS_ID = re.compile(r"^\d+(?:_\d+|:\d+(?::[+-])?)$")


@dataclass
class Observed:
    """An observed data set as popdl's genotype matrix.

    ``genotypes``: int8 (sites, haplotypes), 0/1 alleles (0 = REF or the
    first base seen), −1 missing; haplotypes grouped by population in the
    config's order, the two haplotypes of an individual next to each other.
    ``positions``: float64 bp within the locus; ``locus``: int32 locus index.
    ``length``: total sequenced length (bp) used to scale π, θ_W and d_xy.
    ``counts``: what was read, kept and skipped.
    """

    name: str
    genotypes: np.ndarray
    positions: np.ndarray
    locus: np.ndarray
    populations: np.ndarray
    individuals: list[str]
    loci: list[str]
    length: float
    counts: dict = field(default_factory=dict)
    #: Each SNP's VCF ID (``.`` where none), for ``loci: ids``; None for other sources.
    ids: list[str] | None = field(default=None, repr=False)
    #: Per biallelic SNP record of a VCF (polymorphic among the individuals kept or not), the minor allele's
    #: count and the called alleles among all the file's samples (int64, records x 2): what a filter run on the
    #: file saw (:func:`allele_filter`); None for other sources.
    file_alleles: np.ndarray | None = field(default=None, repr=False)

    @property
    def phasing(self) -> str:
        """``phased``, ``unphased`` or ``mixed``: how the heterozygous calls read were written
        (``phased`` when there were none, or for FASTA haplotypes)."""
        with_phase = self.counts.get("phased_heterozygous", 0)
        without = self.counts.get("unphased_heterozygous", 0)
        if without == 0:
            return "phased"
        return "unphased" if with_phase == 0 else "mixed"

    @property
    def missing_rate(self) -> float:
        """Fraction of missing genotype calls among the kept SNPs."""
        g = self.genotypes
        return float((g == MISSING).mean()) if g.size else 0.0


# ---------------------------------------------------------------------------- popmap
def read_popmap(path: str | Path, columns: Sequence[str | int] | None = None) -> dict[str, str]:
    """Sample -> population, in file order (UTF-8, else Windows-1252; a byte-order mark is ignored).

    ``columns`` (sample, population): read a sample sheet, a table of more columns
    whose first line holds their titles, by the two columns named (a title, or a
    number counted from 1); see :func:`_read_sample_sheet`.  Without it:

    A line holds two columns separated by a tab, or by spaces, or by a comma or a
    semicolon (a spreadsheet's CSV export, quotes allowed).  A line with one
    tab (or comma) between two fields keeps the spaces inside them (a sample ``Sample 01``,
    a label ``Lake Malawi``, as spreadsheets write them); surrounding spaces are
    trimmed.  A line starting with ``#``, and `` # ...`` after the columns, are comments (a
    ``#`` inside a name stays: ``Site #3``); a first line of two column titles
    (``sample population``, ``sample_ID,population``, radiator's ``INDIVIDUALS STRATA``:
    :data:`SAMPLE_HEADERS` then :data:`POPULATION_HEADERS`) is a header."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"popmap {path}: is a folder, not a file")
    if not path.is_file():
        raise DataError(f"popmap {path}: file not found")
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise DataError(f"popmap {path}: cannot be read ({(exc.strerror or str(exc)).lower()})") from None
    if raw_bytes[:2] == b"\x1f\x8b":
        raise DataError(f"popmap {path}: is gzip-compressed; give the plain text table (sample, population)")
    if raw_bytes[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"popmap {path}: is UTF-16 text; save it as UTF-8 (or plain ASCII)")
    if b"\0" in raw_bytes[:4096]:
        raise DataError(f"popmap {path}: not a text file (sample, population per line)")
    # One command reads a popmap more than once (check-data: the individuals available, then the data):
    # the same bytes are parsed, and their notes logged, once.
    key = (str(path.resolve()), hashlib.blake2b(raw_bytes, digest_size=16).digest(),
           None if columns is None else tuple(columns))
    if key not in _POPMAPS:
        _POPMAPS[key] = _parse_popmap(path, raw_bytes, columns)
    return dict(_POPMAPS[key])


#: Popmaps parsed in this process, by (path, content digest, columns).
_POPMAPS: dict[tuple, dict[str, str]] = {}


def _parse_popmap(path: Path, raw_bytes: bytes, columns: Sequence[str | int] | None) -> dict[str, str]:
    """:func:`read_popmap`'s reading of a file's bytes."""
    try:
        text = raw_bytes.decode("utf-8-sig")  # utf-8-sig drops a byte-order mark
    except UnicodeDecodeError:  # a spreadsheet's export on Windows: 'Lac Léman' in Windows-1252
        text = raw_bytes.decode("cp1252", errors="replace")
        log.info("popmap %s: not UTF-8 text; read as Windows-1252 (Latin-1)", path)
    if columns is not None:
        return _read_sample_sheet(path, text, columns)
    out: dict[str, str] = {}
    lines_of: dict[str, int] = {}
    repeated: list[str] = []
    pairs: list[tuple[int, str, str]] = []  # (line number, sample, population)
    csv_lines = 0
    first = True
    for number, raw in enumerate(text.splitlines(), 1):
        # A comment: a line that starts with '#', or ' # ...' after the columns; a '#' inside a name stays
        # ('Site #3', 'Pop#2': cutting there would merge populations).
        line = raw.strip()
        if line.startswith("#"):
            continue
        line = _INLINE_COMMENT.split(line, maxsplit=1)[0].strip()
        if not line:
            continue
        # R's write.table quotes every field ('"a1"\t"pop1"', '"a1" "Lake Malawi"'): the quotes are not the names'.
        parts = tabbed = [_unquoted(f.strip()) for f in line.split("\t") if f.strip()]
        if len(parts) != 2:  # not one tab between two fields: columns separated by spaces
            parts = ([f.strip() for f in next(csv.reader([line], delimiter=" ", skipinitialspace=True)) if f.strip()]
                     if '"' in line else line.split())
        separated = None
        if len(tabbed) == 1:  # a spreadsheet's export: comma- or semicolon-separated
            for delimiter in (",", ";"):
                if delimiter in line:
                    fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))
                    separated = [f.strip() for f in fields if f.strip()]
                    break
            # Two fields between the delimiters win over the spaces: 'a1, pop1' and '"s1","Lake Malawi"'.
            if separated and len(separated) == 2:
                parts = separated
                if not csv_lines:
                    log.info("popmap %s: read as %s-separated values", path, "comma" if delimiter == "," else "semicolon")
                csv_lines += 1
            elif separated and len(separated) > 2:  # 'ID,Species,Country,...,Song Type,...': not two space-separated fields
                parts = separated
        if len(parts) != 2:
            found = len(separated) if separated else len(parts)
            widest = max((tabbed, separated or [], parts), key=len)
            if not first and len(widest) == 3 and widest[0].isdigit():  # '"1" "a1" "pop1"' under '"sample" "pop"'
                raise DataError(f"popmap {path} line {number}: expected 2 columns (sample, population), found 3, the "
                                f"first a number ({widest[0]}): row names, as R's write.table writes them (write it with "
                                "row.names = FALSE, or keep its last two columns)")
            if len(tabbed) > 2 or (separated and len(separated) > 2):  # a sample sheet with more columns
                if first:
                    titles = tabbed if len(tabbed) > 2 else separated
                    words = SAMPLE_HEADERS | POPULATION_HEADERS
                    if _is_fam(titles):
                        raise DataError(f"popmap {path} line {number}: expected 2 columns (sample, population), found "
                                        f"6 {_FAM_HINT}")
                    if any(map(_is_number, titles)) and not any(_header_word(t) in words for t in titles):
                        # coordinates, depths, and no title of a sample or a population: a table without titles
                        raise DataError(f"popmap {path} line {number}: {found} columns ({_few(titles, 4)}), not two, "
                                        "and no line of titles (a number among them): keep the sample and population "
                                        f"columns (cut -f1,2 {shlex.quote(str(path))} > popmap.tsv), or add a line of "
                                        "titles and read it with --popmap-columns SAMPLE POPULATION")
                    raise DataError(f"popmap {path} line {number}: {found} columns ({_few(titles, 4)}), not two: read "
                                    f"a sample sheet (titles on line 1) with {_sheet_example(titles)} (config "
                                    "popmap_columns), or keep two columns (cut -f1,2)")
                hint = " (a sample sheet: read it with --popmap-columns SAMPLE POPULATION, config popmap_columns)"
            elif _is_fam(parts):
                hint = f" {_FAM_HINT}"
            else:
                hint = ""
            raise DataError(f"popmap {path} line {number}: expected 2 columns (sample, population), found {found}{hint}")
        first = False
        sample, pop = parts
        if not pairs and _header_word(sample) in SAMPLE_HEADERS and _header_word(pop) in POPULATION_HEADERS:
            continue  # header line: 'sample population', 'sample_ID,population', radiator's 'INDIVIDUALS STRATA'...
        pairs.append((number, sample, pop))
    try:
        for number, sample, pop in pairs:
            if _listed(out, lines_of, repeated, path, number, sample, pop):
                out[sample] = pop
    except DataError as exc:
        firsts, seconds = [pair[1] for pair in pairs], [pair[2] for pair in pairs]
        if len(set(seconds)) == len(seconds) and len(set(firsts)) < len(firsts):  # 'nuttalli NUT_001' ...
            raise DataError(f"{exc}; the columns look reversed (population, then sample, as a PLINK .fam's FID IID?): "
                            "swap them (awk -v OFS='\\t' '{print $2, $1}')") from None
        raise
    if not out:
        raise DataError(f"popmap {path}: no samples listed")
    _repeated_note(path, repeated)
    return out


#: A comment after a popmap line's columns: a '#' after a space or tab and before one (or the line's end).
_INLINE_COMMENT = re.compile(r"\s#(?:\s|$)")


def _unquoted(field: str) -> str:
    """``field`` without one pair of surrounding double quotes ('"pop1"' -> 'pop1')."""
    return field[1:-1].strip() if len(field) >= 2 and field[0] == field[-1] == '"' else field


def _is_fam(fields: list[str]) -> bool:
    """Whether a popmap line's ``fields`` are a PLINK .fam line: FID IID father mother sex phenotype."""
    return len(fields) == 6 and all(re.fullmatch(r"-?\d+(\.\d*)?", f) for f in fields[2:])


#: What a popmap that is a PLINK .fam file is told (its FID often holds the population).
_FAM_HINT = ("(a PLINK .fam file: FID, IID, father, mother, sex, phenotype; where FID is the population, "
             "awk -v OFS='\\t' '{print $2, $1}' makes the popmap)")


def _listed(out: dict, lines_of: dict, repeated: list, path: Path, number: int, sample: str, pop: str) -> bool:
    """Whether a popmap's line adds its sample: not when an earlier line gave it the same population (a line
    pasted twice, counted in ``repeated``); a :class:`DataError` when it gave another."""
    if sample not in out:
        lines_of[sample] = number
        return True
    if out[sample] != pop:
        raise DataError(f"popmap {path} line {number}: sample {sample!r} is listed twice, as {out[sample]!r} "
                        f"(line {lines_of[sample]}) and {pop!r}")
    repeated.append(sample)
    return False


def _repeated_note(path: Path, repeated: list[str]) -> None:
    if repeated:
        log.info("popmap %s: %d line(s) repeat a sample with its population (%s): read once", path, len(repeated),
                 _few(repeated, 3))


# A popmap's first line is a header when its two fields are column titles (compared without case,
# spaces, '_', '-' or '.'): 'sample population', 'sample_ID,population', 'INDIVIDUALS STRATA' (radiator).
SAMPLE_HEADERS = {"sample", "samples", "sampleid", "samplename", "individual", "individuals", "ind", "indiv",
                  "indid", "individualid", "id", "name", "specimen", "specimenid"}
POPULATION_HEADERS = {"population", "populations", "pop", "pops", "popid", "populationid", "populationname",
                      "strata", "stratum", "group", "groups", "site", "location", "locality", "region", "cluster",
                      "species", "taxon", "deme", "label"}


def _is_number(field: str) -> bool:
    """Whether a table's field reads as a number (a latitude, a depth): no column title does."""
    try:
        return math.isfinite(float(field.replace(",", ".")))  # not 'nan', 'inf' or 'Infinity': words a title may be
    except ValueError:
        return False


def _header_word(field: str) -> str:
    return re.sub(r"[\s_.\-]", "", field).casefold()


def _sheet_example(titles: list[str]) -> str:
    """How to read a sample sheet with these column titles: its first column and the first
    whose title names a population (:data:`POPULATION_HEADERS`), else its second."""
    sample = titles[0]
    pop = next((t for t in titles[1:] if _header_word(t) in POPULATION_HEADERS), titles[1])
    return f"--popmap-columns {shlex.quote(sample)} {shlex.quote(pop)}"


def _sheet_column(path: Path, titles: list[str], wanted: str | int, role: str) -> int:
    """The index of the column ``wanted`` names among ``titles``: the title itself, else the one title
    equal to it without case, spaces, ``_``, ``.`` or ``-``, else a column number counted from 1."""
    text = str(wanted).strip()
    if not isinstance(wanted, int) and text in titles:
        if titles.count(text) > 1:
            raise DataError(f"popmap {path}: {titles.count(text)} columns are titled {text!r}; name the {role} column "
                            "by its number, counted from 1")
        return titles.index(text)
    loose = [i for i, t in enumerate(titles) if _header_word(t) == _header_word(text)]
    if len(loose) == 1 and not isinstance(wanted, int):
        return loose[0]
    if isinstance(wanted, int) or text.isdigit():
        number = int(text)
        if 1 <= number <= len(titles):
            return number - 1
        raise DataError(f"popmap {path}: the {role} column is number {number}, but the table has {len(titles)} columns")
    raise DataError(f"popmap {path}: no column titled {text!r} for the {role}s; its titles: "
                    f"{', '.join(repr(t) for t in titles)}")


def _read_sample_sheet(path: Path, text: str, columns: Sequence[str | int]) -> dict[str, str]:
    """Sample -> population from a sample sheet: a table whose first line holds its column titles,
    separated by tabs, else commas, else semicolons (quotes allowed), else spaces.  ``columns``
    names the sample and the population columns (:func:`_sheet_column`).  Lines starting with
    ``#`` are comments (a ``#`` inside a field is kept: ``LOSTWDS#2``); rows without a sample or
    a population are left out and counted in one log line."""
    columns = list(columns)
    if len(columns) != 2:
        raise DataError(f"popmap {path}: popmap_columns names {len(columns)} column(s); name two, the sample's "
                        "and the population's")
    lines = [(n, raw) for n, raw in enumerate(text.splitlines(), 1) if raw.strip() and not raw.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"popmap {path}: no samples listed")
    header = lines[0][1]
    delimiter = next((d for d in ("\t", ",", ";") if d in header), None)

    def split(line: str) -> list[str]:
        if delimiter is None:
            return line.split()
        return [f.strip() for f in next(csv.reader([line], delimiter=delimiter, skipinitialspace=True))]

    titles = split(header)
    sample_at = _sheet_column(path, titles, columns[0], "sample")
    pop_at = _sheet_column(path, titles, columns[1], "population")
    if sample_at == pop_at:
        raise DataError(f"popmap {path}: the sample and population columns are both {titles[sample_at]!r}")
    out: dict[str, str] = {}
    lines_of: dict[str, int] = {}
    repeated: list[str] = []
    no_population = []
    for number, line in lines[1:]:
        fields = split(line)
        sample = fields[sample_at] if sample_at < len(fields) else ""
        pop = fields[pop_at] if pop_at < len(fields) else ""
        if not sample:
            if any(fields):
                no_population.append(f"line {number}")
            continue
        if not pop:
            no_population.append(sample)
            continue
        if _listed(out, lines_of, repeated, path, number, sample, pop):
            out[sample] = pop
    _repeated_note(path, repeated)
    if no_population:
        log.info("popmap %s: left out %d row(s) without a sample or population (%s)", path, len(no_population),
                 _few(no_population, 3))
    if not out:
        raise DataError(f"popmap {path}: no row names both a sample ({titles[sample_at]!r}) and a population "
                        f"({titles[pop_at]!r})")
    log.info("popmap %s: %d samples read from the sample sheet's columns %r and %r (%s-separated)", path, len(out),
             titles[sample_at], titles[pop_at], {"\t": "tab", ",": "comma", ";": "semicolon", None: "space"}[delimiter])
    return out


def _few(names, k: int = 5) -> str:
    names = [_shown(n) for n in names]
    text = ", ".join(names[:k])
    return text + (f" and {len(names) - k} more" if len(names) > k else "")


def _shown(name) -> str:
    """A name as a list shows it: quoted when it holds a comma or a space ('South, coast'), else bare."""
    name = str(name)
    return repr(name) if not name or re.search(r"[\s,]", name) else name


#: What aligners and callers append to a sample's file name (bcftools mpileup names each sample by its BAM file
#: when the reads carry no read group).
_FILE_SUFFIXES = (".gz", ".bam", ".cram", ".sam", ".sorted", ".sort", ".dedup", ".dedupped", ".rmdup", ".markdup",
                  ".filtered", ".trimmed", ".aligned", ".mapped", ".fq", ".fastq")


def _file_stem(name: str) -> str:
    """``name`` without its directory and the file suffixes of :data:`_FILE_SUFFIXES`, e.g.
    ``bams/IND_1.sorted.bam`` -> ``IND_1``."""
    stem = name.replace("\\", "/").rsplit("/", 1)[-1]
    while True:
        lower = stem.lower()
        suffix = next((x for x in _FILE_SUFFIXES if lower.endswith(x) and len(stem) > len(x)), None)
        if suffix is None:
            return stem
        stem = stem[: -len(suffix)]


def _rename(names: list[str], popmap: dict, match) -> tuple[list[str], list[tuple[str, str]]]:
    """``names`` with each one absent from ``popmap`` replaced by ``match(name)``, the popmap name it
    stands for (None: none), where that name is no other sample's; and the (name, match) pairs."""
    taken = set(names)
    out, renamed = list(names), []
    for i, name in enumerate(names):
        target = match(name) if name not in popmap else None
        if target is not None and target not in taken:
            out[i] = target
            taken.add(target)
            renamed.append((name, target))
    return out, renamed


def _match_by(names: list[str], popmap: dict, key) -> tuple[list[str], list[tuple[str, str]]]:
    """:func:`_rename` by the one popmap name whose ``key`` (None: none) is the name's."""
    by_key: dict = {}
    for name in popmap:
        value = key(name)
        if value is not None:
            by_key.setdefault(value, []).append(name)

    def same(name: str) -> str | None:
        value = key(name)
        found = by_key.get(value, []) if value is not None else []
        return found[0] if len(found) == 1 else None

    return _rename(names, popmap, same)


def _match_file_names(names: list[str], popmap: dict, *, source: str, quiet: bool) -> list[str]:
    """``names`` with each one that is not in ``popmap`` but whose file stem (:func:`_file_stem`) is,
    and is no other sample's name or stem, replaced by that stem; one log line says how many."""
    def stem(name: str) -> str | None:
        s = _file_stem(name)
        return s if s != name and s in popmap else None

    out, renamed = _rename(names, popmap, stem)
    if renamed and not quiet:
        log.info("%s: %d sample name(s) are file names (e.g. %r): matched to the popmap by the name without its "
                 "directory and file suffixes (%s)", source, len(renamed), *renamed[0])
    return out


def _match_case(names: list[str], popmap: dict, *, source: str, quiet: bool) -> list[str]:
    """``names`` with each one that is not in ``popmap`` but equals one popmap name once case is
    ignored (``ind_01`` and ``IND_01``), that name being no other sample's and the only one so
    equal, replaced by the popmap's spelling; one log line says how many."""
    out, renamed = _match_by(names, popmap, str.casefold)
    if renamed and not quiet:
        log.info("%s: %d sample name(s) match the popmap only when case is ignored (e.g. %r is %r there): "
                 "matched so", source, len(renamed), *renamed[0])
    return out


def _shared_numbers(data_names: list[str], popmap_names: list[str]) -> list[tuple[str, str, str]]:
    """(data name, popmap name, number) for names left unmatched that share one catalogue or tissue number of
    at least four digits, and no other unmatched name has it: 'A_woodhouseii_334171' in a VCF and
    'A_californica_334171' in a popmap, one specimen renamed after a change of species."""
    def numbers(names):
        found: dict[str, list[str]] = {}
        for name in names:
            for number in set(re.findall(r"(?<!\d)\d{4,}(?!\d)", name)):
                found.setdefault(number, []).append(name)
        return found

    in_data, in_popmap = numbers(data_names), numbers(popmap_names)
    return [(in_data[n][0], in_popmap[n][0], n) for n in sorted(in_data.keys() & in_popmap.keys())
            if len(in_data[n]) == 1 and len(in_popmap[n]) == 1]


def _match_numbers(names: list[str], popmap: dict, *, source: str, quiet: bool) -> list[str]:
    """``names`` with each one that is not in ``popmap`` but is a number, equal to one popmap name's
    number only (a spreadsheet drops leading zeros, ``0012`` -> ``12``, or writes ``1001`` as
    ``1001.0``), that name being no other sample's, replaced by the popmap's spelling; one log line
    says how many."""
    def number(text: str) -> float | None:
        return float(text) if re.fullmatch(r"[+-]?\d+(\.\d*)?", text) else None

    out, renamed = _match_by(names, popmap, number)
    if renamed and not quiet:
        log.info("%s: %d sample name(s) match the popmap only as numbers (e.g. %r is %r there: a spreadsheet drops "
                 "leading zeros and writes 1001 as 1001.0): matched so", source, len(renamed), *renamed[0])
    return out


def _match_plink_ids(names: list[str], popmap: dict, *, source: str, quiet: bool) -> list[str]:
    """``names`` with each one that is not in ``popmap`` but ends, after an underscore, in exactly one
    popmap name (PLINK's VCF export names a sample ``FID_IID``: ``nuttalli_NUT_001``, or ``NUT_001_NUT_001``
    with ``--double-id``), that name being no other sample's, replaced by it; one log line says how many."""
    def iid(name: str) -> str | None:
        found = [name[i + 1:] for i, c in enumerate(name) if c == "_" and name[i + 1:] in popmap]
        return found[0] if len(found) == 1 else None

    out, renamed = _rename(names, popmap, iid)
    if renamed and not quiet:
        log.info("%s: %d sample name(s) are a popmap name after a prefix and an underscore (e.g. %r is %r there: "
                 "PLINK writes FID_IID; plink --recode vcf-iid writes IID alone): matched so", source, len(renamed),
                 *renamed[0])
    return out


def _drop_titles(popmap: dict[str, str], present: set[str], *, source: str, quiet: bool) -> dict[str, str]:
    """The popmap without its first line when that line is column titles :func:`read_popmap` did not know
    ('Sample ID', 'Pop label'): a first sample absent from the data, whose label no other line has, while
    other samples of the popmap are in the data."""
    if len(popmap) < 2:
        return popmap
    (first, label), *rest = popmap.items()
    if first in present or any(other == label for _, other in rest) or not any(s in present for s, _ in rest):
        return popmap
    if not quiet:
        log.info("%s: the popmap's first line (%r, %r) names no sample of the data and no other line's population: "
                 "read as column titles", source, first, label)
    return dict(rest)


def choose_individuals(
    present: list[str],
    popmap: dict[str, str],
    *,
    samples: dict[str, int],
    rng: np.random.Generator,
    subsample: bool = True,
    source: str = "data",
    populations: dict[str, str] | None = None,
    strict: bool = False,
    counts: dict | None = None,
    quiet: bool = False,
) -> list[tuple[str, str]]:
    """The (sample, population) pairs kept, grouped by population in ``samples`` order.

    ``present``: sample names in the data, as written there; ``samples``:
    diploid individuals per simulated population; ``populations``: the
    popmap's population labels -> simulated population (labels that are
    simulated populations' names map to themselves, also when they differ in case
    only: ``Pop1`` is ``pop1``).  Names are matched after
    trimming leading and trailing whitespace (spreadsheets and ``paste`` leave
    trailing spaces in VCF headers), and a name absent from the popmap is
    matched by its file name without directory and aligner suffixes
    (``bams/IND_1.sorted.bam`` -> ``IND_1``: bcftools mpileup names samples so
    when the reads carry no read group), then by the one popmap name it equals
    when case is ignored (``ind_01`` -> ``IND_01``); the pairs returned hold the
    names as written in the data.

    Samples of the data absent from the popmap, popmap samples absent from the
    data, and samples whose label maps to no simulated population are left
    out and counted (``counts``, when given, receives ``trimmed_names``,
    ``not_in_popmap``, ``not_in_data``, ``unsimulated_labels`` and
    ``unsimulated_samples``), each kind logged in one line; with ``strict``
    each is a :class:`DataError`.  Also a :class:`DataError`: names equal
    after trimming, a mapping to a population that was not simulated, and a
    population with fewer individuals than simulated (or more, with
    ``subsample`` off).
    """
    populations = dict(populations or {})
    bad_targets = sorted({t for t in populations.values() if t not in samples})
    if bad_targets:
        raise DataError(f"{source}: populations maps to {_few(bad_targets)}, not simulated "
                        f"(config samples: {', '.join(samples)})")
    trimmed = [s.strip() for s in present]
    if len(set(trimmed)) != len(trimmed):
        seen: dict[str, str] = {}
        for raw, name in zip(present, trimmed):
            if name in seen:
                raise DataError(f"{source}: samples {seen[name]!r} and {raw!r} have the same name once spaces are trimmed")
            seen[name] = raw
    n_trimmed = sum(raw != name for raw, name in zip(present, trimmed))
    if n_trimmed and not quiet:
        log.info("%s: %d of %d sample name(s) had leading or trailing spaces; matched to the popmap after trimming them",
                 source, n_trimmed, len(present))
    popmap = {name.strip(): label.strip() for name, label in popmap.items()}
    trimmed = _match_file_names(trimmed, popmap, source=source, quiet=quiet)
    trimmed = _match_case(trimmed, popmap, source=source, quiet=quiet)
    trimmed = _match_numbers(trimmed, popmap, source=source, quiet=quiet)
    trimmed = _match_plink_ids(trimmed, popmap, source=source, quiet=quiet)
    popmap = _drop_titles(popmap, set(trimmed), source=source, quiet=quiet)
    missing_from_popmap = [s for s in trimmed if s not in popmap]
    if trimmed and popmap and len(missing_from_popmap) == len(trimmed):  # no name in common: an example of each
        swapped = [s for s in trimmed if s in set(popmap.values())]
        if swapped:
            raise DataError(f"{source}: none of its {len(trimmed)} samples is in the popmap's first column, but "
                            f"{len(swapped)} are in its second (e.g. {swapped[0]!r}): the columns look reversed "
                            "(population, then sample); swap them (awk -v OFS='\\t' '{print $2, $1}')")
        raise DataError(f"{source}: none of its {len(trimmed)} samples is in the popmap ({len(popmap)} samples): the "
                        f"names differ (e.g. {trimmed[0]!r} in the data, {next(iter(popmap))!r} in the popmap)")
    if missing_from_popmap and strict:
        raise DataError(f"{source}: {len(missing_from_popmap)} sample(s) missing from the popmap: {_few(missing_from_popmap)}")
    present_set = set(trimmed)
    missing_from_data = [s for s in popmap if s not in present_set]
    if missing_from_data and strict:
        raise DataError(f"{source}: {len(missing_from_data)} popmap sample(s) not in the data: {_few(missing_from_data)}")

    folded: dict[str, list[str]] = {}
    for pop in samples:
        folded.setdefault(pop.casefold(), []).append(pop)

    def deme(label: str) -> str | None:
        target = populations.get(label, label)
        if target in samples:
            return target
        same = folded.get(label.casefold(), []) if label not in populations else []
        return same[0] if len(same) == 1 else None  # 'Pop1' for pop1: the one population it equals but for case

    by_case = sorted({label for label in popmap.values() if label not in populations and label not in samples
                      and deme(label) is not None})
    if by_case and not quiet:
        log.info("%s: popmap label(s) %s taken for the population(s) %s, whose names they equal but for case",
                 source, _few(by_case, 3), _few([deme(label) for label in by_case], 3))
    unsimulated = sorted({label for label in popmap.values() if deme(label) is None})
    # A --populations label that no popmap line holds: a typo, or a label's case ('Nuttalli' for 'nuttalli').
    stray = _stray_labels(populations, popmap)
    if unsimulated and strict:
        hint = (f"; {stray}" if stray else "" if populations else
                " (map the popmap's labels to them with populations: {label: population})")
        raise DataError(
            f"{source}: population(s) {_few(unsimulated)} in the popmap are not simulated (config samples: {', '.join(samples)}){hint}"
        )
    if stray and not quiet:
        log.warning("%s: %s", source, stray)
    of = {s: deme(popmap[s]) for s in trimmed if s in popmap}
    ignored_labels = [s for s in trimmed if s in of and of[s] is None]
    if counts is not None:
        counts.update(trimmed_names=n_trimmed, not_in_popmap=len(missing_from_popmap), not_in_data=len(missing_from_data),
                      unsimulated_labels=unsimulated, unsimulated_samples=len(ignored_labels))
    left_out = []
    if missing_from_popmap:
        left_out.append(f"{len(missing_from_popmap)} sample(s) not in the popmap ({_few(missing_from_popmap, 3)})")
    if missing_from_data:
        left_out.append(f"{len(missing_from_data)} popmap sample(s) not in the data ({_few(missing_from_data, 3)})")
    if ignored_labels:
        left_out.append(f"{len(ignored_labels)} sample(s) of population(s) {_few(unsimulated, 3)}, which were not simulated")
    if left_out and not quiet:
        log.warning("%s: left out %s (predict.strict_samples makes these errors)", source, "; ".join(left_out))
        for in_data, in_popmap, number in _shared_numbers(missing_from_popmap, missing_from_data)[:3]:
            log.warning("%s: sample %r of the data and %r of the popmap share the number %s but not their names: if "
                        "they are one individual, rename one of them", source, in_data, in_popmap, number)
    raw_of = dict(zip(trimmed, present))
    chosen: list[tuple[str, str]] = []
    available = {pop: sum(of.get(s) == pop for s in trimmed) for pop in samples}
    if counts is not None:
        counts["available"] = available
        counts["subsampled"] = {pop: f"{n} of {available[pop]}" for pop, n in samples.items() if available[pop] > n}
        counts["pool"] = [raw_of[s] for s in trimmed if of.get(s) is not None]
    for pop, n in samples.items():
        members = [s for s in trimmed if of.get(s) == pop]
        if len(members) < n:
            labels = sorted({label for label, target in ((lb, populations.get(lb, lb)) for lb in popmap.values())
                             if target == pop})
            named = f" (popmap label(s) {_few(labels, 3)})" if labels and labels != [pop] else ""
            one_each = len(popmap) > 2 and len(set(popmap.values())) == len(popmap)
            stray_here = _stray_labels({lb: t for lb, t in populations.items() if t == pop}, popmap)
            hint = (f"; {stray_here}" if stray_here else f"; each of the popmap's {len(popmap)} labels is held by one sample (the first: {' '.join(map(repr, next(iter(popmap.items()))))}):"
                    " a popmap of individuals, where each line should give the sample's population" if one_each else
                    f"; simulate {len(members)} (samples: {{{pop}: {len(members)}}}; check-data --suggest-config)"
                    + (f", or map more labels to it (population(s) {_few(unsimulated, 3)} of the popmap were left out)"
                       if unsimulated else "") if members else
                    f"; population(s) {_few(unsimulated, 3)} of the popmap were left out (map a label to {pop!r} with "
                    f"--populations LABEL={pop} or predict.data[].populations: {{LABEL: {pop}}})" if unsimulated else
                    f"; no popmap label maps to it (--populations LABEL={pop})")
            raise DataError(f"{source}: population {pop!r}{named} has {len(members)} individual(s) but {n} were simulated{hint}")
        if len(members) > n:
            if not subsample:
                raise DataError(
                    f"{source}: population {pop!r} has {len(members)} individuals but {n} {'was' if n == 1 else 'were'} simulated "
                    "(subsampling is off)"
                )
            keep = np.sort(rng.choice(len(members), size=n, replace=False))
            members = [members[i] for i in keep]
        chosen += [(raw_of[s], pop) for s in members]
    return chosen


def _stray_labels(populations: dict[str, str], popmap: dict[str, str]) -> str | None:
    """One line naming the ``populations`` labels that no popmap line holds, each with its nearest popmap label."""
    held = set(popmap.values())
    labels = sorted(held)
    stray = [label for label in populations if label not in held]
    if not stray or not labels:
        return None
    by_fold = {label.casefold(): label for label in labels}

    def nearest(label: str) -> str:
        close = difflib.get_close_matches(label.casefold(), list(by_fold), n=1, cutoff=0.6)
        return f" (did you mean {by_fold[close[0]]!r}?)" if close else ""

    named = ", ".join(f"{label!r}{nearest(label)}" for label in stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
    return (f"populations label(s) {named} held by no popmap sample; its labels: {_few(labels, 6)} (labels are "
            "matched as written, case included)")


# ---------------------------------------------------------------------------- VCF
def _check_tab_separated(detail: str, path, record: int) -> None:
    """htslib reads a record whose columns are separated by spaces as one unknown contig
    name, and may fail on the header line it makes for it: say what is wrong instead."""
    if re.search(r"##contig=<ID=[^,>]* ", detail or ""):
        raise DataError(f"VCF {path}: record {record} is not tab-separated (spaces between its columns?)")


def _source(paths: list[Path]) -> str:
    return f"VCF {paths[0]}" if len(paths) == 1 else f"VCF {paths[0]} and {len(paths) - 1} more file(s)"


def read_vcf(
    path,
    *,
    popmap: dict[str, str],
    samples: dict[str, int],
    seed: int,
    name: str = "data",
    subsample: bool = True,
    allow_unphased: bool = False,
    length: float | None = None,
    populations: dict[str, str] | None = None,
    strict: bool = False,
    phased: bool = True,
    keep_filtered: bool = False,
    any_order: bool = False,
) -> Observed:
    """Read a (b)gzipped or plain VCF, or BCF, into an :class:`Observed`.

    ``path``: one file, or a list of files read one after the other as one
    data set, as ``bcftools concat`` would join them (one VCF per chromosome
    or region): they hold the same samples (in any column order), and a
    contig's records continue in the next file only where it ended the one
    before.

    ``phased`` False (an unphased model, ``features.phased: false``) accepts
    unphased calls (0/1): the extractor discards the phase anyway.  With
    ``phased`` True they are an error unless ``allow_unphased`` (alleles
    taken in the order written).  Heterozygous calls with and without phase
    are counted (``phased_heterozygous``, ``unphased_heterozygous``).

    Samples are matched to the popmap, and the popmap's labels to the
    simulated populations (``populations``), by :func:`choose_individuals`
    (``strict``: every sample on both sides, every label simulated).

    Only biallelic SNPs enter; other records are skipped and counted, as are
    records that failed a filter (FILTER neither ``PASS`` nor ``.``: e.g. a
    GATK VariantFiltration's ``LowQual``) unless ``keep_filtered``.  Each
    contig is a locus; the SNPs are sorted by contig (in the order of their
    first record) and position where a file's records were not, as
    ``bcftools sort`` would, and counted (``out_of_order``); a contig's
    records may not continue in another file except where it ended the one
    before (``any_order``: in any order and kept in file order, for loci read
    from the IDs, :func:`id_loci`).  ``length`` (bp) is the sequenced length for per-bp
    statistics; None takes the span of the contigs' records.

    The header and the end of every file are checked before htslib reads it: a
    file cut short (an interrupted download or copy) is refused, whether
    plain, gzip or BGZF.  What htslib prints on standard error is collected:
    its first error becomes part of the one-line :class:`DataError`, and its
    warnings of a file read successfully are logged.
    """
    import cyvcf2

    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    if not paths:
        raise DataError("VCF: no file given")
    seen: dict[Path, Path] = {}
    headers = []
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise DataError(f"VCF {p}: given twice among the data set's files")
        seen[key] = p
        headers.append(_checked_header(p))
    present = headers[0][1][9:]
    for p, columns in headers[1:]:
        mine, first = {s.strip() for s in columns[9:]}, {s.strip() for s in present}
        if mine != first:
            only_here, only_first = sorted(mine - first), sorted(first - mine)
            what = "; ".join(x for x in (f"{_few(only_here, 3)} only in it" if only_here else "",
                                          f"{_few(only_first, 3)} only in {paths[0]}" if only_first else "") if x)
            raise DataError(f"VCF {p}: its samples are not those of {paths[0]} ({what}); the files of one data set "
                            "hold the same individuals")
    matching: dict = {}
    chosen = choose_individuals(
        list(present), popmap, samples=samples, rng=seeds.observed(seed, name), subsample=subsample,
        source=_source(paths), populations=populations, strict=strict, counts=matching,
    )
    pool = matching.pop("pool")  # every individual of a simulated population, as the first file names them
    reading = _Records(chosen=chosen, pool=pool, samples_in_file=len(present), counts=matching, allow_unphased=allow_unphased, phased=phased,
                       keep_filtered=keep_filtered, any_order=any_order, files=len(paths))
    header_lengths: dict[str, int] = {}
    for p, columns in headers:
        with _HtslibLog() as hts:
            try:
                vcf = cyvcf2.VCF(str(p), gts012=False, lazy=True, threads=1)
            except Exception as exc:  # htslib reports its own error types
                raise DataError(f"VCF {p}: cannot be parsed ({hts.first_error() or _first_line(exc)})") from None
            if "##contig=<" in vcf.raw_header:  # without them cyvcf2 would look for an index
                try:
                    header_lengths.update({n: int(x) for n, x in zip(vcf.seqnames, vcf.seqlens) if int(x) > 0})
                except Exception:  # contig lines without lengths
                    pass
            hts.new_error()  # what the header gave rise to is not a record's error
            try:
                reading.read(vcf, p, columns=columns, hts=hts)
            finally:
                vcf.close()
        hts.replay(f"VCF {p}")
    data = reading.observed(name=name, length=length, source=_source(paths))
    data.counts["vcf_files"] = len(paths)
    if header_lengths:
        data.counts.update(header_contigs=len(header_lengths), header_contig_max=max(header_lengths.values()))
        kept = [header_lengths[c] for c in data.loci if c in header_lengths]
        if kept:
            data.counts["contig_length_median"] = float(np.median(kept))
    return data


def _checked_header(path: Path) -> tuple[Path, list[str]]:
    """``(path, the #CHROM line's columns)`` of a VCF that passes the
    checks made before htslib reads it: present, not empty, a complete header with named,
    distinct samples, not cut short."""
    if path.is_dir():
        raise DataError(f"VCF {path}: is a folder, not a file")
    if not path.is_file():
        raise DataError(f"VCF {path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"VCF {path}: the file is empty")
    try:
        kind = _compression(path)
    except OSError as exc:
        raise DataError(f"VCF {path}: cannot be read ({_reason(exc)})") from None
    columns = _read_header(path, kind)
    present = columns[9:]
    if not present:
        raise DataError(f"VCF {path}: no sample columns")
    if len(set(present)) != len(present):
        dup = sorted({s for s in present if present.count(s) > 1})
        raise DataError(f"VCF {path}: sample(s) {_few(dup)} appear twice in the header")
    _check_complete(path, kind, len(columns), binary=_is_bcf(path, kind))
    return path, columns


#: Records whose genotypes :class:`_Records` checks and keeps together (numpy calls per batch, not per record).
RECORD_BATCH = 1024


class _Records:
    """The genotypes of the chosen individuals at the biallelic SNPs of one or more VCF files,
    read one after the other (:func:`read_vcf`), with the counts of what was skipped."""

    def __init__(self, *, chosen, pool, samples_in_file: int, counts: dict, allow_unphased, phased, keep_filtered, any_order,
                 files: int = 1):
        self.chosen, self.pool, self.samples_in_file = chosen, pool, samples_in_file
        self.subsampled = len(pool) > len(chosen)
        self.allow_unphased, self.phased, self.keep_filtered, self.any_order = allow_unphased, phased, keep_filtered, any_order
        self.counts = {"records": 0, "snps": 0, "multiallelic": 0, "indels": 0, "mnps": 0, "other_variants": 0,
                       "monomorphic": 0, "filtered": 0, "missing_calls": 0, "unphased_heterozygous": 0,
                       "phased_heterozygous": 0, "out_of_order": 0, "invariant_records": 0, "depth_zero_calls": 0, **counts,
                       "snps_lost_to_subsampling": 0}
        self.filters: dict[str, int] = {}  # records skipped, per filter that failed
        self.blocks, self.positions, self.loci_idx, self.ids = [], [], [], []
        self.file_alleles: list[tuple[int, int, int]] = []  # (contig, minor count, called) among all the file's samples
        self.contigs: list[str] = []
        self.contig_index: dict[str, int] = {}
        self.contig_file: dict[str, Path] = {}
        self.spans: dict[str, tuple[int, int]] = {}
        self.last = (None, -1)
        self.disorder: str | None = None  # the first record out of position order, where there is one
        self.files = files  # how many files the data set reads
        self.record_ids: set[str] = set()  # any_order: the IDs of the biallelic SNP and invariant-site records
        self.invariant_contigs: set[int] = set()  # contigs with an invariant-site record (ALT '.')
        #: Contigs with haploid calls -> [records left out, where the first haploid call is, the samples read that
        #: made a haploid call there].
        self.haploid: dict[str, list] = {}

    def read(self, vcf, path: Path, *, columns: list[str], hts) -> None:
        """Read the records of the open cyvcf2 reader ``vcf`` of file ``path`` (its #CHROM ``columns``)."""
        if not vcf.contains("GT"):
            # Hand-made VCFs and some converters write records with GT but no ##FORMAT line defining it; htslib
            # reads such calls (as a String).  A record without GT is still an error, below (_no_genotype).
            log.warning("VCF %s: the header defines no GT (genotype) FORMAT field; reading GT from the records", path)
        column = {s.strip(): i for i, s in enumerate(columns[9:])}
        index = np.array([column[s.strip()] for s, _ in self.chosen])
        pool = np.array([column[s.strip()] for s in self.pool])
        counts, filters, keep_filtered = self.counts, self.filters, self.keep_filtered
        # A call at depth 0 saw no read: bcftools call and GATK 3 write 0/0 there, a homozygote the data never showed.
        depths = re.search(r"^##FORMAT=<ID=DP,", vcf.raw_header, re.M) is not None
        # Calls a per-sample filter failed (FORMAT FT, as GATK VariantFiltration --genotype-filter-expression
        # writes them without --set-filtered-genotype-to-no-call) are missing, unless filtered data are kept.
        sample_filters = not keep_filtered and re.search(r"^##FORMAT=<ID=FT,", vcf.raw_header, re.M) is not None
        spans, contigs, contig_index = self.spans, self.contigs, self.contig_index
        in_file = 0
        pending: list = []  # records waiting for the genotype arithmetic (_batch)
        records = iter(vcf)
        while True:
            last = self.last
            after = f" (after {last[0]}:{last[1]})" if last[0] is not None and in_file else ""
            try:
                rec = next(records)
            except StopIteration:
                break
            except Exception as exc:  # htslib could not parse the next record
                detail = hts.new_error() or hts.first_error() or _first_line(exc)
                if detail.startswith("error parsing variant"):  # cyvcf2's generic text: htslib said nothing more
                    detail = "htslib cannot read it (a malformed or incomplete line?)"
                _check_tab_separated(detail, path, in_file + 1)
                raise DataError(f"VCF {path}: record {in_file + 1}{after} cannot be parsed: {detail}") from None
            counts["records"] += 1
            in_file += 1
            error = hts.new_error()
            if error is not None:  # htslib may hand over a record it failed to parse: never touch its fields
                _check_tab_separated(error, path, in_file)
                raise DataError(f"VCF {path}: record {in_file}{after} cannot be parsed: {error}")
            try:
                chrom, pos = rec.CHROM, int(rec.POS)
            except UnicodeDecodeError:  # htslib hands over the bytes; cyvcf2 decodes them as UTF-8
                raise DataError(f"VCF {path}: record {in_file}{after}: its contig name is not UTF-8 text") from None
            if " " in chrom:
                raise DataError(f"VCF {path}: record {in_file} is not tab-separated (spaces between its columns?)")
            if chrom not in spans:
                contig_index[chrom] = len(contigs)
                contigs.append(chrom)
                self.contig_file[chrom] = path
                spans[chrom] = (pos, pos)
            elif not self.any_order and (chrom != last[0] or pos < last[1]):
                if chrom == "un" and _STACKS_ID.match(rec.ID or ""):
                    raise DataError(f"VCF {path}: {chrom}:{pos} (ID {rec.ID}) comes after {chrom}:{last[1]}: a de novo "
                                    "Stacks 1 catalogue, whose positions are columns within each locus; read the loci "
                                    "from the ID column: loci: ids (--loci ids)")
                if self.contig_file[chrom] != path:
                    raise DataError(f"VCF {path}: contig {chrom!r} also has records in {self.contig_file[chrom]}, "
                                    "which do not end where these begin (give the files in order, or sort them into "
                                    "one: bcftools concat | bcftools sort)")
                # Out of position order within one file: Stacks writes the loci of a reference-aligned catalogue
                # by their start, and a minus-strand locus starts at its last base, so its SNPs can come after
                # the next locus's.  The SNPs are sorted in memory once read (observed()), as bcftools sort would.
                if self.disorder is None:
                    self.disorder = f"{chrom}:{pos} after {last[0]}:{last[1]}" + (f" in {path}" if self.files > 1 else "")
                counts["out_of_order"] += 1
            self.last = (chrom, pos)
            first, end = spans[chrom]
            spans[chrom] = (min(first, pos), max(end, pos))
            failed = None if keep_filtered else rec.FILTER  # cyvcf2: None for PASS and '.'
            if failed:
                counts["filtered"] += 1
                for f in str(failed).split(";"):
                    filters[f] = filters.get(f, 0) + 1
                continue
            if chrom in self.haploid:  # a contig with haploid calls is left out whole
                self.haploid[chrom][0] += 1
                continue
            try:
                genotypes = rec.genotype
            except Exception:  # cyvcf2: "couldn't get genotypes for variant"
                raise DataError(_no_genotype(path, rec, f"{chrom}:{pos}", len(columns))) from None
            gt = genotypes.array() if genotypes is not None else None
            if gt is None:
                raise DataError(f"VCF {path}: {chrom}:{pos} has no GT value")
            # A lone '.' is a missing call written without its ploidy (FreeBayes, and so dDocent, write every
            # missing call so): htslib reads it as one missing allele, which for diploid data is both.
            # A called single allele: a haploid call (a male's X, a Y or a mitochondrion, as bcftools call
            # --ploidy writes them); its contig is left out (observed() drops the SNPs read from it before).
            # Only the calls of the individuals popdl may read count: a haploid sample the popmap leaves out (a
            # male of a haplodiploid species) does not take its contigs with it; its calls become half-missing.
            if gt.shape[1] < 3:
                single = gt[:, 0] >= 0
                if single[pool].any():
                    self._haploid_call(chrom, f"VCF {path}: {chrom}:{pos}", pool[single[pool]], columns)
                    continue
                gt = np.column_stack([gt[:, 0], np.full(len(gt), -1, dtype=gt.dtype), np.ones(len(gt), dtype=gt.dtype)])
            one = gt[:, 1] == -2  # a call of one allele
            if one.any():
                single = one & (gt[:, 0] >= 0)
                if single[pool].any():
                    self._haploid_call(chrom, f"VCF {path}: {chrom}:{pos}", pool[single[pool]], columns)
                    continue
                gt = gt.copy()
                gt[one, 1] = -1
            if gt.shape[1] > 3:
                raise DataError(f"VCF {path}: {chrom}:{pos} has genotype calls of ploidy {gt.shape[1] - 1}; popdl simulates diploids")
            alts = rec.ALT
            if any(a in _UNCALLED_ALLELES for a in alts):
                raise DataError(
                    f"VCF {path}: {chrom}:{pos} has the allele {next(a for a in alts if a in _UNCALLED_ALLELES)}: a gVCF or "
                    "bcftools mpileup's output, whose sites are not genotyped yet; genotype it first (GATK GenotypeGVCFs, "
                    "bcftools call -mv)")
            if len(alts) > 1:
                counts["multiallelic"] += 1
                continue
            if len(alts) == 0 or alts[0] in {".", "*"}:
                counts["monomorphic"] += 1
                if len(alts) == 0 or alts[0] == ".":  # an invariant site (an all-sites VCF): its locus is one all the same
                    counts["invariant_records"] += 1
                    self.invariant_contigs.add(contig_index[chrom])
                    if self.any_order:
                        self.record_ids.add(rec.ID or ".")
                continue
            if rec.is_indel or len(rec.REF) != 1 or len(alts[0]) != 1:
                # Alleles of one length above 1: a multi-nucleotide polymorphism (FreeBayes writes them), whose
                # SNPs bcftools norm -a or vcfallelicprimitives would split out; other lengths: indels, complex.
                same = len(rec.REF) == len(alts[0])
                counts["mnps" if same else "indels"] += 1
                continue
            # One base for another.  Any single characters count, not only A/C/G/T:
            # tskit writes the 0/1 alleles of msprime's BinaryMutationModel as REF 0, ALT 1.
            if rec.REF == alts[0]:
                counts["other_variants"] += 1
                continue
            # The genotype arithmetic runs on batches of records (numpy calls per record cost more than the
            # record itself): the record waits with what the batch needs to know of it.
            if depths:
                gt = self._unread_as_missing(rec, gt, index)
            if sample_filters:
                gt = self._failed_calls_as_missing(rec, gt, index)
            pending.append((gt, chrom, pos, contig_index[chrom], rec.ID or "."))
            if len(pending) >= RECORD_BATCH:
                self._batch(pending, index=index, pool=pool, path=path)
                pending = []
        if pending:
            self._batch(pending, index=index, pool=pool, path=path)

    def _haploid_call(self, chrom: str, where: str, columns_called: np.ndarray, columns: list[str]) -> None:
        """Mark contig ``chrom`` as one with haploid calls, first at ``where``, by the samples of ``columns_called``."""
        self.haploid[chrom] = [1, where, [columns[9 + int(i)].strip() for i in columns_called]]

    def _failed_calls_as_missing(self, rec, gt: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``gt`` with the calls whose FORMAT FT is neither PASS nor missing made missing, those of the
        individuals kept counted (``filtered_calls``)."""
        ft = _format_values(rec, "FT", gt.shape[0])
        if ft is None:
            return gt
        ft = ft.astype(str)
        return self._made_missing(gt, (ft != "PASS") & (ft != ".") & (ft != ""), index, "filtered_calls")

    def _unread_as_missing(self, rec, gt: np.ndarray, index: np.ndarray) -> np.ndarray:
        """``gt`` with the calls whose FORMAT DP is 0 made missing, those of the individuals kept counted
        (``depth_zero_calls``)."""
        dp = _format_values(rec, "DP", gt.shape[0])
        return gt if dp is None else self._made_missing(gt, dp[:, 0] == 0, index, "depth_zero_calls")

    def _made_missing(self, gt: np.ndarray, drop: np.ndarray, index: np.ndarray, key: str) -> np.ndarray:
        """``gt`` with the calls of the samples ``drop`` marks made missing; those of the individuals kept (``index``)
        that were called are added to ``counts[key]``."""
        if not drop.any():
            return gt
        self.counts[key] = self.counts.get(key, 0) + int((drop & (gt[:, 0] >= 0))[index].sum())
        gt = gt.copy()
        gt[drop, :2] = -1
        return gt

    def _batch(self, pending: list, *, index: np.ndarray, pool: np.ndarray, path: Path) -> None:
        """Count, check and keep the biallelic SNP records of ``pending`` ((genotype array, contig, position,
        contig index, ID) each, in file order), as one record at a time would."""
        counts = self.counts
        every = np.stack([p[0] for p in pending])  # (records, samples in the file, 2 alleles + phase)
        g = every[:, index]
        alleles = g[..., :2]
        het = (alleles[..., 0] != alleles[..., 1]) & (alleles >= 0).all(axis=2)
        unphased = het & (g[..., 2] == 0)
        if unphased.any() and self.phased and not self.allow_unphased:
            r = int(np.flatnonzero(unphased.any(axis=1))[0])
            bad = self.chosen[int(np.flatnonzero(unphased[r])[0])][0].strip()
            raise DataError(
                f"VCF {path}: {pending[r][1]}:{pending[r][2]} sample {bad} has an unphased heterozygous call (0/1); "
                "the model is phased: train with features.phased: false for unphased data, or phase the VCF "
                "(Beagle, SHAPEIT)"
            )
        counts["phased_heterozygous"] += int((het & (g[..., 2] == 1)).sum())
        counts["unphased_heterozygous"] += int(unphased.sum())
        # An allele index beyond the one ALT allele: not a biallelic SNP.
        biallelic = ~(alleles > 1).any(axis=(1, 2))
        counts["multiallelic"] += int((~biallelic).sum())
        rows = np.flatnonzero(biallelic)
        if not rows.size:
            return
        every, alleles = every[rows][..., :2], alleles[rows]
        ones, zeros = np.count_nonzero(every == 1, axis=(1, 2)), np.count_nonzero(every == 0, axis=(1, 2))
        contigs = [pending[r][3] for r in rows]
        self.file_alleles.extend(zip(contigs, np.minimum(ones, zeros).tolist(), (ones + zeros).tolist()))
        if self.any_order:  # loci read from the IDs: those of every biallelic record, variable or not among the kept
            self.record_ids.update(pending[r][4] for r in rows)
        hap = np.where(alleles < 0, MISSING, alleles).astype(np.int8).reshape(rows.size, -1)
        counts["missing_calls"] += int((alleles < 0).any(axis=2).sum())
        variable = (hap == 0).any(axis=1) & (hap == 1).any(axis=1)
        counts["monomorphic"] += int((~variable).sum())
        if self.subsampled and not variable.all():  # SNPs among all the individuals, lost by keeping only some
            among = every[~variable][:, pool]
            counts["snps_lost_to_subsampling"] += int(((among == 0).any(axis=(1, 2)) & (among == 1).any(axis=(1, 2))).sum())
        kept = rows[variable]
        self.blocks.append(hap[variable])
        self.positions.extend(float(pending[r][2]) for r in kept)
        self.loci_idx.extend(pending[r][3] for r in kept)
        self.ids.extend(pending[r][4] for r in kept)

    def observed(self, *, name: str, length: float | None, source: str) -> Observed:
        """What the files read gave, as an :class:`Observed` (a :class:`DataError` if no SNP)."""
        counts, contigs, spans = self.counts, self.contigs, self.spans
        counts["filters"] = dict(sorted(self.filters.items(), key=lambda kv: (-kv[1], kv[0])))
        if counts["records"] == 0:
            raise DataError(f"{source}: no variant records")
        self.blocks = [np.concatenate(self.blocks)] if self.blocks else []
        if counts.get("filtered_calls"):
            log.info("%s: %d genotype call(s) failing a per-sample filter (FORMAT FT) read as missing "
                     "(predict.keep_filtered keeps them)", source, counts["filtered_calls"])
        if counts["depth_zero_calls"]:
            log.info("%s: %d genotype call(s) at depth 0 (FORMAT DP) read as missing: no read was seen there, where "
                     "callers (bcftools call, GATK 3) write 0/0", source, counts["depth_zero_calls"])
        if self.haploid:
            self._drop_haploid_contigs(source)
        if self.disorder is not None and self.positions:
            self._sort(source)
        if len(self.positions) > 1:
            self._drop_repeats(source)
        if not self.positions:
            raise DataError(f"{source}: no usable biallelic SNP among {counts['records']} records ({skipped_text(counts)}"
                            + ("; predict.keep_filtered (--keep-filtered) would use them)" if counts["filtered"] else ")"))
        used = set(self.loci_idx)
        counts["snps"] = len(self.positions)
        # Contigs with a biallelic SNP record (one the caller found variable), those monomorphic among the
        # individuals kept included: loci of the catalogue all the same.
        # ... and those with an invariant-site record only (an all-sites VCF: Stacks populations --vcf-all).
        haploid = {self.contig_index[c] for c in self.haploid}
        counts["file_loci"] = len({contig for contig, _, _ in self.file_alleles} | used | (self.invariant_contigs - haploid))
        if self.any_order:  # the loci and tag length the IDs of every SNP and invariant-site record name, kept or not
            ids = sorted(self.record_ids - {"", "."})
            counts["file_id_loci"] = len({id_locus(x) for x in ids})
            counts["id_tag_length"] = stacks_tag_length(ids)
        counts["max_position"] = int(max(self.positions))  # bp; a de novo catalogue's SNPs lie within its loci
        counts["empty_contigs"] = [c for i, c in enumerate(contigs) if i not in used and c not in self.haploid]
        counts["individuals"] = len(self.chosen)
        counts["individuals_in_file"] = self.samples_in_file
        # Loci without a usable SNP are dropped; the others are renumbered 0..k-1.
        kept_contigs = [c for i, c in enumerate(contigs) if i in used]
        renumber = {old: new for new, old in enumerate(sorted(used))}
        span = sum(spans[c][1] - spans[c][0] + 1 for c in kept_contigs)
        return Observed(
            name=name,
            genotypes=self.blocks[0],
            positions=np.asarray(self.positions),
            locus=np.array([renumber[i] for i in self.loci_idx], dtype=np.int32),
            populations=np.repeat(np.array([p for _, p in self.chosen]), 2),
            individuals=[s.strip() for s, _ in self.chosen],
            loci=kept_contigs,
            length=float(length) if length else float(span),
            counts=counts,
            ids=self.ids,
            file_alleles=np.array([a[1:] for a in self.file_alleles], dtype=np.int64).reshape(-1, 2),
        )


    def _sort(self, source: str) -> None:
        """Sort the SNPs read by contig (in the order of their first record) and position, as bcftools sort
        would: the file's records were not in that order (one log line says how many went back)."""
        order = np.lexsort((np.asarray(self.positions), np.asarray(self.loci_idx)))  # stable: ties keep file order
        self.blocks = [self.blocks[0][order]]
        self.positions, self.ids, self.loci_idx = ([x[i] for i in order] for x in (self.positions, self.ids, self.loci_idx))
        log.info("%s: %d record(s) out of position order (the first: %s), as Stacks writes reference-aligned loci; "
                 "the SNPs were sorted by contig and position in memory", source, self.counts["out_of_order"], self.disorder)

    def _drop_repeats(self, source: str) -> None:
        """Leave out each SNP record that repeats the one before it (same contig, position, ID and genotypes of the
        individuals kept), counted (``repeated``): files or regions concatenated with an overlap, where each
        copy would count as a SNP of its own.  A multi-allelic site split into biallelic records differs in its
        genotypes and stays (:func:`shared_positions` counts those)."""
        locus, pos, g = np.asarray(self.loci_idx), np.asarray(self.positions), self.blocks[0]
        ids = self.ids
        repeat = np.zeros(len(pos), dtype=bool)
        # The ID too: records of two Stacks loci share a contig ('un') and a column, and differ in their IDs.
        same_site = np.array([i for i in np.flatnonzero((locus[1:] == locus[:-1]) & (pos[1:] == pos[:-1])) + 1
                              if ids[i] == ids[i - 1]], dtype=np.int64)
        if same_site.size:
            repeat[same_site] = (g[same_site] == g[same_site - 1]).all(axis=1)
        if not repeat.any():
            return
        first = int(np.flatnonzero(repeat)[0])
        keep = np.flatnonzero(~repeat)
        self.blocks = [g[keep]]
        self.positions, self.ids, self.loci_idx = ([x[i] for i in keep] for x in (self.positions, self.ids, self.loci_idx))
        self.counts["repeated"] = int(repeat.sum())
        log.warning("%s: left out %d SNP record(s) that repeat the one before them (same position, ID and genotypes; the "
                    "first at %s:%d): files or regions concatenated with an overlap (bcftools concat -a -D drops them)",
                    source, int(repeat.sum()), self.contigs[int(locus[first])], int(pos[first]))

    def _drop_haploid_contigs(self, source: str) -> None:
        """Leave out the SNPs of the contigs with haploid calls, counted (``haploid``,
        ``haploid_contigs``); a :class:`DataError` when no other contig has a SNP."""
        flagged = {self.contig_index[c] for c in self.haploid}
        keep = [i for i, locus in enumerate(self.loci_idx) if locus not in flagged]
        for locus in self.loci_idx:
            if locus in flagged:
                self.haploid[self.contigs[locus]][0] += 1
        by_sample: dict[str, int] = {}
        for _, _, names in self.haploid.values():
            for sample in names:
                by_sample[sample] = by_sample.get(sample, 0) + 1
        ranked = sorted(by_sample.items(), key=lambda kv: (-kv[1], kv[0]))
        with_snps = len(flagged | set(self.loci_idx))
        # Haploid calls on most of many contigs, by some of the individuals, are these individuals' ploidy, not a
        # sex chromosome's (one contig, or a few scaffolds of an assembly): name the samples.
        usual = [s for s, n in ranked if n > len(flagged) / 2]
        if 0 < len(usual) < len(self.pool) and len(flagged) >= HAPLOID_INDIVIDUALS_CONTIGS and len(flagged) > with_snps / 2:
            raise DataError(
                f"{source}: haploid genotype calls on {len(flagged)} of the {with_snps} contigs with SNPs, "
                f"{_haploid_by(ranked)}: haploid individuals (males of a haplodiploid species, or called at the wrong "
                "ploidy), not a sex chromosome; leave them out of the popmap (popdl simulates diploids)")
        if not keep:
            first = next(iter(self.haploid.values()))[1]
            raise DataError(f"{first} has haploid genotype calls; popdl simulates diploid individuals")
        self.positions, self.ids, self.loci_idx = ([x[i] for i in keep] for x in (self.positions, self.ids, self.loci_idx))
        self.blocks = [self.blocks[0][keep]] if keep else []
        self.file_alleles = [a for a in self.file_alleles if a[0] not in flagged]
        by_contig = {c: n for c, (n, _, _) in self.haploid.items()}
        self.counts.update(haploid=sum(by_contig.values()), haploid_contigs=by_contig)
        shown = ", ".join(f"{c} ({n})" for c, n in list(by_contig.items())[:5]) + (", ..." if len(by_contig) > 5 else "")
        log.warning("%s: left out %d contig(s) with haploid genotype calls (a male's X, a Y, a mitochondrion): %s "
                    "records, %s; popdl simulates diploid autosomes", source, len(by_contig), shown, _haploid_by(ranked))


#: Haploid calls on at least this many contigs, most of those with SNPs, are named as haploid individuals'.
HAPLOID_INDIVIDUALS_CONTIGS = 5


def _format_values(rec, field: str, samples: int) -> np.ndarray | None:
    """The FORMAT ``field`` of record ``rec``, one row per sample, or None where the record lacks it (or htslib
    cannot read it as the header types it)."""
    try:
        values = rec.format(field)
    except Exception:
        return None
    return None if values is None or len(values) != samples else np.asarray(values)


def _haploid_by(ranked: list[tuple[str, int]]) -> str:
    """Who made the haploid calls: 'by NAME on N contig(s), ...', the five with the most contigs first."""
    shown = ", ".join(f"{s} on {n}" for s, n in ranked[:5]) + (f" and {len(ranked) - 5} more" if len(ranked) > 5 else "")
    return f"by {shown} contig(s)" if ranked else "by no sample read"


def skipped_text(counts: dict, *, advice: bool = False) -> str:
    """'3 multi-allelic, 2 indels, 10 monomorphic, 1 MNP, 4 failing a FILTER (LowQual 4)': the records of
    a VCF skipped, as :func:`read_vcf` counted them (MNPs, records with ALT equal to REF and filtered
    records only when there are some).  ``advice``: say which tools split MNPs into SNPs."""
    def n(key: str, word: str) -> str:
        k = counts.get(key, 0)
        return f"{k} {word}" + ("" if k == 1 else "s")

    parts = [f"{counts.get('multiallelic', 0)} multi-allelic", n("indels", "indel"), f"{counts.get('monomorphic', 0)} monomorphic"]
    if counts.get("mnps"):
        parts.append(n("mnps", "MNP")
                     + (" (bcftools norm -a or vcfallelicprimitives splits them into SNPs)" if advice else ""))
    if counts.get("other_variants"):
        parts.append(f"{counts['other_variants']} with ALT equal to REF")
    if counts.get("haploid"):
        contigs = list(counts.get("haploid_contigs") or {})
        parts.append(f"{counts['haploid']} on {len(contigs)} contig(s) with haploid calls ("
                     + ", ".join(contigs[:3]) + (", ..." if len(contigs) > 3 else "") + ")")
    if counts.get("repeated"):
        parts.append(f"{counts['repeated']} repeating the record before")
    if counts.get("filtered"):
        parts.append(filtered_text(counts))
    return ", ".join(parts)


def filtered_text(counts: dict) -> str:
    """'N failing a FILTER (LowQual 10, q10 2)': the records a VCF's filters removed, or '' if none."""
    n = counts.get("filtered", 0)
    if not n:
        return ""
    names = list((counts.get("filters") or {}).items())
    shown = ", ".join(f"{f} {k}" for f, k in names[:4]) + (f", {len(names) - 4} more" if len(names) > 4 else "")
    return f"{n} failing a FILTER ({shown})"


# ---------------------------------------------------------------------------- VCF: checks before htslib
#: The empty block that ends every complete BGZF file.
_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_FIXED_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
_TAIL = 1 << 16


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _compression(path: Path) -> str:
    """``plain``, ``gzip`` or ``bgzf`` (gzip blocks with the ``BC`` extra field)."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    return "bgzf" if len(head) >= 16 and head[3] & 4 and head[12:14] == b"BC" else "gzip"


def _read_header(path: Path, kind: str) -> list[str]:
    """The columns of the #CHROM line, after the checks a header must pass."""
    try:
        with gzip.open(path, "rb") if kind != "plain" else open(path, "rb") as fh:
            first = fh.readline(1 << 20)
            if first.startswith(b"BCF"):
                return _bcf_columns(path)
            if first.startswith(b"\xef\xbb\xbf"):
                raise DataError(f"VCF {path}: the file starts with a UTF-8 byte-order mark; remove it (htslib cannot read it)")
            if not first.startswith(b"##fileformat=VCF"):
                raise DataError(f"VCF {path}: not a VCF file (the first line must be ##fileformat=VCFv4.x)")
            number = 1
            for line in fh:
                number += 1
                if line.startswith(b"##"):
                    continue
                if line.startswith(b"#"):
                    return _header_columns(path, line, number)
                raise DataError(f"VCF {path} line {number}: a record before the #CHROM header line (the header has none)")
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"VCF {path}: the header cannot be read ({_reason(exc)}): the file is damaged or truncated") from None
    raise DataError(f"VCF {path}: no #CHROM header line (the file holds only ## lines: truncated?)")


def _is_bcf(path: Path, kind: str) -> bool:
    """Whether ``path`` is a BCF file (binary VCF, ``bcftools view -Ob``)."""
    try:
        with gzip.open(path, "rb") if kind != "plain" else open(path, "rb") as fh:
            return fh.read(3) == b"BCF"
    except (OSError, EOFError, zlib.error):
        return False


def _bcf_columns(path: Path) -> list[str]:
    """The #CHROM line's columns of a BCF file, from its header as htslib reads it."""
    import cyvcf2

    with _HtslibLog() as hts:
        try:
            vcf = cyvcf2.VCF(str(path), lazy=True, threads=1)
        except Exception as exc:
            raise DataError(f"VCF {path}: a BCF file whose header cannot be read "
                            f"({hts.first_error() or _first_line(exc)})") from None
        try:
            samples = list(vcf.samples)
        except UnicodeDecodeError:
            raise DataError(f"VCF {path}: the BCF header's sample names are not UTF-8 text") from None
        finally:
            vcf.close()
    return [*_FIXED_COLUMNS, *(["FORMAT", *samples] if samples else [])]


def _header_columns(path: Path, line: bytes, number: int) -> list[str]:
    try:
        text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:  # sample names typed on Windows: 'Léman_1' in Windows-1252
        text = line.decode("cp1252", errors="replace").rstrip("\r\n")
        log.info("VCF %s: the #CHROM line is not UTF-8 text; its sample names read as Windows-1252 (Latin-1)", path)
    cols = text.split("\t")
    where = f"VCF {path} line {number}"
    if len(cols) < len(_FIXED_COLUMNS):
        if len(text.split()) >= len(_FIXED_COLUMNS):
            raise DataError(f"{where}: the #CHROM header line is not tab-separated")
        raise DataError(f"{where}: the #CHROM header line has {len(cols)} column(s); a VCF has at least 8 ({' '.join(_FIXED_COLUMNS)})")
    if [c.upper() for c in cols[:8]] != _FIXED_COLUMNS:
        raise DataError(f"{where}: the #CHROM header line starts {' '.join(cols[:8])!r}, not {' '.join(_FIXED_COLUMNS)}")
    if len(cols) > 8 and cols[8] != "FORMAT":
        raise DataError(f"{where}: column 9 of the #CHROM header line is {cols[8]!r}, not FORMAT")
    unnamed = [i + 1 for i, s in enumerate(cols[9:], 9) if not s.strip()]
    if unnamed:
        raise DataError(f"{where}: sample column {unnamed[0]} of the #CHROM header line has no name")
    return cols


def _check_complete(path: Path, kind: str, columns: int, binary: bool = False) -> None:
    """Refuse a file that ends early: a gzip or BGZF stream cut short, or a last line cut in the middle
    (``binary``: a BCF file, which has no lines; htslib reports a record cut short)."""
    if kind == "bgzf":
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - len(_BGZF_EOF)))
            if fh.read() == _BGZF_EOF:
                return  # complete; a record cut short would end a block inside a line, which htslib reports
    if binary and kind == "plain":
        return
    if kind == "plain":
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - _TAIL))
            tail = fh.read()
    else:
        tail = b""
        stream = "BGZF" if kind == "bgzf" else "gzip"
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    tail = (tail + chunk)[-_TAIL:]
        except EOFError:
            raise DataError(f"VCF {path}: the {stream} stream ends early: the file is truncated (an interrupted download or copy?)") from None
        except (OSError, zlib.error) as exc:
            raise DataError(f"VCF {path}: the {stream} data are damaged ({_reason(exc)})") from None
    if tail and not binary and not tail.endswith(b"\n"):
        last = tail.rsplit(b"\n", 1)[-1]
        found = last.count(b"\t") + 1
        if found < columns:
            raise DataError(
                f"VCF {path}: the file ends in the middle of a record (its last line has {found} of {columns} columns): it is truncated"
            )
    if kind == "bgzf":
        log.warning("VCF %s: no BGZF end-of-file marker (htslib warns the file may be truncated); its data are complete", path)


def _no_genotype(path: Path, rec, where: str, columns: int) -> str:
    """Why record ``rec`` has no genotypes, in one line."""
    try:
        fields = str(rec).rstrip("\r\n").split("\t")
    except Exception:
        fields = []
    if len(fields) <= 9:
        return f"VCF {path}: {where} has no FORMAT and sample columns ({len(fields) or 'fewer'} columns; the header has {columns})"
    return f"VCF {path}: {where} has no genotypes: its FORMAT is {fields[8]!r}, without GT"


class _HtslibLog:
    """Collects what htslib prints on standard error (file descriptor 2) while active.

    htslib writes its errors and warnings straight to file descriptor 2, past
    Python; they are kept here so that a bad file gives one line, and logged
    (once each) when the file is read successfully.
    """

    _LINE = re.compile(r"^\[([EWI])::[\w.]+\]\s*(.*)$")

    def __enter__(self):
        self._file = self._saved = None
        self._checked = 0
        try:
            sys.stderr.flush()
            self._file = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no usable descriptor 2: leave htslib's output alone
            if self._saved is not None:
                os.close(self._saved)
            if self._file is not None:
                self._file.close()
            self._file = self._saved = None
        return self

    def text(self) -> str:
        if self._file is None:
            return ""
        return os.pread(self._file.fileno(), 1 << 16, 0).decode("utf-8", errors="replace")

    def new_error(self) -> str | None:
        """The first error htslib printed since the last call, if any (cheap when it printed nothing)."""
        if self._file is None:
            return None
        size = os.fstat(self._file.fileno()).st_size
        if size == self._checked:
            return None
        text = os.pread(self._file.fileno(), min(size - self._checked, 1 << 16), self._checked)
        self._checked = size
        for line in text.decode("utf-8", errors="replace").splitlines():
            m = self._LINE.match(line)
            if m and m.group(1) == "E":
                return m.group(2)
        return None

    def first_error(self) -> str | None:
        for line in self.text().splitlines():
            m = self._LINE.match(line)
            if m and m.group(1) == "E":
                return m.group(2)
        return None

    def __exit__(self, *exc_info):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        self.lines = self.text().splitlines()
        if self._file is not None:
            self._file.close()
        return False

    def replay(self, source: str) -> None:
        """Log what htslib printed, counted in one line (messages that differ only in names and
        numbers, such as one per contig, are one kind); other text goes back to standard error."""
        kinds: dict[str, list] = {}
        errors = False
        for line in getattr(self, "lines", []):
            m = self._LINE.match(line)
            if m is None:
                if line.strip():
                    print(line, file=sys.stderr)
                continue
            errors |= m.group(1) == "E"
            kind = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "#", m.group(2))
            kinds.setdefault(kind, [0, m.group(2)])[0] += 1
        if kinds:
            total = sum(n for n, _ in kinds.values())
            shown = "; ".join(f"{n} x {example}" if n > 1 else example for n, example in list(kinds.values())[:3])
            more = f"; and {len(kinds) - 3} other kind(s)" if len(kinds) > 3 else ""
            (log.warning if errors else log.info)("%s: htslib printed %d message(s): %s%s", source, total, shown, more)


# ---------------------------------------------------------------------------- FASTA
def _read_fasta_records(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataError(f"FASTA {path}: file not found")
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    records: list[tuple[str, list[str]]] = []
    with opener(path, "rt", errors="replace") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith(">"):
                ident = line[1:].split()[0] if line[1:].split() else ""
                if not ident:
                    raise DataError(f"FASTA {path} line {number}: a record without a name")
                records.append((ident, []))
            elif not records:
                raise DataError(f"FASTA {path}: not a FASTA file (line {number} comes before any '>' header)")
            else:
                records[-1][1].append(line.upper())
    if not records:
        raise DataError(f"FASTA {path}: empty alignment (no sequences)")
    return [(ident, "".join(parts)) for ident, parts in records]


def _fasta_individual(ident: str, popmap: dict[str, str]) -> str | None:
    if ident in popmap:
        return ident
    m = _FASTA_SUFFIX.match(ident)
    if m and m.group("sample") in popmap:
        return m.group("sample")
    return None


def read_fasta(
    paths: list[str | Path],
    *,
    popmap: dict[str, str],
    samples: dict[str, int],
    seed: int,
    name: str = "data",
    subsample: bool = True,
    populations: dict[str, str] | None = None,
    strict: bool = False,
) -> Observed:
    """Read aligned FASTA files (one per locus) into an :class:`Observed`.

    A column with a gap is an indel column (skipped); ``N``, ``?`` and IUPAC
    ambiguity codes are missing calls; a column with more than two bases is
    multi-allelic (skipped).  ``length`` is the summed alignment length.
    """
    if not paths:
        raise DataError("no FASTA files given")
    per_locus = []
    order: list[str] | None = None
    for p in map(Path, paths):
        records = _read_fasta_records(p)
        lengths = {len(seq) for _, seq in records}
        if lengths == {0}:
            raise DataError(f"FASTA {p}: empty alignment (sequences of length 0)")
        if len(lengths) != 1:
            raise DataError(f"FASTA {p}: sequences of different lengths ({min(lengths)}..{max(lengths)} bp); the file is not an alignment")
        bad = set("".join(seq for _, seq in records)) - set(_BASES) - _MISSING_CHARS - _GAP_CHARS
        if bad:
            raise DataError(f"FASTA {p}: invalid character(s) {''.join(sorted(bad))!r} in the sequences")
        haps: dict[str, list[str]] = {}
        for ident, seq in records:
            ind = _fasta_individual(ident, popmap)
            if ind is None:
                if strict:
                    raise DataError(
                        f"FASTA {p}: sequence {ident!r} matches no popmap sample (name haplotypes <sample>_1 and <sample>_2)")
                ind = _FASTA_SUFFIX.match(ident).group("sample") if _FASTA_SUFFIX.match(ident) else ident
            haps.setdefault(ind, []).append(seq)
        for ind, seqs in haps.items():
            if len(seqs) == 1:
                raise DataError(f"FASTA {p}: individual {ind!r} has one (haploid) sequence; give its two phased haplotypes")
            if len(seqs) > 2:
                raise DataError(f"FASTA {p}: individual {ind!r} has {len(seqs)} sequences; popdl simulates diploids (2)")
        names = list(haps)
        if order is None:
            order = names
        elif set(names) != set(order):
            diff = sorted(set(order) ^ set(names))
            raise DataError(f"FASTA {p}: individuals differ from {paths[0]}: {_few(diff)}")
        per_locus.append((p, haps, lengths.pop()))
    matching: dict = {}
    chosen = choose_individuals(
        order, popmap, samples=samples, rng=seeds.observed(seed, name), subsample=subsample, source=f"FASTA {paths[0]}",
        populations=populations, strict=strict, counts=matching,
    )
    matching.pop("pool")
    counts = {"records": 0, "snps": 0, "multiallelic": 0, "indels": 0, "monomorphic": 0, "missing_calls": 0, **matching}
    blocks, positions, loci_idx, loci, total = [], [], [], [], 0
    empty = []
    for p, haps, width in per_locus:
        total += width
        matrix = np.array([list(s) for ind, _ in chosen for s in haps[ind]], dtype="U1")  # haplotypes × columns
        codes = np.full(matrix.shape, -1, dtype=np.int8)
        for base, code in _BASES.items():
            codes[matrix == base] = code
        gap = np.isin(matrix, list(_GAP_CHARS)).any(axis=0)
        n_kept_before = len(blocks)
        for j in range(width):
            counts["records"] += 1
            col = codes[:, j]
            if gap[j]:
                counts["indels"] += 1
                continue
            called = np.unique(col[col >= 0])
            if called.size > 2:
                counts["multiallelic"] += 1
                continue
            if called.size < 2:
                counts["monomorphic"] += 1
                continue
            hap = np.where(col < 0, MISSING, (col == called[1]).astype(np.int8)).astype(np.int8)
            counts["missing_calls"] += int((col.reshape(-1, 2) < 0).any(axis=1).sum())
            blocks.append(hap)
            positions.append(float(j + 1))
            loci_idx.append(len(loci))
        if len(blocks) == n_kept_before:
            empty.append(str(p))
        else:
            loci.append(str(p))
    if not blocks:
        raise DataError(f"FASTA {paths[0]}: no biallelic SNP in {len(per_locus)} alignment(s)")
    counts["snps"] = len(blocks)
    counts["empty_contigs"] = empty
    counts["individuals"] = len(chosen)
    counts["individuals_in_file"] = len(order)
    return Observed(
        name=name,
        genotypes=np.stack(blocks),
        positions=np.asarray(positions),
        locus=np.asarray(loci_idx, dtype=np.int32),
        populations=np.repeat(np.array([pop for _, pop in chosen]), 2),
        individuals=[s for s, _ in chosen],
        loci=loci,
        length=float(total),
        counts=counts,
    )


def window_loci(data: Observed, length: float) -> Observed:
    """``data`` with its contigs cut into loci of ``length`` bp (``genome.length``).

    Window ``k`` of a contig holds the SNPs at VCF positions ``k·length + 1``
    to ``(k+1)·length``; each window with a SNP becomes a locus named
    ``contig:first-last`` (1-based, inclusive), its SNPs' positions measured
    from the window's start (0 to ``length``), as the simulated loci's are.
    Pseudo-chromosomes and whole chromosomes thus give loci as long as the
    simulated ones.
    """
    length = float(length)
    contig = np.asarray(data.locus, dtype=np.int64)
    start0 = np.asarray(data.positions, dtype=np.float64) - 1.0  # VCF positions are 1-based
    window = np.floor(start0 / length).astype(np.int64)
    key = contig * (int(window.max(initial=0)) + 1) + window
    uniq, locus = np.unique(key, return_inverse=True)  # sorted: by contig, then window, as the SNPs are
    names = []
    for k in uniq:
        c, w = divmod(int(k), int(window.max(initial=0)) + 1)
        names.append(f"{data.loci[c]}:{int(w * length) + 1}-{int((w + 1) * length)}")
    return replace(data, positions=start0 - window * length, locus=locus.astype(np.int32), loci=names,
                   counts=dict(data.counts, contigs=len(data.loci)))


def cluster_loci(data: Observed, length: float) -> Observed:
    """``data`` with each contig cut into clusters of SNPs of at most ``length`` bp (``genome.length``).

    A new locus starts wherever two consecutive SNPs of a contig lie more than
    ``length`` bp apart, and a cluster spanning more than that is cut into
    consecutive pieces of ``length`` bp from its first SNP.  RAD or GBS reads
    aligned to a reference genome (Stacks ``ref_map``, ipyrad's reference
    assembly, GATK on GBS reads) thus give one locus per restriction-site tag,
    where windows on a fixed grid would cut a tag in two whenever it straddles
    a window's edge.  Each locus is named ``contig:first-last`` (its first and
    last SNPs, 1-based); the VCF does not say where the tag itself starts, so
    its SNPs are centred in a locus of ``length`` bp, their distances kept.
    """
    length = float(length)
    contig = np.asarray(data.locus, dtype=np.int64)
    pos = np.asarray(data.positions, dtype=np.float64)
    counts = dict(data.counts, contigs=len(data.loci))
    if pos.size == 0:
        return replace(data, loci=[], counts=counts)
    starts = np.ones(pos.size, dtype=bool)
    starts[1:] = (contig[1:] != contig[:-1]) | (np.diff(pos) > length)
    cluster = np.cumsum(starts) - 1
    piece = np.floor((pos - pos[starts][cluster]) / length).astype(np.int64)
    key = cluster * (int(piece.max()) + 1) + piece
    uniq, locus = np.unique(key, return_inverse=True)  # sorted: by contig and position, as the SNPs are
    first = np.full(uniq.size, np.inf)
    last = np.full(uniq.size, -np.inf)
    np.minimum.at(first, locus, pos)
    np.maximum.at(last, locus, pos)
    offset = (length - (last - first)) / 2.0  # > 0: a piece spans less than length
    first_snp = np.flatnonzero(np.r_[True, np.diff(locus) != 0])
    names = [f"{data.loci[int(contig[i])]}:{int(first[k])}-{int(last[k])}" for k, i in enumerate(first_snp)]
    return replace(data, positions=pos - first[locus] + offset[locus], locus=locus.astype(np.int32), loci=names,
                   counts=counts)


def id_locus(record_id: str) -> str:
    """The RAD locus a VCF ID names: the text before its first ``:`` (Stacks 2 writes
    ``LOCUS:COLUMN:STRAND``), else before its last ``_`` (Stacks 1: ``LOCUS_COLUMN``), else the
    whole ID (one ID per locus)."""
    if ":" in record_id:
        return record_id.split(":", 1)[0]
    if "_" in record_id:
        return record_id.rsplit("_", 1)[0]
    return record_id


def id_loci(data: Observed, length: float) -> Observed:
    """``data`` with its SNPs grouped into loci by the RAD locus their VCF ID names (:func:`id_locus`).

    Stacks' ``populations`` names each SNP's catalogue locus in the ID column;
    a de novo Stacks 1 catalogue puts every SNP on one contig ``un`` at its
    column within its locus (the loci interleaved), and a reference-aligned one
    puts the tags of a scaffold side by side, sometimes overlapping.  Loci are
    numbered in the order of their first SNP, each locus's SNPs sorted by
    position, and then cut and centred as :func:`cluster_loci` does (a locus
    spanning more than ``length`` bp is cut into pieces).  A SNP without an ID
    (``.``) is an error: the ID is then no locus.
    """
    ids = data.ids
    if ids is None:
        raise DataError(f"data set {data.name!r}: loci: ids reads a VCF's ID column")
    missing = [i for i, x in enumerate(ids) if x in ("", ".")]
    if missing:
        k = missing[0]
        raise DataError(
            f"data set {data.name!r}: {len(missing)} of {len(ids)} SNPs have no ID (the first on "
            f"{data.loci[int(data.locus[k])]} at {data.positions[k]:.0f}); loci: ids takes each SNP's locus from the "
            "VCF's ID column (Stacks writes LOCUS_COLUMN or LOCUS:COLUMN:STRAND): use loci: contigs or clusters")
    names = [id_locus(x) for x in ids]
    order_of = {name: k for k, name in enumerate(dict.fromkeys(names))}
    group = np.array([order_of[n] for n in names], dtype=np.int64)
    pos = np.asarray(data.positions, dtype=np.float64)
    order = np.lexsort((pos, group))
    grouped = replace(data, genotypes=np.asarray(data.genotypes)[order], positions=pos[order],
                      locus=group[order].astype(np.int32), loci=list(order_of), ids=[ids[i] for i in order])
    out = cluster_loci(grouped, length)
    out.counts = dict(data.counts, contigs=len(data.loci), id_loci=len(order_of))
    return out


#: Above this many bp, the furthest SNP of a VCF lies on a scaffold or chromosome, not within a RAD/GBS tag;
#: a VCF header whose contigs are all this short lists a catalogue of tags.
MAX_TAG_LENGTH = 10_000


#: A VCF header whose contigs are all at most this long (bp) lists a catalogue of tags, single or paired-end
#: reads' contigs (:func:`catalogue_loci`): a draft genome's scaffolds, most of them without a tag, run longer.
CATALOGUE_TAG_LENGTH = 2_000

#: check-data warns when fewer than this share of a VCF header's tags hold a SNP record: a low diversity,
#: or a reference from before filters that dropped whole loci (:func:`catalogue_loci`).
HEADER_SHARE = 0.5


class Catalogue(NamedTuple):
    """What :func:`catalogue_loci` reads off a data set: ``loci``, where the number comes from
    (``source``), what the user may need to add (``advice``), and whether it is the catalogue
    itself (``whole``: a VCF header's tags) rather than a lower bound."""

    loci: int
    source: str
    advice: str
    whole: bool = False

    @property
    def reason(self) -> str:
        return f"{self.source}: {self.advice}" if self.advice else self.source

    def off(self, configured: int, *, tolerance: float = 1.0) -> bool:
        """Whether ``configured`` (genome.loci) misses it by more than ``tolerance`` (a factor): below a
        lower bound, or on either side of the catalogue itself."""
        if not self.whole:
            return configured < self.loci
        return configured * tolerance < self.loci or configured > self.loci * tolerance


def catalogue_loci(data: Observed, mode: str | None) -> Catalogue:
    """How many loci the data's catalogue holds, SNPs or none, as far as a VCF read one contig per
    locus (``mode`` contigs) tells: what ``genome.loci`` should be, with the reason.

    The loci with a SNP among the individuals kept undercount it: a locus polymorphic only in
    samples the popmap leaves out is in the catalogue too, and a catalogue's monomorphic loci
    (most tags) leave no record.  A header whose contigs are all tags
    (at most :data:`CATALOGUE_TAG_LENGTH` bp; dDocent's and other de novo references list every tag,
    where a draft genome's scaffolds, most of them without a tag, run longer)
    gives the catalogue whole, unless filters dropped whole loci after the header was written (a
    reference's tags, then ``vcftools --max-missing``): the data cannot tell a filtered locus from a
    monomorphic one, so the reason says so, and ``check-data`` warns when fewer than
    :data:`HEADER_SHARE` of the header's tags hold a SNP record.  Otherwise the contigs with a
    biallelic SNP record (variable among the samples the caller saw) or an invariant-site record (ALT
    ``.``: an all-sites VCF, Stacks ``populations --vcf-all``, which then lists every locus) are a
    lower bound.  Loci read from the IDs (``ids``): the loci the IDs of those records name, a lower
    bound too.  Other modes (windows, clusters): the loci with a SNP.
    """
    kept, c = len(data.loci), data.counts
    add = "add the catalogue's loci without one"
    records = "SNP or invariant-site records" if c.get("invariant_records") else "SNP records"
    if mode == "ids":  # the loci the IDs name: a locus monomorphic among the individuals kept is one all the same
        named = int(c.get("file_id_loci", 0))
        add += " (Stacks: the loci that populations.log says it kept)"
        if named > kept:
            return Catalogue(named, f"loci the IDs of the {records} name, {kept} of them polymorphic among the "
                             "individuals kept", add)
    if (mode or "contigs") != "contigs":
        return Catalogue(kept, f"loci ({mode}) with a SNP", add)
    in_file = max(kept, int(c.get("file_loci", 0)))
    header, longest = int(c.get("header_contigs", 0)), int(c.get("header_contig_max", 0))
    if header >= in_file and 0 < longest <= CATALOGUE_TAG_LENGTH:
        return Catalogue(header, f"the VCF header's {header} contigs of at most {longest} bp",
                         f"a catalogue of tags, with and without SNPs ({in_file} with a {records[:-1]}; if filters "
                         "removed whole loci, count the loci that passed them)", whole=True)
    if in_file > kept:
        return Catalogue(in_file, f"contigs with a {records[:-1]}, {kept} of them polymorphic among the individuals kept", add)
    return Catalogue(kept, "contigs with a SNP", add)


def shared_positions(data: Observed) -> dict | None:
    """SNPs of one locus at one position: ``{"sites", "snps", "locus"}`` (positions held by two SNPs or
    more, those SNPs, the first such locus's name), or None.  A biallelic split of a multi-allelic site
    (``bcftools norm -m-``) or one site called twice gives them; the simulations place one mutation per
    site."""
    if len(data.positions) < 2:
        return None
    key = np.stack([np.asarray(data.locus, dtype=np.float64), np.asarray(data.positions, dtype=np.float64)], axis=1)
    _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    shared = counts > 1
    if not shared.any():
        return None
    where = int(first[shared].min())
    return {"sites": int(shared.sum()), "snps": int(counts[shared].sum()), "locus": data.loci[int(data.locus[where])],
            "share": float(counts[shared].sum() / len(data.positions))}


#: A prediction notes SNP records sharing positions (:func:`shared_positions`) when they are at least this share of
#: its SNPs: multi-allelic sites split by ``bcftools norm -m-`` (often a few % of a data set's SNPs) are above it; a
#: pair or two among thousands of SNPs (two mutations written to one integer position) moves no statistic.
SHARED_POSITIONS_NOTE = 0.005


def stacks_loci(ids: list[str] | None) -> int:
    """How many Stacks loci the IDs ``LOCUS_COLUMN`` / ``LOCUS:COLUMN:STRAND`` among ``ids`` name."""
    return len({id_locus(x) for x in ids or () if _STACKS_ID.match(x)})


def stacks_tag_length(ids: list[str] | None) -> int | None:
    """The furthest column within its locus that a Stacks ID among ``ids`` names (``LOCUS_COLUMN``,
    ``LOCUS:COLUMN:STRAND``; columns count from 0), plus one: the catalogue's tags are at least this long.
    None when no ID is a Stacks one."""
    columns = [int(re.split(r"[_:]", x)[1]) for x in ids or () if _STACKS_ID.match(x)]
    return max(columns) + 1 if columns else None


def _stacks_denovo_check(data: Observed, source: str, loci: str) -> None:
    """Refuse a de novo Stacks 1 VCF read by position: every SNP on contig ``un`` at its column
    within a locus named by the ID, so that positions mean nothing across loci."""
    if data.ids is None or "un" not in data.loci:
        return
    un = data.loci.index("un")
    stacks_ids = [x for x, k in zip(data.ids, data.locus) if k == un and _STACKS_ID.match(x)]
    named = stacks_loci(stacks_ids)
    if named > 1:
        raise DataError(
            f"{source}: contig 'un' holds SNPs of {named} Stacks loci (IDs such as {stacks_ids[0]!r}): a de novo "
            f"Stacks 1 catalogue, whose positions are columns within each locus, so loci: {loci} mixes them; "
            "read the loci from the ID column: loci: ids (--loci ids)")


def available_individuals(entry: dict, *, samples: dict[str, int], base_dir: str | Path | None = None) -> dict[str, int]:
    """Individuals of each simulated population in a VCF data set ``entry``, after the
    name and population matching of :func:`choose_individuals` (nothing subsampled);
    from the popmap and the VCF's header only."""
    vcf = vcf_files(entry["vcf"], base_dir=base_dir)[0]  # read_vcf checks that every file has these samples
    popmap = located(entry["popmap"], base_dir)
    if not vcf.is_file():
        raise DataError(f"VCF {vcf}: file not found")
    present = _read_header(vcf, _compression(vcf))[9:]
    counts: dict = {}
    choose_individuals(present, read_popmap(popmap, entry.get("popmap_columns")), samples={pop: 0 for pop in samples}, rng=np.random.default_rng(0),
                       populations=entry.get("populations"), counts=counts, quiet=True, source=f"VCF {vcf}")
    return counts["available"]


#: check-data suggests ``features.missing_unit: locus`` when at least this share of the missing calls (on
#: loci of two SNPs or more) lie in loci an individual misses whole.
WHOLE_LOCUS_SHARE = 0.5


def missingness_profile(data: Observed, *, quantiles: int = 21) -> dict:
    """How the missing calls of ``data`` are spread: ``overall`` (share of missing
    diploid calls), ``individuals`` (per population, each individual's rate),
    ``sites`` (``quantiles`` quantiles of the per-site missing fraction), rounded
    to 4 decimals: what ``features.missing_individuals`` and ``missing_sites`` take;
    and ``whole_loci``: of the missing calls on loci of two SNPs or more, the share
    in loci that an individual misses whole (allele dropout: near 1 for RAD/GBS
    data, near the missing rate for calls missing site by site), None without any
    such call: what ``features.missing_unit`` takes (``unit``)."""
    g = np.asarray(data.genotypes)
    missing = (g[:, 0::2] == MISSING) | (g[:, 1::2] == MISSING)  # (sites, individuals)
    pops = np.asarray(data.populations)[0::2]
    per_individual = missing.mean(axis=0) if missing.size else np.zeros(pops.size)
    per_site = missing.mean(axis=1) if missing.size else np.zeros(1)
    whole = None
    locus = np.asarray(data.locus, dtype=np.int64)
    if missing.any() and locus.size == missing.shape[0]:
        snps = np.bincount(locus)
        per_locus = np.zeros((snps.size, missing.shape[1]), dtype=np.int64)
        np.add.at(per_locus, locus, missing)
        several = per_locus[snps >= 2]
        if several.sum():
            whole = round(float(several[several == snps[snps >= 2, None]].sum() / several.sum()), 4)
    return {
        "overall": round(float(missing.mean()) if missing.size else 0.0, 4),
        "individuals": {pop: [round(float(x), 4) for x in per_individual[pops == pop]]
                        for pop in dict.fromkeys(pops.tolist())},
        "sites": [round(float(q), 4) for q in np.quantile(per_site, np.linspace(0, 1, quantiles))],
        "whole_loci": whole,
        "unit": "locus" if whole is not None and whole >= WHOLE_LOCUS_SHARE else "site",
    }


#: Fewest loci with which a VCF with one SNP on every locus counts as thinned (:func:`thinned`).
THINNED_MIN_LOCI = 20

#: The gaps between neighbouring SNPs of a contig whose median is below this share of their mean lie in
#: clusters (reads of tags aligned to a reference), not along sequenced contigs, where they are about
#: exponential (median / mean = ln 2 = 0.69; 0.62 to 0.71 on popdl's whole-sequence and RAD examples).
CLUSTERED_GAPS = 0.2

#: Fewer gaps than this between neighbouring SNPs: :func:`clustered_snps` says nothing.
CLUSTERED_MIN_GAPS = 50


def clustered_snps(data: Observed) -> dict | None:
    """Whether the SNPs of contigs read whole (``loci: contigs``) lie in short clusters along contigs
    longer than a tag: RAD/GBS reads aligned to a reference, which read as contigs would be
    simulated as if every base of each contig were sequenced.

    Returns None, or ``{"ratio", "median", "gaps", "length"}``: the gaps' median / mean (below
    :data:`CLUSTERED_GAPS`), their median and number, and a locus length for ``loci: clusters``
    (:func:`tag_length`).
    """
    pos = np.asarray(data.positions, dtype=np.float64)
    locus = np.asarray(data.locus)
    if pos.size < 2 or pos.max() <= MAX_TAG_LENGTH:
        return None
    gaps = np.diff(pos)[locus[1:] == locus[:-1]]
    gaps = gaps[gaps > 0]
    if gaps.size < CLUSTERED_MIN_GAPS:
        return None
    ratio = float(np.median(gaps) / gaps.mean())
    if ratio >= CLUSTERED_GAPS:
        return None
    return {"ratio": ratio, "median": float(np.median(gaps)), "gaps": int(gaps.size), "length": tag_length(gaps)}


def tag_length(gaps: np.ndarray) -> int:
    """Where the gaps between neighbouring SNPs of clustered data thin out: the emptiest bin of their
    histogram (eighths of a decade, 10 bp to :data:`MAX_TAG_LENGTH`) after the fullest one below
    1 kb (the gaps within tags); the longest gap short of that bin, rounded up to 10 bp.  Gaps
    within a tag are shorter than the tag; those between tags, in a sparse catalogue, kilobases:
    tags of 100 to 600 bp, 5 to 50 kb apart, give their length to within 10 %; the RAD example's
    pseudo-chromosomes, whose tags of 300 bp sit in windows as close as 300 bp, 430."""
    edges = 10.0 ** np.arange(1.0, math.log10(MAX_TAG_LENGTH) + 1e-9, 0.125)
    counts = np.histogram(gaps, bins=edges)[0]
    within = [i for i in range(counts.size) if edges[i + 1] <= 1000.0]
    mode = max(within, key=lambda i: counts[i])
    valley = min(range(mode + 1, counts.size), key=lambda i: (counts[i], i))
    below = gaps[gaps < edges[valley]]
    return int(math.ceil(float(below.max() if below.size else edges[valley]) / 10.0) * 10)


def thinned(data: Observed) -> bool:
    """Whether every locus of ``data`` holds one SNP, over at least :data:`THINNED_MIN_LOCI` loci: a VCF
    thinned to one SNP per locus (a single locus of a few SNPs says nothing)."""
    per_locus = np.bincount(np.asarray(data.locus), minlength=len(data.loci))
    return len(data.loci) >= THINNED_MIN_LOCI and bool((per_locus == 1).all())


#: Fewest polymorphic sites from which check-data reads a minor-allele filter off the data (:func:`allele_filter`).
FILTER_MIN_SNPS = 100
#: Minor-allele frequency thresholds of common use, which :func:`allele_filter` names when the data's smallest
#: frequency lies within :data:`MAF_SNAP` above one.
COMMON_MAFS = (0.01, 0.02, 0.025, 0.03, 0.05, 0.1, 0.15, 0.2, 0.25)
MAF_SNAP = 0.005
#: Expected count of sites below the data's smallest frequency above which an absence of such sites reads as a filter.
MAF_EXPECTED_MIN = 5.0


def allele_filter(data: Observed) -> dict:
    """The minor-allele filter ``data`` look to have passed, read off their sites' minor-allele
    counts among the called genotypes of every sample of the VCF (``data.file_alleles``: what a
    filter run on the file saw, whichever samples the popmap keeps; the individuals kept for other
    sources).

    Returns ``samples`` (individuals counted), ``snps`` (polymorphic sites among them),
    ``singletons`` (their share with a minor allele seen once), ``smallest_mac``,
    ``smallest_maf`` and ``fewest_called``, and ``filter``: ``{"min_mac": m}`` when no site of
    at least :data:`FILTER_MIN_SNPS` has a minor allele seen fewer than m ≥ 2 times (singletons
    are a fifth to a third of the SNPs of an unfiltered sample); ``min_maf``: f when the sites
    called in many genotypes never show the smallest count m that sites called in fewer do, at
    frequencies below f, where the share of m-count sites among the less-called sites would have
    put at least :data:`MAF_EXPECTED_MIN` there (a frequency filter, which with missing calls
    lets rarer counts through at less-called sites); f is the smallest frequency seen, rounded
    down to a common threshold (:data:`COMMON_MAFS`) within :data:`MAF_SNAP` of it, else to 3
    decimals; a count filter that the frequency filter implies at every site is not named.
    ``filter`` is empty for unfiltered data or too few sites."""
    if data.file_alleles is not None and len(data.file_alleles):
        minor, called = data.file_alleles[:, 0], data.file_alleles[:, 1]
        samples = int(data.counts.get("individuals_in_file", len(data.individuals)))
    else:
        g = np.asarray(data.genotypes)
        derived = np.count_nonzero(g == 1, axis=1)
        called = derived + np.count_nonzero(g == 0, axis=1)
        minor = np.minimum(derived, called - derived)
        samples = len(data.individuals)
    poly = minor > 0
    mac, n = minor[poly], called[poly]
    out = {"samples": samples, "snps": int(poly.sum()), "singletons": 0.0, "smallest_mac": 0, "smallest_maf": 0.0,
           "fewest_called": 0, "filter": {}}
    if not mac.size:
        return out
    maf = mac / n
    m, f = int(mac.min()), float(maf.min())
    out.update(singletons=round(float((mac == 1).mean()), 4), smallest_mac=m, smallest_maf=round(f, 4),
               fewest_called=int(n.min()))
    if mac.size < FILTER_MIN_SNPS:
        return out
    # Sites called in more than m / f alleles would show count m below frequency f; were there no frequency
    # filter, they would show it about as often as the less-called sites do.
    above = n > m / f + 1e-9
    below = ~above
    expected = above.sum() * (mac[below] == m).sum() / max(1, below.sum())
    if above.any() and expected >= MAF_EXPECTED_MIN:
        snapped = [c for c in COMMON_MAFS if c <= f + 1e-9 and f - c < MAF_SNAP]
        out["filter"]["min_maf"] = snapped[-1] if snapped else math.floor(f * 1000) / 1000
    if m >= 2 and not _count_follows(m, out["filter"].get("min_maf", 0.0), out["fewest_called"]):
        out["filter"]["min_mac"] = m
    return out


def _count_follows(mac: int, maf: float, fewest_called: int) -> bool:
    """Whether a minor-allele frequency filter ``maf`` alone keeps every count below ``mac`` out of
    sites called in ``fewest_called`` alleles or more."""
    return maf > 0 and math.ceil(maf * fewest_called - 1e-9) >= mac


def allele_filter_advice(profile: dict, features: dict) -> str | None:
    """What to set when ``data`` look filtered by minor allele (``profile``: :func:`allele_filter`)
    and the config's simulations are filtered less, or None."""
    want = profile["filter"]
    thresholds = allele_thresholds(features) or NO_ALLELE_FILTER
    mac, maf = thresholds["min_mac"], thresholds["min_maf"]
    settings = []
    if want.get("min_mac", 1) > mac and not _count_follows(want["min_mac"], maf, profile["fewest_called"]):
        settings.append(f"features.min_mac: {want['min_mac']}")
    if want.get("min_maf", 0.0) - maf > MAF_SNAP:
        settings.append(f"features.min_maf: {want['min_maf']:g}")
    if not settings:
        return None
    return ("the config keeps the simulations' rarer variants: set " + " and ".join(settings)
            + " (the filter the VCF went through: vcftools --maf/--mac, bcftools view -q/-c, Stacks populations "
            "--min-maf/--min-mac), or the SFS, diversities and estimates read the missing rare variants as "
            "another history")


def allele_filter_text(profile: dict) -> str:
    """One phrase on the data's rarest minor alleles (``profile``: :func:`allele_filter`)."""
    seen = (f"among the {profile['samples']} samples, smallest minor-allele count {profile['smallest_mac']}, "
            f"frequency {profile['smallest_maf']:.3g}; {profile['singletons']:.{1 if profile['singletons'] < 0.01 else 0}%} "
            f"of the {profile['snps']} SNPs are singletons")
    want = profile["filter"]
    if not want:
        return seen + ("" if profile["snps"] >= FILTER_MIN_SNPS else
                       f" (too few SNPs to tell a minor-allele filter, {FILTER_MIN_SNPS} needed)")
    return seen + ": filtered by minor allele (" + ", ".join(
        f"{'count' if k == 'min_mac' else 'frequency'} at least {v:g}" for k, v in want.items()) + ")"


def missing_unit_advice(profile: dict, features: dict) -> str | None:
    """What to set when the config's simulations place missing calls otherwise than the data miss
    them (``profile``: :func:`missingness_profile`), or None when they agree or simulate none."""
    unit = features.get("missing_unit", "site")
    simulated = features.get("missing_individuals") or float(features.get("missing_rate", 0.0) or 0.0) > 0
    if not simulated or profile["whole_loci"] is None or profile["unit"] == unit:
        return None
    return (f"the simulations place them by {unit}: set features.missing_unit: {profile['unit']} (placed otherwise, "
            "they change the linkage disequilibrium and haplotype statistics, and the estimates)")


def thinning_advice(data: Observed, features: dict) -> str | None:
    """What to set when ``data`` hold one SNP per locus (:func:`thinned`) and the config's simulations
    keep every SNP, or None."""
    if not thinned(data) or features.get("one_snp_per_locus"):
        return None
    return ("the config keeps every simulated SNP: set features.one_snp_per_locus: random (first for Stacks "
            "--write-single-snp)")


def sampling_notes(data: Observed, features: dict) -> list[str]:
    """What the config's simulations do otherwise than ``data`` were sampled: missing calls placed
    by site where the data miss whole loci (or the reverse, :func:`missing_unit_advice`), every
    simulated SNP kept where the data hold one per locus (:func:`thinning_advice`), rare variants
    kept where the data were filtered by minor allele (:func:`allele_filter_advice`).  Empty when
    they agree."""
    notes = []
    profile = missingness_profile(data)
    advice = missing_unit_advice(profile, features)
    if advice:
        notes.append(f"{profile['whole_loci']:.0%} of the missing calls lie in loci an individual misses whole, but "
                     + advice)
    advice = thinning_advice(data, features)
    if advice:
        notes.append("every locus holds one SNP (a VCF thinned to one SNP per locus): " + advice)
    alleles = allele_filter(data)
    advice = allele_filter_advice(alleles, features)
    if advice:
        notes.append(f"minor alleles: {allele_filter_text(alleles)}, but " + advice)
    return notes


#: genome.loci off a catalogue the VCF header lists by more than this factor: a prediction note.
LOCI_NOTE_FACTOR = 1.1


def layout_notes(data: Observed, genome: dict, mode: str | None) -> list[str]:
    """What the config's genome does otherwise than ``data`` were read (a VCF, ``mode`` its
    ``loci``): SNPs in clusters along long contigs read whole (:func:`clustered_snps`), and
    ``genome.loci`` off the data's catalogue (:func:`catalogue_loci`): fewer loci than the
    contigs (or, read from the IDs, the loci the IDs name) with a SNP record, or another number than
    the header's tags; SNP records that share a position of a locus (:func:`shared_positions`).
    Empty when they agree."""
    notes = []
    twice = shared_positions(data)
    if twice and twice["share"] >= SHARED_POSITIONS_NOTE:
        notes.append(f"{twice['sites']} position(s) hold {twice['snps']} SNP records (the first in {twice['locus']}): "
                     "multi-allelic sites split into biallelic records (bcftools norm -m-), or a site called twice; each "
                     "counts as a SNP, where the simulations place one mutation per site")
    if (mode or "contigs") not in ("contigs", "ids"):
        return notes
    clusters = clustered_snps(data) if (mode or "contigs") == "contigs" else None
    if clusters:
        notes.append(f"the SNPs lie in clusters along contigs longer than a tag (the median gap between neighbouring "
                     f"SNPs is {clusters['ratio']:.0%} of their mean): RAD/GBS reads aligned to a reference, read as whole "
                     "contigs and compared with simulations of every base of each; read them with loci: clusters and "
                     "genome.length the tags' length (popdl check-data --suggest-config)")
    catalogue = catalogue_loci(data, mode)
    loci = int(genome["loci"])
    if catalogue.off(loci, tolerance=LOCI_NOTE_FACTOR):
        notes.append(f"genome.loci is {loci}, the data's catalogue {catalogue.loci} loci ({catalogue.source}): every count "
                     "per data set (SNPs, the SFS) and the sizes estimated from them follow the loci simulated; set "
                     f"genome.loci to {catalogue.loci}{'' if catalogue.whole else ' or more'}")
    return notes


# ---------------------------------------------------------------------------- entry point
#: The settings of a data set (a ``predict.data`` entry) that ``predict.defaults`` gives when the
#: entry does not: how a VCF's SNPs group into loci, and the popmap's labels -> simulated populations.
DATA_DEFAULT_KEYS = ("loci", "populations")


def data_defaults(predict: dict) -> dict:
    """The data settings a data set takes unless it gives its own, from a config's ``predict`` section.

    Each key of ``predict.defaults`` that is set; for one left null, the value
    that every ``predict.data`` entry shares (for ``loci``, every entry with a
    VCF; an entry without ``loci`` counts as ``contigs``, one without
    ``populations`` as no mapping), when there is one.  What the model folder
    stores, so that new data given to it alone are read as its data were.
    """
    given = predict.get("defaults") or {}
    entries = list(predict.get("data") or [])
    out = {}
    for key in DATA_DEFAULT_KEYS:
        value = given.get(key)
        if value is None:
            among = [e for e in entries if e.get("vcf")] if key == "loci" else entries
            shared = [e.get(key) or ("contigs" if key == "loci" else {}) for e in among]
            if shared and all(v == shared[0] for v in shared):
                value = shared[0]
        if value is not None:
            out[key] = value
    return out


def with_defaults(entry: dict, defaults: dict | None) -> dict:
    """``entry`` (a ``predict.data`` entry, or one built from command-line flags) with the
    :func:`data_defaults` it does not set itself; the entry's own values win (a mapping of
    ``populations`` replaces the default mapping as a whole)."""
    out = dict(entry)
    for key in DATA_DEFAULT_KEYS:
        if out.get(key) is None and (defaults or {}).get(key) is not None:
            out[key] = defaults[key]
    return out


def read_observed(
    entry: dict,
    *,
    samples: dict[str, int],
    seed: int,
    subsample: bool = True,
    allow_unphased: bool = False,
    max_missing: float = 0.5,
    genome_length: float | None = None,
    base_dir: str | Path | None = None,
    strict: bool = False,
    phased: bool = True,
    locus_length: float | None = None,
    keep_filtered: bool = False,
) -> Observed:
    """Read one ``predict.data`` entry ({name, vcf | fasta, popmap, popmap_columns?, length?, populations?, loci?})
    and validate it.

    ``vcf``: one file, or several (a list or glob patterns, :func:`vcf_files`)
    read as one data set, as ``bcftools concat`` would join them.

    ``loci`` (the entry's): ``contigs`` (default), each contig of a VCF is a
    locus (a RAD or GBS catalogue: Stacks, ipyrad); ``windows``, contigs are
    cut into loci of ``locus_length`` bp (``genome.length``;
    :func:`window_loci`); ``clusters``, contigs are cut wherever two SNPs lie
    more than ``locus_length`` bp apart (reads aligned to a reference genome;
    :func:`cluster_loci`); ``ids``, each SNP's locus is the one its VCF ID
    names (Stacks; :func:`id_loci`).  A de novo Stacks 1 VCF (every SNP on
    contig ``un``) is refused unless read with ``ids``.

    ``keep_filtered``: a VCF's records that failed a filter are used too
    (by default they are skipped and counted; :func:`read_vcf`).

    ``populations`` (the entry's): the popmap's labels -> simulated
    populations; ``strict``: samples absent from the popmap or from the data,
    and labels of no simulated population, are errors instead of being left
    out (:func:`choose_individuals`).

    The sequenced length (bp) that scales per-bp statistics is the entry's
    ``length``; else, for a VCF, ``genome_length`` (the simulated genome,
    ``genome.loci × genome.length``), which the data are assumed to match;
    for FASTA the summed alignment length.
    Relative paths are looked up in the working directory, then in ``base_dir``.
    Raises :class:`DataError` (one line) on any problem, including a missing
    rate above ``max_missing``.
    """
    name = entry.get("name") or "data"

    if "popmap" not in entry:
        raise DataError(f"data set {name!r}: no popmap given")
    has_vcf, has_fasta = bool(entry.get("vcf")), bool(entry.get("fasta"))
    if has_vcf == has_fasta:
        raise DataError(f"data set {name!r}: give exactly one of vcf or fasta")
    popmap = read_popmap(located(entry["popmap"], base_dir), entry.get("popmap_columns"))
    if has_vcf:
        files = vcf_files(entry["vcf"], base_dir=base_dir)
        data = read_vcf(
            files if len(files) > 1 else files[0], popmap=popmap, samples=samples, seed=seed, name=name, subsample=subsample,
            allow_unphased=allow_unphased, length=entry.get("length") or genome_length,
            populations=entry.get("populations"), strict=strict, phased=phased, keep_filtered=keep_filtered,
            any_order=entry.get("loci") == "ids",
        )
        loci = entry.get("loci") or "contigs"
        if loci not in LOCI:
            raise DataError(f"data set {name!r}: loci is {loci!r}; valid: {', '.join(LOCI)}")
        if loci != "ids":
            _stacks_denovo_check(data, _source(files), loci)
        if loci in ("windows", "clusters", "ids"):
            if not locus_length:
                raise DataError(f"data set {name!r}: loci: {loci} needs the simulated locus length (genome.length)")
            data = {"windows": window_loci, "clusters": cluster_loci, "ids": id_loci}[loci](data, locus_length)
    else:
        fasta = entry["fasta"]
        fasta = [fasta] if isinstance(fasta, str) else list(fasta)
        data = read_fasta([located(f, base_dir) for f in fasta], popmap=popmap, samples=samples, seed=seed, name=name, subsample=subsample,
                          populations=entry.get("populations"), strict=strict)
        if entry.get("length"):
            data.length = float(entry["length"])
    rate = data.missing_rate
    data.counts["missing_rate"] = rate
    if rate > max_missing:
        raise DataError(
            f"data set {name!r}: {rate:.1%} of genotype calls are missing, above predict.max_missing ({max_missing:.0%})"
        )
    log.info("%s: %d SNPs on %d loci, %d individuals, %.2f%% missing; skipped %s", name, data.counts["snps"], len(data.loci),
             len(data.individuals), 100 * rate, skipped_text(data.counts))
    return data
