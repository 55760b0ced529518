"""Interval calibration: the cross-fitted ensemble against the calibration part alone.

From a finished run (its ``dataset/`` and ``tuning/best.json`` under
``--results``), the final model is fitted twice with the run config's train
settings, once with ``train.cross_fit: false`` (the conformal offsets come
from the calibration part of the validation split, 150 simulations with the
default config) and once with ``train.cross_fit: true`` (from every
simulation the final fit trains on, each scored by the ensemble member that
left it out), and each model is evaluated on the run's test split as the
``evaluate`` job does.  Printed per parameter: the calibration examples, the
test-set coverage of the 90 % interval before and after the conformal
offsets, and the R²; then the accuracy and the ECE before and after the
temperature.

    python benchmarks/bench_calibration.py --configfile config/config.yaml --results results/demo

Without ``--results``, the config's own ``results/{run}``; when that holds
no sweep yet, the workflow first makes one (``snakemake --cores all`` for
``tuning/best.json``: the simulations, dataset and sweep of ``make run``).

Both fits use the same hyper-parameters, seeds and epochs; only which
examples each member trains on and where the offsets come from differ.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

MODES = {"calibration part": False, "cross-fitted": True}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--results", type=Path,
                        help="a finished run's results folder (dataset/, tuning/best.json); default: the config's "
                             "results/{run}, made by the workflow if need be")
    parser.add_argument("--work", type=Path, help="folder for the two models (default: a temporary one)")
    args = parser.parse_args(argv)

    from popdl.config import load_config
    from popdl.evaluate import evaluate
    from popdl.stages import stage_config
    from popdl.training import MIN_CROSS_FIT_MEMBERS, train_final

    config = load_config(args.configfile)
    results = args.results or ROOT / "results" / config["run"]
    dataset, best_file = results / "dataset", results / "tuning" / "best.json"
    if args.results is None and not best_file.is_file():
        target = f"results/{config['run']}/tuning/best.json"
        print(f"no sweep in {results}: running the workflow for {target}", flush=True)
        subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--cores", "all", "--configfile",
                        str(args.configfile), target], cwd=ROOT, check=True)
    for path in (dataset / "manifest.json", best_file):
        if not path.is_file():
            print(f"error: {path} not found: give --results a finished run's results folder", file=sys.stderr)
            return 2
    settings = stage_config(config, "train")
    if int(settings["train"].get("ensemble", 1)) < MIN_CROSS_FIT_MEMBERS:
        print(f"error: train.ensemble must be >= {MIN_CROSS_FIT_MEMBERS} to cross-fit", file=sys.stderr)
        return 2
    best = json.loads(best_file.read_text())
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for mode, cross in MODES.items():
            settings["train"]["cross_fit"] = cross
            folder = work / ("cross_fit" if cross else "held_out")
            start = time.perf_counter()
            train_final(settings, dataset, best=best, out=folder / "model")
            metrics = evaluate(dataset, folder / "model", best=best, out=folder / "evaluation", config_hash="bench",
                               root_seed=int(settings["seed"]))
            rows[mode] = (metrics, time.perf_counter() - start)
    params = list(next(iter(rows.values()))[0]["regression"])
    print(f"{results}: {next(iter(rows.values()))[0]['n_test']} test simulations, "
          f"{settings['train']['ensemble']} fits per output")
    print(f"{'parameter':10s} " + " ".join(f"{m:>44s}" for m in rows))
    print(f"{'':10s} " + " ".join(f"{'examples':>9s} {'coverage raw':>13s} {'calibrated':>10s} {'R2':>9s}" for _ in rows))
    for p in params:
        cells = []
        for metrics, _ in rows.values():
            r, ic = metrics["regression"][p], metrics.get("interval_calibration") or {}
            cells.append(f"{ic.get('n', {}).get(p, 0):9d} {r.get('coverage_uncalibrated', r['coverage']):13.3f} "
                         f"{r['coverage']:10.3f} {r['r2']:9.3f}")
        print(f"{p:10s} " + " ".join(cells))
    for mode, (metrics, seconds) in rows.items():
        cal = metrics.get("calibration") or {}
        cover = [r["coverage"] for r in metrics["regression"].values()]
        print(f"{mode}: accuracy {metrics['classification']['accuracy']:.3f}, ECE {cal.get('ece_before', float('nan')):.3f}"
              f" -> {cal.get('ece_after', float('nan')):.3f} (T = {cal.get('temperature', 1.0):.3f}); coverage "
              f"{min(cover):.3f}-{max(cover):.3f}; fit and evaluation {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
