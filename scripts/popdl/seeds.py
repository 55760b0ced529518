"""Every random stream of popdl, named, each derived from the run's root seed.

A stream is a :class:`numpy.random.SeedSequence` of the root seed (config key
``seed``) and a *spawn key* ``(key, index, stream)``: ``key`` is
:func:`name_key` of a name (a scenario, a data set), ``index`` a draw or
replicate number, ``stream`` one of :class:`Stream`.  What a stream yields
therefore depends only on (root seed, name, index, stream): never on the
chunk size, on the other scenarios, or on the order in which jobs run.  So the
same config gives byte-identical plans, simulations, features, splits and
observed-data arrays.

=================  ==  ==========================================  ===================================
stream             n   what it draws                                key, index
=================  ==  ==========================================  ===================================
PRIORS             0   parameter draws (rejection sampling)        scenario, draw
SIMULATOR          1   simulator seeds: msprime ancestry and       scenario, draw
                       mutation, fastsimcoal2 ``-r``
SNP_SELECTION      2   which SNPs enter a simulated draw's image   scenario, draw
SPLIT              3   train / validation / test assignment        scenario, 0
SHUFFLE            4   order of the examples within a split        ``__split_{split}__``, 0
MISSINGNESS        5   simulated missing calls                     scenario, draw
OBSERVED           6   observed data: individuals subsampled       ``__empirical_{name}__``,
                       (index 0), SNP subsets (1 + replicate)      0 | 1 + replicate
REPORT             7   the report and its interpretation: typical  ``__report_{use}__``, index
                       scenario draws, test-set subsample, PCA
                       points, the seeds of fANOVA, PCA, t-SNE
CALIBRATION        8   which validation examples the final fit     ``__calibration__``, 0
                       leaves out to fit the temperature on; the
                       cross-fitting folds of the ensemble's       ``__cross_fit__``, 0
                       members (``train.cross_fit``)
AUGMENT            9   haplotype permutations within populations   ``__augment__``, epoch
                       (``train.augment``) of one batch             (+ batch, see :func:`augment`)
THINNING           10  the SNP a locus keeps                        scenario, draw | ``__empirical_
                       (``features.one_snp_per_locus: random``)     {name}__``, 0
FIT_CHECK          11  a data set's fit check: the parameter        ``__fit_{name}__``, 0
                       values of its replicates
                       (:mod:`popdl.fitcheck`)
=================  ==  ==========================================  ===================================

Derived from a stream's draws: the mutations of a genome of several loci,
placed by one NumPy generator on the draw's msprime mutation seed
(:meth:`popdl.simulators.msprime_sim.MsprimeSimulator.simulate`).

Seeds set elsewhere, not through a stream:

* the final fit (:func:`popdl.training.train_final`) seeds Keras
  (``keras.utils.set_random_seed``) and each epoch's shard and batch order
  (``default_rng([seed, epoch])``) with the root seed; tuning trial ``n``
  seeds Keras with the root seed + ``n`` and the batch order with ``n`` alone;
* Optuna's TPE sampler: ``tuning.seed`` (default the root seed) + worker index;
* the ABC random forests: ``random_state`` = the root seed (:mod:`popdl.abc`).

Fixed on purpose, independent of the root seed:

* :func:`haplotype_hash_weights`: the weights that hash haplotypes for the
  haplotype diversity statistic.  They are not random draws but a fixed hash
  function: a simulated and an observed data set must hash the same
  haplotypes alike, whatever their seeds.
* the one draw :meth:`popdl.scenarios.Scenario.from_config` builds a graph from
  to catch structural errors (``default_rng(0)``): a config check, its values
  are discarded, and a config must pass or fail whatever the seed.
"""

from __future__ import annotations

import enum
import hashlib

import numpy as np

__all__ = [
    "Stream",
    "name_key",
    "seed_sequence",
    "generator",
    "priors",
    "simulator_seeds",
    "snp_selection",
    "missingness",
    "split",
    "shuffle",
    "observed",
    "report",
    "calibration",
    "cross_fit",
    "augment",
    "thinning",
    "fit_check",
    "haplotype_hash_weights",
    "HASH_WEIGHTS_SEED",
]


class Stream(enum.IntEnum):
    """The random streams, by the number in their spawn key (never renumber:
    the numbers make the arrays of earlier runs reproducible)."""

    PRIORS = 0
    SIMULATOR = 1
    SNP_SELECTION = 2
    SPLIT = 3
    SHUFFLE = 4
    MISSINGNESS = 5
    OBSERVED = 6
    REPORT = 7
    CALIBRATION = 8
    AUGMENT = 9
    THINNING = 10
    FIT_CHECK = 11


#: The seed of :func:`haplotype_hash_weights` (fixed: see the module docstring).
HASH_WEIGHTS_SEED = 12345


def name_key(name: str) -> int:
    """A stable integer for a name (scenario, data set): the first 4 bytes of its
    SHA-256, independent of the name's position in the config."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def seed_sequence(root_seed: int, name: str, index: int, stream: int) -> np.random.SeedSequence:
    """The seed sequence of stream ``stream`` (a :class:`Stream`) for ``name`` and
    ``index``; it depends only on these four values."""
    return np.random.SeedSequence(entropy=root_seed, spawn_key=(name_key(name), index, int(stream)))


def generator(root_seed: int, stream: Stream, name: str, index: int = 0) -> np.random.Generator:
    """A PCG64 generator on :func:`seed_sequence` (root seed, name, index, stream)."""
    return np.random.Generator(np.random.PCG64(seed_sequence(root_seed, name, index, stream)))


def priors(root_seed: int, scenario: str, draw: int) -> np.random.Generator:
    """Parameter values of draw ``draw`` of ``scenario`` (all rejection-sampling tries)."""
    return generator(root_seed, Stream.PRIORS, scenario, draw)


def simulator_seeds(root_seed: int, scenario: str, draw: int) -> tuple[int, int, int]:
    """(msprime ancestry, msprime mutation, fastsimcoal2) seeds of one draw.

    msprime takes seeds in 1..2**32-1; fastsimcoal2 takes integers in
    1..1,000,000 (its ``-r`` option), so that seed is drawn in that range.
    """
    words = seed_sequence(root_seed, scenario, draw, Stream.SIMULATOR).generate_state(3, dtype=np.uint32)
    return (
        int(words[0]) % (2**31 - 2) + 1,
        int(words[1]) % (2**31 - 2) + 1,
        int(words[2]) % 1_000_000 + 1,
    )


def snp_selection(root_seed: int, scenario: str, draw: int) -> np.random.Generator:
    """The SNPs chosen for the image of draw ``draw`` of ``scenario``."""
    return generator(root_seed, Stream.SNP_SELECTION, scenario, draw)


def missingness(root_seed: int, scenario: str, draw: int) -> np.random.Generator:
    """The missing calls added to draw ``draw`` of ``scenario`` (``features.missing_rate``)."""
    return generator(root_seed, Stream.MISSINGNESS, scenario, draw)


def thinning(root_seed: int, name: str, index: int = 0) -> np.random.Generator:
    """Which SNP each locus keeps with ``features.one_snp_per_locus: random``: draw ``index`` of
    scenario ``name``, or observed data set ``name`` (``__empirical_NAME__``, index 0)."""
    return generator(root_seed, Stream.THINNING, name, index)


def fit_check(root_seed: int, name: str) -> np.random.Generator:
    """The parameter values of the replicates that check the fit of observed data set ``name``
    (:mod:`popdl.fitcheck`; their simulator seeds and missing calls are those of draws
    :data:`popdl.fitcheck.FIT_DRAWS` + i of the answer's scenario, beyond any planned draw)."""
    return generator(root_seed, Stream.FIT_CHECK, f"__fit_{name}__", 0)


def split(root_seed: int, scenario: str) -> np.random.Generator:
    """The assignment of ``scenario``'s draws to train, validation and test."""
    return generator(root_seed, Stream.SPLIT, scenario, 0)


def shuffle(root_seed: int, split_name: str) -> np.random.Generator:
    """The order of the examples (all scenarios) within split ``split_name``."""
    return generator(root_seed, Stream.SHUFFLE, f"__split_{split_name}__", 0)


def observed(root_seed: int, name: str, index: int = 0) -> np.random.Generator:
    """Observed data set ``name``: individuals subsampled (``index`` 0) and the
    SNP subset of replicate ``r`` (``index`` 1 + r)."""
    return generator(root_seed, Stream.OBSERVED, f"__empirical_{name}__", index)


def report(root_seed: int, use: str, index: int = 0) -> np.random.Generator:
    """A figure of the report: ``use`` names it (e.g. ``"test subsample"``)."""
    return generator(root_seed, Stream.REPORT, f"__report_{use}__", index)


def calibration(root_seed: int) -> np.random.Generator:
    """Which examples of the validation split the final fit leaves out (the calibration part)."""
    return generator(root_seed, Stream.CALIBRATION, "__calibration__", 0)


def cross_fit(root_seed: int) -> np.random.Generator:
    """Which fold of the final fit's examples each ensemble member leaves out (``train.cross_fit``)."""
    return generator(root_seed, Stream.CALIBRATION, "__cross_fit__", 0)


def augment(seed: int, epoch: int, batch: int) -> np.random.Generator:
    """The haplotype permutations of batch ``batch`` of epoch ``epoch`` of a fit whose
    batch order is seeded with ``seed`` (the root seed for the final fit, the trial
    number for a tuning trial).  The batch is a fourth word of the spawn key: batches
    are read in any order, by any thread, and each gets the same permutations."""
    key = (name_key("__augment__"), int(epoch), int(Stream.AUGMENT), int(batch))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=key)))


def haplotype_hash_weights(sites: int) -> np.ndarray:
    """Fixed weights (uint64, one per site) that hash haplotypes for the haplotype
    diversity statistic; the same for every data set (see the module docstring)."""
    return np.random.default_rng(HASH_WEIGHTS_SEED).integers(1, 2**63, size=sites, dtype=np.uint64)
