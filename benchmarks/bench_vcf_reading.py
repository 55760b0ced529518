"""Reading a GBS-sized VCF: popdl's reader against a bare cyvcf2 loop.

Writes a VCF as GBS pipelines leave them (``--samples`` individuals of two
populations, 7 : 5, ``--loci`` tags of 150 bp with 3 SNP records each,
unphased calls with FORMAT GT:DP:AD, 0-40 % missing calls per individual and
whole tags missing, 1 % multi-allelic records, 1 % indels, 2 % records
failing a filter), then reads it alternately with
:func:`popdl.observed.read_vcf` (every check and count it makes) and with
a bare loop over cyvcf2's records that keeps the biallelic SNPs' genotypes
of the same individuals and nothing else.  Printed: the records per second
of each (median over ``--reps``), popdl's throughput ÷ the bare loop's, and
that both kept the same genotypes.

    python benchmarks/bench_vcf_reading.py --samples 120 --loci 20000 --reps 3
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

PER_LOCUS = 3


def keep(samples: int) -> dict[str, int]:
    """The individuals a model of 20 per population reads, or every one of a smaller population."""
    first = samples * 7 // 12
    return {"pop1": min(20, first), "pop2": min(20, samples - first)}


def write_vcf(path: Path, popmap: Path, *, samples: int, loci: int, seed: int = 1) -> int:
    """The GBS-like VCF and its popmap; returns the number of records."""
    rng = np.random.default_rng(seed)
    first = samples * 7 // 12
    names = [f"north_{i:03d}" for i in range(first)] + [f"south_{i:03d}" for i in range(samples - first)]
    popmap.write_text("".join(f"{n}\t{n.split('_')[0]}\n" for n in names))
    individual_missing = rng.uniform(0.0, 0.4, size=samples)
    cells = np.array(["0/0:12:12,0", "0/1:12:6,6", "1/1:12:0,12"])
    records = 0
    with gzip.open(path, "wt", compresslevel=1) as out:
        out.write("##fileformat=VCFv4.2\n")
        out.write("".join(f"##contig=<ID=tag_{c},length=150>\n" for c in range(loci)))
        out.write('##FILTER=<ID=LowQual,Description="Low quality">\n'
                  '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
                  '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth">\n'
                  '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allele depths">\n')
        out.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(names) + "\n")
        for c in range(loci):
            dropped = rng.random(samples) < individual_missing / 2  # whole tags missing in an individual
            for pos in np.sort(rng.choice(np.arange(1, 151), PER_LOCUS, replace=False)):
                kind = rng.random()
                ref, alt = ("A", "G,T") if kind < 0.01 else (("AT", "A") if kind < 0.02 else ("A", "G"))
                flt = "LowQual" if rng.random() < 0.02 else "PASS"
                p = rng.beta(0.3, 1.0)
                calls = cells[(rng.random((samples, 2)) < p).sum(axis=1)].astype(object)
                calls[dropped | (rng.random(samples) < individual_missing / 2)] = "./.:0:0,0"
                out.write(f"tag_{c}\t{pos}\t{c}_{pos}\t{ref}\t{alt}\t50\t{flt}\t.\tGT:DP:AD\t" + "\t".join(calls) + "\n")
                records += 1
    return records


def read_popdl(path: Path, popmap: Path, samples: int):
    from popdl.observed import read_popmap, read_vcf

    data = read_vcf(path, popmap=read_popmap(popmap), samples=keep(samples), seed=1, phased=False,
                    populations={"north": "pop1", "south": "pop2"})
    return data.genotypes, data.individuals


def read_bare(path: Path, individuals: list[str]) -> np.ndarray:
    """The least a reader must do: the PASS biallelic SNPs' alleles of the chosen individuals."""
    import cyvcf2

    vcf = cyvcf2.VCF(str(path), gts012=False, lazy=True, threads=1)
    column = {s: i for i, s in enumerate(vcf.samples)}
    index = np.array([column[s] for s in individuals])
    rows = []
    for rec in vcf:
        alts = rec.ALT
        if rec.FILTER or len(alts) != 1 or len(rec.REF) != 1 or len(alts[0]) != 1:
            continue
        g = rec.genotype.array()[index, :2]
        if (g < 0).all() or g[g >= 0].min() == g[g >= 0].max():
            continue
        rows.append(np.where(g < 0, -1, g).astype(np.int8).reshape(-1))
    vcf.close()
    return np.stack(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=120)
    parser.add_argument("--loci", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("popdl").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path, popmap = Path(tmp) / "gbs.vcf.gz", Path(tmp) / "popmap.tsv"
        start = time.perf_counter()
        records = write_vcf(path, popmap, samples=args.samples, loci=args.loci)
        print(f"{records} records x {args.samples} samples ({path.stat().st_size / 1e6:.1f} MB gzipped), written in "
              f"{time.perf_counter() - start:.1f} s")
        times = {"popdl": [], "bare": []}
        same = True
        for rep in range(args.reps):
            for side in ("popdl", "bare") if rep % 2 == 0 else ("bare", "popdl"):
                start = time.perf_counter()
                if side == "popdl":
                    genotypes, individuals = read_popdl(path, popmap, args.samples)
                else:  # the first repetition starts with popdl, which chooses the individuals
                    bare = read_bare(path, individuals)
                times[side].append(time.perf_counter() - start)
            same &= bare.shape == genotypes.shape and bool(np.array_equal(bare, np.where(genotypes < 0, -1, genotypes)))
        med = {k: statistics.median(v) for k, v in times.items()}
        for side in ("popdl", "bare"):
            print(f"{side}: {records / med[side]:,.0f} records/s (median of {args.reps}: {med[side]:.2f} s)")
        print(f"same genotypes kept on both sides: {same} ({genotypes.shape[0]} SNPs x {genotypes.shape[1]} haplotypes)")
        print(f"throughput ratio popdl / bare: {med['bare'] / med['popdl']:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
