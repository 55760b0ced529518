"""A trained RAD model against data sets of known truth: estimates and interval coverage.

``scripts/make_rad_example.py`` writes the shipped RAD example from fixed
parameter values (``rad_truth.json``: isolation, N1 3,000, N2 8,000, N_anc
10,000, T_split 20,000), with each individual missing whole loci (allele
dropout).  This benchmark writes ``--replicates`` more such data sets (seeds
``--first-seed``, ``--first-seed`` + 1, ...: new genealogies, new missing
loci), has the model folder predict each (``popdl predict --model DIR``
alone: the reading options and data settings it stores), and prints, per
parameter of the true scenario, each replicate's estimate and 90 % interval,
the median estimate over the replicates, and how many intervals hold the
truth.  ``--no-missing`` writes the replicates without missing calls;
``--one-snp-per-locus first`` (or ``random``) keeps one record per locus, as
Stacks ``populations --write-single-snp`` (``--write-random-snp``) writes them;
``--min-maf 0.05`` (``--min-mac 2``) keeps the records whose minor allele,
among the called genotypes of every sample of the file, has a frequency of
at least 0.05 (is seen at least twice), as ``vcftools --maf`` (``--mac``)
filters a VCF, before the thinning, as Stacks does.  ``--check-fit 200``
also runs each replicate's fit check (``popdl check-fit``, 200 data sets
simulated from the answer) and prints its two p-values (the distance's and
the count of statistics outside the replicates' range).

    python benchmarks/bench_rad_replicates.py --model results/rad_unphased/model [--replicates 5]

The model is the workflow's: ``snakemake --cores 2 --configfile
config/examples/rad_unphased.yaml`` (its ``results/rad_unphased/model``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def write_replicate(seed: int, folder: Path, *, missing: bool) -> Path:
    """A RAD data set as make_rad_example.py writes the shipped one, from ``seed``."""
    import make_rad_example

    saved = make_rad_example.missing_mask
    if not missing:
        make_rad_example.missing_mask = lambda loci, n, rng: [np.zeros(n, bool) for _ in loci]
    try:
        make_rad_example.main(["--seed", str(seed), "--out", str(folder)])
    finally:
        make_rad_example.missing_mask = saved
    return folder


def thin(vcf: Path, how: str, seed: int) -> None:
    """Keep one record per contig of ``vcf`` (gzip text): the first, or one at random."""
    import gzip

    lines = gzip.open(vcf, "rt").read().splitlines()
    header = [x for x in lines if x.startswith("#")]
    by_contig: dict[str, list[str]] = {}
    for x in lines:
        if not x.startswith("#"):
            by_contig.setdefault(x.split("\t", 1)[0], []).append(x)
    rng = np.random.default_rng(seed)
    kept = [rows[0] if how == "first" else rows[int(rng.integers(len(rows)))] for rows in by_contig.values()]
    with gzip.open(vcf, "wt") as fh:
        fh.write("\n".join(header + kept) + "\n")


def filter_minor(vcf: Path, *, min_maf: float, min_mac: int) -> None:
    """Keep the records of ``vcf`` (gzip text) whose minor allele, among the called alleles of all its
    samples, is seen at least ``min_mac`` times at a frequency of at least ``min_maf``."""
    import gzip

    kept = []
    for line in gzip.open(vcf, "rt").read().splitlines():
        if not line.startswith("#"):
            alleles = [a for field in line.split("\t")[9:] for a in field.split(":", 1)[0].replace("|", "/").split("/")]
            ones, called = alleles.count("1"), sum(a in ("0", "1") for a in alleles)
            minor = min(ones, called - ones)
            if minor < max(1, min_mac) or minor < min_maf * called - 1e-9:
                continue
        kept.append(line)
    with gzip.open(vcf, "wt") as fh:
        fh.write("\n".join(kept) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder trained on the RAD example's config")
    parser.add_argument("--replicates", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=11)
    parser.add_argument("--no-missing", action="store_true", help="replicates without missing calls")
    parser.add_argument("--one-snp-per-locus", choices=["first", "random"],
                        help="keep one record per locus (Stacks --write-single-snp / --write-random-snp)")
    parser.add_argument("--min-maf", type=float, default=0.0,
                        help="keep records whose minor-allele frequency is at least this (vcftools --maf)")
    parser.add_argument("--min-mac", type=int, default=1,
                        help="keep records whose minor allele is seen at least this many times (vcftools --mac)")
    parser.add_argument("--check-fit", type=int, default=0, metavar="N",
                        help="run each replicate's fit check with N replicates of the answer (popdl check-fit)")
    args = parser.parse_args(argv)
    from popdl.cli import main as popdl_main

    truth = json.loads((ROOT / "config" / "data" / "rad_truth.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.replicates):
            seed = args.first_seed + k
            folder = write_replicate(seed, Path(tmp) / f"rad{seed}", missing=not args.no_missing)
            if args.min_maf > 0 or args.min_mac > 1:
                filter_minor(folder / "rad.vcf.gz", min_maf=args.min_maf, min_mac=args.min_mac)
            if args.one_snp_per_locus:
                thin(folder / "rad.vcf.gz", args.one_snp_per_locus, seed)
            out = folder / "prediction"
            rc = popdl_main(["predict", "--model", args.model, "--vcf", str(folder / "rad.vcf.gz"),
                             "--popmap", str(folder / "rad_popmap.tsv"), "--out", str(out)])
            if rc != 0:
                raise SystemExit(f"popdl predict failed on replicate {seed}")
            prediction = json.loads((out / "predictions.json").read_text())
            network = dict(prediction["network"], reliable=prediction["reliability"]["reliable"],
                           reasons=prediction["reliability"]["reasons"])
            fit = None
            if args.check_fit:
                if popdl_main(["check-fit", "--model", args.model, "--prediction", str(out),
                               "--replicates", str(args.check_fit)]) != 0:
                    raise SystemExit(f"popdl check-fit failed on replicate {seed}")
                fit = json.loads((out / "fit_check.json").read_text())
            rows.append((seed, network, fit))
    print(f"model {args.model}; {args.replicates} replicate(s) of the RAD example "
          f"({'no missing calls' if args.no_missing else 'whole loci missing per individual'}"
          + (f", filtered to minor-allele frequency >= {args.min_maf:g} and count >= {args.min_mac}"
             if args.min_maf > 0 or args.min_mac > 1 else "")
          + (f", one SNP per locus ({args.one_snp_per_locus})" if args.one_snp_per_locus else "") + "); "
          f"truth {truth['scenario']} {truth['params']}")
    for seed, network, fit in rows:
        p = network["probabilities"]
        print(f"seed {seed}: P({truth['scenario']}) = {p[truth['scenario']]:.3f}; " + "; ".join(
            f"{name} {network['params'][name]['estimate']:.0f} [{network['params'][name]['lower']:.0f}-"
            f"{network['params'][name]['upper']:.0f}]" for name in truth["params"])
            + ("" if network["reliable"] else f"; UNRELIABLE: {'; '.join(network['reasons'])}")
            + (f"; fit check p = {fit['p_value']:.3g}, count p = {fit['p_outside']:.3g} "
               f"({'fits' if fit['fits'] else 'DOES NOT FIT'}, "
               f"{len(fit['outside'])} statistic(s) outside the replicates' range"
               + (f": {', '.join(fit['outside'][:8])}" + (", ..." if len(fit['outside']) > 8 else "")
                  if fit['outside'] else "") + ")" if fit else ""))
    if args.check_fit:
        print(f"fit check: {sum(not f['fits'] for _, _, f in rows)} of {len(rows)} replicates do not fit their answer "
              f"(p < {rows[0][2]['alpha']:g})")
    for name, value in truth["params"].items():
        estimates = [n["params"][name]["estimate"] for _, n, _ in rows]
        held = sum(n["params"][name]["lower"] <= value <= n["params"][name]["upper"] for _, n, _ in rows)
        print(f"{name}: truth {value}, median estimate {np.median(estimates):.0f} "
              f"(median ratio {np.median(np.array(estimates) / value):.2f}), {held} of {len(rows)} intervals hold it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
