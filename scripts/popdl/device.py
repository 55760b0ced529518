"""Which Keras backend a job trains with, and on which device.

A tune or train job *has a GPU* when it was granted one: the ``--gpus N``
the workflow passes (the rule's ``gpu`` resource) is above 0, or the
scheduler set ``CUDA_VISIBLE_DEVICES`` to a non-empty list of devices (a
GRES request such as ``gres: gpu:a100:1`` does that without the ``gpu``
resource).  Everything else is a CPU job.

``train.backend`` chooses the Keras backend:

``auto`` (default)
    ``KERAS_BACKEND`` when it is set; otherwise JAX (XLA with CUDA) on a job
    that has a GPU and TensorFlow on a CPU job (the fastest backend measured
    on each; when the first choice is not installed, the next installed one
    of jax, tensorflow, torch).
``tensorflow`` | ``jax`` | ``torch``
    that backend (``tensorflow[and-cuda]`` on a GPU node, say).

:func:`setup` runs before Keras is first imported: it sets ``KERAS_BACKEND``,
keeps a CPU job away from CUDA (``JAX_PLATFORMS=cpu``,
``CUDA_VISIBLE_DEVICES=""``), limits the CPU threads, then asks the backend
which GPUs it sees and logs one INFO line naming the device the job trains
on.  A job granted a GPU whose backend sees none stops with one line naming
the fix (:class:`NoGPUError`), unless ``train.allow_cpu_fallback`` is true:
then it says so and trains on the CPU, with the CPU's backend under
``auto``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

__all__ = [
    "BACKENDS",
    "NoGPUError",
    "Device",
    "visible_devices",
    "granted_gpus",
    "choose_backend",
    "setup",
    "cpu_name",
]

log = logging.getLogger("popdl.device")

#: Values of ``train.backend``.
BACKENDS = ("auto", "tensorflow", "jax", "torch")
#: Backends ``auto`` tries, first choice first.
_AUTO_ORDER = {True: ("jax", "tensorflow", "torch"), False: ("tensorflow", "jax", "torch")}
#: How to get a backend that sees the GPU.
FIX = ("install the GPU build (make install GPU=1, or pip install -e '.[gpu]'; conda: envs/train.yaml), "
       "choose a backend that sees it (train.backend), or set train.allow_cpu_fallback: true to train on the CPU")


class NoGPUError(RuntimeError):
    """A job granted a GPU whose backend sees none (one line, naming the fix)."""


@dataclass
class Device:
    """What a job trains on."""

    job: str
    backend: str
    kind: str  # "gpu" or "cpu"
    name: str
    granted: int
    declared: str  # how the GPUs were granted: "--gpus 1", "CUDA_VISIBLE_DEVICES=0", or ""
    threads: int | None
    fallback: bool = False

    def line(self) -> str:
        """The one log line of the job's device."""
        if self.granted:
            grant = f"{self.granted} GPU{'s' if self.granted > 1 else ''} granted ({self.declared})"
            if self.fallback:
                grant += ", none usable: CPU fallback allowed by train.allow_cpu_fallback"
        else:
            grant = "no GPU granted"
        verb = "trains on" if self.job.startswith(("tune", "train", "bench")) else "runs on"  # evaluate, predict
        return (f"device: {self.job} {verb} {self.kind} {self.name} with Keras on {self.backend} "
                f"({grant}; {self.threads or 'default'} CPU threads)")

    def to_dict(self) -> dict:
        return {"backend": self.backend, "kind": self.kind, "name": self.name, "granted": self.granted,
                "declared": self.declared, "threads": self.threads, "fallback": self.fallback}


def visible_devices(environ=None) -> list[str]:
    """The devices listed in ``CUDA_VISIBLE_DEVICES`` ([] when unset, empty,
    or a value that hides every device such as ``-1`` or ``NoDevFiles``)."""
    environ = os.environ if environ is None else environ
    value = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items or items[0].startswith("-") or items[0].lower() in ("nodevfiles", "none", "void"):
        return []
    return items


def granted_gpus(gpus: int | None, environ=None) -> tuple[int, str]:
    """``(number, how)``: the GPUs a job was granted, from ``--gpus`` (the rule's
    gpu resource) or else ``CUDA_VISIBLE_DEVICES`` set by the scheduler."""
    environ = os.environ if environ is None else environ
    visible = visible_devices(environ)
    shown = f"CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')}" if visible else ""
    if gpus and int(gpus) > 0:
        return int(gpus), f"--gpus {int(gpus)}" + (f", {shown}" if shown else "")
    if visible:
        return len(visible), shown
    return 0, ""


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def choose_backend(requested: str, *, gpu_job: bool, environ=None, installed=_installed) -> str:
    """The Keras backend for ``train.backend`` = ``requested`` on a job with
    (``gpu_job``) or without a GPU; ``installed(name)`` says whether a backend
    can be imported."""
    environ = os.environ if environ is None else environ
    if requested not in BACKENDS:
        raise ValueError(f"train.backend {requested!r} is not one of {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    env = environ.get("KERAS_BACKEND", "").strip()
    if env:
        if env not in BACKENDS[1:]:
            raise ValueError(f"KERAS_BACKEND={env!r} is not one of {', '.join(BACKENDS[1:])}")
        return env
    order = _AUTO_ORDER[bool(gpu_job)]
    for name in order:
        if installed(name):
            return name
    raise RuntimeError(f"no Keras backend is installed ({', '.join(order)}); run make install")


def cpu_name() -> str:
    """The processor's model name (Linux), else the machine type."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _quiet_jax_logs():
    # JAX warns through logging when it finds no CUDA build; the device line says it instead.
    for name in ("jax._src.xla_bridge", "jax"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _jax_gpus() -> list[str]:
    _quiet_jax_logs()
    import jax

    try:
        return [f"{d.device_kind} ({d.platform}:{d.id})" for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
    except RuntimeError:
        return []


def gpu_names(backend: str) -> list[str]:
    """The GPUs ``backend`` sees in this process (imports the backend)."""
    if backend == "jax":
        return _jax_gpus()
    if backend == "tensorflow":
        import tensorflow as tf

        names = []
        for i, dev in enumerate(tf.config.list_physical_devices("GPU")):
            try:
                names.append(f"{tf.config.experimental.get_device_details(dev).get('device_name', 'GPU')} (gpu:{i})")
            except (RuntimeError, ValueError):
                names.append(dev.name)
        return names
    if backend == "torch":
        import torch

        return [f"{torch.cuda.get_device_name(i)} (cuda:{i})" for i in range(torch.cuda.device_count())]
    raise ValueError(f"unknown backend {backend!r}")


def _cpu_only(environ) -> None:
    """Keep a CPU job away from CUDA: JAX initialises only its CPU backend,
    TensorFlow and PyTorch see no GPU."""
    environ["JAX_PLATFORMS"] = "cpu"
    environ["CUDA_VISIBLE_DEVICES"] = ""


def _gpu_memory(environ, processes: int, preallocate: bool) -> None:
    """Processes sharing one GPU: JAX preallocates 75 % of the GPU per process by
    default, so each of ``processes`` gets its share; TensorFlow grows on demand."""
    environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if not preallocate:
        environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    elif processes > 1:
        environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.8 / processes:.3f}")


def thread_env(environ, threads: int | None) -> None:
    """Thread limits read when the backend starts (set before importing it)."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        environ.setdefault(var, str(threads))
    if int(threads) == 1 and "xla_cpu_multi_thread_eigen" not in environ.get("XLA_FLAGS", ""):
        # XLA's CPU backend: one thread for its Eigen operations (it has no thread-count flag).
        environ["XLA_FLAGS"] = (environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()


def limit_threads(backend: str, threads: int | None) -> None:
    """Limit an imported backend's CPU threads (``None``: its default)."""
    if not threads:
        return
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        except RuntimeError:  # already initialised in this process
            log.debug("TensorFlow threads already set")
    elif backend == "torch":
        import torch

        torch.set_num_threads(int(threads))


def setup(train: dict, *, job: str, gpus: int | None = None, threads: int | None = None, processes: int = 1,
          check_only: bool = False, environ=None) -> Device:
    """Choose and start the backend of a job; return (and log) its device.

    ``train``: the config's ``train`` section (``backend``,
    ``allow_cpu_fallback``); ``job``: its name in messages (``tune worker
    0``); ``gpus``: the GPUs the workflow granted (``--gpus``); ``threads``:
    its CPU threads; ``processes``: processes that will share the GPU
    (``tuning.trials_per_gpu``); ``check_only``: for a process that trains
    nothing itself (it starts Keras only if that is needed to see the GPU,
    and takes no GPU memory ahead).  Raises :class:`NoGPUError` when a job
    granted a GPU cannot use one and CPU fallback is not allowed.
    """
    environ = os.environ if environ is None else environ
    requested = train.get("backend", "auto") or "auto"
    allow = bool(train.get("allow_cpu_fallback", False))
    granted, declared = granted_gpus(gpus, environ)
    explicit_env = bool(environ.get("KERAS_BACKEND", "").strip())
    backend = choose_backend(requested, gpu_job=granted > 0, environ=environ)
    fallback = False
    thread_env(environ, threads)
    if not granted:
        _cpu_only(environ)
    else:
        _gpu_memory(environ, processes, preallocate=not check_only)
        if requested == "auto" and not explicit_env and backend == "jax" and not _jax_gpus():
            # auto on a GPU job: JAX sees no GPU (a CPU-only jaxlib, or no usable device).
            if not allow:
                raise NoGPUError(_no_gpu(job, granted, declared, "jax"))
            backend, fallback = choose_backend("auto", gpu_job=False, environ=environ), True
        elif backend == "tensorflow" and _tensorflow_cpu_build():
            # Known without starting TensorFlow: its CPU build sees no GPU.
            if not allow:
                raise NoGPUError(_no_gpu(job, granted, declared, backend))
            fallback = True
    environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        _quiet_jax_logs()
    if not check_only:
        import keras

        if keras.backend.backend() != backend:
            raise RuntimeError(f"Keras was already imported with the {keras.backend.backend()} backend in this "
                               f"process; {job} needs {backend} (set KERAS_BACKEND={backend} before starting)")
        limit_threads(backend, threads)
    seen = gpu_names(backend) if granted and not fallback else []
    if granted and not seen and not fallback:
        if not allow:
            raise NoGPUError(_no_gpu(job, granted, declared, backend))
        fallback = True
    if seen:
        device = Device(job, backend, "gpu", ", ".join(seen), granted, declared, threads)
    else:
        device = Device(job, backend, "cpu", cpu_name(), granted, declared, threads, fallback)
    (log.warning if fallback else log.info)(device.line())
    return device


def _no_gpu(job: str, granted: int, declared: str, backend: str) -> str:
    why = {"tensorflow": " (tensorflow-cpu has no GPU support)" if _tensorflow_cpu_build() else "",
           "jax": "" if _cuda_jax() else " (this jaxlib has no CUDA support)"}.get(backend, "")
    return (f"the {job} job was granted {granted} GPU{'s' if granted > 1 else ''} ({declared}) but Keras on "
            f"{backend} sees none{why}: {FIX}")


def _installed_dist(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def _tensorflow_cpu_build() -> bool:
    """TensorFlow is installed as its CPU-only build (tensorflow-cpu, no tensorflow)."""
    return _installed_dist("tensorflow-cpu") and not _installed_dist("tensorflow")


def _cuda_jax() -> bool:
    return any(_installed_dist(n) for n in ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt",
                                            "jax-cuda13-pjrt"))
