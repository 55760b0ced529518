"""Selective sweeps: the optional ``sweep:`` section of a scenario.

A scenario with a ``sweep:`` section is simulated by msprime with a hard (or
soft) selective sweep at one site of its single locus::

    scenarios:
      sweep:
        graph: {demes: [{name: pop1, epochs: [{start_size: N}]}]}
        priors: {N: 10000, s: {loguniform: [0.01, 0.1]}, age: {uniform: [0, 500]}}
        sweep: {position: 0.5, s: s, age: age}

Every field is a number or a parameter name/expression resolved, draw by
draw, with the scenario's priors (as in the graph):

``position``
    where the selected site lies, as a fraction of the locus length
    (0 = left end, 0.5 = centre; must be < 1).
``s``
    selection coefficient in msprime's convention: fitnesses 1, 1 + s/2,
    1 + s for the genotypes bb, Bb, BB (discoal's s is twice this).
``age``
    generations between the end of the sweep and the sampling time (0: the
    beneficial allele has just reached ``end_frequency``).
``start_frequency``, ``end_frequency``
    frequency of the beneficial allele when the sweep starts and ends; by
    default 1/(2N) and 1 − 1/(2N), N being the population's size (diploid
    individuals) at the sweep's end: a hard sweep from a new mutation.
``dt``
    the time step of the sweep's trajectory in msprime's units; by default
    1/(40N), msprime's rule of thumb.

Hard sweeps are fully supported.  A *soft* sweep from standing variation is
approximated by ``start_frequency`` above 1/(2N): msprime then simulates
the trajectory from that frequency only, and lineages that reach the start of
the sweep on the beneficial background coalesce neutrally from there, so the
sweep carries several haplotypes (msprime does not model the neutral
drift of the allele before selection started).  Sweeps from recurrent
mutation are not supported.

Constraints, checked when the config is read: the scenario's graph has one
deme (msprime simulates sweeps in a single population only), the genome is a
single locus (``genome.loci: 1``), and the scenario is simulated with
msprime (fastsimcoal2 has no sweeps).  Population size changes are allowed
before and after the sweep, but msprime does not model them during the sweep
itself: keep the size constant over the sweep's duration (a few times
ln(2Ns)/s generations).
"""

from __future__ import annotations

import gzip
import io
import math
from dataclasses import dataclass

from popdl.errors import ConfigError
from popdl.expr import ExprError, Expression
from popdl.io import atomic_path

__all__ = ["SWEEP_FIELDS", "SweepSpec", "simulate_chromosome", "size_at", "write_vcf"]

#: Fields of a ``sweep:`` section, in the order they are resolved.
SWEEP_FIELDS = ("position", "s", "age", "start_frequency", "end_frequency", "dt")
#: Values used when a field is absent (None: derived from the population size).
DEFAULTS = {"position": 0.5, "age": 0.0, "start_frequency": None, "end_frequency": None, "dt": None}


def size_at(graph, time: float) -> float:
    """Size (diploid individuals) of the graph's only deme ``time`` generations ago."""
    deme = graph.demes[0]
    for epoch in deme.epochs:
        if epoch.end_time <= time < epoch.start_time or (time == 0 and epoch.end_time == 0):
            if epoch.size_function == "constant" or epoch.start_size == epoch.end_size:
                return float(epoch.end_size)
            if math.isinf(epoch.start_time):  # cannot happen in a valid demes graph
                return float(epoch.end_size)
            # exponential: size goes from start_size (at start_time) to end_size (at end_time)
            frac = (epoch.start_time - time) / (epoch.start_time - epoch.end_time)
            return float(epoch.start_size * (epoch.end_size / epoch.start_size) ** frac)
    return float(deme.epochs[0].start_size)  # before the deme's start: its oldest size


@dataclass
class SweepSpec:
    """A parsed ``sweep:`` section: one expression (or None for the default) per field."""

    exprs: dict[str, Expression | None]

    @classmethod
    def parse(cls, spec: dict, *, where: str, known: set[str], simulator: str, loci: int) -> SweepSpec:
        """Parse and check a ``sweep:`` mapping; ``known`` are the scenario's parameter names."""
        if not isinstance(spec, dict):
            raise ConfigError(f"config key '{where}': a sweep is a mapping of {', '.join(SWEEP_FIELDS)}")
        unknown = sorted(set(spec) - set(SWEEP_FIELDS))
        if unknown:
            raise ConfigError(f"unknown config key '{where}.{unknown[0]}' (valid keys: {', '.join(SWEEP_FIELDS)})")
        if simulator != "msprime":
            raise ConfigError(
                f"config key '{where}': selective sweeps are not supported by {simulator}; "
                "simulate this scenario with msprime (simulator: msprime)"
            )
        if loci != 1:
            raise ConfigError(
                f"config key '{where}': a sweep scenario needs one contiguous locus (genome.loci: 1), not {loci}"
            )
        if spec.get("s") is None:
            raise ConfigError(f"config key '{where}.s': the selection coefficient is required")
        exprs: dict[str, Expression | None] = {}
        for key in SWEEP_FIELDS:
            value = spec.get(key, DEFAULTS.get(key))
            if value is None:
                exprs[key] = None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ConfigError(f"config key '{where}.{key}': a number or a parameter expression, not {value!r}")
            try:
                expr = Expression(value)
            except ExprError as exc:
                raise ConfigError(f"config key '{where}.{key}': {exc}") from None
            missing = expr.names - known
            if missing:
                raise ConfigError(f"config key '{where}.{key}': parameter {min(missing)!r} has no prior")
            exprs[key] = expr
        return cls(exprs)

    def check(self, graph, *, where: str) -> None:
        """Check that the (first drawn) graph can carry a sweep."""
        if len(graph.demes) != 1:
            raise ConfigError(
                f"config key '{where}': msprime simulates sweeps in a single population only, "
                f"but the graph has {len(graph.demes)} demes ({', '.join(d.name for d in graph.demes)})"
            )

    def values(self, params: dict[str, float], *, graph, where: str) -> dict[str, float]:
        """The sweep of one draw: every field resolved to a number and checked.

        Frequencies are population frequencies; ``dt`` is in msprime's
        sweep time units; ``age`` in generations; ``position`` a fraction.
        """
        out: dict[str, float] = {}
        for key in ("position", "s", "age"):
            out[key] = self._eval(key, params, where)
        n = size_at(graph, out["age"])
        out["start_frequency"] = self._eval("start_frequency", params, where, default=1.0 / (2.0 * n))
        out["end_frequency"] = self._eval("end_frequency", params, where, default=1.0 - 1.0 / (2.0 * n))
        out["dt"] = self._eval("dt", params, where, default=1.0 / (40.0 * n))
        shown = f"for {', '.join(f'{k}={v:.4g}' for k, v in params.items())}"
        if not 0.0 <= out["position"] < 1.0:
            raise ConfigError(f"config key '{where}.position': {out['position']:.4g} is not a fraction of the locus in [0, 1) {shown}")
        if not out["s"] > 0:
            raise ConfigError(f"config key '{where}.s': the selection coefficient must be positive, got {out['s']:.4g} {shown}")
        if out["age"] < 0:
            raise ConfigError(f"config key '{where}.age': the sweep's age must be >= 0 generations, got {out['age']:.4g} {shown}")
        if not 0.0 < out["start_frequency"] < out["end_frequency"] < 1.0:
            raise ConfigError(
                f"config key '{where}': frequencies need 0 < start_frequency < end_frequency < 1, got "
                f"{out['start_frequency']:.4g} and {out['end_frequency']:.4g} {shown}"
            )
        if not out["dt"] > 0:
            raise ConfigError(f"config key '{where}.dt': the time step must be positive, got {out['dt']:.4g} {shown}")
        return out

    def _eval(self, key: str, params: dict, where: str, default: float | None = None) -> float:
        expr = self.exprs[key]
        if expr is None:
            return float(default)
        try:
            value = float(expr.evaluate(params))
        except (ExprError, TypeError) as exc:
            raise ConfigError(f"config key '{where}.{key}': {exc}") from None
        if not math.isfinite(value):
            raise ConfigError(f"config key '{where}.{key}': {expr.text!r} is not finite for this draw")
        return value

    def ancestry_models(self, params: dict[str, float], *, graph, sequence_length: float, where: str) -> list:
        """msprime's ``model=`` list: neutral for ``age`` generations, the sweep, then neutral again.

        ``sequence_length`` in bp; the selected site is at ``position ×
        sequence_length`` (rounded down to a whole base, msprime's genome
        being discrete).
        """
        import msprime

        v = self.values(params, graph=graph, where=where)
        site = min(math.floor(v["position"] * sequence_length), math.ceil(sequence_length) - 1)
        sweep = msprime.SweepGenicSelection(
            position=site,
            start_frequency=v["start_frequency"],
            end_frequency=v["end_frequency"],
            s=v["s"],
            dt=v["dt"],
        )
        models = [msprime.StandardCoalescent(duration=v["age"])] if v["age"] > 0 else []
        return models + [sweep, msprime.StandardCoalescent()]


def simulate_chromosome(
    scenario,
    params: dict[str, float],
    *,
    samples: dict[str, int],
    length: float,
    recombination_rate: float,
    mutation_rate: float,
    seed: int,
):
    """One msprime chromosome of ``length`` bp under ``scenario`` with ``params``.

    The sweep (if the scenario has one) sits at its ``position`` fraction of
    this chromosome.  Rates are per bp per generation; ``samples`` diploid
    individuals per population.  Returns a :class:`tskit.TreeSequence` with
    binary mutations on a discrete genome (one SNP per position at most).
    """
    import msprime

    graph = scenario.graph(params)
    where = f"scenarios.{scenario.name}.sweep"
    models = None if scenario.sweep is None else scenario.sweep.ancestry_models(
        params, graph=graph, sequence_length=length, where=where)
    ts = msprime.sim_ancestry(
        samples=samples, demography=msprime.Demography.from_demes(graph), sequence_length=length,
        recombination_rate=recombination_rate, model=models, ploidy=2, random_seed=seed,
    )
    return msprime.sim_mutations(ts, rate=mutation_rate, model=msprime.BinaryMutationModel(), random_seed=seed + 1)


def write_vcf(ts, path, *, contig: str = "chr1") -> list[tuple[str, str]]:
    """Write ``ts`` as a phased, gzipped VCF (1-based positions); return (sample, population) pairs.

    Individuals are named ``<population>_<number>``; the gzip header carries
    no time stamp, so the same tree sequence gives the same bytes.
    """
    names, popmap = [], []
    counts: dict[str, int] = {}
    for ind in ts.individuals():
        pop = ts.population(ts.node(ind.nodes[0]).population).metadata["name"]
        counts[pop] = counts.get(pop, 0) + 1
        names.append(f"{pop}_{counts[pop]:02d}")
        popmap.append((names[-1], pop))
    text = io.StringIO()
    ts.write_vcf(text, individual_names=names, contig_id=contig, position_transform=lambda x: [1 + int(v) for v in x])
    # tskit writes the binary model's alleles as 0/1: give each site real bases, as a caller would.
    bases = "ACGT"
    lines = []
    for line in text.getvalue().splitlines():
        if not line.startswith("#"):
            fields = line.split("\t", 5)
            k = int(fields[1]) % 12
            fields[2], fields[3], fields[4] = ".", bases[k // 3], bases[(k // 3 + 1 + k % 3) % 4]
            line = "\t".join(fields)
        lines.append(line)
    with atomic_path(path, suffix=".gz") as tmp, gzip.GzipFile(tmp, "wb", mtime=0) as fh:
        fh.write(("\n".join(lines) + "\n").encode())
    return popmap
