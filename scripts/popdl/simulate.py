"""Simulating one chunk of planned draws into one ``.npz`` file.

File format (``results/{run}/sims/{scenario}/{chunk}.npz``):

==================  ==============================  ===========================================
array               shape, dtype                    meaning
==================  ==============================  ===========================================
genotype_bits       (total_sites, ceil(h / 8)) u1   0/1 alleles of every draw, stacked by site, each
                                                    site's ``h`` haplotypes packed 8 to a byte
                                                    (``numpy.packbits`` along the haplotypes)
haplotypes          () i8                           ``h``, the haplotypes per site
positions           (total_sites,) f8               bp within the site's locus
locus               (total_sites,) i4               locus index of each site
site_offsets        (draws + 1,) i8                 draw i's sites are rows offsets[i]:offsets[i+1]
draw                (draws,) i8                     draw indices (global within the scenario)
params              (draws, parameters) f8          drawn parameters
param_names         (parameters,) str
seeds               (draws, 3) i8                   ancestry, mutation and fastsimcoal2 seeds
populations         (haplotypes,) str               population of each haplotype
scenario, simulator () str
loci, length        () i8, f8                       genome layout
==================  ==============================  ===========================================

The alleles are stored as bits: a chunk of RAD-sized draws (150 diploids, 14,000
loci: about 45,000 sites per draw) holds 3.4 GB of one-byte alleles per 250 draws,
and 0.43 GB packed; :func:`iter_draws` unpacks one draw at a time.  The simulate job
spools each draw's sites to anonymous temporary files beside its output as they are
simulated (:class:`popdl.io.SpooledRows`) and copies them into the chunk at the end,
and the features job reads them draw by draw from disk (``load_sims(path,
lazy=True)``): each job holds one draw, whatever the chunk's size.  Chunks written
with one byte per allele (``genotypes``, earlier versions) are read as they are.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np

from popdl import simulators
from popdl.io import SpooledRows, npz_rows, save_npz
from popdl.plan import SEED_COLUMNS
from popdl.scenarios import Scenario

__all__ = ["simulate_chunk", "load_sims", "iter_draws", "draw_genotypes"]

log = logging.getLogger("popdl.simulate")


def simulator_for(scenario: Scenario, config: dict):
    return simulators.from_config(scenario.simulator, config)


def population_labels(samples: dict[str, int]) -> np.ndarray:
    """Population of each haplotype (2 per diploid individual), in config order."""
    return np.array([pop for pop, n in samples.items() for _ in range(2 * n)])


def simulate_chunk(config: dict, scenario: Scenario, plan, out, *, progress_every: float = 30.0) -> dict:
    """Simulate every draw of ``plan`` (a DataFrame slice of the plan table) into ``out``.

    Returns a small summary (draws, sites, seconds).
    """
    simulator = simulator_for(scenario, config)
    simulator.check()
    names = scenario.parameter_names
    params = plan[names].to_numpy(dtype=np.float64)
    seeds = plan[list(SEED_COLUMNS)].to_numpy(dtype=np.int64)
    n_haps = population_labels(config["samples"]).size
    # Each draw's sites go to temporary files beside ``out`` as they are simulated (the dtypes are
    # Genotypes'): the job holds one draw, not the chunk (1 GB of a GBS-sized chunk's bits).
    spool = contextlib.ExitStack()
    offsets = [0]
    start = last = time.perf_counter()
    try:
        bits = spool.enter_context(SpooledRows(out, dtype=np.uint8, row_shape=((n_haps + 7) // 8,)))
        positions = spool.enter_context(SpooledRows(out, dtype=np.float64))
        locus = spool.enter_context(SpooledRows(out, dtype=np.int32))
        for i in range(len(plan)):
            values = dict(zip(names, params[i].tolist()))
            draw_seeds = dict(zip(SEED_COLUMNS, seeds[i].tolist()))
            try:
                g = simulator.simulate(scenario, values, draw_seeds)
            except Exception as exc:
                raise RuntimeError(
                    f"scenario {scenario.name!r} draw {int(plan['draw'].iloc[i])}: {scenario.simulator} failed: {exc}"
                ) from exc
            if g.genotypes.size and int(g.genotypes.max()) > 1:
                raise RuntimeError(f"scenario {scenario.name!r} draw {int(plan['draw'].iloc[i])}: {scenario.simulator} "
                                   "returned alleles other than 0 and 1")
            bits.append(np.packbits(g.genotypes, axis=1))
            positions.append(g.positions)
            locus.append(g.locus)
            offsets.append(offsets[-1] + g.positions.size)
            now = time.perf_counter()
            if now - last > progress_every:
                log.info("%s: %d/%d draws simulated (%.1f/s)", scenario.name, i + 1, len(plan), (i + 1) / (now - start))
                last = now
        save_npz(
            out,
            genotype_bits=bits,
            haplotypes=np.array(n_haps, dtype=np.int64),
            positions=positions,
            locus=locus,
            site_offsets=np.asarray(offsets, dtype=np.int64),
            draw=plan["draw"].to_numpy(dtype=np.int64),
            params=params,
            param_names=np.array(names, dtype=str),
            seeds=seeds,
            populations=population_labels(config["samples"]),
            scenario=np.array(scenario.name),
            simulator=np.array(scenario.simulator),
            loci=np.array(int(config["genome"]["loci"]), dtype=np.int64),
            length=np.array(float(config["genome"]["length"])),
        )
    finally:
        simulator.close()
        spool.close()
    seconds = time.perf_counter() - start
    return {"draws": len(plan), "sites": offsets[-1], "seconds": seconds}


def load_sims(path, *, lazy: bool = False) -> dict:
    """Load a simulation chunk as a dict of arrays.  ``lazy``: the sites' arrays (alleles, positions,
    loci) stay on disk, read draw by draw by :func:`iter_draws` (each a :class:`popdl.io.NpyRows`), so
    a job holds one draw's sites rather than the chunk's."""
    held = {}
    if lazy:
        for key in ("genotype_bits", "genotypes", "positions", "locus"):
            if (rows := npz_rows(path, key)) is not None:
                held[key] = rows
    with np.load(path, allow_pickle=False) as data:
        return {key: held[key] if key in held else data[key] for key in data.files}


def draw_genotypes(sims: dict, i: int) -> np.ndarray:
    """Draw ``i``'s alleles, (sites, haplotypes) uint8 0/1, of a loaded chunk."""
    off = sims["site_offsets"]
    a, b = int(off[i]), int(off[i + 1])
    if "genotype_bits" not in sims:  # one byte per allele (earlier versions)
        return sims["genotypes"][a:b]
    return np.unpackbits(sims["genotype_bits"][a:b], axis=1, count=int(sims["haplotypes"]))


def iter_draws(sims: dict):
    """Yield ``(i, genotypes, positions, locus)`` for every draw of a loaded chunk."""
    off = sims["site_offsets"]
    for i in range(off.size - 1):
        a, b = off[i], off[i + 1]
        yield i, draw_genotypes(sims, i), sims["positions"][a:b], sims["locus"][a:b]
