"""ABC baselines (rejection + local-linear adjustment, ABC-RF) and the misspecification check."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from popdl.abc import (
    RandomForestABC,
    ReferenceTable,
    RejectionABC,
    comparison_table,
    epanechnikov,
    get_method,
    qrf_weights,
    run_abc,
    score,
    weighted_quantile,
)
from popdl.misspec import Misspecification, pca_figure

from conftest import REPO


def toy(n: int, *, seed: int, noise: float = 0.3) -> ReferenceTable:
    """Two scenarios; parameter a (both) and b (scenario 1 only); 4 statistics, one constant."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    a = rng.uniform(0, 1, n)
    b = np.where(labels == 1, 10 ** rng.uniform(0, 2, n), np.nan)
    s = np.column_stack([
        a + noise * rng.normal(size=n),
        labels + noise * rng.normal(size=n),
        np.where(labels == 1, np.log10(b), 0) + noise * rng.normal(size=n),
        np.ones(n),
    ])
    return ReferenceTable(s, labels, np.column_stack([a, b]), scenarios=["one", "two"], param_names=["a", "b"],
                          stat_names=["s1", "s2", "s3", "const"], log_scale=[False, True])


def test_weighted_quantile_matches_numpy_for_equal_weights():
    x = np.random.default_rng(0).normal(size=(3, 101))
    got = weighted_quantile(x, np.ones_like(x), [0.05, 0.5, 0.95])
    np.testing.assert_allclose(got, np.quantile(x, [0.05, 0.5, 0.95], axis=1, method="hazen").T)
    # Weight 0 removes a value.
    assert weighted_quantile(np.array([1.0, 2.0, 100.0]), np.array([1.0, 1.0, 0.0]), [1.0])[0] == 2.0


def test_epanechnikov():
    w = epanechnikov(np.array([[0.0, 0.5, 1.0]]), np.array([1.0]))
    np.testing.assert_allclose(w, [[1.0, 0.75, 1e-6]])


def naive_qrf_weights(train_leaves: np.ndarray, target_leaves: np.ndarray) -> np.ndarray:
    """Slow, obviously right version of :func:`popdl.abc.qrf_weights`."""
    n_t, n_trees = target_leaves.shape
    w = np.zeros((n_t, train_leaves.shape[0]))
    for i in range(n_t):
        for t in range(n_trees):
            same = train_leaves[:, t] == target_leaves[i, t]
            w[i] += same / same.sum() if same.any() else 0.0
    return w / n_trees


def test_qrf_weights_equal_naive_version():
    rng = np.random.default_rng(1)
    train, target = rng.integers(0, 7, size=(50, 9)), rng.integers(0, 7, size=(6, 9))
    np.testing.assert_allclose(qrf_weights(train, target), naive_qrf_weights(train, target))


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: rejection, abc_rf"):
        get_method("neural")


@pytest.mark.parametrize("method", [RejectionABC(tolerance=0.1), RandomForestABC(trees=50, seed=1)], ids=["rejection", "abc_rf"])
def test_methods_recover_toy_truth(method):
    ref, test = toy(3000, seed=1), toy(300, seed=2)
    m = score(method.fit(ref).predict(test.stats, interval=0.9), test, interval=0.9)
    assert m["accuracy"] > 0.85
    assert m["params"]["a"]["r2"] > 0.4 and m["params"]["b"]["r2"] > 0.4
    assert m["params"]["b"]["n"] == int((test.labels == 1).sum())  # scored where the scenario has b
    for p in ("a", "b"):
        assert 0.75 < m["params"][p]["coverage"] <= 1.0, (p, m["params"][p])


def test_regression_adjustment_beats_plain_rejection():
    ref, test = toy(3000, seed=3, noise=0.05), toy(300, seed=4, noise=0.05)
    plain = score(RejectionABC(tolerance=0.5, adjust=False).fit(ref).predict(test.stats), test, interval=0.9)
    adjusted = score(RejectionABC(tolerance=0.5).fit(ref).predict(test.stats), test, interval=0.9)
    assert adjusted["params"]["a"]["rmse"] < 0.5 * plain["params"]["a"]["rmse"]


def test_run_abc_on_the_tiny_dataset(tiny_dataset, tmp_path):
    ref_stats = np.load(next((tiny_dataset / "test").glob("shard-*")) / "stats.npy")
    metrics = run_abc(tiny_dataset, tmp_path / "abc", trees=20, observed={"obs": ref_stats[0].astype(float)},
                      config_hash="0123456789abcdef")
    assert set(metrics["methods"]) == {"rejection", "abc_rf"}
    for m in metrics["methods"].values():
        assert 0 <= m["accuracy"] <= 1 and np.array(m["confusion"]).sum() == metrics["n_test"]
        assert {"N1", "T_split"} <= set(m["params"])
    assert json.loads((tmp_path / "abc" / "metrics.json").read_text())["n_test"] == metrics["n_test"]
    table = pd.read_csv(tmp_path / "abc" / "test_predictions.tsv", sep="\t")
    assert len(table) == metrics["n_test"] and "abc_rf_p_isolation" in table
    assert json.loads((tmp_path / "abc" / "empirical.json").read_text())["provenance"]["config_hash"] == \
        metrics["provenance"]["config_hash"] == "0123456789abcdef"
    emp = json.loads((tmp_path / "abc" / "empirical.json").read_text())["data"]["obs"]
    for answer in emp.values():
        assert sum(answer["probabilities"].values()) == pytest.approx(1)
        n1 = answer["params"]["N1"]
        assert n1["lower"] <= n1["estimate"] <= n1["upper"] and 500 < n1["estimate"] < 60000  # natural units


def test_abc_cli(tiny_dataset, tmp_path):
    settings = json.dumps({"seed": 1, "abc": {"tolerance": 0.2, "trees": 10, "min_samples_leaf": 2, "interval": 0.9}})
    proc = subprocess.run([sys.executable, "-m", "popdl", "abc", "--settings", settings, "--dataset", str(tiny_dataset),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "metrics.json").is_file()


def test_abc_intervals_lie_within_the_priors_support(tiny_dataset):
    from popdl.abc import get_method, load_reference

    ref = load_reference(tiny_dataset, ("train", "validation"))
    test = load_reference(tiny_dataset, ("test",))
    priors = json.loads((tiny_dataset / "manifest.json").read_text())["priors"]
    for name, kwargs in (("rejection", {"tolerance": 0.2}), ("abc_rf", {"trees": 20})):
        pred = get_method(name, **kwargs).fit(ref).predict(test.stats)
        for j, p in enumerate(ref.param_names):
            lo, hi = priors[p]["bounds"]
            if not np.isfinite([lo, hi]).all():  # derived: the range of the reference values
                lo, hi = np.nanmin(ref.params[:, j]), np.nanmax(ref.params[:, j])
            if ref.log_scale[j]:
                lo, hi = np.log10(lo), np.log10(hi)
            for key in ("lower", "estimate", "upper"):
                v = pred[key][:, j]
                assert (v[np.isfinite(v)] >= lo - 1e-12).all() and (v[np.isfinite(v)] <= hi + 1e-12).all(), (name, p, key)


def test_who_won_names_the_winner_and_margin_per_task():
    from popdl.abc import who_won

    abc = {"param_names": ["a", "b"], "methods": {
        "rejection": {"label": "rejection ABC", "accuracy": 0.70, "params": {"a": {"r2": 0.2}, "b": {"r2": 0.1}}},
        "abc_rf": {"label": "ABC-RF", "accuracy": 0.80, "params": {"a": {"r2": 0.5}, "b": {"r2": 0.3}}}}}
    evaluation = {"classification": {"accuracy": 0.85}, "regression": {"a": {"r2": 0.45}, "b": {"r2": 0.6}}}
    got = {v["task"]: v for v in who_won(abc, evaluation)}
    assert list(got) == ["scenario", "a", "b"]
    assert got["scenario"]["winner"] == "network" and got["scenario"]["margin"] == pytest.approx(0.05)
    assert got["a"]["winner"] == "ABC-RF" and got["a"]["margin"] == pytest.approx(0.05)
    assert got["b"]["values"] == {"network": 0.6, "rejection ABC": 0.1, "ABC-RF": 0.3}
    assert who_won(abc, {})[0]["winner"] == "ABC-RF"  # no network evaluation: the ABC methods only
    tie = who_won(abc, {"classification": {"accuracy": 0.80}})[0]
    assert tie["winner"] == "tie" and tie["tied"] == ["network", "ABC-RF"] and tie["margin"] == 0


def test_paired_differences_tell_a_real_lead_from_the_test_sets_noise():
    from popdl.abc import paired_differences, who_won

    rng = np.random.default_rng(3)
    n, scenarios = 400, ["one", "two"]
    labels = rng.integers(0, 2, n)
    truth = 10 ** rng.uniform(3, 4, n)  # a log-uniform parameter: R² on log10
    onehot = np.eye(2)[labels]
    network = pd.DataFrame({"label": labels, "p_one": onehot[:, 0], "p_two": onehot[:, 1],  # always right
                            "a": truth * 10 ** rng.normal(0, 0.05, n), "true_a": truth})
    guess = np.where(rng.random(n) < 0.8, labels, 1 - labels)  # right 80 % of the time
    abc_table = pd.DataFrame({"label": labels, "abc_rf_p_one": (guess == 0) * 1.0, "abc_rf_p_two": (guess == 1) * 1.0,
                              "abc_rf_a": np.log10(network["a"])})  # the network's very estimates, on log10
    y = np.log10(truth)
    r2 = 1 - ((y - abc_table["abc_rf_a"]) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    metrics = {"scenarios": scenarios, "param_names": ["a"], "methods": {"abc_rf": {
        "label": "ABC-RF", "accuracy": float((guess == labels).mean()), "params": {"a": {"r2": r2, "scale": "log10"}}}}}
    paired = paired_differences(network, abc_table, metrics, rng=np.random.default_rng(0), draws=500)
    lead = paired["scenario"]["ABC-RF"]
    assert lead["difference"] == pytest.approx(1 - (guess == labels).mean()) and 0 < lead["ci"][0] < lead["ci"][1]
    same = paired["a"]["ABC-RF"]  # equal estimates: no difference in any resample
    assert same["difference"] == pytest.approx(0, abs=1e-12) and same["ci"] == pytest.approx([0, 0], abs=1e-12)
    again = paired_differences(network, abc_table, metrics, rng=np.random.default_rng(0), draws=500)
    assert again == paired  # reproducible under the seed
    evaluation = {"classification": {"accuracy": 1.0}, "regression": {"a": {"r2": r2}}}
    verdicts = {v["task"]: v["versus"] for v in who_won(metrics, evaluation, paired)}
    assert verdicts["scenario"]["verdict"] == "network" and verdicts["scenario"]["method"] == "ABC-RF"
    # Noisy estimates on both sides, one a little better: the interval holds 0, a level verdict.
    noisy = network.assign(a=truth * 10 ** rng.normal(0, 0.30, n))
    other = abc_table.assign(abc_rf_a=y + rng.normal(0, 0.31, n))
    metrics["methods"]["abc_rf"]["params"]["a"]["r2"] = float(
        1 - ((y - other["abc_rf_a"]) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    level = paired_differences(noisy, other, metrics, rng=np.random.default_rng(0), draws=500)["a"]["ABC-RF"]
    assert level["ci"][0] < 0 < level["ci"][1]
    evaluation["regression"]["a"]["r2"] = 0.0  # shown values do not decide the verdict: the interval does
    versus = {v["task"]: v.get("versus") for v in who_won(metrics, evaluation, {"a": {"ABC-RF": level}})}["a"]
    assert versus["verdict"] == "level" and versus["ci"] == level["ci"]
    worse = {"difference": -0.2, "ci": [-0.3, -0.1]}
    versus = {v["task"]: v.get("versus") for v in who_won(metrics, evaluation, {"a": {"ABC-RF": worse}})}["a"]
    assert versus["verdict"] == "ABC-RF"
    # Values that do not recompute from the tables (other simulations): that task gets no interval.
    metrics["methods"]["abc_rf"]["accuracy"] = 0.5
    assert "scenario" not in paired_differences(network, abc_table, metrics, rng=np.random.default_rng(0), draws=50)
    with pytest.raises(ValueError, match="not the same simulations"):
        paired_differences(network.iloc[::-1], abc_table, metrics, rng=np.random.default_rng(0))


def test_comparison_table():
    abc = {"param_names": ["a"], "methods": {"rejection": {"label": "rejection ABC", "accuracy": 0.5, "params": {"a": {"r2": 0.2, "coverage": 0.9}}},
                                             "abc_rf": {"label": "ABC-RF", "accuracy": 0.6, "params": {}}}}
    t = comparison_table(abc, {"accuracy": 0.7, "params": {"a": {"r2": 0.5, "coverage": 0.88}}})
    assert t["method"].tolist() == ["network", "rejection ABC", "ABC-RF"]
    assert t.loc[0, "r2_a"] == 0.5 and np.isnan(t.loc[2, "coverage_a"])
    assert comparison_table(abc, None)["method"].tolist() == ["rejection ABC", "ABC-RF"]


def test_misspecification_flags_data_outside_the_simulations():
    ref = toy(2000, seed=5)
    check = Misspecification(ref.stats, stat_names=ref.stat_names, labels=ref.labels, scenarios=ref.scenarios)
    inside = toy(200, seed=6)
    flags = [check.score(s)["flagged"] for s in inside.stats]
    assert np.mean(flags) < 0.1
    far = check.score(np.array([5.0, 0.5, 1.0, 1.0]))
    assert far["flagged"] and far["outside_range"] == ["s1"] and far["p_value"] < 0.01
    assert far["quantiles"]["s1"] == 1.0 and "outside the simulated range: s1" in far["summary"]
    # A constant statistic that differs in the data is outside too.
    assert "const" in check.score(np.array([0.5, 0.5, 1.0, 2.0]))["outside_range"]
    fig = pca_figure(check, {"far": np.array([5.0, 0.5, 1.0, 1.0])}, root_seed=1)
    assert len(fig.axes[0].collections) == 3  # two scenarios + the observed point
