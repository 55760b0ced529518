"""Genome scans: class probabilities in windows sliding along each contig.

A network trained on windows of ``features.snps`` SNPs taken in the middle of
a simulated locus (``features.snp_selection: central``) is applied to an
observed chromosome window by window.  Window centres slide along each
contig ``step`` SNPs apart (midway between two consecutive SNPs), and each
window is built exactly as a training example was built from a simulated
locus: the stretch of ``genome.length`` bp centred on the window's centre
plays the simulated locus, so

* the genotype image and the inter-SNP distances are those of its central
  ``snps`` SNPs (positions relative to the stretch's start, distances scaled
  by ``genome.length``);
* the summary statistics are those of all its SNPs, per bp of the part of
  the stretch that lies between the contig's first and last SNP.

Such a window is the stretch handed to the simulations' feature extractor
(:meth:`popdl.features.Extractor.extract`, SNPs chosen ``central``), so it
equals the training example of a simulated locus with the same genotypes
bit for bit; a stretch with fewer SNPs than the image has gives a padded
image, as a simulated locus would.

Near a contig's ends (within ``genome.length / 2`` of its first or last SNP)
the stretch runs off the contig and cannot match a simulated locus exactly:
those windows (``edge`` true) take ``snps / 2`` SNPs on each side of the
centre, and their segregating-site counts are scaled up to a full stretch.
Interpret them with care, or scan contigs much longer than ``genome.length``.

Outputs, for ``--out PREFIX``:

``PREFIX.tsv``
    one row per window: ``contig``, ``start`` and ``end`` (1-based positions
    of the first and last SNP of its image), ``centre`` (bp), ``first_snp``
    (index of that first SNP among the contig's SNPs), ``n_snps``, ``edge``
    (the window is near a contig end, see above), ``p_<scenario>`` for every
    scenario, and ``predicted``;
``PREFIX.bed``
    BED6: contig, start − 1, end, predicted scenario, score = 1000 × the
    probability of the target scenario (the sweep class), strand ``.``;
``PREFIX.png``
    the target scenario's probability along each contig;
``PREFIX.json``
    summary: windows, contigs, target, highest probability, the reader's
    counts, and ``provenance`` (the scan job's settings hash, seeds, versions).

The VCF is read and validated by :func:`popdl.observed.read_vcf` (the
prediction path's reader): phased diploid calls, samples matching the
popmap, populations and sample sizes matching the simulations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from popdl import seeds
from popdl.errors import DataError
from popdl.features import Extractor, allele_thresholds, minor_allele_filter
from popdl.io import atomic_path, provenance, write_table
from popdl.observed import Observed, read_popmap, read_vcf
from popdl.paths import vcf_files

__all__ = [
    "ScanWindows",
    "default_target",
    "plot_scan",
    "read_scan_vcf",
    "run_scan",
    "scan_windows",
    "window_centres",
    "write_bed",
]

log = logging.getLogger("popdl.scan")

#: The first columns of a scan table (then ``edge``, ``p_<scenario>``..., ``predicted``).
TABLE_COLUMNS = ["contig", "start", "end", "centre", "first_snp", "n_snps"]
#: A function from network inputs (``images``, ``distances``, ``stats``
#: arrays with a leading window axis) to class probabilities (windows, scenarios).
Predictor = Callable[[dict], np.ndarray]


def window_centres(positions: np.ndarray, *, snps: int, step: int) -> np.ndarray:
    """Centres (bp) of the windows of one contig, given its sorted SNP ``positions``.

    Centres lie midway between SNPs ``k`` and ``k + 1`` for ``k = snps // 2 - 1``,
    ``+ step``, ... up to the last such pair that leaves ``snps // 2`` SNPs
    on its right, plus that last pair itself, so the first and last windows hold
    the contig's first and last SNPs.  A contig with fewer SNPs than a window has
    one window, centred between its middle SNPs.
    """
    if step < 1:
        raise ValueError(f"the scan step must be at least 1 SNP, got {step}")
    n = positions.size
    if n == 0:
        return np.zeros(0)
    if n <= snps:
        return np.array([(positions[(n - 1) // 2] + positions[n // 2]) / 2.0])
    half = snps // 2
    left = list(range(half - 1, n - (snps - half), step))
    if left[-1] != n - (snps - half) - 1:
        left.append(n - (snps - half) - 1)
    left = np.asarray(left)
    return (positions[left] + positions[left + 1]) / 2.0


@dataclass
class ScanWindows:
    """A batch of windows: their table rows and the network inputs."""

    table: pd.DataFrame
    images: np.ndarray
    distances: np.ndarray
    stats: np.ndarray
    n_snps: np.ndarray


def scan_windows(
    data: Observed,
    *,
    features: dict,
    genome: dict,
    step: int,
    seed: int,
    batch: int = 2048,
) -> Iterator[ScanWindows]:
    """Yield the windows of every contig of ``data``, ``batch`` windows at a time.

    ``features`` and ``genome`` are the config sections the network was
    trained with (``snps``, ``sort_rows``, ``positions``, ``stats``,
    ``jsfs_bins``; ``length`` in bp).  Only SNPs polymorphic among the kept
    individuals count (and those passing ``features.min_maf`` and ``min_mac``).  Every window goes through the simulations' feature
    extractor (:class:`popdl.features.Extractor`).
    """
    length = float(genome["length"])
    extractor = Extractor.from_config(features, populations=data.populations, locus_length=length)
    snps = extractor.settings.snps
    g = np.asarray(data.genotypes, dtype=np.int8)
    poly = extractor.counts(g).polymorphic
    thresholds = allele_thresholds(features)
    if thresholds:  # the minor-allele filter the simulations went through
        poly = np.zeros_like(poly)
        poly[minor_allele_filter(g, **thresholds)] = True
    segsites = np.array([name.startswith("segsites_") for name in extractor.stat_names], dtype=bool)
    no_stats = not extractor.spec.stats
    pending: list[tuple] = []

    def flush():
        table = pd.DataFrame([p[0] for p in pending], columns=[*TABLE_COLUMNS, "edge"])
        out = ScanWindows(
            table=table,
            images=np.stack([p[1] for p in pending]),
            distances=np.stack([p[2] for p in pending]).astype(np.float32),
            stats=np.zeros((len(pending), 0), np.float32) if no_stats else np.stack([p[3] for p in pending]).astype(np.float32),
            n_snps=np.array([p[4] for p in pending], np.int32),
        )
        pending.clear()
        return out

    for c, contig in enumerate(data.loci):
        rows = np.flatnonzero((data.locus == c) & poly)
        if rows.size == 0:
            continue
        pos = data.positions[rows]
        first_bp, last_bp = float(pos[0]), float(pos[-1])
        if rows.size < snps:
            log.warning("contig %s has %d SNPs, fewer than a window's %d: one padded window", contig, rows.size, snps)
        for w, centre in enumerate(window_centres(pos, snps=snps, step=step)):
            lo_bp = centre - length / 2.0
            lo, hi = np.searchsorted(pos, [lo_bp, centre + length / 2.0])
            region = rows[lo:hi]
            edge = lo_bp < first_bp - 0.5 or centre + length / 2.0 > last_bp + 0.5
            rng = seeds.observed(seed, f"{data.name}:{contig}", 1 + w)
            at = np.zeros(region.size, np.int32)
            if not edge:
                # The stretch is a simulated locus [0, length): its training example.
                f = extractor.extract(g[region], data.positions[region] - lo_bp, at, rng=rng, total_length=length,
                                      loci=1, selection="central")
                image, distances, n, stats = f.image, f.distances, f.n_snps, f.stats
                k0 = lo + (int(f.sites[0]) if f.n_snps else 0)
            else:
                # The stretch runs off the contig: half of the SNPs on each side of the centre.
                k0 = min(max(0, int(np.searchsorted(pos, centre)) - snps // 2), max(0, rows.size - snps))
                kept = rows[k0 : k0 + min(snps, rows.size)]
                image, distances, n, _ = extractor.image(
                    g[kept], np.maximum(data.positions[kept] - lo_bp, 0.0), np.zeros(kept.size, np.int32), rng=rng,
                    selection="first")
                # Statistics per bp of the part of the stretch between the contig's first and last SNP.
                span = max(min(centre + length / 2.0, last_bp + 0.5) - max(lo_bp, first_bp - 0.5), 1.0)
                stats = extractor.stats(g[region], at, total_length=span, loci=1,
                                        positions=data.positions[region] - lo_bp)
                stats[segsites] *= length / span  # a count over a whole training window
            kept = rows[k0 : k0 + max(n, 1)]
            row = (contig, int(data.positions[kept[0]]), int(data.positions[kept[-1]]), float(centre), int(k0), int(n),
                   bool(edge))
            pending.append((row, image, distances, stats, n))
            if len(pending) >= batch:
                yield flush()
    if pending:
        yield flush()


def read_scan_vcf(
    vcf,
    *,
    popmap: str | Path | None,
    samples: dict[str, int],
    popmap_columns: list | None = None,
    seed: int,
    name: str | None = None,
    subsample: bool = True,
    allow_unphased: bool = False,
    max_missing: float = 0.5,
    populations: dict[str, str] | None = None,
    strict: bool = False,
    phased: bool = True,
    keep_filtered: bool = False,
) -> Observed:
    """Read and validate a VCF for a scan (see :func:`popdl.observed.read_vcf`).

    ``vcf``: a file, or several read as one (a list or glob patterns, one VCF
    per chromosome; :func:`popdl.observed.vcf_files`).  Without ``popmap``
    every sample of the VCF belongs to the simulated population, which needs a
    config with a single population; ``popmap_columns`` reads it as a sample
    sheet (:func:`popdl.observed.read_popmap`).  ``populations``, ``strict``, ``phased``
    and ``keep_filtered`` as in :func:`popdl.observed.read_vcf`.
    """
    files = vcf_files(vcf)
    vcf = files[0] if len(files) == 1 else files
    name = name or files[0].name.split(".")[0]
    if popmap is not None:
        mapping = read_popmap(popmap, popmap_columns)
    else:
        if len(samples) != 1:
            raise DataError(
                f"VCF {files[0]}: a popmap is needed, the network was trained on {len(samples)} populations "
                f"({', '.join(samples)})"
            )
        mapping = {s: next(iter(samples)) for s in _vcf_samples(files[0])}
    data = read_vcf(vcf, popmap=mapping, samples=samples, seed=seed, name=name, subsample=subsample,
                    allow_unphased=allow_unphased, populations=populations, strict=strict, phased=phased,
                    keep_filtered=keep_filtered)
    rate = data.missing_rate
    data.counts["missing_rate"] = rate
    if rate > max_missing:
        raise DataError(f"VCF {files[0]}{' and the other files' if len(files) > 1 else ''}: {rate:.1%} of genotype "
                        f"calls are missing, above the limit of {max_missing:.0%}")
    return data


def _vcf_samples(vcf: Path) -> list[str]:
    """Sample names of a VCF header; an unreadable file is left to read_vcf's checks."""
    try:
        import cyvcf2

        reader = cyvcf2.VCF(str(vcf), lazy=True)
        try:
            return list(reader.samples)
        finally:
            reader.close()
    except (OSError, ValueError, RuntimeError):  # read_vcf reports the precise problem
        return []


def default_target(scenarios: list[str]) -> str:
    """The scenario whose probability a scan plots: ``sweep`` when present, else the last one."""
    return "sweep" if "sweep" in scenarios else scenarios[-1]


def run_scan(
    data: Observed,
    predict: Predictor,
    *,
    scenarios: list[str],
    features: dict,
    genome: dict,
    step: int,
    seed: int,
    out: str | Path,
    config_hash: str,
    target: str | None = None,
    batch: int = 2048,
) -> pd.DataFrame:
    """Scan ``data``, writing ``out``.tsv, ``out``.bed, ``out``.png and ``out``.json; return the table.

    ``predict`` maps a dict of network inputs (``images``, ``distances``,
    ``stats``, ``n_snps``) to probabilities, one column per scenario.
    ``config_hash``: the scan job's settings hash (:func:`popdl.stages.settings_hash`),
    recorded in ``out``.json as its provenance.
    """
    target = target or default_target(scenarios)
    if target not in scenarios:
        raise ValueError(f"target scenario {target!r} is not one the network knows ({', '.join(scenarios)})")
    parts = []
    for w in scan_windows(data, features=features, genome=genome, step=step, seed=seed, batch=batch):
        probs = np.asarray(predict({"images": w.images, "distances": w.distances, "stats": w.stats, "n_snps": w.n_snps}))
        if probs.shape != (len(w.table), len(scenarios)):
            raise ValueError(f"the network returned probabilities of shape {probs.shape}, expected {(len(w.table), len(scenarios))}")
        table = w.table.copy()
        for j, s in enumerate(scenarios):
            table[f"p_{s}"] = probs[:, j]
        table["predicted"] = [scenarios[j] for j in probs.argmax(axis=1)]
        parts.append(table)
        log.info("scan %s: %d windows", data.name, sum(len(p) for p in parts))
    if not parts:
        raise DataError(f"{data.name}: no window to scan (no polymorphic SNP)")
    table = pd.concat(parts, ignore_index=True)
    out = Path(str(out))
    write_table(out.with_name(out.name + ".tsv"), table)
    write_bed(out.with_name(out.name + ".bed"), table, target=target)
    plot_scan(out.with_name(out.name + ".png"), table, target=target, title=data.name)
    summary = {
        "name": data.name, "windows": len(table), "contigs": int(table["contig"].nunique()), "target": target,
        "snps": int(data.counts.get("snps", 0)), "max_target": float(table[f"p_{target}"].max()),
    }
    with atomic_path(out.with_name(out.name + ".json")) as tmp:
        tmp.write_text(json.dumps({**summary, "counts": data.counts,
                                   "provenance": provenance(config_hash=config_hash, seeds={"root": seed})},
                                  indent=2, default=str) + "\n")
    return table


def write_bed(path: str | Path, table: pd.DataFrame, *, target: str) -> None:
    """BED6 of the windows: name = predicted scenario, score = 1000 × p(target)."""
    score = np.clip(np.rint(1000 * table[f"p_{target}"].to_numpy()), 0, 1000).astype(int)
    bed = pd.DataFrame({
        "chrom": table["contig"], "chromStart": table["start"] - 1, "chromEnd": table["end"],
        "name": table["predicted"], "score": score, "strand": ".",
    })
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.write(f'track name=popdl_scan description="p({target}) per window" useScore=1\n')
        bed.to_csv(fh, sep="\t", header=False, index=False)


def plot_scan(path: str | Path, table: pd.DataFrame, *, target: str, title: str = "") -> None:
    """PNG: the probability of each scenario along every contig (the target in bold; edge windows shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contigs = list(dict.fromkeys(table["contig"]))
    classes = [c[2:] for c in table.columns if c.startswith("p_")]
    fig, axes = plt.subplots(len(contigs), 1, figsize=(9, 1.0 + 2.0 * len(contigs)), squeeze=False, sharey=True)
    for ax, contig in zip(axes[:, 0], contigs):
        rows = table[table["contig"] == contig]
        x = rows["centre"].to_numpy() / 1e6
        if "edge" in rows and rows["edge"].any():  # windows near the contig's ends: approximate
            edge = rows["edge"].to_numpy(bool)
            mid = np.median(x)
            for side in (x < mid, x >= mid):
                if (edge & side).any():
                    ax.axvspan(x[edge & side].min(), x[edge & side].max(), color="0.9", zorder=0, lw=0)
        for cls in classes:
            bold = cls == target
            ax.plot(x, rows[f"p_{cls}"], lw=1.8 if bold else 0.8, alpha=1.0 if bold else 0.6,
                    color="crimson" if bold else None, label=f"p({cls})", zorder=3 if bold else 2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(contig)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8, ncol=len(classes))
    axes[-1, 0].set_xlabel("window centre (Mb)")
    fig.suptitle(f"{title}: probability of {target} along the genome" if title else f"probability of {target}")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
