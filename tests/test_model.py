"""Networks, streaming, Optuna workers, the final model and its evaluation.

Real Keras training (1-2 epochs) on the tiny dataset, real Optuna studies on
a real journal file, real worker processes (one of them killed with SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from conftest import REPO, TINY_MLP, tiny_config, write_config

TASKS = ("classify", "regress")
FAST_SPACE = {"batch_size": 16, "dense_layers": 1, "dense_units": 8, "conv_layers": 1, "filters": 4,
              "learning_rate": {"float": [1.0e-3, 1.0e-2], "log": True}, "optimizer": "adam",
              "lr_decay": "none", "l1": 0.0, "l2": 0.0}


def model_settings(stage="tune", **tuning):
    """The tune/train slice of the tiny config with a tiny, fast sweep."""
    from popdl.config import prepare
    from popdl.stages import stage_config

    tune = {"workers": 1, "trials": 2, "max_epochs": 2, "patience": 0, "pruner": "none", "startup_trials": 1,
            "search_space": FAST_SPACE}
    tune.update(tuning)
    config = prepare(tiny_config(network="mlp", tuning=tune), base_dirs=(REPO,))
    return stage_config(config, stage)


def popdl_env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "scripts"), os.environ.get("PYTHONPATH", "")]))


# ---------------------------------------------------------------------------- networks and data


def test_every_network_trains_one_epoch(tiny_dataset):
    import keras

    from popdl.dataset import Dataset
    from popdl.models import NETWORKS, get_network
    from popdl.preprocess import Preprocessor
    from popdl.training import ShardSequence, compile_model, dataset_shapes

    ds = Dataset(tiny_dataset)
    prep = Preprocessor.fit(ds)
    hp = {"learning_rate": 1e-3, "optimizer": "adam", "conv_layers": 2, "filters": 4, "dense_units": 8,
          "batch_norm": True, "l2": 0.001}
    assert {"cnn2d", "cnn1d", "mlp", "cnn2d_stats"} <= set(NETWORKS)
    for name in sorted(NETWORKS):
        net = get_network(name)
        keras.backend.clear_session()
        model = net.build(dataset_shapes(ds), hp=hp, n_classes=3, n_params=len(prep.param_names))
        seq = ShardSequence(ds, "train", batch_size=16, inputs=net.inputs, prep=prep, tasks=TASKS, seed=1)
        compile_model(model, hp, steps_per_epoch=len(seq), epochs=1, quantiles=(0.05, 0.5, 0.95), tasks=TASKS)
        hist = model.fit(seq, epochs=1, verbose=0).history
        assert np.isfinite(hist["loss"][0]), name
        x, _ = seq[0]
        out = model.predict(x, verbose=0)
        assert out["scenario"].shape == (len(x[net.inputs[0]]), 3)
        assert out["params"].shape == (len(x[net.inputs[0]]), len(prep.param_names), 3)


def test_ensemble_averages_its_members_and_round_trips(tmp_path):
    import keras

    from popdl.models import ensemble, get_network

    shapes = {"image": (6, 8), "distances": (8,), "stats": (4,), "populations": ["a"] * 3 + ["b"] * 3}
    hp = {"towers": "separate", "dense_units": 8, "filters": 2, "conv_layers": 1}
    members = [get_network("mlp").build(shapes, hp=hp, n_classes=3, n_params=2, name=f"member{i}") for i in range(3)]
    model = ensemble(members)
    x = {"stats": np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)}
    got = model.predict(x, verbose=0)
    outs = [m.predict(x, verbose=0) for m in members]
    for key in ("scenario", "params"):
        np.testing.assert_allclose(got[key], np.mean([o[key] for o in outs], axis=0), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "e.keras")
    again = keras.saving.load_model(tmp_path / "e.keras", compile=False).predict(x, verbose=0)
    np.testing.assert_allclose(again["params"], got["params"], rtol=1e-6)


def test_unknown_network_lists_valid_ones():
    from popdl.models import get_network

    with pytest.raises(ValueError, match="valid: .*cnn1d.*cnn2d.*mlp"):
        get_network("transformer")


def test_stream_visits_every_example_once_per_epoch(tiny_dataset):
    from popdl.dataset import Dataset
    from popdl.preprocess import Preprocessor
    from popdl.training import ShardSequence, load_arrays

    ds = Dataset(tiny_dataset)
    prep = Preprocessor.fit(ds)
    seq = ShardSequence(ds, ["train", "validation"], batch_size=7, inputs=("stats",), prep=prep, tasks=TASKS, seed=3)
    x_mem, y_mem = load_arrays(ds, ["train", "validation"], inputs=("stats",), prep=prep, tasks=TASKS)
    orders = []
    for _epoch in range(2):
        labels = np.concatenate([seq[i][1]["scenario"] for i in range(len(seq))])
        stats = np.concatenate([seq[i][0]["stats"] for i in range(len(seq))])
        assert len(labels) == ds.size("train") + ds.size("validation")
        assert Counter(labels.tolist()) == Counter(y_mem["scenario"].tolist())
        # The same rows as in memory, in another order.
        key = lambda a: sorted(map(tuple, np.round(a, 5)))  # noqa: E731
        assert key(stats) == key(x_mem["stats"])
        orders.append(stats[:, 0].copy())
        seq.on_epoch_end()
    assert not np.array_equal(orders[0], orders[1])  # reshuffled
    # Batches never cross a shard (memory bounded by one shard).
    assert all(len(rows) <= 7 for _, rows in seq.batches)


def test_augmentation_permutes_haplotypes_within_populations_reproducibly(tiny_dataset):
    from popdl.dataset import Dataset
    from popdl.preprocess import Preprocessor
    from popdl.training import ShardSequence, haplotype_groups, permute_haplotypes

    ds = Dataset(tiny_dataset)
    prep = Preprocessor.fit(ds)
    groups = haplotype_groups(ds)
    assert [g.tolist() for g in groups] == [list(range(8)), list(range(8, 16))]

    def batches(seed, augment, epochs=2):
        seq = ShardSequence(ds, "train", batch_size=8, inputs=("image", "stats"), prep=prep, seed=seed,
                            augment=augment)
        out = []
        for _ in range(epochs):
            out.append([seq[i][0] for i in range(len(seq))])
            seq.on_epoch_end()
        return out

    plain, first, again, other = batches(3, False), batches(3, True), batches(3, True), batches(4, True)
    for epoch in range(2):
        for p, a, b in zip(plain[epoch], first[epoch], again[epoch]):
            np.testing.assert_array_equal(a["image"], b["image"])  # same seed, epoch, batch: same permutation
            np.testing.assert_array_equal(a["stats"], p["stats"])  # same examples, same order
            for rows in groups:  # each example's haplotypes stay within their population
                for x, y in zip(a["image"][:, rows], p["image"][:, rows]):
                    assert sorted(map(bytes, x)) == sorted(map(bytes, y))
    assert any((a["image"] != p["image"]).any() for a, p in zip(first[0], plain[0]))
    # Another seed, epoch or batch draws other permutations of the same images.
    assert not np.array_equal(first[0][0]["image"], other[0][0]["image"])
    image = plain[0][0]["image"]
    draws = [permute_haplotypes(image, groups, seed=3, epoch=e, batch=b) for e, b in ((0, 0), (1, 0), (0, 1))]
    np.testing.assert_array_equal(draws[0], first[0][0]["image"])
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[0], draws[2])


def test_pinball_loss_is_masked_and_matches_numpy():
    import keras

    from popdl.models import pinball_loss

    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 3)).astype("float32")
    y[0, 1] = y[3, 0] = np.nan
    pred = rng.normal(size=(5, 3, 3)).astype("float32")
    q = [0.05, 0.5, 0.95]
    got = keras.ops.convert_to_numpy(pinball_loss(y, pred, q))

    def naive(y, p):
        out = []
        for i in range(len(y)):
            terms = []
            for j in range(y.shape[1]):
                if np.isnan(y[i, j]):
                    continue
                terms.append(np.mean([max(qk * (y[i, j] - p[i, j, k]), (qk - 1) * (y[i, j] - p[i, j, k]))
                                      for k, qk in enumerate(q)]))
            out.append(np.mean(terms))
        return np.array(out)

    np.testing.assert_allclose(got, naive(y, pred), rtol=1e-5)


def test_preprocessor_log_scale_round_trip(tiny_dataset):
    from popdl.dataset import Dataset
    from popdl.preprocess import Preprocessor

    ds = Dataset(tiny_dataset)
    prep = Preprocessor.fit(ds)
    m = ds.manifest
    for j, name in enumerate(prep.param_names):
        if m["priors"][name]["log_scale"]:
            assert prep.log_scale[j], name
    assert not prep.log_scale[prep.param_names.index("N_anc")]  # uniform prior
    params = ds.load("test", ("params",))["params"]
    z = prep.params(params)
    assert np.isnan(z).sum() == np.isnan(params).sum()  # absent parameters stay masked
    back = prep.natural(prep.unstandardise(z))
    # Exact up to the clip at BOUND_EPS of the range from each bound (on the learning
    # scale); a derived parameter's value outside its training range comes back at its edge.
    lo, hi = (np.array([b[k] if b else np.nan for b in prep.bounds]) for k in (0, 1))
    ok = np.isfinite(params)
    want = prep.learning_scale(np.where(np.isfinite(lo), np.clip(params, lo, hi), params))
    span = prep.learning_scale(hi) - prep.learning_scale(lo)
    tol = np.where(np.isfinite(span), 2e-4 * span, 0.0) + 1e-6 * np.abs(want)
    np.testing.assert_array_less(np.abs(prep.learning_scale(back) - want)[ok], (tol + 1e-9)[ok])
    assert np.isnan(back[~ok]).all()
    again = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    np.testing.assert_array_equal(again.params(params), z)


def test_preprocessor_fit_is_exact_below_its_memory_cap_and_samples_rows_above_it(tiny_dataset, monkeypatch):
    """Means and standard deviations come from every row, shard by shard; the skewness and the 1 %
    quantile behind each ε come from every row below FIT_SAMPLE_VALUES, from every k-th row above."""
    import popdl.preprocess as pp
    from popdl.dataset import Dataset

    ds = Dataset(tiny_dataset)
    assert len(ds.manifest["splits"]["train"]["shards"]) > 1  # the accumulation crosses shards
    train = ds.load("train", ("stats",))["stats"].astype(np.float64)
    finite = np.where(np.isfinite(train), train, np.nan)
    full = pp.Preprocessor.fit(ds)
    np.testing.assert_allclose(full.stat_mean, np.nan_to_num(np.nanmean(finite, 0)), rtol=1e-12, atol=1e-12)
    sd = np.nan_to_num(np.nanstd(finite, 0))
    np.testing.assert_allclose(full.stat_std, np.where(sd > 1e-12, sd, 1.0), rtol=1e-9)
    assert full.stat_log_offset == [pp._log_offset(train[:, j]) for j in range(train.shape[1])]
    # A cap of 3 rows' values: every ceil(n / 3)-th row gives the ε; the moments stay those of every row.
    monkeypatch.setattr(pp, "FIT_SAMPLE_VALUES", 3 * train.shape[1])
    capped = pp.Preprocessor.fit(ds)
    stride = -(-len(train) // 3)
    assert capped.stat_mean == full.stat_mean and capped.stat_std == full.stat_std
    assert capped.stat_log_offset == [pp._log_offset(train[::stride, j]) for j in range(train.shape[1])]
    assert capped.stat_log_offset != full.stat_log_offset


def test_skewed_non_negative_statistics_get_a_log_scale_for_stat_scale_log(tiny_dataset, tmp_path):
    import keras

    from popdl.dataset import Dataset
    from popdl.models import get_network
    from popdl.preprocess import LOG_SKEW, Preprocessor, _log_offset
    from popdl.training import dataset_shapes

    rng = np.random.default_rng(0)
    counts = np.round(10 ** rng.uniform(0, 3, 500))  # segregating sites over 3 orders of magnitude
    counts[:5] = 0
    assert _log_offset(counts) == np.quantile(counts[counts > 0], 0.01)
    assert _log_offset(rng.normal(size=500)) is None  # negative values (Tajima's D): linear
    assert _log_offset(rng.uniform(size=500)) is None  # not skewed: linear
    assert _log_offset(np.array([0.0, 0.0, np.nan])) is None  # nothing to learn from

    ds = Dataset(tiny_dataset)
    prep = Preprocessor.fit(ds)
    train = ds.load("train", ("stats",))["stats"].astype(np.float64)
    z = prep.stats(train)  # the input: standardised as they are
    np.testing.assert_allclose(z, np.nan_to_num((train - prep.stat_mean) / prep.stat_std), rtol=1e-4, atol=1e-4)
    logged = [j for j, o in enumerate(prep.stat_log_offset) if o is not None]
    assert logged  # the tiny set's segregating sites, at least
    want = z.astype(np.float64).copy()
    for j in logged:
        col = train[:, j][np.isfinite(train[:, j])]
        assert col.min() >= 0 and np.mean((col - col.mean()) ** 3) / col.std() ** 3 > LOG_SKEW, prep.stat_names[j]
        log = np.log10(np.nan_to_num(train[:, j], nan=prep.stat_mean[j]) + prep.stat_log_offset[j])
        want[:, j] = (log - prep.stat_log_mean[j]) / prep.stat_log_std[j]
        assert abs(np.mean((np.log10(col + prep.stat_log_offset[j]) - prep.stat_log_mean[j]) / prep.stat_log_std[j])) < 1e-6

    # stat_scale: log puts them on that scale in the network's first layer; linear leaves the inputs alone.
    shapes = dataset_shapes(ds, prep)
    hp = {"towers": "separate", "dense_units": 8, "dropout": 0.0, "batch_norm": False}
    for scale in ("linear", "log"):
        keras.backend.clear_session()
        model = get_network("mlp").build(shapes, hp={**hp, "stat_scale": scale}, n_classes=3,
                                         n_params=len(prep.param_names))
        names = [layer.name for layer in model.layers]
        assert ("stats_log" in names) == (scale == "log")
    layer = model.get_layer("stats_log")
    np.testing.assert_allclose(np.asarray(layer(z)), want, rtol=1e-4, atol=2e-4)
    unseen = np.asarray(layer(np.full((1, len(prep.stat_names)), -1e3, np.float32)))  # below anything trained on
    assert np.isfinite(unseen).all()
    path = tmp_path / "log.keras"
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict({"stats": z[:5]}, verbose=0)["params"],
                               model.predict({"stats": z[:5]}, verbose=0)["params"], rtol=1e-5, atol=1e-6)
    round_trip = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert round_trip.stat_log() == prep.stat_log()
    old = {k: v for k, v in prep.to_dict().items() if not k.startswith("stat_log")}  # a bundle from before
    assert Preprocessor.from_dict(old).stat_log() is None
    with pytest.raises(ValueError, match="stat_scale"):
        get_network("mlp").build(shapes, hp={**hp, "stat_scale": "sqrt"}, n_classes=3, n_params=1)


def test_any_network_output_maps_inside_the_priors_support(tiny_dataset):
    from popdl.dataset import Dataset
    from popdl.preprocess import Preprocessor

    ds = Dataset(tiny_dataset)
    prep = Preprocessor.fit(ds)
    priors = ds.manifest["priors"]
    # Uniform and log-uniform priors are bounded by the prior; the derived T_sc by its training range.
    for j, name in enumerate(prep.param_names):
        if all(np.isfinite(priors[name]["bounds"])):
            assert prep.bounds[j] == list(priors[name]["bounds"]), name
    train = ds.load("train", ("params",))["params"][:, prep.param_names.index("T_sc")]
    assert prep.bounds[prep.param_names.index("T_sc")] == [np.nanmin(train), np.nanmax(train)]
    # Whatever the network outputs (huge, tiny, crossing), every quantile lies within the bounds.
    z = np.random.default_rng(3).normal(scale=50.0, size=(500, len(prep.param_names), 3))
    z[:5] = 1e6
    z[5:10] = -1e6
    q = prep.natural(prep.unstandardise(z))
    lo, hi = (np.array([b[k] for b in prep.bounds])[None, :, None] for k in (0, 1))
    assert np.isfinite(q).all() and (q >= lo).all() and (q <= hi).all()
    np.testing.assert_allclose(q[:5], np.broadcast_to(hi, q[:5].shape), rtol=1e-12)
    np.testing.assert_allclose(q[5:10], np.broadcast_to(lo, q[5:10].shape), rtol=1e-12)


# ---------------------------------------------------------------------------- config and stages


def test_sqlite_storage_is_refused_with_one_clear_line(tmp_path):
    from popdl.config import load_config
    from popdl.errors import ConfigError

    path = write_config(tmp_path, tiny_config(tuning={"storage": "sqlite:///study.db"}))
    with pytest.raises(ConfigError, match="SQLite cannot be shared by parallel tuning workers"):
        load_config(path)
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(path)], cwd=REPO,
                          capture_output=True, text=True, env=popdl_env())
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "SQLite" in proc.stderr


def test_bad_search_space_key_is_rejected(tmp_path):
    from popdl.config import load_config
    from popdl.errors import ConfigError

    path = write_config(tmp_path, tiny_config(tuning={"search_space": {"learnin_rate": 0.1}}))
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        load_config(path)


def test_search_space_change_reruns_only_the_model_stages():
    from popdl.config import prepare
    from popdl.stages import stage_json

    a = prepare(tiny_config(), base_dirs=(REPO,))
    b = prepare(tiny_config(tuning={"search_space": {"dropout": 0.3}}), base_dirs=(REPO,))
    for stage in ("plan", "simulate"):
        assert stage_json(a, stage, "isolation") == stage_json(b, stage, "isolation")
    for stage in ("features", "dataset", "train", "evaluate"):
        assert stage_json(a, stage) == stage_json(b, stage), stage
    assert stage_json(a, "tune") != stage_json(b, "tune")


# ---------------------------------------------------------------------------- tuning


def _temperature_fitted_on_examples_the_final_fit_never_saw(dataset_dir, model_dir, settings, fitted):
    """The (scenario, draw) of every example the final fit's batches held, read back from
    the batches themselves, against those the bundle says the temperature was fitted on."""
    from popdl.dataset import Dataset
    from popdl.training import Preprocessor, ShardSequence, calibration_mask

    ds = Dataset(dataset_dir)
    bundle = json.loads((model_dir / "bundle.json").read_text())
    calibration = {tuple(d) for d in bundle["calibration"]["draws"]}
    assert calibration and len(calibration) == bundle["calibration"]["n"]
    assert bundle["temperature"] == bundle["calibration"]["temperature"]
    # Each example's statistics identify it: map them to (scenario, draw).
    prep = Preprocessor.fit(ds)
    who = {}
    for split in ("train", "validation"):
        part = ds.load(split, ("stats", "labels", "draw"))
        for row, label, draw in zip(prep.stats(part["stats"]), part["labels"], part["draw"]):
            who[row.tobytes()] = (ds.scenarios[int(label)], int(draw))
    held = calibration_mask(ds, root_seed=settings["seed"], fraction=settings["train"]["calibration_fraction"])
    seq = ShardSequence(ds, ("train", "validation"), batch_size=7, inputs=("stats",), prep=prep, tasks=("classify",),
                        keep={"validation": ~held})
    seen = [who[row.tobytes()] for i in range(len(seq)) for row in seq[i][0]["stats"]]
    assert len(seen) == len(set(seen)) == fitted["n_fit"] == ds.size("train") + ds.size("validation") - len(calibration)
    assert not calibration & set(seen)
    assert calibration == {who[row.tobytes()] for row in prep.stats(ds.load("validation", ("stats",))["stats"][held])}


def _study(settings, tuning_dir, dataset):
    from popdl.tuning import load_study

    return load_study(settings, dataset, tuning_dir=tuning_dir)


def test_sweep_select_train_predict_evaluate(tiny_dataset, tmp_path):
    from optuna.trial import TrialState

    from popdl.evaluate import evaluate
    from popdl.model_io import load_model
    from popdl.training import train_final
    from popdl.tuning import run_worker, select_best

    tune = model_settings("tune")
    tuning_dir = tmp_path / "tuning"
    summary = run_worker(tune, tiny_dataset, worker=0, tuning_dir=tuning_dir)
    assert len(summary["finished"]) == 2 and summary["failed"] == []
    assert (tuning_dir / "journal.log").exists()
    # Rerunning a finished worker resumes the study and runs nothing.
    again = run_worker(tune, tiny_dataset, worker=0, tuning_dir=tuning_dir)
    assert again["trials_run_now"] == [] and again["finished"] == summary["finished"]

    best = select_best(tune, tiny_dataset, tuning_dir=tuning_dir, best_out=tmp_path / "best.json", table_out=tmp_path / "trials.csv")
    import pandas as pd

    table = pd.read_csv(tmp_path / "trials.csv")
    assert len(table) == 2 and set(table["state"]) == {"COMPLETE"}
    assert "temperature" not in best  # fitted for the final model, not for a trial
    # Per task, the trial whose tower was best: the final model may take each output from another trial.
    assert set(best["by_task"]) == {"classify", "regress"}
    for task, choice in best["by_task"].items():
        trial = next(t for t in _study(tune, tuning_dir, tiny_dataset).trials if t.number == choice["number"])
        assert choice["loss"] == min(t.user_attrs["best_losses"][task] for t in _study(tune, tuning_dir, tiny_dataset).trials)
        assert choice["best_epoch"] == trial.user_attrs["best_epochs"][task]
    assert best["hyper_parameters"]["network"] == "mlp" and "learning_rate" in best["hyper_parameters"]
    study = _study(tune, tuning_dir, tiny_dataset)
    # The ranking the ensemble may draw its members from: best first, overall and per task.
    assert [r["number"] for r in best["ranked"]] == [t.number for t in sorted(study.trials, key=lambda t: (t.value, t.number))]
    assert best["ranked"][0]["number"] == best["number"]
    for choice in best["by_task"].values():
        losses = [r["loss"] for r in choice["ranked"]]
        assert losses == sorted(losses) and choice["ranked"][0]["number"] == choice["number"] and len(losses) == 2
        # The greedy ensemble path starts at the best trial, whose loss recomputed in numpy from its
        # saved validation outputs is the one the sweep reported; each step lowers the loss.
        path = choice["ensemble"]
        assert path[0]["number"] == choice["number"]
        assert path[0]["ensemble_loss"] == pytest.approx(choice["loss"], rel=2e-3)
        assert all(b["ensemble_loss"] < a["ensemble_loss"] for a, b in zip(path, path[1:]))
    assert best["ensemble"][0]["number"] == best["number"]
    assert best["number"] == study.best_trial.number
    assert all(t.state == TrialState.COMPLETE for t in study.trials)

    train = model_settings("train")
    train["train"]["ensemble"] = 2  # two networks averaged in one saved model
    fitted = train_final(train, tiny_dataset, best=best, out=tmp_path / "model", tensorboard_dir=tmp_path / "tb")
    assert (tmp_path / "model" / "model.keras").exists() and fitted["members"] == 2
    bundle = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert set(bundle["hyper_parameters"]) == {"classify", "regress"} and bundle["network"] == "mlp"
    _temperature_fitted_on_examples_the_final_fit_never_saw(tiny_dataset, tmp_path / "model", train, fitted)
    # The intervals' conformal offsets come from the same held-out examples, per parameter those that have it.
    from popdl.dataset import Dataset
    from popdl.training import calibration_mask

    held = calibration_mask(Dataset(tiny_dataset), root_seed=train["seed"], fraction=train["train"]["calibration_fraction"])
    held_params = Dataset(tiny_dataset).load("validation", ("params",))["params"][held]
    ic = bundle["interval_calibration"]
    assert ic["n"] == {p: int(np.isfinite(held_params[:, j]).sum()) for j, p in enumerate(bundle["param_names"])}
    assert set(ic["offsets"]) == set(bundle["param_names"])
    import keras

    if keras.backend.backend() == "tensorflow":
        assert any((tmp_path / "tb").rglob("*tfevents*"))

    # The model folder works alone: copy it elsewhere and predict from raw arrays.
    import shutil

    from popdl.dataset import Dataset

    shutil.copytree(tmp_path / "model", tmp_path / "elsewhere")
    model = load_model(tmp_path / "elsewhere")
    test = Dataset(tiny_dataset).load("test")
    pred = model.predict(test["images"], test["distances"], test["stats"])
    n = len(test["labels"])
    assert pred.probabilities.shape == (n, 3)
    np.testing.assert_allclose(pred.probabilities.sum(1), 1.0, rtol=1e-6)
    assert pred.estimates.shape == (n, len(model.param_names))
    assert np.all(pred.lower <= pred.estimates) and np.all(pred.estimates <= pred.upper)
    assert pred["params"].shape == (n, len(model.param_names), len(model.levels))
    lo, hi = (np.array([b[k] for b in model.prep.bounds]) for k in (0, 1))  # every prior of the tiny config is bounded
    assert (pred.lower >= lo).all() and (pred.upper <= hi).all()  # intervals inside the priors' support
    assert list(pred.to_frame().columns[:4]) == ["scenario", "p_isolation", "p_isolation_migration",
                                                "p_secondary_contact"]
    with pytest.raises(ValueError, match="stats has shape"):
        model.predict(None, None, test["stats"][:, :3])

    # The estimate is the posterior mean of the network's midpoint quantiles (learning scale), never moved by
    # the intervals' offsets; the offsets stored in the bundle move the interval's ends on the network's scale.
    raw = model.predict(test["images"], test["distances"], test["stats"], calibrated=False)
    assert model.levels == pytest.approx([(k + 0.5) / 10 for k in range(10)])
    np.testing.assert_allclose(raw.estimates, model.prep.natural(model.prep.learning_scale(raw.quantiles).mean(-1)),
                               rtol=1e-9)
    bundle_path = tmp_path / "elsewhere" / "bundle.json"
    moved = json.loads(bundle_path.read_text())
    moved["interval_calibration"] = {"offsets": {"N1": 1.0, "N2": -100.0}}
    bundle_path.write_text(json.dumps(moved))
    wider = load_model(tmp_path / "elsewhere").predict(test["images"], test["distances"], test["stats"])
    j1, j2 = model.param_names.index("N1"), model.param_names.index("N2")
    assert np.all(wider.lower[:, j1] < raw.lower[:, j1]) and np.all(wider.upper[:, j1] > raw.upper[:, j1])
    others = [j for j in range(len(model.param_names)) if j not in (j1, j2)]
    np.testing.assert_allclose(wider.estimates[:, [j1, *others]], raw.estimates[:, [j1, *others]])
    np.testing.assert_allclose(wider.lower[:, j2], wider.upper[:, j2])  # pulled in to the middle level
    np.testing.assert_allclose(wider.estimates[:, j2], wider.lower[:, j2])  # and the estimate stays inside
    np.testing.assert_allclose(wider.lower[:, others], raw.lower[:, others])

    from popdl.stages import settings_hash

    evaluation = model_settings("evaluate")
    metrics = evaluate(tiny_dataset, tmp_path / "model", best=best, out=tmp_path / "evaluation",
                       trials=tmp_path / "trials.csv", root_seed=evaluation["seed"],
                       config_hash=settings_hash(evaluation))
    cls = metrics["classification"]
    assert cls["confusion_matrix"] and np.sum(cls["confusion_matrix"]) == n
    assert set(cls["per_scenario"]["isolation"]) >= {"sensitivity", "specificity", "f1"}
    assert -1 <= cls["matthews_corrcoef"] <= 1
    assert {"ece_before", "ece_after", "temperature", "at_bound", "fit"} <= set(metrics["calibration"])
    assert metrics["calibration"]["fit"]["n"] == len(fitted["calibration"]["draws"])
    # Strict JSON, which every reader takes: a reliability curve's empty bins are null, not NaN.
    def refuse(constant):
        raise ValueError(f"{constant} in metrics.json")

    written = json.loads((tmp_path / "evaluation" / "metrics.json").read_text(), parse_constant=refuse)
    empty = [b for b in written["calibration"]["curve_before"] if b["n"] == 0]
    assert empty and all(b["accuracy"] is None and b["confidence"] is None for b in empty)  # top class >= 1/3
    # The test set's NLL before and after, recomputed from the model's logits and temperature.
    from popdl.calibration import negative_log_likelihood

    logits = model.raw_outputs(test["images"], test["distances"], test["stats"])["scenario"]
    for key, t in (("nll_before", 1.0), ("nll_after", model.temperature)):
        assert metrics["calibration"][key] == pytest.approx(negative_log_likelihood(logits, test["labels"], t))
    reg = metrics["regression"]
    assert set(reg) == set(model.param_names)
    assert 0 <= reg["N1"]["coverage"] <= 1 and "r2" in reg["N1"] and "rmse" in reg["N1"]
    for png in ("confusion_matrix", "calibration", "parameters", "training_curves"):
        assert (tmp_path / "evaluation" / f"{png}.png").stat().st_size > 1000
    assert json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["n_test"] == n
    # The interpretation the report shows, from the same model and test set.
    interp = json.loads((tmp_path / "evaluation" / "interpretation.json").read_text())
    assert interp["provenance"]["config_hash"] == metrics["provenance"]["config_hash"] == settings_hash(evaluation)
    assert interp["embedding"]["examples"] == n and not interp["embedding"]["tsne"]  # fewer than 30: PCA only
    assert "does not classify genotype images" in interp["saliency"]["unavailable"]  # an mlp
    importances = interp["importances"]["values"]  # 2 trials with varied hyper-parameters
    assert set(importances) <= {c[7:] for c in table.columns if c.startswith("params_")}
    assert sum(importances.values()) == pytest.approx(1.0)
    with np.load(tmp_path / "evaluation" / "interpretation.npz") as arrays:
        assert arrays["embedding_pca"].shape == (n, 2) and "saliency_snp" not in arrays


def test_cross_fitted_ensemble_calibrates_its_intervals_out_of_fold(tiny_dataset, tmp_path):
    """With train.ensemble >= 4 every example the final fit trains on lies in one fold (balanced by scenario,
    the same for the same seed), member i trains on the other folds, and the intervals are calibrated on all
    of them out of fold; the temperature still comes from the calibration part the ensemble never saw."""
    from popdl.dataset import Dataset
    from popdl.training import calibration_mask, cross_fit_folds, train_final

    train = model_settings("train")
    # A calibration part of 7 of the 8 validation examples per scenario: >= 20 for the parameters every
    # scenario has, so that the narrowing for the ensemble applies to them.
    train["train"].update(ensemble=4, epochs=2, calibration_fraction=0.9)
    hyper = TINY_MLP
    fitted = train_final(train, tiny_dataset, best={"hyper_parameters": hyper, "best_epoch": 2}, out=tmp_path / "model")
    ds = Dataset(tiny_dataset)
    held = calibration_mask(ds, root_seed=train["seed"], fraction=train["train"]["calibration_fraction"])
    folds = fitted["folds"]
    again = cross_fit_folds(ds, held, root_seed=train["seed"], k=4)
    assert all(np.array_equal(folds[s], again[s]) for s in ("train", "validation"))
    assert (folds["validation"][held] == -1).all() and (folds["validation"][~held] >= 0).all()
    assert (folds["train"] >= 0).all()
    for split in ("train", "validation"):
        labels = ds.load(split, ("labels",))["labels"]
        for scenario in range(len(ds.scenarios)):
            sizes = np.bincount(folds[split][(labels == scenario) & (folds[split] >= 0)], minlength=4)
            assert sizes.max() - sizes.min() <= 1
    # What each member's fit was given: every example of the other folds, none of its own or of the calibration part.
    in_folds = sum(int((f >= 0).sum()) for f in folds.values())
    assert fitted["fit_examples"]["classify+regress"] == [in_folds - sum(int((f == i).sum()) for f in folds.values())
                                                           for i in range(4)]
    bundle = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert bundle["provenance"]["fit_examples"] == fitted["fit_examples"]
    ic = bundle["interval_calibration"]
    assert ic["method"].startswith("cross-conformal")
    # The offsets are those of each member's quantiles on its own left-out fold, read back from the saved model.
    import keras

    from popdl.calibration import ensemble_narrowing, interval_offsets
    from popdl.training import Preprocessor

    saved = keras.saving.load_model(tmp_path / "model" / "model.keras", compile=False, safe_mode=True)
    members = [saved.get_layer(f"network_member{i}") for i in range(4)]
    prep = Preprocessor.fit(ds, ("train",))
    quantiles, true = [], []
    for split, fold in folds.items():
        part = ds.load(split, ("stats", "params"))
        for i, member in enumerate(members):
            rows = fold == i
            if not rows.any():  # a fold may have no validation example at this size
                continue
            quantiles.append(np.asarray(member.predict({"stats": prep.stats(part["stats"][rows])}, verbose=0)["params"]))
            true.append(prep.params(part["params"][rows]))
    again = interval_offsets(np.concatenate(quantiles), np.concatenate(true), levels=bundle["quantiles"],
                             param_names=bundle["param_names"])
    # ... then narrowed by the coverage the ensemble adds over its members on the calibration part.
    part = ds.load("validation", ("stats", "params"))
    x_held = {"stats": prep.stats(part["stats"][held])}
    held_members = np.stack([np.asarray(m.predict(x_held, verbose=0)["params"]) for m in members])
    again = ensemble_narrowing(again, np.concatenate(quantiles), np.concatenate(true), members=held_members,
                               ensemble=np.asarray(saved.predict(x_held, verbose=0)["params"]),
                               true=prep.params(part["params"][held]), levels=bundle["quantiles"],
                               param_names=bundle["param_names"])
    assert again["offsets"] == pytest.approx(ic["offsets"], abs=1e-5)
    assert set(ic["ensemble"]) == set(again["ensemble"]) == {"N1", "N2", "N_anc", "T_split"}
    assert "narrowed for the ensemble" in ic["method"]
    assert all(e["offset_change"] <= 0 for e in ic["ensemble"].values())
    params = {s: ds.load(s, ("params",))["params"][folds[s] >= 0] for s in folds}
    assert ic["n"] == {p: sum(int(np.isfinite(v[:, j]).sum()) for v in params.values())
                       for j, p in enumerate(bundle["param_names"])}
    for p, n in ic["n"].items():  # conformal: at least the nominal coverage on the examples it was fitted on
        if n >= 20:  # (by the members, before the narrowing for the ensemble)
            assert ic["coverage_after"][p] >= ic["nominal"] - 1e-9
    assert bundle["calibration"]["n"] == int(held.sum())


def test_separate_networks_with_cross_fitted_parameters_train_and_save(tiny_dataset, tmp_path, caplog):
    from popdl.training import train_final

    train = model_settings("train")
    train["train"].update(ensemble=4, epochs=1, ensemble_trials=3)
    hyper = dict(TINY_MLP, towers="separate")
    choice = {"hyper_parameters": hyper, "best_epoch": 1, "number": 0}
    best = {"hyper_parameters": hyper, "best_epoch": 1, "by_task": {"classify": choice, "regress": choice}}
    with caplog.at_level("WARNING", logger="popdl.training"):
        fitted = train_final(train, tiny_dataset, best=best, out=tmp_path / "model")
    # A best-trial file without an ensemble path (an older select_best): every member is the best trial, said once.
    assert "selects no ensemble" in caplog.text and "--forcerun select_best" in caplog.text
    bundle = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert bundle["interval_calibration"]["method"].startswith("cross-conformal") and fitted["folds"] is not None
    # The scenario's fits saw every example of the final fit; each parameter fit all but its fold.
    assert fitted["fit_examples"]["classify"] == [fitted["n_fit"]] * 4
    assert fitted["fit_examples"]["regress"] == [fitted["n_fit"] - sum(int((f == i).sum()) for f in fitted["folds"].values())
                                                 for i in range(4)]
    import keras

    model = keras.saving.load_model(tmp_path / "model" / "model.keras", compile=False, safe_mode=True)
    for task in ("classify", "regress"):
        ensemble = model.get_layer(f"{task}_network_ensemble")
        assert sum(layer.name.startswith(f"{task}_network_member") for layer in ensemble.layers) == 4


def test_ensemble_members_take_in_turn_the_networks_of_the_best_trials(tiny_dataset, tmp_path):
    import keras

    from popdl.models import input_names
    from popdl.training import train_final

    train = model_settings("train")
    train["train"].update(ensemble=3, ensemble_trials=2, epochs=None, cross_fit=False)
    mlp = dict(TINY_MLP, towers="separate")
    cnn = dict(TINY_MLP, network="cnn1d", conv_layers=1, filters=2, kernel_size=3, pooling="max", towers="separate")
    ranked = {"classify": [{"hyper_parameters": cnn, "best_epoch": 2, "number": 5, "loss": 0.1},
                           {"hyper_parameters": mlp, "best_epoch": 1, "number": 2, "loss": 0.2},
                           {"hyper_parameters": mlp, "best_epoch": 1, "number": 7, "loss": 0.3}],
              "regress": [{"hyper_parameters": mlp, "best_epoch": 1, "number": 2, "loss": 0.1}]}
    best = {"hyper_parameters": mlp, "best_epoch": 1,
            "by_task": {t: {**r[0], "ranked": r, "ensemble": r} for t, r in ranked.items()}}
    fitted = train_final(train, tiny_dataset, best=best, out=tmp_path / "model")
    bundle = json.loads((tmp_path / "model" / "bundle.json").read_text())
    # Members 0, 1, 2 of the scenario's ensemble: trials 5, 2, 5 (the 2 best, in turn); the parameters'
    # ranking holds one trial, which every member takes.
    assert bundle["provenance"]["member_trials"] == {"classify": [5, 2, 5], "regress": [2, 2, 2]}
    assert fitted["network"] == "cnn1d + mlp (scenario) + mlp (parameters)"
    assert fitted["tower_epochs"] == {"classify": 2, "regress": 1} and fitted["epochs"] == 2  # the most any member ran
    model = keras.saving.load_model(tmp_path / "model" / "model.keras", compile=False, safe_mode=True)
    members = [layer for layer in model.get_layer("classify_network_ensemble").layers
               if layer.name.startswith("classify_network_member")]
    assert sorted(sorted(input_names(m)) for m in members) == [["distances", "image"], ["distances", "image"], ["stats"]]
    assert set(bundle["inputs"]) == {"image", "distances", "stats"}


def test_greedy_ensemble_adds_the_trials_that_lower_the_validation_loss(tmp_path):
    from popdl.tuning import greedy_ensemble, params_loss, scenario_loss

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    truth = np.eye(3)[labels] * 4.0
    # Trials 0 and 1: the truth plus independent noise (their average beats either); trial 2: noise only.
    logits = {0: truth + rng.normal(0, 3, truth.shape), 1: truth + rng.normal(0, 3.2, truth.shape),
              2: rng.normal(0, 3, truth.shape)}
    for n, z in logits.items():
        np.savez(tmp_path / f"{n}.npz", labels=labels, scenario=z.astype(np.float32))
    ranked = [{"number": n, "hyper_parameters": {}} for n in (0, 1, 2)]
    path = greedy_ensemble(ranked, tmp_path, lambda out: scenario_loss(out["scenario"], out["labels"]))
    assert [e["number"] for e in path] == [0, 1]
    assert path[1]["ensemble_loss"] == pytest.approx(scenario_loss((logits[0] + logits[1]) / 2, labels), rel=1e-5)
    assert path[1]["ensemble_loss"] < path[0]["ensemble_loss"]
    # A trial without saved outputs: the best trial alone.
    assert [e["number"] for e in greedy_ensemble(ranked + [{"number": 9}], tmp_path, lambda out: 0.0)] == [0]
    # The parameters' loss is the masked pinball loss of the training.
    q = rng.normal(size=(5, 2, 3))
    true = rng.normal(size=(5, 2))
    true[0, 1] = np.nan
    levels = np.array([0.05, 0.5, 0.95])
    expected = []
    for i in range(5):
        per = [np.mean([max(t * (true[i, j] - q[i, j, k]), (t - 1) * (true[i, j] - q[i, j, k]))
                        for k, t in enumerate(levels)]) for j in range(2) if np.isfinite(true[i, j])]
        expected.append(np.mean(per))
    assert params_loss(q, true, levels) == pytest.approx(np.mean(expected))


def test_one_worker_without_a_time_cap_sweeps_reproducibly(tiny_dataset, tmp_path):
    """Same config and seed, one worker, no trial_seconds: the same hyper-parameters and the same
    validation losses, bit for bit, in two fresh studies (docs/methods.md, Reproducibility)."""
    from popdl.tuning import run_worker

    tune = model_settings("tune", trials=2, max_epochs=3)  # a random trial, then one of the sampler
    runs = []
    for name in ("a", "b"):
        run_worker(tune, tiny_dataset, worker=0, tuning_dir=tmp_path / name)
        study = _study(tune, tmp_path / name, tiny_dataset)
        runs.append([(t.number, t.params, t.value, t.user_attrs["best_losses"]) for t in study.trials])
    assert len(runs[0]) == 2 and runs[0] == runs[1]


def test_first_trials_take_each_listed_network_once_and_log_scale_reaches_the_network(tiny_dataset, tmp_path):
    """With several networks, the sweep's first trials take them in the listed order, once each, so none
    goes untried; a resumed worker enqueues nothing more.  A trial drawing stat_scale log builds the
    LogStatistics layer on the skewed statistics (recorded per trial)."""
    from popdl.config import prepare
    from popdl.stages import stage_config
    from popdl.tuning import run_worker

    tune = {"workers": 1, "trials": 3, "max_epochs": 1, "patience": 0, "pruner": "none", "startup_trials": 1,
            "search_space": {**FAST_SPACE, "stat_scale": "log"}}
    settings = stage_config(prepare(tiny_config(network=["exchangeable_stats", "mlp", "cnn1d"], tuning=tune),
                                    base_dirs=(REPO,)), "tune")
    run_worker(settings, tiny_dataset, worker=0, tuning_dir=tmp_path)
    trials = _study(settings, tmp_path, tiny_dataset).trials
    assert [t.params["network"] for t in trials] == ["exchangeable_stats", "mlp", "cnn1d"]
    assert [t.system_attrs["fixed_params"] for t in trials] == [{"network": n} for n in
                                                                 ("exchangeable_stats", "mlp", "cnn1d")]
    logged = {t.params["network"]: t.user_attrs["log_scaled_statistics"] for t in trials}
    # The networks reading the statistics put the skewed ones on a log scale; the 1-D CNN reads none.
    assert logged["mlp"] == logged["exchangeable_stats"] > 0 and logged["cnn1d"] == 0
    again = run_worker(settings, tiny_dataset, worker=0, tuning_dir=tmp_path)
    assert again["trials_run_now"] == [] and len(_study(settings, tmp_path, tiny_dataset).trials) == 3


def test_failed_trials_are_recorded_and_the_worker_stops_after_max_failures(tiny_dataset, tmp_path):
    from optuna.trial import TrialState

    from popdl.tuning import run_worker

    # SGD with a huge learning rate diverges: NaN loss in the first epoch.
    space = {**FAST_SPACE, "learning_rate": 1.0e12, "optimizer": "sgd", "batch_norm": False}
    tune = model_settings("tune", max_failures=2, search_space=space)
    with pytest.raises(RuntimeError, match="2 trials failed in a row; last error: FloatingPointError"):
        run_worker(tune, tiny_dataset, worker=0, tuning_dir=tmp_path)
    trials = _study(tune, tmp_path, tiny_dataset).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # the sweep went on after the first
    assert "NaN" in trials[0].user_attrs["error"]


def _tune_cmd(config_path, dataset, worker, tuning_dir, out):
    return [sys.executable, "-m", "popdl", "tune", "--configfile", str(config_path), "--dataset", str(dataset),
            "--worker", str(worker), "--tuning-dir", str(tuning_dir), "--out", str(out)]


def test_two_worker_processes_share_one_journal_study(tiny_dataset, tmp_path):
    from optuna.trial import TrialState

    from popdl.tuning import worker_shares

    trials = 5
    config = tiny_config(network=["mlp", "cnn1d"], tuning={
        "workers": 2, "trials": trials, "max_epochs": 2, "patience": 0, "pruner": "median", "startup_trials": 1,
        "search_space": FAST_SPACE})
    path = write_config(tmp_path, config)
    procs = [subprocess.Popen(_tune_cmd(path, tiny_dataset, w, tmp_path / "tuning", tmp_path / f"w{w}.json"),
                              cwd=REPO, env=popdl_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for w in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    summaries = [json.loads((tmp_path / f"w{w}.json").read_text()) for w in range(2)]
    from popdl.config import load_config
    from popdl.stages import stage_config

    study = _study(stage_config(load_config(path), "tune"), tmp_path / "tuning", tiny_dataset)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == trials
    assert sorted(t.number for t in study.trials) == list(range(len(study.trials)))
    assert Counter(t.user_attrs["worker"] for t in finished) == Counter(dict(enumerate(worker_shares(trials, 2))))
    claimed = [n for s in summaries for n in s["finished"]]
    assert sorted(claimed) == sorted(t.number for t in finished) and len(set(claimed)) == len(claimed)
    # Different sampler seeds: no two trials drew the same point.
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == len(points)
    # Worker 0 enqueued one trial per listed network, once, whichever worker ran it.
    enqueued = [t.system_attrs["fixed_params"] for t in study.trials if "fixed_params" in t.system_attrs]
    assert sorted(e["network"] for e in enqueued) == ["cnn1d", "mlp"]


def test_killed_worker_resumes_with_the_killed_trial_failed(tiny_dataset, tmp_path):
    import optuna
    from optuna.trial import TrialState

    from popdl.config import load_config
    from popdl.stages import stage_config

    # Long enough trials (many epochs, no early stopping) to kill one mid-way.
    config = tiny_config(network="cnn1d", tuning={
        "workers": 1, "trials": 2, "max_epochs": 20, "patience": 0, "pruner": "none", "startup_trials": 1,
        "search_space": FAST_SPACE})
    path = write_config(tmp_path, config)
    settings = stage_config(load_config(path), "tune")
    tuning_dir = tmp_path / "tuning"
    out = tmp_path / "w0.json"
    proc = subprocess.Popen(_tune_cmd(path, tiny_dataset, 0, tuning_dir, out), cwd=REPO, env=popdl_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    running = None
    deadline = time.time() + 180
    try:
        while time.time() < deadline and running is None:
            time.sleep(0.3)
            if not (tuning_dir / "journal.log").exists():
                continue
            try:
                study = _study(settings, tuning_dir, tiny_dataset)
            except KeyError:  # study not created yet
                continue
            states = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
            if states and (tuning_dir / "trials").exists():
                running = states[0].number
        assert running is not None, "no trial started in time"
        time.sleep(0.5)  # mid-trial
        assert proc.poll() is None, "the worker ended before it could be killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    study = _study(settings, tuning_dir, tiny_dataset)
    assert study.trials[running].state == TrialState.RUNNING  # left behind by the killed worker

    # Rerun (as Snakemake would): the study resumes and ends with the configured finished trials.
    from popdl.tuning import run_worker

    from popdl.tuning import study_name

    from popdl.dataset import dataset_identity

    name = study_name(settings, dataset_identity(tiny_dataset))
    summary = run_worker(settings, tiny_dataset, worker=0, tuning_dir=tuning_dir)
    assert summary["study"] == name
    assert summary["killed_marked_failed"] == [running]
    study = optuna.load_study(study_name=name, storage=_study(settings, tuning_dir, tiny_dataset)._storage)
    states = {t.number: t.state for t in study.trials}
    assert states[running] == TrialState.FAIL
    finished = [n for n, s in states.items() if s in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2
    assert TrialState.RUNNING not in states.values()


def test_untagged_running_trial_of_a_killed_worker_is_failed(tiny_dataset, tmp_path):
    """A worker killed between creating a trial and tagging it with its index
    leaves an untagged RUNNING trial; the next worker to start marks it FAIL
    once it is older than the grace period, and leaves fresh ones alone."""
    import optuna
    from optuna.trial import TrialState

    from popdl.config import load_config
    from popdl.stages import stage_config
    from popdl.tuning import fail_stale_trials, load_study

    settings = stage_config(load_config(write_config(tmp_path, tiny_config())), "tune")
    tuning_dir = tmp_path / "tuning"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_study(settings, tiny_dataset, tuning_dir=tuning_dir, worker=0, create=True)
    orphan = study.ask()  # what a worker does before it tags the trial; then it is killed
    other = study.ask()
    other.set_user_attr("worker", 1)  # a live worker's trial, tagged: not ours to touch
    assert fail_stale_trials(study, 0) == []  # younger than the grace period: could still be tagged
    time.sleep(0.2)
    study = load_study(settings, tiny_dataset, tuning_dir=tuning_dir, worker=0)
    assert fail_stale_trials(study, 0, untagged_grace_s=0.1) == [orphan.number]
    states = {t.number: t.state for t in load_study(settings, tiny_dataset, tuning_dir=tuning_dir).trials}
    assert states == {orphan.number: TrialState.FAIL, other.number: TrialState.RUNNING}


# ---------------------------------------------------------------------------- workflow


def test_workflow_dry_run_has_one_tune_job_per_worker(tmp_path):
    from conftest import snakemake

    config = tiny_config(tuning={"workers": 3})
    path = write_config(tmp_path, config)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=path)
    counts = dict(line.split()[:2] for line in proc.stdout.splitlines() if len(line.split()) == 2
                  and line.split()[1].isdigit())
    assert counts.get("tune") == "3"
    for rule in ("select_best", "train", "evaluate"):
        assert counts.get(rule) == "1", proc.stdout
