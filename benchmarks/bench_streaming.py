"""Training throughput streaming shards from disk against in-memory arrays.

The same network (same hyper-parameters and seed) is fitted on the same
real dataset (the default config's scenarios, simulated once) in two ways:

* streaming: :class:`popdl.training.ShardSequence`, memory-mapped shards read
  batch by batch, reshuffled every epoch (what ``train.streaming: true`` does);
* in memory: the whole training split loaded as NumPy arrays and given to
  ``model.fit(x, y, batch_size=..., shuffle=True)``.

Throughput is training examples per second over the epochs after the first
(a warm-up epoch compiles the step function first); each repetition fits
both sides for a few epochs, alternating which goes first so that other load
on the machine hits both alike, and the medians over all epochs are reported
(wall clock; examples per CPU-second are printed too).  Target: ratio (streaming / in memory) >= 0.9.

    python benchmarks/bench_streaming.py [--network cnn2d] [--epochs 3] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dataset import make_dataset  # noqa: E402

TASKS = ("classify", "regress")
HP = {"learning_rate": 1e-3, "optimizer": "adam", "batch_size": 128, "conv_layers": 2, "filters": 16,
      "kernel_size": 3, "dense_units": 64, "dropout": 0.25, "batch_norm": True}


def build(dataset, *, network: str, streaming: bool, epochs: int, seed: int = 0, loader_threads: int = 1):
    """A compiled model and its training data (streamed or in memory)."""
    import keras

    from popdl.models import get_network
    from popdl.preprocess import Preprocessor
    from popdl.training import compile_model, dataset_shapes, make_data

    prep = Preprocessor.fit(dataset)
    net = get_network(network)
    keras.utils.set_random_seed(seed)
    data, steps = make_data(dataset, "train", streaming=streaming, in_memory_max_mb=1e9, batch_size=HP["batch_size"],
                            inputs=net.inputs, prep=prep, tasks=TASKS, seed=seed, loader_threads=loader_threads)
    model = net.build(dataset_shapes(dataset), hp=HP, n_classes=len(dataset.scenarios),
                      n_params=len(prep.param_names), tasks=TASKS)
    compile_model(model, HP, steps_per_epoch=steps, epochs=epochs, quantiles=(0.05, 0.5, 0.95), tasks=TASKS)
    return model, data


def epoch_seconds(model, data, epochs: int) -> list[tuple[float, float]]:
    """Wall and CPU seconds of each epoch of one ``fit`` call of ``epochs`` epochs."""
    import keras

    out = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            out.append((time.perf_counter() - self.t[0], time.process_time() - self.t[1]))

    model.fit(**data, epochs=epochs, verbose=0, callbacks=[Clock()])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", default="cnn2d")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per fit (one fit per side and repetition)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--loader-threads", type=int, default=1, help="read-ahead threads of the stream (1: none)")
    ap.add_argument("--per-scenario", type=int, default=1000)
    ap.add_argument("--dataset", type=Path, help="reuse this dataset folder instead of simulating one")
    args = ap.parse_args(argv)

    from popdl.dataset import Dataset
    from popdl.training import configure_backend

    configure_backend(None)
    with tempfile.TemporaryDirectory(prefix="bench_streaming_") as tmp:
        folder = args.dataset or make_dataset(Path(tmp) / "dataset", per_scenario=args.per_scenario)
        dataset = Dataset(folder)
        shards = len(dataset.manifest["splits"]["train"]["shards"])
        print(f"dataset {folder}: {dataset.size('train')} training examples in {shards} shards; "
              f"network {args.network}, batch {HP['batch_size']}")
        stream = build(dataset, network=args.network, streaming=True, epochs=args.epochs,
                       loader_threads=args.loader_threads)
        memory = build(dataset, network=args.network, streaming=False, epochs=args.epochs)
        for m in (stream, memory):  # the first epoch compiles the step function
            epoch_seconds(*m, 1)
        n = dataset.size("train")
        times = {"stream": [], "memory": []}
        # Repetitions alternate which side runs first so that background load hits both alike.
        for rep in range(args.reps):
            for side in (("stream", "memory") if rep % 2 == 0 else ("memory", "stream")):
                times[side] += epoch_seconds(*(stream if side == "stream" else memory), args.epochs)
            print(f"  rep {rep + 1}: streaming {n / statistics.median(t[0] for t in times['stream'][-args.epochs:]):.0f} "
                  f"examples/s, in memory {n / statistics.median(t[0] for t in times['memory'][-args.epochs:]):.0f} "
                  "examples/s")
        wall = {k: n / statistics.median(t[0] for t in v) for k, v in times.items()}
        cpu = {k: n / statistics.median(t[1] for t in v) for k, v in times.items()}
        print(f"examples per CPU-second: streaming {cpu['stream']:.0f}, in memory {cpu['memory']:.0f}, "
              f"ratio {cpu['stream'] / cpu['memory']:.3f}")
        ratio = wall["stream"] / wall["memory"]
        print(f"examples per second (median over epochs): streaming {wall['stream']:.0f}, "
              f"in memory {wall['memory']:.0f}")
        print(f"ratio (streaming / in memory): {ratio:.3f}  (target >= 0.9) {'OK' if ratio >= 0.9 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
