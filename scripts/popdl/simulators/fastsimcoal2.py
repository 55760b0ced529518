"""The fastsimcoal2 backend: each draw's demes graph becomes a ``.par`` file.

fastsimcoal2 (Excoffier et al. 2013) is run as a subprocess, without a
shell, once per draw, in its own temporary folder (removed afterwards)::

    fsc -i draw.par -n 1 -s0 -I -q -r SEED

(``-s0``: DNA output as SNPs, all of them; ``-I``: infinite-sites
mutations; ``-r``: the draw's planned ``seed_fsc`` in 1..1,000,000).  Draws
are not batched into one invocation: every draw has its own seed, so that a
draw's data do not depend on the chunk size.

From a demes graph (times in generations, sizes in diploid individuals) to
a ``.par`` file, whose conventions are:

- deme sizes are numbers of gene copies: ``2 x`` the diploid size, rounded
  to an integer; sample sizes are haplotypes (``2 x`` diploid individuals);
- growth rates are per generation and backward in time:
  ``N(t) = N(t0) exp(r (t - t0))`` for ``t > t0`` in the past, so a positive
  rate means the deme was *larger* in the past (it shrank forward in time), a
  negative one an expansion.  A demes exponential epoch from ``start_size``
  (old end, ``start_time``) to ``end_size`` (young end, ``end_time``) has
  ``r = ln(start_size / end_size) / (start_time - end_time)``;
- migration matrix entry ``M[i][j]`` is the probability per generation that a
  lineage in deme ``i`` moves to deme ``j`` backward in time, i.e. the
  fraction of deme ``i`` made of migrants from ``j`` forward in time; a demes
  migration ``source -> dest`` at rate ``m`` is therefore ``M[dest][source] = m``
  (the mapping of ``msprime.Demography.from_demes``);
- historical event lines ``time source sink migrants new_size new_growth
  matrix``: at ``time`` (integer generations ago) a fraction ``migrants`` of
  the lineages in ``source`` moves to ``sink``; the sink's size is multiplied
  by ``new_size`` (relative to its size at that time, growth included), its
  growth rate becomes ``new_growth`` and matrix ``matrix`` applies from then
  on.  Lines at the same time are applied in file order (checked against
  fastsimcoal2 2.6).  Sizes are always written as relative factors computed
  from the size the deme has in fastsimcoal2 at that moment, because the
  ``absoluteResize`` keyword only exists from version 2.7 on;
- DNA blocks: ``loci`` independent chromosomes (``loci 0``) of one block
  ``DNA length recombination_rate mutation_rate 0`` each, rates per bp per
  generation.

Demes features with no fastsimcoal2 counterpart (linear size changes,
selfing, cloning) stop with a "not supported by fastsimcoal2" error.

Output: the ``.arp`` file lists, per chromosome, the 1-based positions of its
polymorphic sites, then per sampled deme (``SampleName="Sample k"`` for deme
``k-1``) one line per haplotype, ``id frequency sequence`` (genotypic output,
``-g``, puts an individual's second haplotype on a continuation line).  With
``-I`` the ancestral state of every site is ``0`` and the derived one another
digit, so alleles become 0/1 as ``character != '0'``.  A simulation without
any polymorphic site writes a single placeholder character per haplotype.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import demes
import numpy as np

from popdl.errors import ConfigError
from popdl.simulators.base import Genotypes, Simulator, register

__all__ = [
    "EXECUTABLE_NAMES",
    "INSTALL_HINT",
    "FastsimcoalSimulator",
    "FscNotSupported",
    "find_executable",
    "graph_to_par",
    "parse_arp",
]

log = logging.getLogger("popdl.fastsimcoal2")

#: Names searched on PATH when ``fastsimcoal2.executable`` is null, newest first.
EXECUTABLE_NAMES = ("fsc28", "fsc27093", "fsc27", "fsc26", "fsc2")
INSTALL_HINT = (
    "install it with `conda env create -f envs/fastsimcoal2.yaml` (bioconda's fastsimcoal2) "
    "and put its folder on PATH, or set fastsimcoal2.executable to the program's path"
)


class FscNotSupported(ConfigError):
    """A demes feature that fastsimcoal2 cannot express."""


def find_executable(executable: str | None = None) -> str:
    """The fastsimcoal2 program: ``executable`` (a path or a name on PATH) or the
    first of :data:`EXECUTABLE_NAMES` found on PATH.

    Raises :class:`ConfigError` (one line, with how to install it) when none is found.
    """
    if executable:
        found = shutil.which(str(executable))
        if found is None:
            raise ConfigError(
                f"config key 'fastsimcoal2.executable': fastsimcoal2 executable {executable!r} "
                f"not found or not executable; {INSTALL_HINT}"
            )
        return found
    for name in EXECUTABLE_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError(
        f"simulator fastsimcoal2: none of {', '.join(EXECUTABLE_NAMES)} is on PATH; {INSTALL_HINT}"
    )


# --------------------------------------------------------------------------- .par writer
def _fmt(x: float) -> str:
    """A number as fastsimcoal2 reads it (no exponent for integers)."""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.10g}"


def _epoch_at(deme: demes.Deme, t: float):
    """The epoch of ``deme`` covering the interval just older than ``t`` (None if none)."""
    for epoch in deme.epochs:
        if epoch.end_time <= t < epoch.start_time:
            return epoch
    return None


def _growth(epoch) -> float:
    """Backward-in-time growth rate of an epoch (fastsimcoal2's sign convention)."""
    if epoch.size_function == "constant" or epoch.start_size == epoch.end_size:
        return 0.0
    if epoch.size_function != "exponential":
        raise FscNotSupported(f"size_function {epoch.size_function!r} is not supported by fastsimcoal2 (only constant and exponential)")
    return math.log(epoch.start_size / epoch.end_size) / (epoch.start_time - epoch.end_time)


def _graph_state(deme: demes.Deme, t: float):
    """(haploid size, backward growth rate) of ``deme`` just older than ``t``, or None."""
    epoch = _epoch_at(deme, t)
    if epoch is None:
        return None
    r = _growth(epoch)
    size = epoch.end_size * math.exp(r * (t - epoch.end_time)) if r else epoch.start_size
    return 2.0 * size, r


@dataclass
class _Tracked:
    """A deme's size as fastsimcoal2 holds it: ``size`` at ``time``, then growth."""

    size: float
    growth: float
    time: float = 0.0

    def at(self, t: float) -> float:
        return self.size * math.exp(self.growth * (t - self.time))


@dataclass
class _Par:
    names: list[str]
    sizes: list[float]
    samples: list[int]
    growth: list[float]
    matrices: list[list[list[float]]] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)


def _check_supported(graph: demes.Graph) -> None:
    for deme in graph.demes:
        for epoch in deme.epochs:
            if epoch.selfing_rate or epoch.cloning_rate:
                raise FscNotSupported(f"deme {deme.name!r}: selfing and cloning rates are not supported by fastsimcoal2")
            _growth(epoch)


def _build(graph: demes.Graph, samples: dict[str, int]) -> _Par:
    graph = graph.in_generations()
    _check_supported(graph)
    by_name = {d.name: d for d in graph.demes}
    for pop in samples:
        if pop not in by_name:
            raise ConfigError(f"samples: the graph has no deme {pop!r}")
    order = list(samples) + [d.name for d in graph.demes if d.name not in samples]
    index = {name: i for i, name in enumerate(order)}
    K = len(order)

    # Initial state (time 0).
    tracked: list[_Tracked] = []
    for name in order:
        deme = by_name[name]
        state = _graph_state(deme, 0.0)
        if state is None:  # not alive at time 0: a placeholder until it appears
            state = (2.0 * deme.epochs[-1].end_size, 0.0)
        size = max(1.0, float(round(state[0])))
        tracked.append(_Tracked(size, state[1] if deme.end_time == 0 else 0.0))
    par = _Par(order, [t.size for t in tracked], [2 * int(samples.get(n, 0)) for n in order], [t.growth for t in tracked])

    # Actions backward in time: (real time, priority, kind, data).
    actions = []
    for deme in graph.demes:
        if deme.end_time > 0:
            actions.append((deme.end_time, 0, "state", deme.name))
        for _older, younger in zip(deme.epochs[:-1], deme.epochs[1:]):
            actions.append((younger.start_time, 0, "state", deme.name))
    for k, pulse in enumerate(graph.pulses):
        actions.append((pulse.time, 1, "pulse", (len(graph.pulses) - k, pulse)))
    for deme in graph.demes:
        if math.isfinite(deme.start_time) and deme.ancestors:
            actions.append((deme.start_time, 2, "start", deme))
    mig_times = set()
    for m in graph.migrations:
        if m.end_time > 0:
            mig_times.add(m.end_time)
        if math.isfinite(m.start_time):
            mig_times.add(m.start_time)
    for t in mig_times:
        actions.append((t, 3, "matrix", None))
    actions.sort(key=lambda a: (a[0], a[1], a[3][0] if a[2] == "pulse" else 0))

    # Migration matrices: one per interval between change times, deduplicated.
    def matrix_at(t: float):
        M = [[0.0] * K for _ in range(K)]
        for m in graph.migrations:
            if m.end_time <= t < m.start_time:
                M[index[m.dest]][index[m.source]] += m.rate
        return M

    change_times = sorted({0.0} | {a[0] for a in actions})
    matrix_index: dict[float, int] = {}
    if graph.migrations:
        for i, t in enumerate(change_times):
            nxt = change_times[i + 1] if i + 1 < len(change_times) else math.inf
            mid = t + 1.0 if math.isinf(nxt) else (t + nxt) / 2
            M = matrix_at(mid)
            if M not in par.matrices:
                par.matrices.append(M)
            matrix_index[t] = par.matrices.index(M)
    else:
        matrix_index = {t: 0 for t in change_times}

    def line(t: float, source: int, sink: int, migrants: float, *, optional: bool = False, stop: bool = False):
        """One event line; the sink takes its graph state just older than t
        (sizes rounded to whole gene copies).  An ``optional`` line that
        changes nothing is left out."""
        ft = float(round(t))
        sink_deme = by_name[order[sink]]
        target = _graph_state(sink_deme, t)
        current = tracked[sink].at(ft)
        if target is None:  # the sink does not exist older than t: keep its size
            size, growth = current, 0.0 if stop else tracked[sink].growth
        else:
            size, growth = max(1.0, float(round(target[0]))), target[1]
        factor = size / current if current > 0 else 1.0
        if optional and abs(factor - 1.0) < 1e-12 and growth == tracked[sink].growth:
            return
        tracked[sink] = _Tracked(current * factor, growth, ft)
        par.events.append((ft, source, sink, migrants, factor, growth, matrix_index[t]))

    for t, _, kind, data in actions:
        if kind == "state":
            i = index[data]
            line(t, i, i, 0.0, optional=True)
        elif kind == "pulse":
            pulse = data[1]
            dest = index[pulse.dest]
            remaining = 1.0
            for source, p in zip(pulse.sources, pulse.proportions):
                frac = min(1.0, p / remaining) if remaining > 0 else 0.0
                line(t, dest, index[source], frac)
                remaining -= p
        elif kind == "start":
            deme = data
            d = index[deme.name]
            remaining = 1.0
            for j, (anc, p) in enumerate(zip(deme.ancestors, deme.proportions)):
                last = j == len(deme.ancestors) - 1
                frac = 1.0 if last else min(1.0, p / remaining)
                line(t, d, index[anc], frac)
                remaining -= p
            if tracked[d].growth:  # an emptied deme stops growing
                line(t, d, d, 0.0, stop=True)
        elif kind == "matrix":  # a change of migration alone still needs an event line
            if not any(e[0] == float(round(t)) and e[6] == matrix_index[t] for e in par.events):
                line(t, 0, 0, 0.0)
    return par


def graph_to_par(
    graph: demes.Graph,
    *,
    samples: dict[str, int],
    loci: int,
    length: float,
    recombination_rate: float,
    mutation_rate: float,
) -> str:
    """The fastsimcoal2 ``.par`` text of one demes graph.

    ``samples``: diploid individuals per deme (their demes come first, in that
    order); ``loci`` independent chromosomes of ``length`` bp; rates per bp
    per generation.  Raises :class:`FscNotSupported` for demes features that
    fastsimcoal2 cannot express.
    """
    par = _build(graph, samples)
    K = len(par.names)
    out = [f"//Parameters for fastsimcoal2, written by popdl. Demes: {', '.join(f'{i}={n}' for i, n in enumerate(par.names))}"]
    out.append(f"{K} samples to simulate")
    out.append("//Population effective sizes (number of genes)")
    out += [_fmt(s) for s in par.sizes]
    out.append("//Sample sizes (haplotypes)")
    out += [str(n) for n in par.samples]
    out.append("//Growth rates: negative growth implies population expansion")
    out += [_fmt(g) for g in par.growth]
    out.append("//Number of migration matrices : 0 implies no migration between demes")
    out.append(str(len(par.matrices)))
    for i, M in enumerate(par.matrices):
        out.append(f"//Migration matrix {i}")
        out += [" ".join(_fmt(x) for x in row) for row in M]
    out.append("//historical event: time, source, sink, migrants, new deme size, new growth rate, migration matrix index")
    out.append(f"{len(par.events)} historical event")
    for t, source, sink, migrants, factor, growth, mat in par.events:
        out.append(f"{_fmt(t)} {source} {sink} {_fmt(migrants)} {_fmt(factor)} {_fmt(growth)} {mat}")
    out.append("//Number of independent loci [chromosome]")
    out.append(f"{int(loci)} 0")
    out.append("//Per chromosome: Number of linkage blocks")
    out.append("1")
    out.append("//per Block: data type, number of loci, per generation recombination and mutation rates and optional parameters")
    out.append(f"DNA {int(round(length))} {_fmt(recombination_rate)} {_fmt(mutation_rate)} 0")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- .arp parser
_POLY = re.compile(r"^#\s*(\d+) polymorphic positions on chromosome (\d+)\s*$")
_SAMPLE = re.compile(r'SampleName\s*=\s*"([^"]*)"')


def parse_arp(text: str, *, samples: dict[str, int], loci: int) -> Genotypes:
    """Genotypes of a fastsimcoal2 ``.arp`` file written with ``-s0 -I``.

    ``samples`` (population -> diploid individuals) gives the expected
    haplotype counts; sampled deme ``k`` (``SampleName="Sample k+1"``) is the
    k-th population of ``samples``.  Positions become 0-based bp within their
    chromosome (fastsimcoal2 writes 1-based ones); ``locus`` is the chromosome
    index.  Haplotype frequencies above 1 are expanded; genotypic output
    (``-g``, two lines per individual) is read as consecutive haplotypes.
    """
    lines = text.splitlines()
    counts: dict[int, int] = {}
    positions: dict[int, list[int]] = {}
    genotypic = False
    blocks: dict[int, list[bytes]] = {}
    expected: dict[int, int] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        m = _POLY.match(stripped)
        if m:
            n, chrom = int(m.group(1)), int(m.group(2))
            counts[chrom] = n
            pos: list[int] = []
            if n and i + 1 < len(lines) and lines[i + 1].lstrip().startswith("#"):
                pos = [int(x) for x in lines[i + 1].lstrip("# \t").replace(",", " ").split()]
                i += 1
            if len(pos) != n:
                raise ValueError(f".arp: chromosome {chrom} announces {n} polymorphic sites but lists {len(pos)} positions")
            positions[chrom] = pos
        elif stripped.startswith("GenotypicData"):
            genotypic = stripped.split("=", 1)[1].strip() == "1"
        elif stripped.startswith("SampleName"):
            name = _SAMPLE.search(stripped).group(1)
            mk = re.search(r"(\d+)\s*$", name)
            if mk is None:
                raise ValueError(f".arp: unexpected sample name {name!r}")
            k = int(mk.group(1)) - 1
            size = None
            while i + 1 < len(lines) and "SampleData" not in lines[i]:
                i += 1
                s = lines[i].strip()
                if s.startswith("SampleSize"):
                    size = int(s.split("=", 1)[1])
            seqs: list[bytes] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "}":
                tokens = lines[i].split()
                if len(tokens) >= 3:
                    seqs += [tokens[2].encode()] * int(tokens[1])
                elif len(tokens) == 1:
                    seqs.append(tokens[0].encode())
                elif tokens:
                    raise ValueError(f".arp: cannot read sample line {lines[i]!r}")
                i += 1
            blocks[k] = seqs
            expected[k] = size
        i += 1

    pops = list(samples)
    total = sum(counts.values())
    haplotypes = []
    for k, pop in enumerate(pops):
        if k not in blocks:
            raise ValueError(f".arp: no sample for population {pop!r} (Sample {k + 1})")
        seqs = blocks[k]
        if len(seqs) != 2 * samples[pop]:
            raise ValueError(f".arp: Sample {k + 1} ({pop}) has {len(seqs)} haplotypes, expected {2 * samples[pop]}")
        if expected[k] is not None and expected[k] * (2 if genotypic else 1) != len(seqs):
            raise ValueError(f".arp: Sample {k + 1} announces SampleSize={expected[k]} but has {len(seqs)} haplotypes")
        haplotypes += seqs
    n_haps = len(haplotypes)
    if sorted(counts) != list(range(1, loci + 1)):
        raise ValueError(f".arp: expected polymorphic positions for chromosomes 1..{loci}, found {sorted(counts)}")
    if total == 0:
        return Genotypes(np.zeros((0, n_haps), np.uint8), np.zeros(0), np.zeros(0, np.int32))
    if any(len(s) != total for s in haplotypes):
        raise ValueError(f".arp: sequences do not all have the {total} announced polymorphic sites")
    alleles = np.frombuffer(b"".join(haplotypes), dtype=np.uint8).reshape(n_haps, total)
    genotypes = (alleles != ord("0")).astype(np.uint8).T
    pos = np.concatenate([np.asarray(positions[c], dtype=np.float64) for c in range(1, loci + 1)]) - 1.0
    locus = np.repeat(np.arange(loci, dtype=np.int32), [counts[c] for c in range(1, loci + 1)])
    return Genotypes(genotypes, pos, locus)


# --------------------------------------------------------------------------- simulator
@register
class FastsimcoalSimulator(Simulator):
    """fastsimcoal2 through a subprocess, one draw per invocation.

    Settings: ``executable`` (path or name; null searches PATH for
    :data:`EXECUTABLE_NAMES`).
    """

    name = "fastsimcoal2"

    def __init__(self, *, genome: dict, samples: dict[str, int], executable: str | None = None, **settings):
        super().__init__(genome=genome, samples=samples, **settings)
        self.executable_setting = executable
        self._executable: str | None = None

    @property
    def executable(self) -> str:
        if self._executable is None:
            self._executable = find_executable(self.executable_setting)
        return self._executable

    def check(self) -> None:
        self.executable  # noqa: B018 (raises ConfigError when missing)

    def par_text(self, scenario, params: dict[str, float]) -> str:
        genome = self.genome
        return graph_to_par(
            scenario.graph(params),
            samples=self.samples,
            loci=int(genome["loci"]),
            length=float(genome["length"]),
            recombination_rate=scenario.genome_value("recombination_rate", params, genome),
            mutation_rate=scenario.genome_value("mutation_rate", params, genome),
        )

    def simulate(self, scenario, params, seeds) -> Genotypes:
        text = self.par_text(scenario, params)
        seed = int(seeds["seed_fsc"])
        if not 1 <= seed <= 1_000_000:
            raise ValueError(f"fastsimcoal2 seed {seed} is outside 1..1000000")
        cmd = [self.executable, "-i", "draw.par", "-n", "1", "-s0", "-I", "-q", "-r", str(seed)]
        with tempfile.TemporaryDirectory(prefix="popdl-fsc-") as tmp:
            Path(tmp, "draw.par").write_text(text)
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=dict(os.environ))
            arp = Path(tmp, "draw", "draw_1_1.arp")
            if proc.returncode != 0 or not arp.is_file():
                log.error(
                    "fastsimcoal2 failed (scenario %s, seed %d, exit %d): %s\nstdout tail:\n%s\nstderr:\n%s\n.par:\n%s",
                    scenario.name, seed, proc.returncode, " ".join(cmd), proc.stdout[-3000:], proc.stderr[-3000:], text,
                )
                reason = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
                raise RuntimeError(
                    f"fastsimcoal2 failed for scenario {scenario.name!r} with seed {seed} "
                    f"(exit status {proc.returncode}): {reason}"
                )
            return parse_arp(arp.read_text(), samples=self.samples, loci=int(self.genome["loci"]))
