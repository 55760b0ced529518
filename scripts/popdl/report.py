"""One self-contained HTML report of a run (``results/{run}/report.html``).

Every figure is drawn with matplotlib (or taken from the evaluation step) and
embedded as a base64 PNG, so the file opens offline and can be mailed.
Sections, in order: configuration; scenarios (demesdraw diagrams); prior
draws; simulations; hyper-parameter tuning (Optuna history and parameter
importances); training curves; test-set evaluation (confusion matrix,
calibration, true vs. estimated parameters with interval coverage); the
network against the ABC baselines; the network's last hidden layer (PCA and
t-SNE, coloured by scenario); saliency (occlusion) over SNPs and haplotypes;
observed data (predictions of all methods with the misspecification check);
genome scans (the target scenario's probability along each contig, scan.data).
A section whose inputs are absent says so instead of failing.

The report renders; it loads no model.  The hyper-parameter importances,
the embedding and the saliency are computed by the evaluate job, which holds
the model and the test set (:mod:`popdl.interpret`), and read here from
``evaluation/interpretation.json`` and ``interpretation.npz``.  Still computed
here, from the dataset and the observed statistics: the PCA figure of the
observed data among the simulations (:func:`popdl.misspec.pca_figure`) and the
scenario diagrams' typical parameter values (:func:`popdl.seeds.report`
streams of the root seed).  The report's config
hash (``<meta name="popdl-config-hash">``, ``id="config-hash"``) is that of
its settings, the whole configuration.

Key numbers carry element ids (``accuracy-network``, ``accuracy-rejection``,
``accuracy-abc_rf``, ``prediction-{data set}``) so that tests and scripts
can find them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from popdl import seeds
from popdl.abc import comparison_table, load_reference, method_order, paired_differences, who_won
from popdl.calibration import probability_text
from popdl.dataset import Dataset
from popdl.interpret import completed_trials
from popdl.io import atomic_path, package_versions
from popdl.misspec import Misspecification, pca_figure
from popdl.observed import skipped_text
from popdl.scenarios import load_scenarios

__all__ = ["write_report", "figure_png", "Report", "run_summary"]

log = logging.getLogger("popdl.report")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #446;padding-bottom:.3em}h2{margin-top:2em;border-bottom:1px solid #ccd;color:#335}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccd;padding:.25em .6em;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto;margin:.4em 0}
.kv td{text-align:left}.note{color:#666;font-style:italic}.flag{color:#a00;font-weight:bold}.ok{color:#070}
nav a{margin-right:.8em}code{background:#f4f4f8;padding:0 .2em}.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.figs>div{flex:0 1 420px}
"""


def figure_png(fig, *, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _esc(x) -> str:
    return html.escape(str(x))


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "–"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.{digits}g}"
        if abs(v) >= 100:
            return f"{v:.0f}"
        return f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return _esc(v)


class Report:
    """Collects sections and writes them as one HTML page."""

    def __init__(self, title: str, *, meta: dict[str, str] | None = None):
        self.title = title
        self.meta = dict(meta or {})
        self.sections: list[tuple[str, str, str]] = []
        self.images = 0

    def section(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def img(self, png: bytes, alt: str) -> str:
        self.images += 1
        return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'

    def fig(self, fig, alt: str) -> str:
        return self.img(figure_png(fig), alt)

    def html(self) -> str:
        nav = " ".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t, _ in self.sections)
        body = "\n".join(f'<section id="{a}"><h2>{_esc(t)}</h2>\n{b}\n</section>' for a, t, b in self.sections)
        meta = "".join(f'<meta name="{_esc(k)}" content="{_esc(v)}">' for k, v in self.meta.items())
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{meta}<title>{_esc(self.title)}</title>'
                f"<style>{CSS}</style></head><body><h1>{_esc(self.title)}</h1><nav>{nav}</nav>\n{body}\n</body></html>\n")


def _cell(v, digits: int = 3) -> str:
    """A table cell: like :func:`_fmt`, but every number in (0.001, 100) keeps its ``digits``
    decimals, so that a column's values line up (0.940 beside 0.907, not 0.94)."""
    text = _fmt(v, digits)
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and v != 0 and 1e-3 <= abs(v) < 100:
        return f"{v:.{digits}f}"
    return text


def _signed(v: float) -> str:
    """A difference with its sign, three decimals, and a minus sign rather than a hyphen."""
    return f"{v:+.3f}".replace("-", "−")


def _value(v) -> str:
    """A parameter's value: whole numbers from 100 up, three significant digits below."""
    if v is None or not math.isfinite(float(v)):
        return "–"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _table(frame: pd.DataFrame, *, index: bool = False) -> str:
    return frame.to_html(index=index, border=0, na_rep="–", float_format=_cell, escape=True)


def _missing(what: str) -> str:
    return f'<p class="note">Not available: {_esc(what)}.</p>'


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------------- sections
def _config_section(rep: Report, config: dict, config_hash: str) -> None:
    rows = [
        ("run", config.get("run")), ("seed", config.get("seed")), ("simulator", config.get("simulator")),
        ("samples (diploid individuals)", ", ".join(f"{k}: {v}" for k, v in config.get("samples", {}).items())),
        ("genome", ", ".join(f"{k} {v}" for k, v in config.get("genome", {}).items())),
        ("scenarios", ", ".join(config.get("scenarios", {}))),
        ("simulations per scenario", config.get("simulations", {}).get("per_scenario")),
        ("split", ", ".join(f"{k} {v}" for k, v in config.get("simulations", {}).get("split", {}).items())),
        ("features", ", ".join(f"{k} {v}" for k, v in config.get("features", {}).items() if k != "stats")),
        ("statistics", ", ".join(config.get("features", {}).get("stats", []))),
        ("task", ", ".join(config.get("task", []))),
        ("ABC", ", ".join(f"{k} {v}" for k, v in config.get("abc", {}).items())),
        ("observed data sets", ", ".join(d["name"] for d in config.get("predict", {}).get("data", [])) or "none"),
    ]
    for key in ("tuning", "train"):
        if isinstance(config.get(key), dict):
            rows.append((key, ", ".join(f"{k} {v}" for k, v in config[key].items() if k != "search_space")))
    versions = package_versions()
    body = '<table class="kv">' + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows) + "</table>"
    body += (f'<p>Config hash <code id="config-hash">{_esc(config_hash)}</code> (of the report\'s settings, the '
             "whole configuration; each file under results/ records the hash of its own job's settings); written "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".</p>")
    rep.section("config", "Configuration", body)


def _scenario_section(rep: Report, config: dict) -> None:
    import demesdraw

    plt = _plt()
    try:
        scenarios = load_scenarios(config)
    except Exception as exc:  # an unusual config: say so rather than fail the report
        rep.section("scenarios", "Scenarios", _missing(f"scenarios could not be parsed ({exc})"))
        return
    figs = []
    for name, sc in scenarios.items():
        rng = seeds.report(config["seed"], f"typical draw {name}")
        draws = [sc.draw(rng) for _ in range(201)]
        # The draw closest to the per-parameter medians, as a typical instance.
        table = np.array([[d[p] for p in sc.parameter_names] for d in draws], float)
        scale = np.where(table > 0, np.log(np.abs(table) + 1e-300), table)
        med = np.median(scale, 0)
        spread = scale.std(0) + 1e-12
        typical = draws[int(np.argmin((((scale - med) / spread) ** 2).sum(1)))]
        fig, ax = plt.subplots(figsize=(4.2, 3.4))
        demesdraw.tubes(sc.graph(typical), ax=ax, log_time=False)
        shown = ", ".join(f"{k}={v:.3g}" for k, v in typical.items())
        ax.set_title(f"{name}\n{shown}", fontsize=7)
        figs.append(rep.fig(fig, f"scenario {name}"))
        priors = ", ".join(f"{p} {prior.describe()}" for p, prior in sc.priors.items())
        figs[-1] = f"<div>{figs[-1]}<p><b>{_esc(name)}</b>: {_esc(sc.description)}<br><small>{_esc(priors)}</small></p></div>"
    rep.section("scenarios", "Scenarios", '<p>Each scenario drawn with typical parameter values (demesdraw; '
                'time in generations, widths proportional to sizes).</p><div class="figs">' + "".join(figs) + "</div>")


def _prior_section(rep: Report, config: dict, results: Path) -> None:
    plans = {s: results / "plan" / f"{s}.tsv" for s in config.get("scenarios", {})}
    frames = {s: pd.read_csv(p, sep="\t") for s, p in plans.items() if p.is_file()}
    if not frames:
        rep.section("priors", "Prior draws", _missing("no plan tables under plan/"))
        return
    scenarios = load_scenarios(config)
    params = list(dict.fromkeys(p for s in frames for p in scenarios[s].parameter_names))
    plt = _plt()
    cols = min(4, len(params))
    rows = -(-len(params) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False)
    for ax, p in zip(axes.flat, params):
        values = {s: f[p].to_numpy(float) for s, f in frames.items() if p in f}
        allv = np.concatenate(list(values.values()))
        kinds = {scenarios[s].priors[p].kind for s in values if p in scenarios[s].priors}
        # Log-uniform priors on a log axis, uniform ones on a linear axis; derived values (expr) by their spread.
        log_x = (allv > 0).all() and ("loguniform" in kinds or (kinds <= {"expr"} and allv.max() / max(allv.min(), 1e-300) > 20))
        bins = np.geomspace(allv.min(), allv.max(), 30) if log_x else np.linspace(allv.min(), allv.max(), 30)
        for s, v in values.items():
            ax.hist(v, bins=bins, alpha=0.5, label=s)
        _few_ticks(ax, log_x, allv.max() / allv.min() if log_x else 0.0)
        ax.set_title(p, fontsize=9)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    counts = ", ".join(f"{s}: {len(f)} draws ({f['tries'].mean():.2f} tries per draw)" if "tries" in f else f"{s}: {len(f)}"
                       for s, f in frames.items())
    rep.section("priors", "Prior draws", f"<p>{_esc(counts)}.</p>" + rep.fig(fig, "prior draws"))


def _tick(v: float, _pos=None) -> str:
    """A short tick label: 50, 0.2, 2e4 rather than 20000, 5e-9 rather than 0.000000005."""
    if v == 0 or 1e-2 <= abs(v) < 1e4:
        return f"{v:g}"
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _few_ticks(ax, log_x: bool, spread: float) -> None:
    """At most about five short x tick labels: the labels of long values (100000, 0.0008) and
    matplotlib's minor labels on a log axis of one or two decades ran into each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if log_x:
        ax.set_xscale("log")
        subs = (1.0,) if spread > 300 else (1.0, 2.0, 5.0) if spread > 5 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.xaxis.set_major_formatter(FuncFormatter(_tick))
    ax.tick_params(labelsize=8)


def _simulation_section(rep: Report, results: Path) -> dict | None:
    manifest = _read_json(results / "dataset" / "manifest.json")
    if manifest is None:
        rep.section("simulations", "Simulations", _missing("no dataset (dataset/manifest.json)"))
        return None
    ds = Dataset(results / "dataset")
    rows = []
    n_snps = {}
    for split in ("train", "validation", "test"):
        if ds.size(split):
            part = ds.load(split, ("labels", "n_snps"))
            for s, name in enumerate(ds.scenarios):
                n_snps.setdefault(name, []).append(part["n_snps"][part["labels"] == s])
    snps = int(manifest["image_shape"][1])
    for name in ds.scenarios:
        v = np.concatenate(n_snps.get(name, [np.zeros(0)]))
        rows.append({"scenario": name, "simulations": manifest["per_scenario"].get(name),
                     "mean SNPs in image": float(v.mean()) if v.size else float("nan"),
                     f"images with fewer than {snps} SNPs": float((v < snps).mean()) if v.size else float("nan")})
    bench = sorted((results / "benchmarks" / "simulate").glob("*/*.tsv"))
    seconds = sum(float(pd.read_csv(b, sep="\t")["s"].iloc[0]) for b in bench) if bench else None
    body = _table(pd.DataFrame(rows))
    body += ("<p>Splits: " + ", ".join(f"{k} {v['n']}" for k, v in manifest["splits"].items())
             + f"; image {manifest['image_shape'][0]} haplotypes × {snps} SNPs; {len(manifest['stat_names'])} summary statistics."
             + (f" Simulation time: {seconds:.1f} s over {len(bench)} jobs." if seconds is not None else "") + "</p>")
    rep.section("simulations", "Simulations", body)
    return manifest


def _tuning_section(rep: Report, results: Path, interpretation: dict | None) -> None:
    tuning = results / "tuning"
    best = _read_json(tuning / "best.json")
    tables = sorted(tuning.glob("*.csv")) if tuning.is_dir() else []
    if best is None and not tables:
        rep.section("tuning", "Hyper-parameter tuning", _missing("no tuning results (tuning/best.json)"))
        return
    body = ""
    if best:
        hp = best.get("hyper_parameters", {})
        body += (f"<p>Best trial <b>{_esc(best.get('number'))}</b> of study <code>{_esc(best.get('study'))}</code>: "
                 f"{_esc(best.get('objective', 'objective'))} {_fmt(best.get('value'), 4)}, best epoch {_esc(best.get('best_epoch'))}. "
                 "Trials: "
                 + ", ".join(f"{k.lower()} {v}" for k, v in best.get("trial_counts", {}).items() if v) + ".</p>")
        body += _table(pd.DataFrame([{"hyper-parameter": k, "value": f"{v:.4g}" if isinstance(v, float) else str(v)}
                                      for k, v in hp.items()]))
    if tables:
        trials = pd.read_csv(tables[0])
        body += _optuna_plots(rep, trials, interpretation)
    rep.section("tuning", "Hyper-parameter tuning", body)


def _optuna_plots(rep: Report, trials: pd.DataFrame, interpretation: dict | None) -> str:
    plt = _plt()
    done = completed_trials(trials)
    if done.empty:
        return _missing("no completed trial to plot")
    out = ""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    order = done.sort_values("number")
    ax.plot(order["number"], order["value"], "o", ms=4, label="trial")
    ax.plot(order["number"], order["value"].cummin(), "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (validation loss)")
    ax.set_title("optimisation history")
    ax.legend(fontsize=8)
    out += rep.fig(fig, "optuna optimisation history")
    part = (interpretation or {}).get("importances") or {"unavailable": "no evaluation/interpretation.json"}
    importances = part.get("values") or {}
    if importances:
        fig, ax = plt.subplots(figsize=(5.5, 0.4 + 0.3 * len(importances)))
        names = sorted(importances, key=importances.get)
        ax.barh(names, [importances[n] for n in names])
        ax.set_xlabel("importance (Optuna, fANOVA)")
        ax.set_title("hyper-parameter importances")
        out += rep.fig(fig, "hyper-parameter importances")
    else:
        out += _missing(f"parameter importances ({part.get('unavailable', 'none computed')})")
    return '<div class="figs">' + out + "</div>"


def _paired(results: Path, abc: dict, root_seed: int) -> tuple[dict | None, str]:
    """The network's differences from the ABC methods with their 95 % intervals
    (:func:`popdl.abc.paired_differences` on both test_predictions.tsv tables), or None
    and why not."""
    tables = [results / "evaluation" / "test_predictions.tsv", results / "abc" / "test_predictions.tsv"]
    absent = [str(t.relative_to(results)) for t in tables if not t.is_file()]
    if absent:
        return None, f"no intervals on the differences ({', '.join(absent)} absent)"
    try:
        network, abc_table = (pd.read_csv(t, sep="\t") for t in tables)
        return paired_differences(network, abc_table, abc, rng=seeds.report(root_seed, "who won bootstrap")), ""
    except (ValueError, KeyError) as exc:
        log.warning("report: no intervals on the differences: %s", exc)
        return None, f"no intervals on the differences ({exc})"


def margins_figure(verdicts: list[dict]):
    """A forest plot of :func:`popdl.abc.who_won`'s ``versus`` entries: per task, the network's
    difference from the best ABC method with its 95 % interval, green where the network is
    better beyond the noise, red where the ABC method is, grey where the two are level."""
    plt = _plt()
    rows = [v for v in verdicts if v.get("versus")][::-1]
    fig, ax = plt.subplots(figsize=(6.0, 0.6 + 0.32 * len(rows)))
    colours = {"network": "#2a7d2a", "level": "#777777"}
    for y, v in enumerate(rows):
        d, (lo, hi) = v["versus"]["difference"], v["versus"]["ci"]
        colour = colours.get(v["versus"]["verdict"], "#b22222")
        ax.errorbar([d], [y], xerr=[[d - lo], [hi - d]], fmt="o", color=colour, capsize=3, markersize=5)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{v['task']} (vs {v['versus']['method']})" for v in rows], fontsize=8)
    ax.set_xlabel("network − best ABC method (accuracy; R²), 95 % interval", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    return fig


def _who_won(rep: Report, abc: dict | None, evaluation: dict, results: Path, root_seed: int) -> str:
    """One line per task: the network against the ABC baselines, winner and margin, and
    whether the network's difference from the best ABC method is beyond the test set's noise."""
    if abc is None:
        return _missing("no ABC baselines to compare with (abc/metrics.json)")
    paired, why = _paired(results, abc, root_seed)
    items = []
    verdicts = who_won(abc, evaluation, paired)
    for v in verdicts:
        values = ", ".join(f"{_esc(m)} {x:.3f}" if np.isfinite(x) else f"{_esc(m)} –" for m, x in v["values"].items())
        lead = f"by {v['margin']:.3f}" if np.isfinite(v["margin"]) else ""
        who = "<b>the network</b>" if v["winner"] == "network" else _esc(v["winner"])
        versus = v.get("versus")
        ahead = "ahead" if versus and versus["verdict"] == "level" else "wins"  # level: the lead is not a win
        verdict = f"a tie ({_esc(', '.join(v['tied']))})" if v["winner"] == "tie" else f"{who} {ahead} {lead}"
        if versus:
            lo, hi = versus["ci"]
            noise = {"network": "beyond the noise: the network is better",
                     "level": "within the noise: level"}.get(versus["verdict"], f"beyond the noise: {_esc(versus['method'])} is better")
            verdict += (f"; network − {_esc(versus['method'])} {_signed(versus['difference'])} (95 % interval "
                        f"{_signed(lo)} to {_signed(hi)}), {noise}")
        items.append(f'<li id="won-{_esc(v["task"])}"><b>{_esc(v["task"])}</b> ({_esc(v["measure"])}): {values}: '
                     f"{verdict}</li>")
        if versus:
            log.info("report: %s: network − %s %+.3f (95 %% interval %+.3f to %+.3f): %s", v["task"], versus["method"],
                     versus["difference"], *versus["ci"], versus["verdict"])
    note = (" The interval of each difference from the best ABC method resamples the test simulations (paired "
            "bootstrap, 2,000 resamples): where it holds 0, the test set cannot tell the two apart.") if paired else (
            f" ({_esc(why)}.)" if why else "")
    plot = (rep.fig(margins_figure(verdicts), "network minus the best ABC method per task, with 95 % intervals")
            if any(v.get("versus") for v in verdicts) else "")
    return (f"<p>Who won on the {abc.get('n_test', '')} test simulations (accuracy; R² on the learning scale):{note}</p>"
            f'<ul class="who-won">{"".join(items)}</ul>{plot}')


def _evaluation_section(rep: Report, results: Path, root_seed: int = 0) -> dict | None:
    ev = results / "evaluation"
    metrics = _read_json(ev / "metrics.json")
    curves = ev / "training_curves.png"
    rep.section("training", "Training curves",
                rep.img(curves.read_bytes(), "training curves") if curves.is_file() else _missing("evaluation/training_curves.png"))
    if metrics is None:
        rep.section("evaluation", "Test-set evaluation", _missing("no evaluation (evaluation/metrics.json)"))
        return None
    body = _who_won(rep, _read_json(results / "abc" / "metrics.json"), metrics, results, root_seed)
    cls = metrics.get("classification")
    if cls:
        body += (f'<p>Network ({_esc(metrics.get("model"))}) test accuracy <b id="accuracy-network">{cls["accuracy"]:.3f}</b> '
                 f"on {metrics.get('n_test')} held-out simulations (chance {cls.get('chance', float('nan')):.3f}); "
                 f"macro F1 {_fmt(cls.get('f1_macro'))}, Matthews correlation {_fmt(cls.get('matthews_corrcoef'))}.</p>")
        per = pd.DataFrame([{"scenario": s, **v} for s, v in cls.get("per_scenario", {}).items()])
        if not per.empty:
            body += _table(per)
    cal = metrics.get("calibration")
    if cal:
        fit = cal.get("fit") or {}
        body += (f"<p>Calibration on the test set: expected calibration error {_fmt(cal.get('ece_before'))} before and "
                 f"{_fmt(cal.get('ece_after'))} after temperature scaling (T = {_fmt(cal.get('temperature'))}"
                 + (f", fitted on {fit['n']} validation simulations the final model did not train on: {_esc(fit.get('reason', ''))}"
                    if fit.get("n") else "") + ")"
                 + (f"; mean negative log-likelihood {_fmt(cal['nll_before'])} before and {_fmt(cal['nll_after'])} after"
                    if cal.get("nll_before") is not None else "")
                 + (f"; <b>the fitted temperature ({_fmt(fit.get('fitted'))}) hit its bound</b>" if cal.get("at_bound") else "")
                 + ".</p>")
    figs = [rep.img((ev / f).read_bytes(), f) for f in ("confusion_matrix.png", "calibration.png") if (ev / f).is_file()]
    body += '<div class="figs">' + "".join(figs) + "</div>"
    reg = metrics.get("regression")
    if reg:
        rows = [{"parameter": p, "R² (learning scale)": r.get("r2"), "RMSE": r.get("rmse"), "scale": "log10" if r.get("log10_scale") else "natural",
                 "coverage": r.get("coverage"), "coverage before calibration": r.get("coverage_uncalibrated"),
                 "nominal": r.get("nominal_coverage"), "n": r.get("n")}
                for p, r in reg.items() if "r2" in r]
        frame = pd.DataFrame(rows)
        if frame["coverage before calibration"].isna().all():
            frame = frame.drop(columns="coverage before calibration")
        body += "<h3>Parameters: true vs. estimated</h3>" + _table(frame)
        ic = metrics.get("interval_calibration") or {}
        if ic.get("offsets"):
            where = ("on the training and validation simulations, each by the ensemble member that left it out "
                     "(cross-conformal)" if str(ic.get("method", "")).startswith("cross") else
                     "on the validation simulations the final model did not train on")
            body += ("<p>Intervals calibrated by conformalized quantile regression " + where + " (at least "
                     f"{min(ic.get('n', {}).values() or [0])} per parameter); coverage there moved from "
                     + ", ".join(f"{_esc(k)} {_fmt(v)} to {_fmt(ic['coverage_after'].get(k))}"
                                 for k, v in (ic.get("coverage_before") or {}).items()) + ".")
            narrowed = {k: e for k, e in (ic.get("ensemble") or {}).items() if e.get("offset_change", 0) < 0}
            if narrowed:
                body += (" Those offsets fit one member; the ensemble's average covers more, so they were narrowed "
                         "by what it adds on the calibration part (lower 95 % bound): "
                         + ", ".join(f"{_esc(k)} {_fmt(e['offset_change'])}" for k, e in narrowed.items()) + ".")
            body += "</p>"
        if (ev / "parameters.png").is_file():
            body += rep.img((ev / "parameters.png").read_bytes(), "true vs estimated parameters")
    rep.section("evaluation", "Test-set evaluation", body)
    return metrics


def _comparison_section(rep: Report, results: Path, evaluation: dict | None, comparison_out: Path | None) -> dict | None:
    abc = _read_json(results / "abc" / "metrics.json")
    if abc is None:
        rep.section("comparison", "Network vs. ABC", _missing("no ABC baselines (abc/metrics.json)"))
        return None
    cnn = None
    if evaluation:
        cnn = {"accuracy": (evaluation.get("classification") or {}).get("accuracy", float("nan")),
               "params": evaluation.get("regression") or {}, "label": "network"}
    table = comparison_table(abc, cnn)
    if comparison_out is not None:
        with atomic_path(comparison_out) as tmp:
            table.to_csv(tmp, sep="\t", index=False)
    ordered = method_order(abc["methods"])
    ids = "".join(f'<p>{_esc(abc["methods"][k].get("label", k))} test accuracy <b id="accuracy-{k}">'
                  f'{abc["methods"][k]["accuracy"]:.3f}</b> ({abc["methods"][k].get("seconds", 0):.1f} s).</p>' for k in ordered)
    body = (f"<p>All methods on the same {abc['n_test']} test simulations; the ABC methods use the "
            f"{abc['n_reference']} training and validation simulations as reference table (rejection: tolerance "
            f"{abc['tolerance']}, Epanechnikov weights, local-linear adjustment; ABC-RF: random forests). "
            f"R² on the learning scale (log10 for log-uniform priors); coverage of the {abc['interval']:.0%} intervals.</p>")
    body += ids
    if cnn is None:
        body += _missing("the network's evaluation (evaluation/metrics.json); ABC rows only")
    shown = table.set_index("method").T
    shown.columns.name = None
    shown.index = [c.replace("r2_", "R² ").replace("coverage_", "coverage ") for c in shown.index]
    body += _table(shown.rename_axis("test set").reset_index())
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.bar(table["method"], table["accuracy"], color=["#446", "#a64", "#4a6", "#888"][: len(table)])
    ax.axhline(1 / len(abc["scenarios"]), color="grey", ls="--", lw=1, label="chance")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    body += rep.fig(fig, "accuracy of the network and the ABC baselines")
    rep.section("comparison", "Network vs. ABC baselines", body)
    return abc


def _read_interpretation(results: Path) -> tuple[dict | None, dict]:
    """evaluation/interpretation.json and the arrays of interpretation.npz (:mod:`popdl.interpret`)."""
    ev = results / "evaluation"
    record = _read_json(ev / "interpretation.json")
    arrays = {}
    if record is not None and (ev / "interpretation.npz").is_file():
        with np.load(ev / "interpretation.npz") as data:
            arrays = {k: data[k] for k in data.files}
    return record, arrays


def _part(interpretation: dict | None, arrays: dict, key: str, needed: tuple[str, ...]) -> dict | str:
    """One part of the interpretation, or why it is not available."""
    if interpretation is None:
        return "no interpretation of the network (evaluation/interpretation.json)"
    part = interpretation.get(key) or {"unavailable": f"no {key} in evaluation/interpretation.json"}
    if "unavailable" in part:
        return part["unavailable"]
    if any(k not in arrays for k in needed):
        return f"the {key} arrays (evaluation/interpretation.npz)"
    return part


def _embedding_section(rep: Report, interpretation: dict | None, arrays: dict) -> None:
    title = "Last hidden layer"
    part = _part(interpretation, arrays, "embedding", ("embedding_labels", "embedding_pca"))
    if isinstance(part, str):
        rep.section("embedding", title, _missing(part))
        return
    scenarios = interpretation["scenarios"]
    labels = arrays["embedding_labels"]
    explained = part["pca_explained"]
    panels = [("PCA", arrays["embedding_pca"], f"PC1 ({explained[0]:.0%})", f"PC2 ({explained[1]:.0%})")]
    if "embedding_tsne" in arrays:
        panels.append(("t-SNE (PCA initialisation)", arrays["embedding_tsne"], "", ""))
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (name, pts, xl, yl) in zip(axes[0], panels):
        for s, scenario in enumerate(scenarios):
            sel = labels == s
            ax.scatter(pts[sel, 0], pts[sel, 1], s=8, alpha=0.6, label=scenario)
        ax.set_title(name)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    axes[0][0].legend(fontsize=8, markerscale=2)
    shown = (f"the {part['examples']} test simulations" if part["examples"] == part["of"] else
             f"{part['examples']} of the {part['of']} test simulations (a random subset)")
    rep.section("embedding", title,
                f"<p>The {part['units']} activations feeding the scenario output, for {shown}, projected to two "
                "dimensions and coloured by true scenario: well-separated clouds mean the network has learnt "
                "features that tell the scenarios apart.</p>" + rep.fig(fig, "hidden layer embedding"))


def _saliency_section(rep: Report, interpretation: dict | None, arrays: dict) -> None:
    title = "Saliency over SNPs and haplotypes"
    part = _part(interpretation, arrays, "saliency",
                 ("saliency_images", "saliency_labels", "saliency_snp", "saliency_haplotype"))
    if isinstance(part, str):
        rep.section("saliency", title, _missing(part))
        return
    scenarios = interpretation["scenarios"]
    images, labels = arrays["saliency_images"], arrays["saliency_labels"]
    snp_sal, hap_sal = arrays["saliency_snp"], arrays["saliency_haplotype"]
    plt = _plt()
    fig, axes = plt.subplots(len(images), 2, figsize=(11, 1.9 * len(images)), squeeze=False,
                             gridspec_kw={"width_ratios": [4, 1]})
    vmax = max(np.abs(snp_sal).max(), np.abs(hap_sal).max(), 1e-6)
    for r in range(len(images)):
        ax = axes[r][0]
        ax.imshow(images[r], cmap="Greys", aspect="auto", interpolation="nearest", alpha=0.45)
        ax2 = ax.twinx()
        ax2.bar(np.arange(images.shape[2]), snp_sal[r], color=np.where(snp_sal[r] >= 0, "#c33", "#36c"), width=1.0)
        ax2.set_ylim(-vmax, vmax)
        ax2.set_yticks([])
        ax.set_ylabel(scenarios[int(labels[r])], fontsize=7)
        ax.set_yticks([])
        if r == len(images) - 1:
            ax.set_xlabel("SNP (column of the image)")
        axb = axes[r][1]
        axb.barh(np.arange(images.shape[1]), hap_sal[r], color=np.where(hap_sal[r] >= 0, "#c33", "#36c"))
        axb.set_xlim(-vmax, vmax)
        axb.invert_yaxis()
        axb.set_yticks([])
        if r == len(images) - 1:
            axb.set_xlabel("haplotype (row)")
    fig.tight_layout()
    rep.section("saliency", title,
                f"<p>{len(images)} test simulations ({part['per_scenario']} per scenario, labelled by true scenario): the "
                "genotype image in grey, and for each SNP column (left) and haplotype row (right) the drop in the true "
                "scenario's probability when that column or row is masked (occlusion saliency; red: the network relied "
                "on it). It uses only the network's predictions, so it is the same on every Keras backend.</p>"
                + rep.fig(fig, "saliency"))


def _verdict(pred: dict | None) -> str:
    """The reliability of a prediction as one HTML paragraph (empty when there is nothing to say)."""
    rel = (pred or {}).get("reliability")
    if not rel:
        return ""
    out = ""
    if not rel["reliable"]:
        out += ('<p class="flag"><b>UNRELIABLE</b>: an input of the network lies outside what it was trained on: '
                + "; ".join(_esc(r) for r in rel["reasons"]) + ".</p>")
    else:
        out += '<p class="ok">Reliable: every network input lies within the range of the simulations.</p>'
    return out + "".join(f'<p class="flag">{_esc(w)}</p>' for w in rel.get("warnings", []))


def _fit_line(fit: dict | None, name: str) -> str:
    """The fit check of data set ``name`` (fit_check.json) as one HTML paragraph; empty without one."""
    if not fit:
        return ""
    cls_ = "ok" if fit["fits"] else "flag"
    head = "Fit check: the answer reproduces the data" if fit["fits"] else "Fit check: <b>the answer does NOT reproduce the data</b>"
    return (f'<p class="{cls_}" id="fit-{_esc(name)}">{head} ({_esc(fit["summary"])}; {fit["replicates"]} data sets '
            f"simulated from {_esc(fit['scenario'])} with parameters drawn from the network's estimates).</p>")


def _prior_line(prior: dict | None, name: str) -> str:
    """The prior check of data set ``name`` (prior_check.json) as one HTML paragraph; empty without one."""
    if not prior:
        return ""
    text = prior["line"].removeprefix(f"{name}: prior check, ")
    head = "Prior check: <b>the data lie beyond the priors' simulations</b>" if prior["warn"] else "Prior check"
    return f'<p class="{"flag" if prior["warn"] else "ok"}" id="prior-{_esc(name)}">{head}: among {_esc(text)}.</p>'


def _fit_section(rep: Report, fit: dict | None, name: str, *, wanted: bool) -> str:
    """The fit check in full: the paragraph, the statistics farthest out, and each statistic's quantile."""
    if not fit:
        return _missing(f"the fit check of {name} (predict/{name}/fit_check.json)") if wanted else ""
    body = "<h4>Fit check (posterior predictive)</h4>" + _fit_line(fit, name)
    worst = pd.DataFrame(fit["worst"])
    if not worst.empty:
        worst["observed"] = worst["observed"].map(lambda v: _fmt(v, 4))
        worst["replicates_median"] = worst["replicates_median"].map(lambda v: _fmt(v, 4))
        body += ("<p>The statistics farthest from the replicates (two-sided p-value; quantile of the observed value "
                 "among the replicates):</p>" + _table(worst[["statistic", "p", "quantile", "observed", "replicates_median"]]))
    # Bars from the middle: how far each observed statistic lies from the replicates' median, and on which side.
    return body + _quantile_bars(
        rep, pd.Series(fit["quantiles"]), outside=fit["outside"], colour="#696", from_middle=True,
        ylabel="posterior-predictive quantile", alt=f"{name} fit check",
        title=f"{name}: quantile of each observed statistic among the answer's replicates (red: outside)")


def _quantile_bars(rep: Report, q: pd.Series, *, outside, colour: str, ylabel: str, title: str, alt: str,
                   from_middle: bool = False) -> str:
    """A bar per statistic of its observed value's quantile ``q`` among simulations (red: ``outside``
    their range), from 0 or from the middle (0.5)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(min(14, 2 + 0.14 * len(q)), 2.8))
    red = set(outside)
    values = q.to_numpy()
    ax.bar(range(len(q)), values - 0.5 if from_middle else values, bottom=0.5 if from_middle else 0.0,
           color=["#c33" if k in red else colour for k in q.index])
    ax.axhline(0.5, color="grey", lw=0.8)
    ax.set_xticks(range(len(q)), q.index, rotation=90, fontsize=5)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return rep.fig(fig, alt)


def _answer_section(rep: Report, config: dict, results: Path) -> None:
    """The observed data's answer first: scenario and probability, key estimates, reliability, test accuracy."""
    names = [d["name"] for d in config.get("predict", {}).get("data", [])]
    if not names:
        return
    metrics = _read_json(results / "evaluation" / "metrics.json") or {}
    accuracy = (metrics.get("classification") or {}).get("accuracy")
    trust = (f"The network chose the right scenario for {accuracy:.1%} of {metrics.get('n_test')} held-out simulations "
             "(test accuracy): that is how far to trust its choice below." if accuracy is not None
             else "No test-set evaluation was found: how far to trust the answer is unknown.")
    body = f"<p>{_esc(trust)}</p>"
    abc_answers = (_read_json(results / "abc" / "empirical.json") or {}).get("data", {})
    abc_methods = (_read_json(results / "abc" / "metrics.json") or {}).get("methods", {})
    for name in names:
        pred = _read_json(results / "predict" / name / "predictions.json")
        if not pred or not pred.get("network", {}).get("probabilities"):
            body += f"<h3>{_esc(name)}</h3>" + _missing(f"predictions for {name} (predict/{name}/predictions.json)")
            continue
        net = pred["network"]
        best = net.get("scenario")
        rel = pred.get("reliability") or {}
        label = "" if rel.get("reliable", True) else " — UNRELIABLE"
        body += (f"<h3>{_esc(name)}{label}</h3><p>Most probable scenario: <b id=\"answer-{_esc(name)}\">{_esc(best)}</b> "
                 f"(probability {probability_text(net['probabilities'][best])}).</p>")
        owned = set((net.get("scenario_params") or {}).get(best, []))
        edges = {e["parameter"]: e for e in net.get("prior_edges") or []}
        rows = [{"parameter": p, "estimate": _value(v["estimate"]) + (
                    f" (at its prior's {edges[p]['side']} bound, {_value(edges[p]['bound'])})" if p in edges else ""),
                 "interval": f"{_value(v['lower'])} – {_value(v['upper'])}"}
                for p, v in net.get("params", {}).items() if not owned or p in owned]
        if rows:
            level = net.get("interval")
            body += (f"<p>Parameters of {_esc(best)}, estimate and {_fmt(100 * (level[1] - level[0]), 2) if level else ''}% "
                     "interval (natural units):</p>" + _table(pd.DataFrame(rows)))
        body += _agreement(best, abc_answers.get(name) or {}, abc_methods, name)
        body += (_verdict(pred) + _prior_line(_read_json(results / "predict" / name / "prior_check.json"), name)
                 + _fit_line(_read_json(results / "predict" / name / "fit_check.json"), name))
    rep.section("answer", "The answer", body)


def _abc_choices(answers: dict, methods: dict) -> dict[str, tuple[str, float]]:
    """Each ABC method's most probable scenario for one data set and its probability, by the
    method's label (abc/empirical.json's answers; abc/metrics.json's methods for the labels)."""
    chosen = {}
    for method in method_order(answers):
        probs = answers[method].get("probabilities") or {}
        if probs:
            top = max(probs, key=probs.get)
            chosen[methods.get(method, {}).get("label", method)] = (top, probs[top])
    return chosen


def _agreement(best: str | None, answers: dict, methods: dict, name: str) -> str:
    """Whether the ABC baselines choose the network's scenario for data set ``name``, as one HTML
    paragraph (empty without ABC answers).  Methods that disagree on real data are a reason to look
    closer: the data may lie where the simulations are sparse, or the scenarios may not tell it apart."""
    chosen = _abc_choices(answers, methods)
    if not chosen or best is None:
        return ""
    shown = "; ".join(f"{_esc(label)} {_esc(top)} ({probability_text(p)})" for label, (top, p) in chosen.items())
    others = [label for label, (top, _) in chosen.items() if top != best]
    if not others:
        return f'<p class="ok" id="agreement-{_esc(name)}">The ABC baselines choose the same scenario: {shown}.</p>'
    return (f'<p class="flag" id="agreement-{_esc(name)}">The ABC baselines do not all agree: {shown}. Where the methods '
            "disagree, the data may lie where the simulations are sparse (see the misspecification and fit checks) "
            "or the scenarios may be hard to tell apart there: weigh the answer accordingly.</p>")


def _empirical_section(rep: Report, config: dict, results: Path, abc_metrics: dict | None) -> None:
    names = [d["name"] for d in config.get("predict", {}).get("data", [])]
    if not names:
        rep.section("observed", "Observed data", _missing("no observed data sets (config predict.data is empty)"))
        return
    abc_emp = (_read_json(results / "abc" / "empirical.json") or {}).get("data", {})
    body = ""
    observed_stats = {}
    for name in names:
        folder = results / "predict" / name
        pred = _read_json(folder / "predictions.json")
        obs = _read_json(folder / "observed.json")
        body += f"<h3>{_esc(name)}</h3>"
        if obs:
            c = obs["counts"]
            body += (f"<p>{c['snps']} biallelic SNPs kept of {c['records']} records (skipped: {_esc(skipped_text(c))}); "
                     f"{len(obs['individuals'])} of "
                     f"{c['individuals_in_file']} individuals; {obs['missing_rate']:.2%} missing calls; "
                     f"{obs['replicates']} SNP subset(s) averaged.</p>")
            body += "".join(f'<p class="flag">{_esc(n)}</p>' for n in obs.get("notes", []))
        if (folder / "observed.npz").is_file():
            with np.load(folder / "observed.npz") as data:
                observed_stats[name] = data["stats"]
        if pred is None and name not in abc_emp:
            body += _missing(f"predictions for {name} (predict/{name}/predictions.json)")
            continue
        probs, params = {}, {}
        if pred:
            net = pred["network"]
            probs["network"] = net.get("probabilities", {})
            params["network"] = net.get("params", {})
            body += (f'<p>Network: most probable scenario <b id="prediction-{_esc(name)}">{_esc(net.get("scenario"))}</b> '
                     f"(probability {probability_text(max(net['probabilities'].values()))}).</p>" if net.get("probabilities") else "")
            answers_ = abc_emp.get(name, {})
        for method in method_order(answers_):
            ans = answers_[method]
            label = (abc_metrics or {}).get("methods", {}).get(method, {}).get("label", method)
            probs[label] = ans["probabilities"]
            params[label] = ans["params"]
        shown = {method: {s: probability_text(p) for s, p in ps.items()} for method, ps in probs.items()}
        body += "<h4>Scenario probabilities</h4>" + _table(pd.DataFrame(shown).rename_axis("scenario").reset_index())
        # Every method's estimates against the priors: one at a bound means "at least" (or "at most").
        from popdl.predict import PRIOR_EDGE, prior_edges

        edges = {method: {e["parameter"]: e["side"] for e in prior_edges({"params": ps}, config.get("scenarios") or {})}
                 for method, ps in params.items()}
        cells = {method: {p: f"{_value(v['estimate'])} ({_value(v['lower'])} – {_value(v['upper'])})"
                          + (f" at its prior's {edges[method][p]} bound" if p in edges[method] else "") for p, v in ps.items()}
                 for method, ps in params.items()}
        if any(cells.values()):
            body += ("<h4>Parameter estimates: estimate (interval), natural units</h4>"
                     + _table(pd.DataFrame(cells).rename_axis("parameter").reset_index()))
            if any(edges.values()):
                body += (f'<p class="flag">An estimate at a bound of its prior (within {PRIOR_EDGE:.0%} of its range) means '
                         '"at least" (or "at most"), not "about": no simulation lay beyond the bound. Widen that prior and '
                         'rerun.</p>')
        body += _verdict(pred)
        mis = (pred or {}).get("misspecification")
        if mis:
            cls_ = "flag" if mis["flagged"] else "ok"
            verdict = "OUTSIDE what was simulated" if mis["flagged"] else "within what was simulated"
            body += (f'<p class="{cls_}" id="misspecification-{_esc(name)}">Misspecification check: the data lie {verdict} '
                     f"({_esc(mis['summary'])}; Mahalanobis distance {mis['distance']:.2f} on {mis['components']} principal "
                     f"components, p = {mis['p_value']:.3g}).</p>")
            q = pd.Series(mis["quantiles"])
            body += _quantile_bars(rep, q, outside=[k for k, v in q.items() if v in (0.0, 1.0)], colour="#669",
                                   ylabel="prior-predictive quantile", alt=f"{name} statistic quantiles",
                                   title=f"{name}: quantile of each observed statistic among the simulations (red: outside)")
        elif pred:
            body += _missing("the misspecification check (no reference simulations)")
        if pred:
            body += _fit_section(rep, _read_json(folder / "fit_check.json"), name,
                                 wanted=bool(config.get("predict", {}).get("fit_check")))
    if observed_stats and (results / "dataset" / "manifest.json").is_file():
        ref = load_reference(results / "dataset", ("train", "validation", "test"))
        check = Misspecification(ref.stats, stat_names=ref.stat_names, labels=ref.labels, scenarios=ref.scenarios)
        body += "<h3>Observed data among the simulations</h3>" + rep.fig(pca_figure(check, observed_stats, root_seed=config["seed"]), "PCA of the statistics")
    rep.section("observed", "Observed data", body)


def _scan_section(rep: Report, config: dict, results: Path) -> None:
    """Genome scans (scan.data): the target scenario's probability along each contig, and the top windows."""
    names = [d["name"] for d in config.get("scan", {}).get("data", [])]
    if not names:
        return
    body = ""
    for name in names:
        table_path = results / "scan" / f"{name}.tsv"
        body += f"<h3>{_esc(name)}</h3>"
        if not table_path.is_file():
            body += _missing(f"scan of {name} (scan/{name}.tsv)")
            continue
        table = pd.read_csv(table_path, sep="\t")
        summary = _read_json(results / "scan" / f"{name}.json") or {}
        target = summary.get("target") or [c[2:] for c in table.columns if c.startswith("p_")][-1]
        best = table.loc[table[f"p_{target}"].idxmax()]
        body += (f"<p>{len(table)} windows of {int(table['n_snps'].max())} SNPs on {table['contig'].nunique()} contig(s), "
                 f"one centre every {config.get('scan', {}).get('step', '?')} SNPs. Highest probability of "
                 f"<b>{_esc(target)}</b>: {best[f'p_{target}']:.3f} at "
                 f'<b id="scan-{_esc(name)}">{_esc(best["contig"])}:{int(best["centre"])}</b>.</p>')
        png = results / "scan" / f"{name}.png"
        if png.is_file():
            body += rep.img(png.read_bytes(), f"scan of {name}")
        top = table.sort_values(f"p_{target}", ascending=False).head(10)
        cols = ["contig", "start", "end", "centre", *[c for c in table.columns if c.startswith("p_")], "predicted"]
        body += f"<h4>Windows with the highest p({_esc(target)})</h4>" + _table(top[cols])
    rep.section("scan", "Genome scan", body)


# ---------------------------------------------------------------------------- end of a run
def run_summary(results: str | Path, data_names=()) -> list[str]:
    """What a finished run found, in a few console lines: where the report is, the test set's
    accuracy and R² against the ABC baselines, and each data set's answer.  Parts whose files
    are absent (a run that stopped at the dataset) are left out; no line when nothing is there."""
    results = Path(results)
    lines = []
    abc_metrics = _read_json(results / "abc" / "metrics.json") or {}
    evaluation = _read_json(results / "evaluation" / "metrics.json")
    verdicts = who_won(abc_metrics, evaluation) if abc_metrics.get("methods") and evaluation else []
    for v in verdicts:
        if v["task"] == "scenario" and v["values"].get("network") is not None:
            abc = {m: x for m, x in v["values"].items() if m != "network" and x is not None}
            best = max(abc, key=abc.get)
            lines.append(f"test set: scenario accuracy network {v['values']['network']:.3f}, "
                         + ", ".join(f"{m} {x:.3f}" for m, x in abc.items())
                         + f" ({_signed(v['values']['network'] - abc[best])} against {best})")
    params = [v for v in verdicts if v["measure"] == "R²"]
    if params:
        lost = [v["task"] for v in params if v["winner"] != "network" and "network" not in v["tied"]]
        lines.append(f"test set: R² of the network at least the best ABC method's on {len(params) - len(lost)} of "
                     f"{len(params)} parameters" + (f" (below it on {', '.join(lost)})" if lost else ""))
    abc_answers = (_read_json(results / "abc" / "empirical.json") or {}).get("data", {})
    abc_methods = abc_metrics.get("methods", {})
    for name in data_names:
        pred = _read_json(results / "predict" / name / "predictions.json")
        net = (pred or {}).get("network") or {}
        if not net.get("probabilities"):
            continue
        best = net.get("scenario") or max(net["probabilities"], key=net["probabilities"].get)
        rel = pred.get("reliability") or {}
        flag = "" if rel.get("reliable", True) else " UNRELIABLE (see the report)"
        fit = _read_json(results / "predict" / name / "fit_check.json")
        fits = "" if not fit else ("; the answer reproduces the data" if fit.get("fits")
                                   else "; the answer does NOT reproduce the data (fit check)")
        prior = _read_json(results / "predict" / name / "prior_check.json")
        if prior and prior.get("warn"):
            fits += "; the data lie beyond the priors' simulations (prior check)"
        edges = [e for e in net.get("prior_edges") or [] if e.get("parameter")]
        if edges:
            fits += "; " + ", ".join(f"{e['parameter']} at the {e.get('side', '')} bound of its prior".replace("  ", " ")
                                     for e in edges) + " (widen it)"
        others = [f"{label} {top}" for label, (top, _) in _abc_choices(abc_answers.get(name) or {}, abc_methods).items()
                  if top != best]
        disagree = f"; the ABC baselines disagree ({', '.join(others)})" if others else ""
        lines.append(f"{name}: {best} (probability {probability_text(net['probabilities'][best])}){flag}{fits}{disagree}")
    if (results / "report.html").is_file():
        lines.append(f"report: {results / 'report.html'}")
    return lines


# ---------------------------------------------------------------------------- entry point
def write_report(config: dict, results: str | Path, out: str | Path, *, config_hash: str,
                 comparison_out: str | Path | None = None) -> dict:
    """Write the HTML report of the run whose outputs are in ``results``; return a short summary.

    ``config_hash``: the report job's settings hash (:func:`popdl.stages.settings_hash`),
    shown in the configuration section and as ``<meta name="popdl-config-hash">``.
    """
    start = time.perf_counter()
    results = Path(results)
    rep = Report(f"popdl report: run {config.get('run', results.name)}", meta={"popdl-config-hash": config_hash})
    _answer_section(rep, config, results)
    _config_section(rep, config, config_hash)
    _scenario_section(rep, config)
    _prior_section(rep, config, results)
    _simulation_section(rep, results)
    interpretation, arrays = _read_interpretation(results)
    _tuning_section(rep, results, interpretation)
    evaluation = _evaluation_section(rep, results, int(config.get("seed", 0)))
    abc_metrics = _comparison_section(rep, results, evaluation, Path(comparison_out) if comparison_out else None)
    _embedding_section(rep, interpretation, arrays)
    _saliency_section(rep, interpretation, arrays)
    _empirical_section(rep, config, results, abc_metrics)
    _scan_section(rep, config, results)
    text = rep.html()
    with atomic_path(out, suffix=".html") as tmp:
        Path(tmp).write_text(text)
        Path(tmp).chmod(0o644)
    summary = {"sections": len(rep.sections), "images": rep.images, "bytes": len(text), "seconds": time.perf_counter() - start}
    log.info("report: %s", summary)
    return summary
