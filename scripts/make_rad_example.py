"""Write the small unphased RAD-like example shipped in config/data/ (run once; the output is committed).

Like a GBS/RAD data set as a user brings it, not as popdl would write it:

* many short loci, one contig per locus (``rad.vcf.gz``, a Stacks/ipyrad-style
  catalogue), and the same loci mapped onto four pseudo-chromosomes with
  gaps between them (``rad_chrom.vcf.gz``, for ``loci: windows``);
* unphased genotype calls (``0/1``, the alleles in sorted order); missing
  calls written ``.`` in ``rad.vcf.gz``, as FreeBayes (and so dDocent)
  writes them, and ``./.`` in ``rad_chrom.vcf.gz``;
* heterogeneous missingness: each individual its own rate (two of them
  above 40 %), whole loci dropped per individual (allele dropout);
* population labels that are not the scenario's deme names (``nuttalli``,
  ``pugetensis``), two more individuals of ``nuttalli`` than the config
  simulates, trailing spaces after some sample names in the VCF header and
  in the popmap, two popmap samples absent from the VCF and one VCF sample
  absent from the popmap.

The genealogies are msprime's, one independent replicate per locus, under
the ``isolation`` scenario of the shipped graphs with fixed parameter values
(``rad_truth.json``); bases are drawn at random for the 0/1 alleles.

    python scripts/make_rad_example.py --out config/data
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import demes
import msprime
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"scenario": "isolation", "params": {"N_anc": 10000, "N1": 3000, "N2": 8000, "T_split": 20000}}
#: Individuals in the VCF per label; the config simulates 10 and 8 (pop1, pop2).
INDIVIDUALS = {"nuttalli": 12, "pugetensis": 8}
DEMES = {"nuttalli": "pop1", "pugetensis": "pop2"}


def simulate(*, loci: int, length: int, mutation_rate: float, recombination_rate: float, seed: int):
    """Per locus: (genotypes (sites, haplotypes) 0/1, positions 0-based bp), haplotypes grouped by label."""
    text = (ROOT / "config" / "scenarios" / f"{TRUTH['scenario']}.yaml").read_text()
    for name, value in TRUTH["params"].items():
        text = text.replace(f": {name}", f": {value}")
    demography = msprime.Demography.from_demes(demes.loads(text))
    samples = {DEMES[label]: n for label, n in INDIVIDUALS.items()}
    replicates = msprime.sim_ancestry(samples=samples, demography=demography, sequence_length=length,
                                      recombination_rate=recombination_rate, ploidy=2, random_seed=seed,
                                      num_replicates=loci)
    out = []
    for i, ts in enumerate(replicates):
        ts = msprime.sim_mutations(ts, rate=mutation_rate, model=msprime.BinaryMutationModel(), random_seed=seed + 1 + i)
        pos = np.floor(ts.sites_position).astype(np.int64)
        keep = np.concatenate([[True], np.diff(pos) > 0]) if pos.size else np.zeros(0, bool)  # one SNP per base
        out.append((ts.genotype_matrix()[keep], pos[keep]))
    return out


def missing_mask(loci: list, n_individuals: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per locus, (individuals,) True where the individual's whole locus is missing (allele dropout):
    individual rates from a Beta(1, 9) (two individuals at 45 % and 55 %), loci more or less prone."""
    rate = rng.beta(1.0, 9.0, size=n_individuals)
    rate[[3, n_individuals - 2]] = [0.45, 0.55]
    prone = rng.gamma(2.0, 0.5, size=len(loci))
    return [rng.random(n_individuals) < np.minimum(rate * p, 1.0) for p in prone]


def sample_names(rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """VCF sample names (some with a trailing space) and their labels, grouped by label."""
    names, labels = [], []
    for label, n in INDIVIDUALS.items():
        for k in range(n):
            name = f"{label[:3].upper()}_{k + 1:03d}"
            names.append(name + (" " if rng.random() < 0.3 else ""))
            labels.append(label)
    return names, labels


def vcf_text(loci: list, masks: list, names: list[str], *, contigs: list[tuple[str, int]], where, rng,
             missing: str = "./.") -> str:
    """An unphased VCF of ``loci``: ``where(i)`` gives locus i's contig and first base (1-based);
    ``missing``, how a missing call is written."""
    header = ["##fileformat=VCFv4.2", "##source=popdl scripts/make_rad_example.py"]
    header += [f"##contig=<ID={c},length={n}>" for c, n in contigs]
    header.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    header.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *names]))
    lines = header
    for i, ((g, pos), dropped) in enumerate(zip(loci, masks)):
        contig, first = where(i)
        for row, p in zip(g, pos):
            ref, alt = rng.choice(list("ACGT"), size=2, replace=False)
            calls = []
            for k in range(len(names)):
                a, b = sorted((int(row[2 * k]), int(row[2 * k + 1])))
                calls.append(missing if dropped[k] else f"{a}/{b}")
            lines.append("\t".join([contig, str(first + int(p)), ".", str(ref), str(alt), "60", "PASS", ".", "GT", *calls]))
    return "\n".join(lines) + "\n"


def write_gz(path: Path, text: str) -> None:
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(text.encode())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loci", type=int, default=400)
    parser.add_argument("--length", type=int, default=300, help="bp per locus (genome.length of the example configs)")
    parser.add_argument("--mutation-rate", type=float, default=5e-8)
    parser.add_argument("--recombination-rate", type=float, default=1e-8)
    parser.add_argument("--chromosomes", type=int, default=4, help="pseudo-chromosomes of rad_chrom.vcf.gz")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", default=str(ROOT / "config" / "data"))
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    loci = simulate(loci=args.loci, length=args.length, mutation_rate=args.mutation_rate,
                    recombination_rate=args.recombination_rate, seed=args.seed)
    names, labels = sample_names(rng)
    masks = missing_mask(loci, len(names), rng)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # One contig per locus (loci without a SNP are absent, as in a catalogue's VCF).
    kept = [i for i, (g, _) in enumerate(loci) if g.shape[0]]
    contigs = [(f"locus{i + 1:04d}", args.length) for i in range(args.loci)]
    text = vcf_text([loci[i] for i in kept], [masks[i] for i in kept], names,
                    contigs=contigs, where=lambda j: (contigs[kept[j]][0], 1), rng=np.random.default_rng(args.seed + 7),
                    missing=".")
    write_gz(out / "rad.vcf.gz", text)

    # The same loci along pseudo-chromosomes: each in its own window of --length bp, gaps of 1 to 30 windows.
    per = -(-args.loci // args.chromosomes)
    starts, sizes = [], {}
    for i in range(args.loci):
        c = i // per
        previous = starts[-1][1] if starts and starts[-1][0] == c else -1
        window = previous + 1 + int(rng.integers(1, 31))
        starts.append((c, window))
        sizes[c] = (window + 1) * args.length
    chrom = [(f"scaffold{c + 1}", sizes[c]) for c in sorted(sizes)]
    text = vcf_text([loci[i] for i in kept], [masks[i] for i in kept], names, contigs=chrom,
                    where=lambda j: (chrom[starts[kept[j]][0]][0], starts[kept[j]][1] * args.length + 1),
                    rng=np.random.default_rng(args.seed + 7))
    write_gz(out / "rad_chrom.vcf.gz", text)

    # The popmap: labels, not deme names; trailing spaces; two samples not sequenced; one VCF sample not listed.
    lines = ["sample\tpopulation"]
    for k, (name, label) in enumerate(zip(names, labels)):
        if k == len(names) - 1:
            continue  # in the VCF, absent from the popmap
        lines.append(f"{name.strip()}\t{label}" + ("  " if k % 4 == 0 else ""))
    lines += ["NUT_099\tnuttalli", "PUG_099\tpugetensis "]
    (out / "rad_popmap.tsv").write_text("\n".join(lines) + "\n")

    snps = sum(loci[i][0].shape[0] for i in kept)
    truth = dict(TRUTH, seed=args.seed, loci=args.loci, length=args.length, mutation_rate=args.mutation_rate,
                 recombination_rate=args.recombination_rate, individuals=INDIVIDUALS, populations=DEMES,
                 snps=snps, loci_with_snps=len(kept))
    (out / "rad_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    calls = np.concatenate([np.repeat(m[None, :], loci[i][0].shape[0], axis=0).ravel() for i, m in enumerate(masks)
                            if i in set(kept)])
    print(f"{out}/rad.vcf.gz and rad_chrom.vcf.gz: {snps} SNPs on {len(kept)} of {args.loci} loci, "
          f"{len(names)} individuals, {calls.mean():.1%} missing calls")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
