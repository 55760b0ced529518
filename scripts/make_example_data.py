"""Write the small example data set shipped in config/data/ (run once; the output is committed).

One msprime simulation of a scenario of the default config, with fixed
parameter values, written as a phased, bgzip-compatible gzipped VCF plus a
popmap: each of the config's ``genome.loci`` loci is a contig of
``genome.length`` bp (chr1, chr2, ...) with its own genealogies.  The first population has one individual more than the config
simulates, so that ``popdl predict`` shows its reproducible subsampling.

    python scripts/make_example_data.py --configfile config/config.yaml \
        --scenario isolation_migration --out config/data
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from pathlib import Path

import msprime
import numpy as np

from popdl.config import load_config
from popdl.scenarios import Scenario

DEFAULT_PARAMS = {"N_anc": 10000, "N1": 5000, "N2": 8000, "T_split": 20000, "m": 2e-4}


def realistic_records(vcf: str, *, seed: int) -> str:
    """Give tskit's 0/1 alleles real bases, and add one indel and one multi-allelic record
    (which popdl skips and counts), as in a called VCF."""
    rng = np.random.default_rng(seed)
    out, extra_done = [], False
    for line in vcf.splitlines():
        if line.startswith("#"):
            out.append(line)
            continue
        fields = line.split("\t")
        ref, alt = rng.choice(list("ACGT"), size=2, replace=False)
        fields[2], fields[3], fields[4] = ".", str(ref), str(alt)
        out.append("\t".join(fields))
        if not extra_done and len(out) > 20:
            n = len(fields) - 9
            pos = int(fields[1])
            gts = ["0|1" if i % 3 == 0 else "0|0" for i in range(n)]
            out.append("\t".join(["chr1", str(pos), ".", "AT", "A", ".", "PASS", ".", "GT", *gts]))
            gts = ["1|2" if i % 4 == 0 else "0|0" for i in range(n)]
            out.append("\t".join(["chr1", str(pos), ".", str(ref), f"{alt},{'T' if 'T' not in (ref, alt) else 'G'}",
                                   ".", "PASS", ".", "GT", *gts]))
            extra_done = True
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default="config/config.yaml")
    parser.add_argument("--scenario", default="isolation_migration")
    parser.add_argument("--params", default=json.dumps(DEFAULT_PARAMS), help="parameter values (JSON)")
    parser.add_argument("--extra", type=int, default=1, help="individuals beyond the config's in the first population")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--name", default="example")
    parser.add_argument("--out", default="config/data")
    args = parser.parse_args(argv)

    config = load_config(args.configfile)
    scenario = Scenario.from_config(args.scenario, config)
    params = json.loads(args.params)
    samples = dict(config["samples"])
    first = next(iter(samples))
    samples[first] += args.extra
    genome = config["genome"]
    loci, length = int(genome["loci"]), int(genome["length"])
    demography = msprime.Demography.from_demes(scenario.graph(params))
    # One contig per locus (chr1, chr2, ...): independent genealogies, as the simulations' loci.
    replicates = msprime.sim_ancestry(
        samples=samples, demography=demography, sequence_length=length,
        recombination_rate=float(genome["recombination_rate"]), ploidy=2, random_seed=args.seed,
        num_replicates=loci,
    )
    names, popmap, header, records, sites = [], [], [], [], 0
    for i, ts in enumerate(replicates):
        ts = msprime.sim_mutations(ts, rate=float(genome["mutation_rate"]), model=msprime.BinaryMutationModel(),
                                   random_seed=args.seed + 1 + i)
        if not names:
            for ind in ts.individuals():
                pop = ts.population(ts.node(ind.nodes[0]).population).metadata["name"]
                names.append(f"{pop}_{len([n for n in popmap if n[1] == pop]) + 1:02d}")
                popmap.append((names[-1], pop))
        text = io.StringIO()
        ts.write_vcf(text, individual_names=names, contig_id=f"chr{i + 1}",
                     position_transform=lambda x: [1 + int(v) for v in x])
        lines = text.getvalue().splitlines()
        meta = [x for x in lines if x.startswith("#")]
        if not header:
            header = [x for x in meta if not x.startswith(("##contig", "#CHROM"))]
            column_names = next(x for x in meta if x.startswith("#CHROM"))
        header.append(next(x for x in meta if x.startswith("##contig")))
        records += [x for x in lines if not x.startswith("#")]
        sites += ts.num_sites
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join([*header, column_names, *records]) + "\n"
    vcf = out / f"{args.name}.vcf.gz"
    with gzip.GzipFile(vcf, "wb", mtime=0) as fh:
        fh.write(realistic_records(text, seed=args.seed).encode())
    (out / f"{args.name}_popmap.tsv").write_text("sample\tpopulation\n" + "".join(f"{s}\t{p}\n" for s, p in popmap))
    (out / f"{args.name}_truth.json").write_text(
        json.dumps({"scenario": args.scenario, "params": params, "seed": args.seed, "samples": samples}, indent=2) + "\n"
    )
    print(f"{vcf}: {sites} sites on {loci} contig(s), {len(names)} individuals")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
