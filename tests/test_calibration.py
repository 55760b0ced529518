"""Temperature scaling: fitted on held-out logits, kept only where it helps, bounds reported."""

from __future__ import annotations

import numpy as np
import pytest


def _sample(rng, logits, temperature):
    p = np.exp(logits / temperature)
    p /= p.sum(1, keepdims=True)
    return np.array([rng.choice(p.shape[1], p=row) for row in p])


def test_temperature_fit_recovers_a_known_temperature():
    from popdl.calibration import fit_temperature

    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(4000, 3))
    labels = _sample(rng, logits, 2.0)
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)


def test_overconfident_logits_get_a_temperature_that_lowers_nll_and_ece():
    from popdl.calibration import calibrate

    rng = np.random.default_rng(2)
    logits = rng.normal(scale=4.0, size=(3000, 3))
    labels = _sample(rng, logits, 2.5)  # the logits are 2.5 times too confident
    out = calibrate(logits, labels)
    assert out["fitted"] == pytest.approx(2.5, rel=0.1)
    # The end of the confidence interval nearest 1 is used; with 3,000 examples it lies near the fit.
    assert out["kept"] and out["temperature"] == out["confidence_end"] == pytest.approx(2.5, rel=0.15)
    assert 1.0 < out["temperature"] < out["fitted"]
    assert out["nll_after"] < out["nll_before"] and out["ece_after"] <= out["ece_before"]
    assert out["n"] == 3000 and not out["at_bound"]


def test_the_temperature_used_is_the_end_of_its_confidence_interval_nearest_one():
    from scipy.stats import chi2

    from popdl.calibration import calibrate, confidence_end, negative_log_likelihood

    rng = np.random.default_rng(7)
    logits = rng.normal(scale=4.0, size=(225, 3))  # a calibration part of the default config's size
    labels = _sample(rng, logits, 1.6)
    out = calibrate(logits, labels)
    t, end, n = out["fitted"], out["confidence_end"], 225
    assert out["p_value"] < 0.05 and 1.0 < end < t
    # At the end, the likelihood-ratio statistic against the fit is the test's critical value ...
    gap = 2 * n * (negative_log_likelihood(logits, labels, end) - negative_log_likelihood(logits, labels, t))
    assert gap == pytest.approx(chi2.isf(0.05, 1), rel=1e-6)
    # ... and every temperature nearer 1 is rejected against the fit.
    for s in np.linspace(1.0, end, 6)[:-1]:
        assert 2 * n * (negative_log_likelihood(logits, labels, s) - negative_log_likelihood(logits, labels, t)) > \
            chi2.isf(0.05, 1)
    assert out["kept"] and out["temperature"] == end and "confidence interval" in out["reason"]
    # Logits the test cannot tell from calibrated keep T = 1 at the interval's end too.
    calibrated = _sample(rng, logits, 1.0)
    assert confidence_end(logits, calibrated, calibrate(logits, calibrated)["fitted"]) == 1.0
    assert confidence_end(logits, labels, 1.0) == 1.0


def test_a_temperature_that_does_not_help_is_not_kept():
    from popdl.calibration import calibrate, negative_log_likelihood

    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(40, 3))
    labels = _sample(rng, logits, 1.0)
    out = calibrate(logits, labels)
    # Whatever the fit found, the temperature used never raises the ECE or the NLL on these examples.
    assert out["ece_after"] <= out["ece_before"] and out["nll_after"] <= out["nll_before"]
    if not out["kept"]:
        assert out["temperature"] == 1.0 and "T = 1" in out["reason"]
        assert out["nll_after"] == pytest.approx(negative_log_likelihood(logits, labels))


def test_a_fit_that_raises_the_noisy_ece_is_shrunk_towards_one_not_dropped():
    from popdl.calibration import calibrate, negative_log_likelihood, reliability
    from popdl.model_io import softmax

    rng = np.random.default_rng(19)
    logits = rng.normal(scale=4.0, size=(225, 3))  # a calibration part of the default config's size
    labels = _sample(rng, logits, 1.5)
    out = calibrate(logits, labels)
    assert out["p_value"] < 0.05  # the fitted temperature is more than noise
    end = out["confidence_end"]
    assert out["shrunk"] and 1.0 < out["temperature"] < end < out["fitted"]
    # The interval's end would raise the ECE here.
    assert reliability(labels, softmax(logits, end))["ece"] > out["ece_before"]
    t = out["temperature"]
    assert negative_log_likelihood(logits, labels, t) == pytest.approx(out["nll_after"])
    assert reliability(labels, softmax(logits, t))["ece"] == pytest.approx(out["ece_after"])
    assert out["nll_after"] < out["nll_before"] and out["ece_after"] <= out["ece_before"]
    # No temperature nearer the fitted one on the same path does both.
    steps = [end ** (j / 20) for j in range(19, 0, -1)]
    for s in steps[: steps.index(t)]:
        assert (negative_log_likelihood(logits, labels, s) >= out["nll_before"]
                or reliability(labels, softmax(logits, s))["ece"] > out["ece_before"])


def test_a_temperature_the_likelihood_ratio_test_cannot_tell_from_one_is_not_used():
    from scipy.stats import chi2

    from popdl.calibration import calibrate, likelihood_ratio_p, negative_log_likelihood

    rng = np.random.default_rng(5)
    logits = rng.normal(scale=4.0, size=(225, 3))
    labels = _sample(rng, logits, 1.0)  # calibrated logits: any fitted T != 1 is noise
    out = calibrate(logits, labels)
    assert out["fitted"] != 1.0 and out["p_value"] >= 0.05
    assert out["temperature"] == 1.0 and not out["kept"] and "likelihood-ratio" in out["reason"]
    assert out["nll_after"] == out["nll_before"] and out["ece_after"] == out["ece_before"]
    # The p-value is that of a chi-squared with one degree of freedom.
    gain = negative_log_likelihood(logits, labels) - negative_log_likelihood(logits, labels, out["fitted"])
    assert out["p_value"] == pytest.approx(chi2.sf(2 * 225 * gain, 1), rel=1e-6)
    assert likelihood_ratio_p(0.5, 0.5 - 3.841458820694124 / 450, 225) == pytest.approx(0.05, rel=1e-6)
    assert likelihood_ratio_p(0.5, 0.6, 225) == 1.0


def test_a_temperature_at_its_bound_is_flagged(caplog):
    from popdl.calibration import TEMPERATURE_BOUNDS, calibrate

    rng = np.random.default_rng(4)
    logits = rng.normal(scale=50.0, size=(500, 3))
    labels = rng.integers(0, 3, size=500)  # the logits carry no information: T runs to its upper bound
    with caplog.at_level("WARNING", logger="popdl.calibration"):
        out = calibrate(logits, labels)
    assert out["at_bound"] and out["fitted"] == pytest.approx(TEMPERATURE_BOUNDS[1], rel=0.01)
    assert "at its bound" in caplog.text


def test_no_calibration_examples_keep_temperature_one():
    from popdl.calibration import calibrate

    out = calibrate(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert out["temperature"] == 1.0 and not out["kept"] and out["n"] == 0


# ---------------------------------------------------------------------------- conformal intervals


def _naive_offset(lo, hi, y, nominal):
    """The conformal offset written out: the ceil((n+1) nominal)-th smallest score."""
    scores = sorted(max(a - v, v - b) for a, b, v in zip(lo, hi, y))
    k = min(len(scores), int(np.ceil((len(scores) + 1) * nominal)))
    return scores[k - 1]


def test_interval_offsets_match_the_naive_rule_and_reach_the_nominal_coverage():
    from popdl.calibration import interval_offsets
    from popdl.model_io import apply_interval_offsets

    rng = np.random.default_rng(5)
    n = 400
    centre = rng.normal(size=(n, 2))
    y = centre + rng.normal(size=(n, 2))  # true spread 1: the +-0.5 intervals are far too narrow
    y[: n // 2, 1] = np.nan  # the second parameter exists in half the examples only
    q = np.stack([centre - 0.5, centre, centre + 0.5], axis=-1)
    out = interval_offsets(q, y, levels=(0.05, 0.5, 0.95), param_names=["a", "b"])
    assert out["n"] == {"a": n, "b": n // 2}
    for j, name in enumerate("ab"):
        has = np.isfinite(y[:, j])
        expected = _naive_offset(q[has, j, 0], q[has, j, 2], y[has, j], 0.9)
        assert out["offsets"][name] == pytest.approx(expected)
        assert out["coverage_before"][name] < 0.5 and 0.9 <= out["coverage_after"][name] <= 0.93
    moved = apply_interval_offsets(q, [out["offsets"]["a"], out["offsets"]["b"]])
    np.testing.assert_array_equal(moved[:, :, 1], q[:, :, 1])  # the estimate stays
    inside = (y[:, 0] >= moved[:, 0, 0]) & (y[:, 0] <= moved[:, 0, 2])
    assert inside.mean() == pytest.approx(out["coverage_after"]["a"])


def test_too_wide_intervals_are_narrowed_but_never_past_the_estimate():
    from popdl.calibration import interval_offsets
    from popdl.model_io import apply_interval_offsets

    rng = np.random.default_rng(6)
    centre = rng.normal(size=(300, 1))
    y = centre + 0.1 * rng.normal(size=(300, 1))
    q = np.stack([centre - 5, centre, centre + 5], axis=-1)
    out = interval_offsets(q, y, levels=(0.05, 0.5, 0.95), param_names=["a"])
    assert out["offsets"]["a"] < -4 and out["coverage_after"]["a"] >= 0.9
    moved = apply_interval_offsets(q, [-100.0])  # an absurd offset cannot cross the estimate
    assert np.all(moved[:, :, 0] <= moved[:, :, 1]) and np.all(moved[:, :, 1] <= moved[:, :, 2])
    # Narrowed past the inner quantiles, the interval keeps its bounds and the quantiles stay sorted.
    five = np.stack([centre - 5, centre - 1, centre, centre + 1, centre + 5], axis=-1)
    moved = apply_interval_offsets(five, [-4.5])
    assert np.allclose(moved[:, :, 0], centre - 0.5) and np.allclose(moved[:, :, -1], centre + 0.5)
    assert np.all(np.diff(moved, axis=-1) >= 0) and np.allclose(moved[:, :, 2], centre)


def test_too_few_held_out_examples_leave_the_interval_alone():
    from popdl.calibration import MIN_CONFORMAL_EXAMPLES, interval_offsets

    q = np.zeros((MIN_CONFORMAL_EXAMPLES - 1, 1, 3))
    out = interval_offsets(q, np.ones((MIN_CONFORMAL_EXAMPLES - 1, 1)), levels=(0.05, 0.5, 0.95), param_names=["a"])
    assert out["offsets"] == {"a": 0.0} and out["coverage_after"] == {}


def _members(rng, n, k, *, spread):
    """Quantiles (k, n, 1, 3) of k members whose midpoints scatter by ``spread`` around a centre that
    misses the truth by N(0, 1), with the true values; intervals +-1.645 x the members' own error."""
    centre = rng.normal(size=(n, 1))
    y = centre + rng.normal(size=(n, 1))
    mids = centre[None] + spread * rng.normal(size=(k, n, 1))
    half = 1.645 * np.sqrt(1 + spread ** 2)
    return np.stack([mids - half, mids, mids + half], axis=-1), y


LEVELS = (0.05, 0.5, 0.95)


def _narrowed(rng, *, spread, n_oof, n_held, k):
    """Cross-conformal offsets of single members (``n_oof`` out-of-fold examples), then narrowed for the
    average of ``k`` members on ``n_held`` calibration examples: ``(record, narrowed, (oof_q, oof_y))``."""
    from popdl.calibration import ensemble_narrowing, interval_offsets

    oof_q, oof_y = _members(rng, n_oof, 1, spread=spread)
    record = interval_offsets(oof_q[0], oof_y, levels=LEVELS, param_names=["a"])
    held_q, held_y = _members(rng, n_held, k, spread=spread)
    out = ensemble_narrowing(record, oof_q[0], oof_y, members=held_q, ensemble=held_q.mean(axis=0), true=held_y,
                             levels=LEVELS, param_names=["a"])
    return record, out, (oof_q, oof_y)


def test_an_ensemble_s_intervals_are_narrowed_to_the_nominal_coverage():
    """Cross-conformal offsets fit single members; the average of 8 members is more accurate, so those
    offsets over-cover.  Narrowed by the gain measured on a calibration part, the ensemble's intervals cover
    the nominal 90 % of new data, not the ~97 % they did."""
    from popdl.calibration import interval_offsets

    rng = np.random.default_rng(11)
    record, out, (oof_q, oof_y) = _narrowed(rng, spread=1.0, n_oof=4000, n_held=600, k=8)
    e = out["ensemble"]["a"]
    assert e["n"] == 600 and e["coverage_gain"] > 3 * e["standard_error"] > 0
    assert e["gain_used"] > 0 and out["offsets"]["a"] < record["offsets"]["a"]
    assert record["offsets"] == interval_offsets(oof_q[0], oof_y, levels=LEVELS, param_names=["a"])["offsets"]
    new_q, new_y = _members(rng, 20000, 8, spread=1.0)
    ens = new_q.mean(axis=0)

    def coverage(offset):
        return float(((new_y[:, 0] >= ens[:, 0, 0] - offset) & (new_y[:, 0] <= ens[:, 0, 2] + offset)).mean())

    assert coverage(record["offsets"]["a"]) > 0.95
    assert 0.89 <= coverage(out["offsets"]["a"]) <= 0.93


def test_an_ensemble_of_identical_members_or_too_few_examples_keeps_its_offsets():
    from popdl.calibration import MIN_CONFORMAL_EXAMPLES

    rng = np.random.default_rng(12)
    record, out, _ = _narrowed(rng, spread=0.0, n_oof=2000, n_held=500, k=4)
    assert out["offsets"] == record["offsets"] and out["ensemble"]["a"]["coverage_gain"] == 0
    assert out["ensemble"]["a"]["gain_used"] == 0 and out["ensemble"]["a"]["offset_change"] == 0
    record, out, _ = _narrowed(rng, spread=1.0, n_oof=2000, n_held=MIN_CONFORMAL_EXAMPLES - 1, k=8)
    assert out["offsets"] == record["offsets"] and out["ensemble"] == {}


# ---------------------------------------------------------------------------- point estimates


def test_the_estimate_is_the_mean_of_midpoint_quantiles_else_the_median():
    from scipy import stats

    from popdl.model_io import midpoint_levels, point_estimate

    levels = [(k + 0.5) / 10 for k in range(10)]
    assert midpoint_levels(levels) and not midpoint_levels([0.05, 0.5, 0.95])
    # A skewed posterior (exponential, mean 1, median log 2): the midpoint rule is near the mean.
    q = stats.expon.ppf(levels)[None, None, :]
    assert point_estimate(q, levels)[0, 0] == pytest.approx(1.0, abs=0.06)
    three = stats.expon.ppf([0.05, 0.5, 0.95])[None, None, :]
    assert point_estimate(three, [0.05, 0.5, 0.95])[0, 0] == pytest.approx(np.log(2))
    # The mean estimate has the smaller squared error over draws from the posterior.
    draws = stats.expon.rvs(size=20000, random_state=1)
    assert ((draws - point_estimate(q, levels)[0, 0]) ** 2).mean() < ((draws - np.log(2)) ** 2).mean()


def test_probabilities_for_people_never_read_one_or_zero_unless_they_are():
    from popdl.calibration import probability_text

    assert [probability_text(p) for p in (0.99999, 0.9996, 0.9994, 0.5, 0.0123, 0.0006, 0.0004, 5.82e-06)] == [
        "> 0.999", "> 0.999", "0.999", "0.500", "0.012", "0.001", "< 0.001", "< 0.001"]
    assert (probability_text(1.0), probability_text(0.0), probability_text(float("nan"))) == ("1", "0", "–")
