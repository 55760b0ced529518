"""The exchangeable networks: permuting haplotypes within a population changes nothing.

Runs on the Keras backend of the session (TensorFlow by default); the same
check runs on JAX in a subprocess when JAX is installed (it is not by default).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

HP = {"filters": 4, "conv_layers": 2, "kernel_size": 3, "dense_units": 8, "dropout": 0.0, "towers": "separate"}


def _check_invariance(net_name: str) -> float:
    """The largest change of any output when haplotypes are permuted within populations,
    on a freshly built network with random inputs (6 + 4 haplotypes, 16 SNPs)."""
    import keras

    from popdl.models import get_network

    keras.utils.set_random_seed(0)
    populations = ["pop1"] * 6 + ["pop2"] * 4
    shapes = {"image": (10, 16), "distances": (16,), "stats": (5,), "populations": populations}
    model = get_network(net_name).build(shapes, hp=HP, n_classes=3, n_params=2)
    rng = np.random.default_rng(1)
    x = {"image": rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(8, 10, 16)),
         "distances": rng.random((8, 16)).astype(np.float32), "stats": rng.normal(size=(8, 5)).astype(np.float32)}
    x = {k: x[k] for k in get_network(net_name).inputs}
    base = model.predict(x, verbose=0)
    worst = 0.0
    for _ in range(3):
        within = np.concatenate([rng.permutation(6), 6 + rng.permutation(4)])
        out = model.predict({**x, "image": x["image"][:, within]}, verbose=0)
        worst = max(worst, *(float(np.abs(out[k] - base[k]).max()) for k in base))
    # Moving a haplotype to the other population does change the outputs.
    across = np.array([6, 1, 2, 3, 4, 5, 0, 7, 8, 9])
    out = model.predict({**x, "image": x["image"][:, across]}, verbose=0)
    assert max(float(np.abs(out[k] - base[k]).max()) for k in base) > 1e-4
    return worst


@pytest.mark.parametrize("net_name", ["exchangeable", "exchangeable_stats"])
def test_outputs_do_not_change_when_haplotypes_are_permuted_within_a_population(net_name):
    assert _check_invariance(net_name) < 1e-5


def test_population_groups_follow_the_haplotype_labels():
    from popdl.models import population_groups

    assert population_groups(["b", "a", "b", "a"], 4) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="population of each haplotype"):
        population_groups(None, 4)
    with pytest.raises(ValueError, match="3 haplotype populations for an image of 4"):
        population_groups(["a", "a", "b"], 4)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install -e '.[jax]')")
def test_invariance_on_the_jax_backend():
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import test_exchangeable as t; "
            "import keras; assert keras.backend.backend() == 'jax'; "
            "print(max(t._check_invariance(n) for n in ('exchangeable', 'exchangeable_stats')))")
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "tests"), str(REPO / "scripts")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5


@pytest.mark.parametrize("net_name", ["exchangeable", "cnn1d"])
def test_saliency_and_embedding_of_image_networks(net_name, tiny_dataset, tmp_path):
    """The report's analyses for a saved exchangeable or 1-D CNN model: occlusion saliency over
    SNPs and haplotypes, and the embedding of the layer feeding the scenario output."""
    import json

    from popdl.dataset import Dataset
    from popdl.interpret import interpret
    from popdl.model_io import load_model, save_bundle
    from popdl.models import get_network
    from popdl.preprocess import Preprocessor
    from popdl.training import dataset_shapes

    ds = Dataset(tiny_dataset)
    prep = Preprocessor.fit(ds)
    net = get_network(net_name)
    shapes = dataset_shapes(ds)
    model = net.build(shapes, hp=HP, n_classes=3, n_params=len(prep.param_names))
    save_bundle(tmp_path / "model", model=model, prep=prep, scenarios=ds.scenarios, network=net_name,
                inputs=net.inputs, shapes={k: shapes[k] for k in net.inputs}, temperature=1.0,
                quantiles=(0.05, 0.5, 0.95), tasks=("classify", "regress"), hyper_parameters=HP)
    test = ds.load("test")
    record = interpret(load_model(tmp_path / "model"), test, out=tmp_path / "interp", root_seed=1, config_hash="x",
                       per_scenario=1)
    assert "unavailable" not in record["saliency"] and "unavailable" not in record["embedding"], record
    with np.load(tmp_path / "interp" / "interpretation.npz") as arrays:
        assert arrays["saliency_snp"].shape == (3, 32) and arrays["saliency_haplotype"].shape == (3, 16)
        assert np.isfinite(arrays["saliency_snp"]).all() and np.isfinite(arrays["saliency_haplotype"]).all()
    assert json.loads((tmp_path / "interp" / "interpretation.json").read_text())["saliency"]
