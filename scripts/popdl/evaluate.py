"""One evaluation of the final model on the held-out test set.

Writes to ``results/{run}/evaluation/``:

``metrics.json``
    ``classification``: accuracy, macro F1, Matthews correlation, per
    scenario sensitivity (recall), specificity, precision and F1, the
    confusion matrix (rows true, columns predicted, in ``scenarios`` order);
    ``calibration``: expected calibration error (ECE, equal-width bins of
    the top probability) on the test set before and after temperature
    scaling, the temperature, the reliability curves (per bin: mean
    confidence, accuracy, count), ``fit``: how the temperature was chosen
    on the validation examples the final model left out (their number, NLL
    and ECE before and after, the fitted value, whether it was kept) and
    ``at_bound`` (the fit reached a bound of its range: logged as a
    warning); ``regression``: per parameter, on the test examples
    whose scenario has it, RMSE and R² on the learning scale (log10 where
    the prior is log-uniform), RMSE in natural units, and the coverage of
    the central interval (e.g. 5 %–95 %, nominal 0.90; ``coverage_uncalibrated``:
    the same before the intervals' conformal calibration, whose offsets are
    copied from the model under ``interval_calibration``);
    ``n_test``, ``model`` and provenance.
``confusion_matrix.png``, ``calibration.png``, ``parameters.png``
    (true vs. estimated, with intervals), ``training_curves.png`` (loss and
    accuracy per epoch: the best tuning trial on train and validation, and
    the final fit on train + the validation examples outside the calibration part).
``interpretation.json``, ``interpretation.npz``
    what the network learnt (hyper-parameter importances, its last hidden
    layer projected, occlusion saliency), computed here from the model and
    test set already loaded: :mod:`popdl.interpret`.

The test set is read once, here, and nowhere else.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from popdl.calibration import negative_log_likelihood, reliability
from popdl.dataset import Dataset
from popdl.interpret import interpret
from popdl.io import atomic_path, provenance, write_json, write_table
from popdl.model_io import load_model, softmax

log = logging.getLogger("popdl.evaluate")

__all__ = ["evaluate", "classification_metrics", "regression_metrics"]


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, scenarios: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, matthews_corrcoef, precision_score

    k = len(scenarios)
    pred = np.argmax(probabilities, axis=1)
    cm = confusion_matrix(labels, pred, labels=list(range(k)))
    total = cm.sum()
    per = {}
    f1 = f1_score(labels, pred, labels=list(range(k)), average=None, zero_division=0)
    prec = precision_score(labels, pred, labels=list(range(k)), average=None, zero_division=0)
    for j, s in enumerate(scenarios):
        tp = cm[j, j]
        fn = cm[j].sum() - tp
        fp = cm[:, j].sum() - tp
        tn = total - tp - fn - fp
        per[s] = {
            "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
            "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
            "precision": float(prec[j]),
            "f1": float(f1[j]),
            "n": int(cm[j].sum()),
        }
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "chance": float(1.0 / k),
        "f1_macro": float(f1_score(labels, pred, average="macro", zero_division=0)),
        "matthews_corrcoef": float(matthews_corrcoef(labels, pred)),
        "per_scenario": per,
        "confusion_matrix": cm.tolist(),
        "scenarios": list(scenarios),
    }


def regression_metrics(true: np.ndarray, quantiles: np.ndarray, *, prep, levels, estimates: np.ndarray) -> dict:
    """Per parameter: RMSE / R² of the estimates on the learning scale, RMSE in natural units,
    interval coverage.

    ``true`` (n, parameters) natural units, NaN where absent; ``quantiles``
    (n, parameters, levels) natural units; ``estimates`` (n, parameters)
    natural units (:attr:`popdl.model_io.Prediction.estimates`).
    """
    levels = list(levels)
    out = {}
    t_learn = prep.learning_scale(true)
    e_learn = prep.learning_scale(estimates)
    for j, name in enumerate(prep.param_names):
        sel = np.isfinite(true[:, j])
        n = int(sel.sum())
        if n < 2:
            out[name] = {"n": n}
            continue
        y, yhat = t_learn[sel, j], e_learn[sel, j]
        ss_res = float(((y - yhat) ** 2).sum())
        ss_tot = float(((y - y.mean()) ** 2).sum())
        inside = (true[sel, j] >= quantiles[sel, j, 0]) & (true[sel, j] <= quantiles[sel, j, -1])
        out[name] = {
            "n": n,
            "log10_scale": bool(prep.log_scale[j]),
            "rmse": float(np.sqrt(ss_res / n)),
            "r2": float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan"),
            "rmse_natural": float(np.sqrt(np.mean((true[sel, j] - estimates[sel, j]) ** 2))),
            "interval": [levels[0], levels[-1]],
            "coverage": float(inside.mean()),
            "nominal_coverage": float(levels[-1] - levels[0]),
        }
    return out


def _plots(folder: Path, *, cls, cal_before, cal_after, reg, true, quantiles, prep, best_history, final_history,
           estimates=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, name):
        fig.tight_layout()
        with atomic_path(folder / name, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)

    if cls:
        cm = np.asarray(cls["confusion_matrix"], float)
        names = cls["scenarios"]
        fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(names), 1.2 + 1.1 * len(names)))
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.2f}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"test accuracy {cls['accuracy']:.3f}")
        save(fig, "confusion_matrix.png")

        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
        for label, cal in (("before", cal_before), ("after temperature scaling", cal_after)):
            pts = [(c["confidence"], c["accuracy"]) for c in cal["curve"] if c["n"]]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker="o", label=f"{label} (ECE {cal['ece']:.3f})")
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=8)
        ax.set_title("reliability on the test set")
        save(fig, "calibration.png")

    names = [p for p in prep.param_names if reg.get(p, {}).get("n", 0) >= 2]
    ncols = min(4, max(1, len(names)))
    nrows = -(-max(1, len(names)) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, p in zip(axes.flat, names):
        j = prep.param_names.index(p)
        sel = np.isfinite(true[:, j])
        t, q, e = true[sel, j], quantiles[sel, j], estimates[sel, j]
        ax.errorbar(t, e, yerr=[np.maximum(e - q[:, 0], 0), np.maximum(q[:, -1] - e, 0)], fmt="o", ms=2, lw=0.5,
                    alpha=0.5, elinewidth=0.3)
        lo, hi = np.nanmin(t), np.nanmax(t)
        ax.plot([lo, hi], [lo, hi], color="black", lw=1)
        if prep.log_scale[j]:
            ax.set_xscale("log")
            ax.set_yscale("log")
        r = reg[p]
        ax.set_title(f"{p}: R² {r['r2']:.2f}, cov. {r['coverage']:.2f}", fontsize=9)
        ax.set_xlabel("true")
        ax.set_ylabel("estimated")
    if not names:
        axes[0][0].set_visible(True)
        axes[0][0].text(0.5, 0.5, "no regression output", ha="center")
    save(fig, "parameters.png")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for hist, tag in ((best_history, "best trial"), (final_history, "final")):
        for key, ax in (("loss", axes[0]), ("scenario_accuracy", axes[1])):
            if key in hist:
                ax.plot(range(1, len(hist[key]) + 1), hist[key], label=f"{tag}, train" + (" + validation" if tag == "final" else ""))
            if f"val_{key}" in hist:
                ax.plot(range(1, len(hist[f"val_{key}"]) + 1), hist[f"val_{key}"], ls="--", label=f"{tag}, validation")
    axes[0].set_title("loss")
    axes[1].set_title("accuracy")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    save(fig, "training_curves.png")


def prediction_table(test: dict, pred, scenarios: list[str]):
    """One row per test simulation, in the dataset's order (that of abc/test_predictions.tsv):
    its scenario, label and draw, the network's answer (:meth:`popdl.model_io.Prediction.to_frame`:
    chosen scenario, probabilities, estimate and interval of each parameter, natural units) and
    the true parameters (``true_{name}``, empty where the scenario lacks the parameter)."""
    import pandas as pd

    labels = np.asarray(test["labels"], dtype=np.int64)
    head = pd.DataFrame({"true_scenario": [scenarios[i] for i in labels], "label": labels,
                         "draw": np.asarray(test["draw"], dtype=np.int64)})
    answer = pred.to_frame()
    params = np.asarray(test["params"], dtype=np.float64)
    truth = pd.DataFrame({f"true_{p}": params[:, j] for j, p in enumerate(pred.param_names or [])})
    return pd.concat([head, answer, truth], axis=1)


def evaluate(dataset_dir: str | Path, model_dir: str | Path, *, best: dict, out: str | Path, config_hash: str,
             root_seed: int, trials: str | Path | None = None, bins: int = 10) -> dict:
    """Evaluate the model folder on the test split; write metrics.json, plots and the
    interpretation (:func:`popdl.interpret.interpret`, with the sweep's ``trials``
    table and streams of ``root_seed``) to ``out``.

    ``config_hash``: the evaluate job's settings hash
    (:func:`popdl.stages.settings_hash`), recorded as the outputs' provenance.
    """
    from popdl.training import configure_backend

    configure_backend(None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = Dataset(dataset_dir)
    model = load_model(model_dir)
    if model.scenarios != dataset.scenarios:
        raise ValueError(f"{model_dir} was trained on scenarios {model.scenarios}, the dataset has {dataset.scenarios}")
    test = dataset.load("test", ("images", "distances", "stats", "labels", "params", "draw"))
    if len(test["labels"]) == 0:
        raise ValueError(f"{dataset_dir} has an empty test split")
    outputs = model.raw_outputs(test["images"], test["distances"], test["stats"])
    pred = model.answer(outputs)
    metrics = {"n_test": int(len(test["labels"])), "model": model.bundle["network"],
               "hyper_parameters": model.bundle["hyper_parameters"], "tasks": model.bundle["tasks"]}
    cls = cal_before = cal_after = None
    if pred.logits is not None:
        cls = classification_metrics(test["labels"], pred.probabilities, model.scenarios)
        cal_before = reliability(test["labels"], softmax(pred.logits), bins=bins)
        cal_after = reliability(test["labels"], pred.probabilities, bins=bins)
        metrics["classification"] = cls
        held_out = {k: v for k, v in (model.bundle.get("calibration") or {}).items() if k != "draws"}
        metrics["calibration"] = {"temperature": model.temperature, "ece_before": cal_before["ece"],
                                  "ece_after": cal_after["ece"],
                                  # The proper score beside the binned ECE: mean negative log-likelihood.
                                  "nll_before": negative_log_likelihood(pred.logits, test["labels"]),
                                  "nll_after": negative_log_likelihood(pred.logits, test["labels"], model.temperature),
                                  "curve_before": cal_before["curve"],
                                  "curve_after": cal_after["curve"], "bins": bins,
                                  "at_bound": bool(held_out.get("at_bound", False)), "fit": held_out}
        if held_out.get("at_bound"):
            log.warning("evaluate: the temperature fit hit its bound (%.4g); probabilities are left unscaled",
                        held_out.get("fitted", float("nan")))
    reg = {}
    quantiles = np.zeros((len(test["labels"]), 0, 0))
    if pred.quantiles is not None:
        quantiles = pred.quantiles
        reg = regression_metrics(np.asarray(test["params"], float), quantiles, prep=model.prep, levels=pred.levels,
                                 estimates=pred.estimates)
        if np.any(model.interval_offsets):
            # The same intervals before their conformal calibration (held-out examples of the final fit).
            raw = model.answer(outputs, calibrated=False).quantiles
            raw_reg = regression_metrics(np.asarray(test["params"], float), raw, prep=model.prep, levels=pred.levels,
                                         estimates=pred.estimates)
            for name, r in reg.items():
                if "coverage" in r:
                    r["coverage_uncalibrated"] = raw_reg[name]["coverage"]
        metrics["regression"] = reg
        metrics["interval_calibration"] = model.bundle.get("interval_calibration") or {}
    final_history = json.loads((Path(model_dir) / "history.json").read_text()) if (Path(model_dir) / "history.json").exists() else {}
    _plots(out, cls=cls, cal_before=cal_before, cal_after=cal_after, reg=reg, true=np.asarray(test["params"], float),
           quantiles=quantiles, prep=model.prep, best_history=best.get("history", {}), final_history=final_history,
           estimates=pred.estimates)
    metrics["training"] = {"best_trial": best.get("history", {}), "final": final_history}
    metrics["provenance"] = provenance(config_hash=config_hash, model=model.bundle.get("provenance", {}))
    interpret(model, test, out=out, root_seed=root_seed, config_hash=config_hash, trials=trials)
    write_table(out / "test_predictions.tsv", prediction_table(test, pred, dataset.scenarios))
    write_json(out / "metrics.json", metrics)
    if cls:
        log.info("evaluate: test accuracy %.3f (chance %.3f), MCC %.3f, ECE %.3f -> %.3f", cls["accuracy"],
                 cls["chance"], cls["matthews_corrcoef"], cal_before["ece"], cal_after["ece"])
    for p, r in reg.items():
        if "r2" in r:
            log.info("evaluate: %s R² %.3f coverage %.3f", p, r["r2"], r["coverage"])
    return metrics
