"""GPU jobs, tested where there is no GPU: the backend each job chooses, the
one-line stop of a job granted a GPU that its backend cannot see, the
explicit CPU fallback (with several trials of one tune job at once), and
bf16 mixed precision (the saved model is float32)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, tiny_config, write_config
from popdl.device import choose_backend, granted_gpus, setup


def everything(name: str) -> bool:
    return True


def test_auto_is_tensorflow_on_a_cpu_job_and_jax_on_a_gpu_job():
    assert choose_backend("auto", gpu_job=False, environ={}, installed=everything) == "tensorflow"
    assert choose_backend("auto", gpu_job=True, environ={}, installed=everything) == "jax"
    # KERAS_BACKEND, set by the user or the site, is what auto takes; an explicit choice wins over it.
    assert choose_backend("auto", gpu_job=True, environ={"KERAS_BACKEND": "torch"}, installed=everything) == "torch"
    assert choose_backend("tensorflow", gpu_job=True, environ={"KERAS_BACKEND": "jax"},
                          installed=everything) == "tensorflow"
    # The next installed backend when the first choice is missing.
    assert choose_backend("auto", gpu_job=True, environ={}, installed=lambda n: n == "tensorflow") == "tensorflow"
    assert choose_backend("auto", gpu_job=False, environ={}, installed=lambda n: n != "tensorflow") == "jax"
    with pytest.raises(RuntimeError, match="no Keras backend is installed"):
        choose_backend("auto", gpu_job=False, environ={}, installed=lambda n: False)
    with pytest.raises(ValueError, match="not one of auto, tensorflow, jax, torch"):
        choose_backend("mxnet", gpu_job=False, environ={})


def test_a_job_has_a_gpu_when_the_rule_or_the_scheduler_grants_one():
    assert granted_gpus(1, {}) == (1, "--gpus 1")
    assert granted_gpus(1, {"CUDA_VISIBLE_DEVICES": "3"}) == (1, "--gpus 1, CUDA_VISIBLE_DEVICES=3")
    # A GRES request without the gpu resource: the scheduler's CUDA_VISIBLE_DEVICES says it.
    assert granted_gpus(0, {"CUDA_VISIBLE_DEVICES": "2,3"}) == (2, "CUDA_VISIBLE_DEVICES=2,3")
    assert granted_gpus(None, {"CUDA_VISIBLE_DEVICES": "GPU-5e1f"}) == (1, "CUDA_VISIBLE_DEVICES=GPU-5e1f")
    for hidden in ("", " ", "-1", "NoDevFiles"):
        assert granted_gpus(None, {"CUDA_VISIBLE_DEVICES": hidden}) == (0, "")
    assert granted_gpus(None, {}) == (0, "")


def test_a_cpu_job_trains_on_tensorflow_and_is_kept_away_from_cuda():
    env = {}
    device = setup({"backend": "auto"}, job="train", gpus=0, environ=env)
    assert (device.backend, device.kind, device.granted, device.fallback) == ("tensorflow", "cpu", 0, False)
    assert env["KERAS_BACKEND"] == "tensorflow"
    # JAX would start only its CPU backend, TensorFlow and PyTorch see no GPU.
    assert env["JAX_PLATFORMS"] == "cpu" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert device.line().startswith("device: train trains on cpu ") and "no GPU granted" in device.line()


def _tiny(tmp_path, **train):
    config = tiny_config(
        network="mlp",
        tuning={"workers": 1, "trials": 2, "trials_per_gpu": 2, "max_epochs": 1, "patience": 0,
                "pruner": "none", "startup_trials": 1,
                "search_space": {"batch_size": 16, "dense_layers": 1, "dense_units": 8}},
        train={"epochs": 1, "ensemble": 1, **train},
    )
    return write_config(tmp_path, config)


def _popdl(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "CUDA_VISIBLE_DEVICES")}
    env.update(env_extra or {}, PYTHONPATH=os.pathsep.join([str(REPO / "scripts"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "popdl", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_job_granted_a_gpu_its_backend_cannot_see_stops_with_one_line(tmp_path):
    config = _tiny(tmp_path)
    # Granted by the rule (--gpus, the gpu resource): the tune job stops before touching the study.
    tune = _popdl("--quiet", "tune", "--configfile", str(config), "--dataset", str(tmp_path / "no-dataset"),
                  "--worker", "0", "--gpus", "1", "--tuning-dir", str(tmp_path / "tuning"),
                  "--out", str(tmp_path / "tuning" / "worker-0.json"))
    # Declared by the scheduler only (CUDA_VISIBLE_DEVICES): the train job stops alike.
    train = _popdl("--quiet", "train", "--configfile", str(config), "--dataset", str(tmp_path / "no-dataset"),
                   "--best", str(tmp_path / "best.json"), "--out", str(tmp_path / "model"),
                   env_extra={"CUDA_VISIBLE_DEVICES": "0"})
    for proc, start in ((tune, "the tune worker 0 job was granted 1 GPU (--gpus 1) but Keras on "),
                        (train, "the train job was granted 1 GPU (CUDA_VISIBLE_DEVICES=0) but Keras on ")):
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"popdl: error: {start}"), lines[0]
        for fix in ("make install GPU=1", "train.backend", "train.allow_cpu_fallback: true"):
            assert fix in lines[0]
    assert not (tmp_path / "tuning").exists() and not (tmp_path / "model").exists()


def test_explicit_cpu_fallback_trains_and_runs_the_jobs_trials_at_once(tiny_dataset, tmp_path):
    from optuna.trial import TrialState

    from popdl.config import load_config
    from popdl.stages import stage_config
    from popdl.tuning import load_study

    config = _tiny(tmp_path, allow_cpu_fallback=True)
    out = tmp_path / "tuning" / "worker-0.json"
    proc = _popdl("tune", "--configfile", str(config), "--dataset", str(tiny_dataset), "--worker", "0",
                  "--gpus", "1", "--threads", "2", "--tuning-dir", str(tmp_path / "tuning"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    # The job and each of its two processes say what they train on, and why not on the GPU.
    devices = [line.split("device: ", 1)[1] for line in proc.stderr.splitlines() if "device: " in line]
    assert len(devices) == 3, proc.stderr[-4000:]
    for job, line in zip(("tune worker 0 process 0 ", "tune worker 0 process 1 ", "tune worker 0 trains "),
                         sorted(devices)):
        assert line.startswith(job) and " on cpu " in line, line
        assert "1 GPU granted (--gpus 1), none usable: CPU fallback allowed by train.allow_cpu_fallback" in line
    summary = json.loads(out.read_text())
    assert summary["processes"] == 2 and summary["finished"] == [0, 1] and summary["failed"] == []
    assert summary["device"]["fallback"] is True and summary["device"]["kind"] == "cpu"
    # Each process ran its share, tagged with its own index, in one study.
    study = load_study(stage_config(load_config(config), "tune"), tiny_dataset, tuning_dir=tmp_path / "tuning")
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["worker"] for t in done) == [0, 1]
    assert [p["process"] for p in summary["per_process"]] == [0, 1]


def test_mixed_precision_trains_in_bf16_and_saves_a_float32_model(tiny_dataset, tmp_path):
    from popdl.config import load_config
    from popdl.dataset import Dataset
    from popdl.model_io import load_model
    from popdl.models import get_network
    from popdl.stages import stage_config
    from popdl.training import dataset_shapes, set_precision, train_final

    net = get_network("cnn2d")
    hp = {"network": "cnn2d", "batch_size": 16, "learning_rate": 1e-3, "optimizer": "adam", "conv_layers": 1,
          "filters": 4, "dense_units": 8, "dense_layers": 1}
    set_precision(True)
    try:
        model = net.build(dataset_shapes(Dataset(tiny_dataset)), hp=hp, n_classes=3, n_params=7)
    finally:
        set_precision(False)
    assert model.get_layer("img_conv0").compute_dtype == "bfloat16"
    assert model.get_layer("img_conv0").variable_dtype == "float32"
    assert {o.dtype for o in model.outputs} == {"float32"}

    settings = stage_config(load_config(_tiny(tmp_path, mixed_precision=True)), "train")
    train_final(settings, tiny_dataset, best={"hyper_parameters": hp, "number": 0, "temperature": 1.0},
                out=tmp_path / "model")
    saved = load_model(tmp_path / "model")
    assert {layer.dtype_policy.name for layer in saved.keras_model.layers} == {"float32"}
    test = Dataset(tiny_dataset).load("test")
    pred = saved.predict(test["images"], test["distances"], test["stats"])
    assert np.all(np.isfinite(pred.probabilities)) and np.all(np.isfinite(pred.estimates))


def test_jobs_that_do_not_train_say_they_run():
    from popdl.device import Device

    line = Device("evaluate", "tensorflow", "cpu", "CPU", 0, "", 1).line()
    assert line.startswith("device: evaluate runs on cpu ") and "trains" not in line
