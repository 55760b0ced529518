"""Temperature scaling: the rule popdl uses against the fitted temperature, on resampled calibration parts.

From a finished run (its ``model/`` and ``dataset/`` under ``--results``),
the final model's logits are computed once for the calibration part of the
validation split (the simulations its temperature was fitted on, as
``bundle.json`` lists them) and for the test split: none of them trained
the model.  They are pooled, and ``--splits`` times a random subset of the
calibration part's size plays the calibration part, the rest the test set.
On each split two rules choose a temperature on the calibration subset:

* ``fitted``: the temperature that minimises the NLL there, used where a
  likelihood-ratio test of T = 1 rejects at 5 % and it does not raise the
  ECE there (else shrunk towards 1 until it does not; the rule of earlier
  versions);
* ``popdl``: :func:`popdl.calibration.calibrate`, which uses the end of the
  fitted temperature's 95 % confidence interval nearest 1 instead.

Printed: how often each rule moves off T = 1, the mean ECE and NLL of the
other simulations at T = 1 and under each rule, and how often each rule
makes them worse than T = 1; then the ratio of those rates, popdl ÷ fitted
(below 1: popdl's rule harms less often).  The run's own split (its
calibration part against its test set) is printed first.

    python benchmarks/bench_temperature.py --results results/demo --splits 300
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def fitted_rule(logits, labels) -> float:
    """The rule of earlier versions: the fitted temperature, kept after the same test and ECE guard."""
    from popdl.calibration import (TEMPERATURE_TEST_LEVEL, _shrink, fit_temperature, likelihood_ratio_p,
                                   negative_log_likelihood, reliability)
    from popdl.model_io import softmax

    t = fit_temperature(logits, labels)
    before = {"nll": negative_log_likelihood(logits, labels), "ece": reliability(labels, softmax(logits))["ece"]}
    nll_t = negative_log_likelihood(logits, labels, t)
    if nll_t >= before["nll"] or likelihood_ratio_p(before["nll"], nll_t, labels.size) >= TEMPERATURE_TEST_LEVEL:
        return 1.0
    if reliability(labels, softmax(logits, t))["ece"] <= before["ece"]:
        return t
    shrunk, _ = _shrink(logits, labels, t, before, bins=10)
    return 1.0 if shrunk is None else shrunk


def scores(logits, labels, temperature: float) -> tuple[float, float]:
    from popdl.calibration import negative_log_likelihood, reliability
    from popdl.model_io import softmax

    return (reliability(labels, softmax(logits, temperature))["ece"],
            negative_log_likelihood(logits, labels, temperature))


def calibration_rows(dataset, bundle: dict) -> np.ndarray:
    """The validation split's rows of the calibration part, from the (scenario, draw) pairs the bundle lists."""
    val = dataset.load("validation", ("labels", "draw"))
    wanted = {(s, int(d)) for s, d in bundle["calibration"]["draws"]}
    keys = [(dataset.scenarios[int(lab)], int(d)) for lab, d in zip(val["labels"], val["draw"])]
    return np.array([k in wanted for k in keys], dtype=bool)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "demo",
                        help="a finished run's results folder (model/, dataset/)")
    parser.add_argument("--splits", type=int, default=300, help="random calibration / test splits")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits")
    args = parser.parse_args(argv)

    import logging

    from popdl.calibration import calibrate
    from popdl.dataset import Dataset
    from popdl.model_io import load_model

    model_dir, data_dir = args.results / "model", args.results / "dataset"
    for path in (model_dir / "bundle.json", data_dir / "manifest.json"):
        if not path.is_file():
            print(f"error: {path} not found: give --results a finished run's results folder", file=sys.stderr)
            return 2
    bundle = json.loads((model_dir / "bundle.json").read_text())
    if not (bundle.get("calibration") or {}).get("draws"):
        print(f"error: {model_dir} lists no calibration examples (train.calibration_fraction 0?)", file=sys.stderr)
        return 2
    model, dataset = load_model(model_dir), Dataset(data_dir)
    parts = {}
    for split in ("validation", "test"):
        d = dataset.load(split, ("images", "distances", "stats", "labels"))
        logits = np.asarray(model.raw_outputs(d["images"], d["distances"], d["stats"])["scenario"], dtype=np.float64)
        labels = np.asarray(d["labels"], dtype=np.int64)
        if split == "validation":
            rows = calibration_rows(dataset, bundle)
            logits, labels = logits[rows], labels[rows]
        parts[split] = (logits, labels)
    logging.getLogger("popdl").setLevel(logging.WARNING)
    (cal_x, cal_y), (test_x, test_y) = parts["validation"], parts["test"]
    n_cal = cal_y.size
    rules = {"fitted": fitted_rule, "popdl": lambda x, y: calibrate(x, y)["temperature"]}
    print(f"{args.results}: {n_cal} calibration and {test_y.size} test simulations, {len(model.scenarios)} scenarios")
    one = scores(test_x, test_y, 1.0)
    own = "; ".join(f"{name} T = {t:.3f}: ECE {e:.4f}, NLL {n:.4f}"
                    for name, rule in rules.items()
                    for t in [rule(cal_x, cal_y)] for e, n in [scores(test_x, test_y, t)])
    print(f"the run's own split: T = 1: ECE {one[0]:.4f}, NLL {one[1]:.4f}; {own}")

    x, y = np.concatenate([cal_x, test_x]), np.concatenate([cal_y, test_y])
    rng = np.random.default_rng(args.seed)
    table = {name: [] for name in ("one", *rules)}
    moved = {name: 0 for name in rules}
    for _ in range(args.splits):
        order = rng.permutation(y.size)
        c, t = order[:n_cal], order[n_cal:]
        table["one"].append(scores(x[t], y[t], 1.0))
        for name, rule in rules.items():
            temperature = rule(x[c], y[c])
            moved[name] += temperature != 1.0
            table[name].append(scores(x[t], y[t], temperature))
    arrays = {name: np.array(rows) for name, rows in table.items()}
    base = arrays["one"]
    print(f"{args.splits} random splits of the {y.size} simulations ({n_cal} to calibrate, {y.size - n_cal} to score):")
    print(f"  T = 1:  mean ECE {base[:, 0].mean():.4f}, mean NLL {base[:, 1].mean():.4f}")
    worse = {}
    for name in rules:
        a = arrays[name]
        worse[name] = [float(np.mean(a[:, k] > base[:, k] + 1e-12)) for k in (0, 1)]
        print(f"  {name}: T != 1 on {moved[name] / args.splits:.1%} of the splits; mean ECE {a[:, 0].mean():.4f}, "
              f"mean NLL {a[:, 1].mean():.4f}; ECE worse than T = 1 on {worse[name][0]:.1%}, "
              f"NLL on {worse[name][1]:.1%}")
    for k, what in enumerate(("ECE", "NLL")):
        f, p = worse["fitted"][k], worse["popdl"][k]
        ratio = f"{p / f:.2f}" if f > 0 else ("1.00" if p == 0 else "inf")
        print(f"ratio of the splits made worse ({what}), popdl / fitted: {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
