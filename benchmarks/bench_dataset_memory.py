"""Peak memory of the dataset step: bounded by the shard size, not by the number of simulations.

Runs the real steps on a very small genome so that 100,000 simulations are
affordable on a laptop: ``popdl plan``, then ``popdl simulate`` and
``popdl features`` for every chunk (chunks in parallel processes), then
``popdl dataset`` twice in a fresh process each, on the first 10,000 and on
all 100,000 simulations, with the same shard size.  Draw ``i`` is the same
simulation in both (seeds come from the draw index), so the smaller data set
is a prefix of the larger one.  The peak resident memory (ru_maxrss of the
dataset process) of both is printed, with their ratio and the memory of a
process that only imports the package.

    python benchmarks/bench_dataset_memory.py [--sims 100000] [--small 10000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from popdl.cli import main as popdl_main  # noqa: E402
from popdl.config import prepare  # noqa: E402
from popdl.stages import stage_json  # noqa: E402

SCENARIO = "isolation"


def bench_config(*, sims: int, chunk: int, shard_size: int) -> dict:
    return {
        "run": "memory",
        "seed": 11,
        "samples": {"pop1": 2, "pop2": 2},
        "genome": {"loci": 1, "length": 2000, "mutation_rate": 1.0e-8, "recombination_rate": 1.0e-8},
        "scenarios": {
            # The default config's scenario, with its priors.
            SCENARIO: yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["scenarios"][SCENARIO],
        },
        "simulations": {"per_scenario": sims, "chunk": chunk, "shard_size": shard_size},
        "features": {"snps": 16},
    }


def run_chunk(job: tuple) -> None:
    """simulate + features of one chunk, through the command-line entry point."""
    sim_settings, feat_settings, plan, start, stop, sims, feats = job
    for argv in (
        ["--quiet", "simulate", "--settings", sim_settings, "--scenario", SCENARIO, "--plan", plan,
         "--start", str(start), "--stop", str(stop), "--out", sims],
        ["--quiet", "features", "--settings", feat_settings, "--sims", sims, "--out", feats],
    ):
        if popdl_main(argv) != 0:
            raise SystemExit(f"popdl {argv[1]} failed")


def peak_rss_mb(argv: list[str]) -> float:
    """Run ``argv`` in a fresh process; its peak resident memory in MiB."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "scripts"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if status != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed: {err[-2000:]}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--shard-size", type=int, default=1_000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", help="keep the files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.small % args.chunk or args.sims % args.chunk:
        raise SystemExit("--sims and --small must be multiples of --chunk")

    config = prepare(bench_config(sims=args.sims, chunk=args.chunk, shard_size=args.shard_size), base_dirs=(ROOT,))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        plan = tmp / "plan.tsv"
        t0 = time.perf_counter()
        if popdl_main(["--quiet", "plan", "--settings", stage_json(config, "plan", SCENARIO), "--scenario", SCENARIO,
                       "--out", str(plan)]) != 0:
            raise SystemExit("popdl plan failed")
        sim_settings, feat_settings = stage_json(config, "simulate", SCENARIO), stage_json(config, "features")
        jobs, features = [], []
        for i, start in enumerate(range(0, args.sims, args.chunk)):
            sims, feats = tmp / f"sims-{i}.npz", tmp / f"features-{i}.npz"
            jobs.append((sim_settings, feat_settings, str(plan), start, start + args.chunk, str(sims), str(feats)))
            features.append(str(feats))
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(run_chunk, jobs))
        print(f"plan + simulate + features of {args.sims:,} simulations ({len(jobs)} chunks, {args.jobs} processes): "
              f"{time.perf_counter() - t0:.0f} s")

        dataset_settings = stage_json(config, "dataset")
        py = sys.executable
        baseline = peak_rss_mb([py, "-c", "import popdl.cli, popdl.cli_core, popdl.dataset"])
        peaks = {}
        for n in (args.small, args.sims):
            files = features[: n // args.chunk]
            out = tmp / f"dataset-{n}"
            t = time.perf_counter()
            peaks[n] = peak_rss_mb([py, "-m", "popdl", "--quiet", "dataset", "--settings", dataset_settings,
                                    "--out", str(out), *files])
            manifest = json.loads((out / "manifest.json").read_text())
            examples = sum(s["n"] for s in manifest["splits"].values())
            shard_bytes = sum(p.stat().st_size for p in (out / "train" / "shard-00000").iterdir())
            total_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            print(f"dataset of {examples:>7,} simulations: peak RSS {peaks[n]:6.1f} MiB "
                  f"({time.perf_counter() - t:.0f} s; one shard of {args.shard_size} examples = "
                  f"{shard_bytes / 2**20:.2f} MiB, the whole dataset = {total_bytes / 2**20:.1f} MiB on disk)")
    small, large = peaks[args.small], peaks[args.sims]
    print(f"process that only imports popdl: peak RSS {baseline:.1f} MiB")
    print(f"peak RSS ratio {args.sims:,} / {args.small:,} simulations: {large / small:.3f} "
          f"(simulations x{args.sims / args.small:.0f}); above the import baseline: "
          f"{small - baseline:.1f} MiB vs {large - baseline:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
