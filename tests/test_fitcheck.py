"""The fit check (a posterior predictive check): its p-value holds under a fitting answer, and
it draws parameter sets from the network's quantiles within the scenario's priors and constraints."""

from __future__ import annotations

import numpy as np
import pytest

from popdl.config import prepare
from popdl.fitcheck import parameter_draws, score_fit
from popdl.scenarios import Scenario

from conftest import REPO, tiny_config


def test_the_joint_p_value_is_uniform_when_the_data_are_one_more_replicate():
    """Correlated statistics (a shared factor): an observed vector drawn as the replicates are gets
    p < 0.05 about 5 % of the time; one shifted on a third of them gets the smallest p-value."""
    rng = np.random.default_rng(1)
    names = [f"s{j}" for j in range(30)]

    def draw(n):
        shared = rng.normal(size=(n, 1))
        return shared + 0.5 * rng.normal(size=(n, len(names)))

    null = [score_fit(draw(1)[0], draw(100), names) for _ in range(300)]
    p = np.array([r["p_value"] for r in null])
    assert 0.02 <= (p < 0.05).mean() <= 0.09 and 0.4 <= np.median(p) <= 0.6
    # Both tests at 0.01: the check's false alarms stay near 2 % at most.
    assert np.mean([not r["fits"] for r in null]) <= 0.04 and np.mean([r["p_outside"] < 0.01 for r in null]) <= 0.025
    shifted = draw(1)[0]
    shifted[:10] += 6.0
    result = score_fit(shifted, draw(100), names)
    assert not result["fits"] and result["p_value"] == pytest.approx(1 / 101)
    assert {w["statistic"] for w in result["worst"][:3]} == {"s0", "s1", "s2"} and set(result["outside"]) >= {"s0", "s1"}
    assert "does not reproduce the data" in result["summary"] and "Tajima" not in result["summary"]
    # Tajima's D below every replicate among the statistics: the summary names growth and the overlay.
    tajima = [f"tajimas_d_pop{j}" if j < 2 else name for j, name in enumerate(names)]
    shifted[0] = -40.0
    summary = score_fit(shifted, draw(100), tajima)["summary"]
    assert ("; Tajima's D below every replicate in pop0 (more rare variants than any replicate): population growth"
            in summary and "config/overlays/growth.yaml" in summary), summary


def test_many_statistics_outside_the_replicates_fail_the_check_where_the_components_miss_them():
    """72 nearly independent statistics, 100 replicates: the joint distance keeps 10 components, and 12
    statistics shifted by 3.5 standard deviations often escape it; counted against the replicates' own
    outside-counts, they fail the check every time."""
    rng = np.random.default_rng(7)
    names = [f"s{j}" for j in range(72)]

    def draw(n):
        return 0.3 * rng.normal(size=(n, 1)) + rng.normal(size=(n, 72))

    results = []
    for _ in range(10):
        obs = draw(1)[0]
        obs[::6] += 3.5 * np.sign(rng.normal(size=12))
        results.append(score_fit(obs, draw(100), names))
    assert all(not r["fits"] and r["p_outside"] < 0.01 for r in results)
    missed = [r for r in results if r["p_value"] >= 0.01]
    assert missed, [r["p_value"] for r in results]  # the joint distance alone would have passed these
    assert "statistics outside the replicates' range, more than for 99.0% of the replicates (p = 0.0099 < 0.01)" \
        in missed[0]["summary"] and "farther from its replicates" not in missed[0]["summary"], missed[0]["summary"]


def test_a_statistic_equal_to_the_simulations_but_for_float32_rounding_is_within_them():
    """An r² of 1 in a population of one individual: the simulations' 1.0 (stored as float32) and the data's
    1.0 computed otherwise in float64 differ in the 9th digit.  Neither the fit check nor the prior check
    counts that as beyond every simulation; a real difference (1e-3) still is."""
    from popdl.priorcheck import score_prior

    rng = np.random.default_rng(3)
    names = [f"s{j}" for j in range(6)] + ["ld_pop2_1", "ld_pop2_2"]
    reps = np.column_stack([rng.normal(size=(60, 6)), np.ones((60, 2))]).astype(np.float32)
    obs = np.concatenate([reps[0, :6].astype(np.float64) + 0.01, [1.0 + 3e-9, 1.0 - 2e-8]])
    fit = score_fit(obs, reps, names)
    assert fit["fits"] and fit["outside"] == [], fit["summary"]
    prior = score_prior(obs, reps, names)
    assert prior["outside"] == [] and not prior["warn"]
    obs[-1] = 1.001
    assert score_fit(obs, reps, names)["outside"] == ["ld_pop2_2"]
    assert [o["statistic"] for o in score_prior(obs, reps, names)["outside"]] == ["ld_pop2_2"]


def test_parameter_draws_follow_the_quantiles_within_priors_and_constraints():
    config = prepare(tiny_config(), base_dirs=(REPO,))
    scenario = Scenario.from_config("secondary_contact", config)
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    answer = {"levels": levels, "params": {
        "N1": {"quantiles": [2000, 3000, 4000, 5000, 7000]},
        "T_split": {"quantiles": [5000, 8000, 10000, 12000, 15000]},
        "f_sc": {"quantiles": [0.01, 0.02, 0.03, 0.05, 0.4]},  # beyond f_sc's prior at both ends
    }}
    draws = parameter_draws(scenario, answer, n=400, rng=np.random.default_rng(3))
    assert list(draws.columns) == scenario.parameter_names and len(draws) == 400
    assert draws.equals(parameter_draws(scenario, answer, n=400, rng=np.random.default_rng(3)))
    assert 3600 < draws["N1"].median() < 4400 and draws["N1"].between(2000, 7000).all()
    # Levels are drawn uniformly between the outer two: P(N1 < its 0.25 quantile) = (0.25 - 0.05) / 0.9.
    assert abs((draws["N1"] < 3000).mean() - (0.25 - 0.05) / 0.9) < 0.05
    low, high = scenario.priors["f_sc"].bounds
    assert draws["f_sc"].between(low, high).all() and (draws["f_sc"] == low).any()
    assert np.allclose(draws["T_sc"], draws["f_sc"] * draws["T_split"])  # derived by its expression
    assert (draws["T_sc"] < draws["T_split"]).all()
    # A parameter without quantiles takes its prior.
    n_anc = scenario.priors["N_anc"].bounds
    assert draws["N_anc"].between(*n_anc).all() and draws["N_anc"].std() > 0.2 * (n_anc[1] - n_anc[0])
