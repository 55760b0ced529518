"""Priors, constraints, seeds, genomes and rate priors of scenarios (real msprime)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import REPO, tiny_config

from popdl.config import prepare
from popdl.errors import ConfigError
from popdl.plan import chunk_bounds, n_chunks, plan_draws
from popdl.scenarios import Prior, Scenario
from popdl import seeds
from popdl.seeds import seed_sequence
from popdl.simulate import iter_draws, load_sims, simulate_chunk

ONE_POP = {"time_units": "generations", "demes": [{"name": "pop", "epochs": [{"start_size": "N"}]}]}


def one_pop_config(priors: dict, **genome) -> dict:
    config = tiny_config(samples={"pop": 3}, scenarios={"s": {"graph": ONE_POP, "priors": priors}})
    config["genome"].update(genome)
    return prepare(config, base_dirs=(REPO,))


def draws(prior: Prior, n: int = 4000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([prior.sample(rng) for _ in range(n)])


# ---------------------------------------------------------------------------------------- priors
def test_fixed_prior_from_number_or_mapping():
    assert Prior.parse("x", 5, where="p").sample(np.random.default_rng(0)) == 5.0
    assert Prior.parse("x", {"fixed": 2.5}, where="p").sample(np.random.default_rng(0)) == 2.5


def test_uniform_prior():
    x = draws(Prior.parse("x", {"uniform": [10, 20]}, where="p"))
    assert x.min() >= 10 and x.max() <= 20
    assert x.mean() == pytest.approx(15, abs=0.2)


def test_loguniform_prior_is_uniform_on_log_scale():
    prior = Prior.parse("x", {"loguniform": [1e2, 1e4]}, where="p")
    x = draws(prior)
    assert x.min() >= 1e2 and x.max() <= 1e4
    assert np.log10(x).mean() == pytest.approx(3, abs=0.05)
    assert prior.log_scale and prior.bounds == (1e2, 1e4)


def test_normal_prior():
    x = draws(Prior.parse("x", {"normal": [5, 2]}, where="p"))
    assert x.mean() == pytest.approx(5, abs=0.1)
    assert x.std() == pytest.approx(2, abs=0.1)


def test_truncated_normal_prior_stays_in_bounds():
    prior = Prior.parse("x", {"truncnormal": [0, 1, -0.5, 2]}, where="p")
    x = draws(prior)
    assert x.min() >= -0.5 and x.max() <= 2
    assert prior.bounds == (-0.5, 2)


def test_truncated_normal_with_unreachable_window_fails_clearly():
    prior = Prior.parse("x", {"truncnormal": [0, 1, 50, 51]}, where="p")
    with pytest.raises(ConfigError, match="truncnormal.*rejected 100 draws"):
        prior.sample(np.random.default_rng(0), max_tries=100)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"uniform": [2, 1]}, "uniform needs low < high"),
        ({"uniform": [1]}, "uniform takes 2 finite number"),
        ({"uniform": [1, "a"]}, "uniform takes 2 finite number"),
        ({"uniform": [1, float("inf")]}, "uniform takes 2 finite number"),
        ({"loguniform": [0, 10]}, "loguniform needs positive bounds"),
        ({"loguniform": [-1, 10]}, "loguniform needs positive bounds"),
        ({"normal": [0, -1]}, "normal needs a positive standard deviation"),
        ({"truncnormal": [0, 1, 2, 1]}, "truncnormal needs low < high"),
        ({"truncnormal": [0, 1, 2]}, "truncnormal takes 4 finite number"),
        ({"fixed": "a"}, "fixed takes 1 finite number"),
        ({"gamma": [1, 2]}, "unknown prior 'gamma'"),
        ({"uniform": [1, 2], "fixed": 1}, r"a prior has one kind, this one has 2 \(uniform, fixed\): keep one"),
        ({"expr": "T1 +"}, "cannot parse"),
        ({"expr": "__import__('os')"}, "unknown function"),
        (True, "must be a number or a mapping"),
    ],
)
def test_prior_validation_errors_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        Prior.parse("x", spec, where="scenarios.s.priors.x")
    assert str(info.value).startswith("config key 'scenarios.s.priors.x'")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ derived values and constraints
def test_derived_parameters_follow_their_dependencies():
    config = one_pop_config({"N": {"expr": "N0 * f"}, "f": {"uniform": [0.1, 0.5]}, "N0": {"loguniform": [1e3, 1e4]}})
    sc = Scenario.from_config("s", config)
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = sc.draw(rng)
        assert p["N"] == pytest.approx(p["N0"] * p["f"])
    assert sc.parameter_names == ["N", "N0", "f"]  # sorted order (fixed genome rates are not parameters)


def test_constraints_hold_in_every_draw():
    config = prepare(tiny_config(samples={"pop": 3}, scenarios={"s": {
        "graph": ONE_POP, "priors": {"N": 1000, "T": {"uniform": [0, 100]}, "Tsc": {"uniform": [0, 100]}},
        "constraints": ["Tsc < T", "T - Tsc > 10"]}}), base_dirs=(REPO,))
    sc = Scenario.from_config("s", config)
    rng = np.random.default_rng(0)
    tries = []
    for _ in range(300):
        p, n = sc.draw_with_tries(rng)
        assert p["Tsc"] < p["T"] and p["T"] - p["Tsc"] > 10
        tries.append(n)
    assert max(tries) > 1  # rejection sampling really happened


def test_unsatisfiable_constraint_is_one_clear_error_before_any_job():
    config = tiny_config(samples={"pop": 3}, scenarios={"s": {
        "graph": ONE_POP, "priors": {"N": 1000, "T": {"uniform": [0, 10]}, "Tsc": {"uniform": [20, 30]}},
        "constraints": ["Tsc < T"]}})
    config["simulations"]["max_tries"] = 50
    with pytest.raises(ConfigError) as info:
        prepare(config, base_dirs=(REPO,))
    message = str(info.value)
    assert message.startswith("config key 'scenarios.s.constraints'")
    assert "never satisfied 'Tsc < T' in 50 draws" in message and "\n" not in message


def test_derived_cycle_and_unknown_names_are_rejected():
    with pytest.raises(ConfigError, match="cycle"):
        one_pop_config({"N": {"expr": "M + 1"}, "M": {"expr": "N - 1"}})
    with pytest.raises(ConfigError, match="'Q' is not a parameter"):
        one_pop_config({"N": {"expr": "Q + 1"}})
    with pytest.raises(ConfigError, match="parameter 'N' has no prior"):
        one_pop_config({"M": 5})


def test_a_drawn_parameter_that_nothing_reads_is_refused():
    # A misspelt prior beside the right one would be drawn, then estimated from data it never touched.
    with pytest.raises(ConfigError) as info:
        one_pop_config({"N": {"uniform": [100, 1000]}, "Nn": {"loguniform": [100, 1000]}})
    assert str(info.value) == (
        "config key 'scenarios.s.priors.Nn': parameter 'Nn' is used nowhere (not in the graph, a derived parameter, "
        "a constraint or the sweep), so the data would say nothing about it; the graph's parameters are N (a misspelt name?)")
    # Used through a derived parameter or a constraint, or fixed, or derived itself (a reported quantity): accepted.
    config = one_pop_config({"N": {"expr": "2 * half"}, "half": {"uniform": [100, 1000]}, "c": 7,
                             "theta": {"expr": "4 * N * 1e-8"}})
    assert set(Scenario.from_config("s", config).parameter_names) == {"N", "half", "c", "theta"}
    config = prepare(tiny_config(samples={"pop": 3}, scenarios={"s": {
        "graph": ONE_POP, "priors": {"N": {"uniform": [100, 1000]}, "T": {"uniform": [0, 10]}},
        "constraints": ["T < N"]}}), base_dirs=(REPO,))
    assert "T" in Scenario.from_config("s", config).parameter_names


# ----------------------------------------------------------------------------------------- seeds
def test_draw_seeds_depend_only_on_root_scenario_and_index():
    a = seed_sequence(1, "s", 7, 0).generate_state(2)
    assert np.array_equal(a, seed_sequence(1, "s", 7, 0).generate_state(2))
    assert not np.array_equal(a, seed_sequence(1, "s", 8, 0).generate_state(2))
    assert not np.array_equal(a, seed_sequence(1, "t", 7, 0).generate_state(2))
    assert not np.array_equal(a, seed_sequence(2, "s", 7, 0).generate_state(2))


def test_plan_rows_do_not_depend_on_how_the_draws_are_split():
    config = prepare(tiny_config(), base_dirs=(REPO,))
    sc = Scenario.from_config("secondary_contact", config)
    whole = plan_draws(sc, root_seed=5, start=0, stop=30)
    parts = [plan_draws(sc, root_seed=5, start=a, stop=b) for a, b in ((0, 7), (7, 19), (19, 30))]
    import pandas as pd

    assert whole.equals(pd.concat(parts, ignore_index=True))
    assert n_chunks(30, 7) == 5 and chunk_bounds(4, per_scenario=30, chunk=7) == (28, 30)


def test_plan_written_block_by_block_equals_the_whole_plan(tmp_path):
    from popdl.io import write_table
    from popdl.plan import read_plan, write_plan

    config = prepare(tiny_config(), base_dirs=(REPO,))
    sc = Scenario.from_config("secondary_contact", config)
    summary = write_plan(sc, tmp_path / "blocks.tsv", root_seed=5, n=30, block=7)
    write_table(tmp_path / "whole.tsv", plan_draws(sc, root_seed=5, start=0, stop=30))
    assert (tmp_path / "blocks.tsv").read_bytes() == (tmp_path / "whole.tsv").read_bytes()
    assert summary["draws"] == 30 and summary["mean_tries"] >= 1
    assert read_plan(tmp_path / "blocks.tsv").equals(plan_draws(sc, root_seed=5, start=0, stop=30))


def test_draws_the_simulator_cannot_take_are_refused_when_planned(tmp_path):
    # A normal prior on a size reaches negative sizes: the plan, the run's first job, says so
    # (how many, the first, which prior) and writes nothing, rather than a simulate job failing mid-run.
    from popdl.plan import write_plan

    sc = Scenario.from_config("s", one_pop_config({"N": {"normal": [1000, 800]}}))
    with pytest.raises(ConfigError) as info:
        write_plan(sc, tmp_path / "plan.tsv", root_seed=1, n=200)
    message = str(info.value)
    assert message.startswith("config key 'scenarios.s.priors': ") and "\n" not in message
    count, first = re.search(r"(\d+) of draws 0-199 give parameters the simulator cannot take, the first draw (\d+): ",
                             message).groups()
    assert not (tmp_path / "plan.tsv").exists()
    params, _ = sc.draw_with_tries(seeds.priors(1, "s", int(first)))
    assert params["N"] <= 0 and f"N = {params['N']:.4g} (prior normal[1000.0, 800.0])" in message
    assert all(sc.draw_with_tries(seeds.priors(1, "s", d))[0]["N"] > 0 for d in range(int(first)))
    assert int(count) == sum(sc.draw_with_tries(seeds.priors(1, "s", d))[0]["N"] <= 0 for d in range(200))
    assert "truncnormal: [mean, sd, low, high]" in message
    # Bounded, the same prior plans.
    bounded = Scenario.from_config("s", one_pop_config({"N": {"truncnormal": [1000, 800, 10, 1e5]}}))
    assert write_plan(bounded, tmp_path / "plan.tsv", root_seed=1, n=200)["draws"] == 200


# ------------------------------------------------------------------------------ genome and rates
def test_rate_priors_are_drawn_and_recorded_as_parameters(tmp_path):
    config = one_pop_config(
        {"N": {"loguniform": [1e3, 1e4]}},
        mutation_rate={"loguniform": [1e-9, 1e-7]},
        recombination_rate={"uniform": [0, 1e-8]},
        length=5000,
    )
    sc = Scenario.from_config("s", config)
    assert sc.parameter_names == ["mutation_rate", "recombination_rate", "N"]
    plan = plan_draws(sc, root_seed=1, start=0, stop=12)
    assert plan["mutation_rate"].between(1e-9, 1e-7).all() and plan["mutation_rate"].nunique() == 12
    simulate_chunk(config, sc, plan, tmp_path / "s.npz")
    sims = np.load(tmp_path / "s.npz")
    assert list(sims["param_names"]) == ["mutation_rate", "recombination_rate", "N"]
    assert np.array_equal(sims["params"], plan[sc.parameter_names].to_numpy())
    # More mutations where the drawn rate (times N) is higher: the rate really is used.
    sites = np.diff(sims["site_offsets"])
    theta = plan["mutation_rate"] * plan["N"]
    assert np.corrcoef(np.log(theta), np.log1p(sites))[0, 1] > 0.5


def four_gamete_compatible(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two biallelic sites could sit on one tree (fewer than four gametes)."""
    return len({(int(x), int(y)) for x, y in zip(a, b)}) < 4


def test_multi_locus_genome_sites_stay_in_loci_and_loci_are_independent(tmp_path):
    loci, length = 12, 3000
    config = one_pop_config({"N": 20000}, loci=loci, length=length, recombination_rate=0.0, mutation_rate=2e-8)
    config["samples"] = {"pop": 6}
    sc = Scenario.from_config("s", config)
    plan = plan_draws(sc, root_seed=2, start=0, stop=3)
    simulate_chunk(config, sc, plan, tmp_path / "s.npz")
    sims = load_sims(tmp_path / "s.npz")
    assert int(sims["loci"]) == loci and float(sims["length"]) == length
    incompatible_across = 0
    for _, g, pos, loc in iter_draws(sims):
        assert ((pos >= 0) & (pos < length)).all()
        assert ((loc >= 0) & (loc < loci)).all() and (np.diff(loc) >= 0).all()
        assert np.unique(loc).size > loci // 2  # mutations land on many loci
        for k in np.unique(loc):  # sorted positions within each locus
            assert (np.diff(pos[loc == k]) > 0).all()
        # No recombination within a locus: its sites fit one tree (all pairs compatible) ...
        for k in np.unique(loc):
            rows = g[loc == k]
            assert all(four_gamete_compatible(rows[x], rows[y]) for x in range(len(rows)) for y in range(x))
        # ... while sites of different loci come from independent trees.
        firsts = [g[loc == k] for k in np.unique(loc)]
        for x in range(len(firsts)):
            for y in range(x):
                incompatible_across += sum(not four_gamete_compatible(a, b) for a in firsts[x] for b in firsts[y])
    assert incompatible_across > 0


def test_samples_are_ordered_by_population_as_configured(tmp_path):
    graph = {"time_units": "generations", "demes": [
        {"name": "anc", "epochs": [{"start_size": 1000, "end_time": 500}]},
        {"name": "z", "ancestors": ["anc"], "epochs": [{"start_size": 1000}]},
        {"name": "a", "ancestors": ["anc"], "epochs": [{"start_size": 1000}]},
    ]}
    config = tiny_config(samples={"a": 2, "z": 3}, scenarios={"s": {"graph": graph, "priors": {}}})
    config = prepare(config, base_dirs=(REPO,))
    sc = Scenario.from_config("s", config)
    plan = plan_draws(sc, root_seed=1, start=0, stop=2)
    simulate_chunk(config, sc, plan, tmp_path / "s.npz")
    assert list(np.load(tmp_path / "s.npz")["populations"]) == ["a"] * 4 + ["z"] * 6


def test_a_chunk_stores_each_draws_alleles_as_bits_and_reads_them_back(tmp_path):
    """10 haplotypes (not a multiple of 8) packed two bytes to a site; every draw read back equals the
    simulator's own output, and a chunk of an earlier version (one byte per allele) reads the same."""
    from popdl.io import save_npz
    from popdl.simulators import get_simulator

    config = one_pop_config({"N": 5000}, loci=3, length=2000, mutation_rate=5e-8)
    config["samples"] = {"pop": 5}
    sc = Scenario.from_config("s", config)
    plan = plan_draws(sc, root_seed=4, start=0, stop=4)
    simulate_chunk(config, sc, plan, tmp_path / "s.npz")
    sims = load_sims(tmp_path / "s.npz")
    assert "genotypes" not in sims and sims["genotype_bits"].shape[1] == 2 and int(sims["haplotypes"]) == 10
    sim = get_simulator("msprime", genome=config["genome"], samples=config["samples"])
    seeds = plan[["seed_ancestry", "seed_mutation"]].to_dict("records")
    direct = [sim.simulate(sc, {"N": float(plan["N"].iloc[i])}, seeds[i]) for i in range(len(plan))]
    read = list(iter_draws(sims))
    assert sum(g.shape[0] for _, g, _, _ in read) > 20
    for (_, g, pos, loc), d in zip(read, direct, strict=True):
        assert g.dtype == np.uint8 and np.array_equal(g, d.genotypes) and np.array_equal(pos, d.positions)
        assert np.array_equal(loc, d.locus)
    earlier = {k: v for k, v in sims.items() if k not in ("genotype_bits", "haplotypes")}
    save_npz(tmp_path / "earlier.npz", genotypes=np.concatenate([d.genotypes for d in direct]), **earlier)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(iter_draws(load_sims(tmp_path / "earlier.npz")), read))
    # The chunk's file is byte for byte the one its arrays joined in memory would give (written draw by
    # draw instead), and read lazily (as the features job reads it) every draw is the same.
    save_npz(tmp_path / "joined.npz", **sims)
    assert (tmp_path / "joined.npz").read_bytes() == (tmp_path / "s.npz").read_bytes()
    for path in ("s.npz", "earlier.npz"):
        lazy = load_sims(tmp_path / path, lazy=True)
        key = "genotype_bits" if path == "s.npz" else "genotypes"
        assert not any(isinstance(lazy[k], np.ndarray) for k in (key, "positions", "locus"))  # left on disk
        for (_, g, pos, loc), d in zip(iter_draws(lazy), direct, strict=True):
            assert np.array_equal(g, d.genotypes) and np.array_equal(pos, d.positions)
            assert np.array_equal(loc, d.locus)
            g[:] = 0  # writable, as numpy.load's arrays


def test_spooled_rows_and_npz_rows_write_and_read_what_numpy_does(tmp_path):
    from popdl.io import NpyRows, SpooledRows, npz_rows, save_npz

    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 255, size=(n, 3), dtype=np.uint8) for n in (4, 0, 7)]
    save_npz(tmp_path / "a.npz", x=np.concatenate(blocks), y=np.arange(5.0), empty=np.zeros((0, 3), np.uint8))
    # Spooled to anonymous files beside the output: the same bytes, and nothing else left in the folder.
    out = tmp_path / "spooled" / "b.npz"
    with SpooledRows(out, dtype=np.uint8, row_shape=(3,)) as x, SpooledRows(out, dtype=np.float64) as y, \
            SpooledRows(out, dtype=np.uint8, row_shape=(3,)) as empty:
        for b in blocks:
            x.append(b)
        y.append(np.arange(2.0))
        y.append(np.arange(2, 5))  # cast to the spool's dtype
        with pytest.raises(ValueError, match="a block of shape"):
            x.append(np.zeros((2, 4), np.uint8))
        assert x.shape == (11, 3) and empty.shape == (0, 3)
        save_npz(out, x=x, y=y, empty=empty)
    assert out.read_bytes() == (tmp_path / "a.npz").read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["b.npz"]
    # A job that fails half way (here, before its save) leaves no spool and no chunk behind.
    failed = tmp_path / "failed" / "c.npz"
    with pytest.raises(RuntimeError, match="draw 3 failed"), SpooledRows(failed, dtype=np.uint8) as spool:
        spool.append(np.ones(1_000_000, np.uint8))
        raise RuntimeError("draw 3 failed")
    assert list(failed.parent.iterdir()) == []
    rows = npz_rows(out, "x")
    assert isinstance(rows, NpyRows) and rows.shape == (11, 3) and len(rows) == 11
    whole = np.load(tmp_path / "a.npz")["x"]
    for a, b in [(0, 11), (3, 9), (10, 11), (5, 5), (-3, None)]:
        assert np.array_equal(rows[a:b], whole[a:b])
    assert np.array_equal(np.asarray(rows), whole)
    assert npz_rows(out, "empty")[0:0].shape == (0, 3)
    assert npz_rows(out, "absent") is None
    with pytest.raises(TypeError, match="contiguous slices"):
        rows[::2]
    np.savez_compressed(tmp_path / "c.npz", x=whole)
    assert npz_rows(tmp_path / "c.npz", "x") is None  # compressed: read whole by numpy instead


def test_samples_dict_order_is_respected_by_msprime_backend():
    import msprime

    from popdl.simulators import get_simulator

    graph = {"time_units": "generations", "demes": [
        {"name": "anc", "epochs": [{"start_size": 1000, "end_time": 50}]},
        {"name": "z", "ancestors": ["anc"], "epochs": [{"start_size": 1000}]},
        {"name": "a", "ancestors": ["anc"], "epochs": [{"start_size": 1000}]},
    ]}
    config = prepare(tiny_config(samples={"a": 2, "z": 3}, scenarios={"s": {"graph": graph, "priors": {}}}),
                     base_dirs=(REPO,))
    sc = Scenario.from_config("s", config)
    sim = get_simulator("msprime", genome=config["genome"], samples=config["samples"])
    g = sim.simulate(sc, {}, {"seed_ancestry": 3, "seed_mutation": 4})
    # The same draw by hand, samples taken population by population.
    import demes

    demography = msprime.Demography.from_demes(demes.Graph.fromdict(graph))
    ts = msprime.sim_ancestry({"a": 2, "z": 3}, demography=demography, sequence_length=config["genome"]["length"],
                              recombination_rate=1e-8, random_seed=3)
    ts = msprime.sim_mutations(ts, rate=1e-8, model=msprime.BinaryMutationModel(), discrete_genome=False,
                               random_seed=4)
    order = np.concatenate([ts.samples(population=2), ts.samples(population=1)])
    assert np.array_equal(g.genotypes, ts.genotype_matrix(samples=order))
    assert math.isclose(g.positions.sum(), ts.sites_position.sum())


def test_simulated_arrays_do_not_keep_tree_sequences_alive():
    """Each draw's arrays own their memory: a chunk of thousands of draws stays small."""
    from popdl.simulators import get_simulator

    for loci in (1, 3):
        config = one_pop_config({"N": 5000}, loci=loci, length=5000, mutation_rate=2e-8)
        sc = Scenario.from_config("s", config)
        sim = get_simulator("msprime", genome=config["genome"], samples=config["samples"])
        g = sim.simulate(sc, {"N": 5000.0}, {"seed_ancestry": 1, "seed_mutation": 2})
        assert g.positions.size > 0
        for array in (g.genotypes, g.positions, g.locus):
            assert array.base is None or isinstance(array.base, np.ndarray) and array.base.base is None
