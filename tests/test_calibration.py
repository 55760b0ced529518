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
    assert out["kept"] and out["temperature"] == out["fitted"] == pytest.approx(2.5, rel=0.15)
    assert out["nll_after"] < out["nll_before"] and out["ece_after"] <= out["ece_before"]
    assert out["n"] == 3000 and not out["at_bound"]


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
