"""Applying the final network to observed data sets.

Two steps, each runnable by hand:

1. :func:`observe` reads and validates one data set (:mod:`popdl.observed`)
   and writes its network inputs to ``results/{run}/predict/{name}/observed.npz``
   (``images`` (replicates, haplotypes, snps) int8, ``distances``
   (replicates, snps) float32, ``n_snps``, ``stats`` (statistics,) float64,
   ``stat_names``, ``populations``) plus ``observed.json`` (what was read,
   kept and skipped; the missing rate; ``positions``: how the SNP positions
   compare with ``genome.length``, flagged when far beyond it, since the
   networks' distance input would then lie outside the simulations).
2. :func:`predict_observed` runs the saved model on every replicate image,
   averages the replicates' scenario probabilities and parameter quantiles,
   runs the misspecification check (:mod:`popdl.misspec`) against the
   reference simulations, and writes ``predictions.json`` (with the
   ``provenance``: the predict job's settings hash, package versions, the
   model) and ``predictions.csv`` beside ``observed.npz``.

``predictions.csv`` columns: ``kind`` (``scenario`` or ``parameter``),
``name``, ``value`` (probability, or the estimate in natural units:
:func:`popdl.model_io.point_estimate`), ``lower``, ``upper`` (the interval's bounds, parameters only),
``scenarios`` (the scenarios that have the parameter, ``;``-separated),
``reliable`` (``true``/``false``, the same on every row) and ``note`` (why
not, and warnings such as a softmax temperature at its bound).

**Reliability** (``predictions.json``'s ``reliability``): every input the
network reads is compared with the range it took over the reference
simulations (:func:`training_ranges`): the inter-SNP distances, the SNPs
filling the image, the share of missing genotypes in the image, and the
summary statistics (the misspecification check).  An input outside makes
the prediction *unreliable*, with the reason; it is never printed bare.
Warnings weaken an answer without making it unreliable: a parameter whose
estimate lies at a bound of its prior (:func:`prior_edges`: within
:data:`PRIOR_EDGE` of the prior's range) is named, since the network never saw
a value beyond the bound (``predictions.json``'s ``network.prior_edges``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from popdl.abc import load_reference
from popdl.dataset import Dataset
from popdl.errors import DataError
from popdl.features import observed_features
from popdl.io import atomic_path, provenance, save_npz, write_json
from popdl.misspec import Misspecification
from popdl.model_io import load_model
from popdl.observed import layout_notes, read_observed, sampling_notes, with_defaults

__all__ = [
    "observe",
    "observed_inputs",
    "position_check",
    "write_observed",
    "load_observed",
    "network_answer",
    "predict_observed",
    "predict_arrays",
    "write_predictions",
    "predictions_frame",
    "training_ranges",
    "reliability",
    "prior_edges",
    "edge_warning",
    "PRIOR_EDGE",
]

log = logging.getLogger("popdl.predict")


def observed_inputs(entry: dict, settings: dict, *, base_dir: str | Path | None = None) -> tuple[dict, dict]:
    """Read and validate data set ``entry`` ({name, vcf | fasta, popmap, length?}) with the ``predict``
    stage ``settings``: its network inputs and its summary (what was read, kept and skipped; notes).
    Nothing is written; any problem with the data is one :class:`DataError` line.
    What ``entry`` does not set of ``loci`` and ``populations`` comes from the settings'
    ``predict.defaults`` (:func:`popdl.observed.with_defaults`)."""
    popt = settings["predict"]
    genome = settings["genome"]
    entry = with_defaults(entry, popt.get("defaults"))
    data = read_observed(
        entry, samples=settings["samples"], seed=settings["seed"], subsample=popt["subsample"],
        allow_unphased=popt["allow_unphased"], max_missing=popt["max_missing"],
        genome_length=float(genome["loci"]) * float(genome["length"]), base_dir=base_dir,
        strict=popt.get("strict_samples", False), phased=settings["features"].get("phased", True),
        locus_length=float(genome["length"]), keep_filtered=popt.get("keep_filtered", False),
    )
    feats = observed_features(data, features=settings["features"], genome=genome, seed=settings["seed"],
                               replicates=popt["replicates"])
    trained_rate = float(settings["features"].get("missing_rate", 0.0))
    like = settings["features"].get("missing_individuals") or {}
    if like:  # the data's pattern: on average, the mean of the individuals' rates
        trained_rate = float(np.mean([r for rates in like.values() for r in rates]))
    summary = {
        "name": data.name,
        "source": {k: entry[k] for k in ("vcf", "fasta", "popmap") if k in entry},
        "reading": {"loci": (entry.get("loci") or "contigs") if "vcf" in entry else "alignments",
                    "populations": dict(entry.get("populations") or {})},
        "counts": data.counts,
        "individuals": data.individuals,
        "loci": data.loci,
        "length": data.length,
        "missing_rate": data.missing_rate,
        "trained_missing_rate": trained_rate,
        "phasing": data.phasing,
        "trained_phased": bool(settings["features"].get("phased", True)),
        "replicates": int(feats["images"].shape[0]),
        "n_snps": feats["n_snps"].tolist(),
    }
    notes = []
    if not summary["trained_phased"] and data.phasing != "unphased":
        notes.append(f"the data are {data.phasing}, the model unphased: their phase is discarded, as in training")
    if abs(data.missing_rate - trained_rate) > max(0.01, 0.25 * data.missing_rate):
        notes.append(f"{data.missing_rate:.1%} of calls are missing but the simulations had {trained_rate:.1%}; "
                     f"set features.missing_rate: {data.missing_rate:.3f} to train with the same missingness")
    notes += sampling_notes(data, settings["features"])
    if "vcf" in entry:
        notes += layout_notes(data, genome, entry.get("loci"))
    snps = int(settings["features"]["snps"])
    if data.counts["snps"] < snps:
        notes.append(f"only {data.counts['snps']} SNPs for an image of {snps} columns (padded)")
    summary["positions"] = position_check(data, float(genome["length"]))
    if summary["positions"]["flagged"]:
        notes.append(summary["positions"]["note"])
    summary["notes"] = notes
    for note in notes:
        log.warning("%s: %s", data.name, note)
    return feats, summary


#: Positions up to this multiple of genome.length pass (coordinate conventions, a locus a little longer).
POSITION_TOLERANCE = 1.1


def position_check(data, length: float) -> dict:
    """How the data's SNP positions compare with the simulated loci's ``genome.length``.

    The networks read inter-SNP distances scaled by ``genome.length``; in the
    simulations every position lies in 0..length.  Positions far beyond it
    (whole chromosomes, or absolute coordinates of a region) give distances
    the networks never saw: ``flagged``, with a one-line ``note``.
    """
    positions = np.asarray(data.positions, dtype=np.float64)
    beyond = int((positions > length).sum())
    out = {"genome_length": float(length), "max": float(positions.max()) if positions.size else 0.0,
           "beyond_length": beyond, "flagged": bool(positions.size and positions.max() > POSITION_TOLERANCE * length)}
    if out["flagged"]:
        worst = int(np.argmax(positions))
        where = f"{data.loci[int(data.locus[worst])]}:{positions[worst]:.0f}"
        out["note"] = (f"{beyond} of {positions.size} SNPs lie beyond genome.length ({length:g} bp; the furthest at {where}): "
                       "the inter-SNP distances the networks read (scaled by genome.length) are far outside the simulations'; "
                       "simulate loci as long as the data's contigs, or cut the data into loci of genome.length "
                       "(predict.data[].loci: windows; clusters for RAD/GBS reads aligned to a reference; ids for Stacks locus IDs)")
    return out


def write_observed(out: str | Path, feats: dict, summary: dict) -> None:
    """Write ``out`` (observed.npz) and observed.json beside it; neither is left alone on failure."""
    out = Path(out)
    save_npz(out, **feats)
    try:
        write_json(out.with_name("observed.json"), summary)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def observe(entry: dict, settings: dict, out: str | Path, *, base_dir: str | Path | None = None) -> dict:
    """Read data set ``entry`` ({name, vcf | fasta, popmap, length?}) with the ``predict`` stage
    ``settings``; write ``out`` (observed.npz) and observed.json beside it.  Returns the summary."""
    feats, summary = observed_inputs(entry, settings, base_dir=base_dir)
    write_observed(out, feats, summary)
    return summary


_OBSERVED_ARRAYS = ("images", "distances", "stats", "stat_names")


def load_observed(path: str | Path) -> dict:
    """The arrays of an ``observed.npz``; a missing, truncated or foreign file is one :class:`DataError` line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: observed file not found (made by popdl observe)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _OBSERVED_ARRAYS if k not in data.files]
            if missing:
                raise DataError(f"{path}: not an observed.npz of popdl observe (no {', '.join(missing)})")
            out = {k: data[k] for k in data.files}
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: not a readable observed.npz ({detail}); run popdl observe again") from None
    if out["images"].ndim != 3 or out["distances"].ndim != 2 or out["images"].shape[0] != out["distances"].shape[0]:
        raise DataError(f"{path}: images {out['images'].shape} and distances {out['distances'].shape} are not "
                        "those of popdl observe")
    return out


def read_observed_summary(observed_path: str | Path) -> dict:
    """observed.json beside ``observed_path`` ({} when there is none)."""
    path = Path(observed_path).with_name("observed.json")
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable observed summary ({str(exc).splitlines()[0]}); run popdl observe again") from None
    if not isinstance(summary, dict):
        raise DataError(f"{path}: not an observed summary of popdl observe")
    return summary


def network_answer(model, observed: dict) -> dict:
    """The network's answer for one observed data set: replicate-averaged probabilities and
    parameter quantiles, in natural units.

    ``model`` is a loaded bundle (:func:`popdl.model_io.load_model`).  Each
    replicate image (a different SNP subset) is predicted; probabilities are
    averaged, and so are each quantile and the estimate of each parameter (on
    the log10 scale for positive parameters).
    """
    n = observed["images"].shape[0]
    stats = np.repeat(np.asarray(observed["stats"], dtype=np.float32)[None, :], n, axis=0)
    pred = model.predict(observed["images"], observed["distances"], stats)
    answer = {"replicates": n, "params": {}}
    if pred.probabilities is not None:
        probs = np.asarray(pred.probabilities, dtype=np.float64)
        answer["probabilities"] = dict(zip(pred.scenarios, map(float, probs.mean(0))))
        answer["probabilities_sd"] = dict(zip(pred.scenarios, map(float, probs.std(0))))
        answer["scenario"] = max(answer["probabilities"], key=answer["probabilities"].get)
    else:
        answer["probabilities"] = {}
    if pred.quantiles is not None:
        levels = list(pred.levels)
        for j, name in enumerate(pred.param_names):
            col = np.asarray(pred.quantiles[:, j, :], dtype=np.float64)
            est = np.asarray(pred.estimates[:, j], dtype=np.float64)
            if not (np.isfinite(col).all() and np.isfinite(est).all()):
                continue
            positive = bool((col > 0).all() and (est > 0).all())
            avg = 10 ** np.log10(col).mean(0) if positive else col.mean(0)
            point = 10 ** np.log10(est).mean() if positive else est.mean()
            bounds = (getattr(getattr(model, "prep", None), "bounds", None) or [None] * (j + 1))[j]
            if bounds:  # the mean of quantiles within the prior's support is within it, up to rounding
                avg = np.clip(avg, bounds[0], bounds[1])
            point = min(max(float(point), float(avg[0])), float(avg[-1]))
            answer["params"][name] = {"estimate": point, "lower": float(avg[0]), "upper": float(avg[-1]),
                                      "quantiles": [float(v) for v in avg]}
        answer["interval"] = [float(levels[0]), float(levels[-1])]
        answer["levels"] = [float(v) for v in levels]
        answer["scenario_params"] = getattr(model, "scenario_params", {})
    return answer


#: Images whose missing share is measured per split (a prefix of its shards): enough for the range, bounded work.
RANGE_IMAGES = 5000


def _missing_share(images: np.ndarray, n_snps: np.ndarray) -> np.ndarray:
    """Per image, the share of missing genotypes (0) among the columns holding a SNP."""
    out = np.zeros(len(images))
    for i, (image, n) in enumerate(zip(images, n_snps)):
        if n:
            out[i] = float((np.asarray(image[:, : int(n)]) == 0).mean())
    return out


def training_ranges(dataset_dir: str | Path) -> dict:
    """The range of every network input over the reference simulations (all splits):
    ``distance_max``, ``n_snps_min``, ``n_snps_max``, and ``missing_max``, the largest
    share of missing genotypes in an image (over at most :data:`RANGE_IMAGES` per split)."""
    dataset = Dataset(dataset_dir)
    out = {"distance_max": 0.0, "n_snps_min": None, "n_snps_max": 0, "missing_max": 0.0}
    for split in dataset.manifest["splits"]:
        seen = 0
        for shard in dataset.shards(split, ("distances", "n_snps")):
            n = np.asarray(shard["n_snps"])
            if n.size:
                out["distance_max"] = max(out["distance_max"], float(np.max(shard["distances"])))
                out["n_snps_min"] = min(out["n_snps_min"] if out["n_snps_min"] is not None else int(n.min()), int(n.min()))
                out["n_snps_max"] = max(out["n_snps_max"], int(n.max()))
        for shard in dataset.shards(split, ("images", "n_snps")):
            if seen >= RANGE_IMAGES:
                break
            k = min(len(shard["n_snps"]), RANGE_IMAGES - seen)
            share = _missing_share(shard["images"][:k], shard["n_snps"][:k])
            out["missing_max"] = max(out["missing_max"], float(share.max(initial=0.0)))
            seen += k
    return out


def reliability(obs: dict, ranges: dict | None, *, misspecification: dict | None = None,
                calibration: dict | None = None, inputs=("image", "distances", "stats")) -> dict:
    """Whether the network's ``inputs`` for ``obs`` (an observed.npz's arrays) lie within
    ``ranges`` (:func:`training_ranges`; None: not checked) and the statistics within
    the simulations (``misspecification``, :meth:`popdl.misspec.Misspecification.score`).

    Returns ``{"reliable", "reasons", "warnings", "inputs"}``: ``reasons`` says
    which input lies outside, and how far; ``warnings`` what weakens the answer
    without making it unreliable (a softmax temperature at its bound).
    """
    reasons, warnings = [], []
    n_snps = np.asarray(obs.get("n_snps", [obs["images"].shape[2]] * obs["images"].shape[0]))
    read = set(inputs)
    inputs = {"distance_max": float(np.max(obs["distances"])) if np.size(obs["distances"]) else 0.0,
              "n_snps_min": int(n_snps.min()), "missing": float(_missing_share(obs["images"], n_snps).max(initial=0.0))}
    if ranges is not None:
        if "distances" in read and inputs["distance_max"] > ranges["distance_max"] * (1 + 1e-6) + 1e-9:
            reasons.append(f"inter-SNP distances up to {inputs['distance_max']:.4g} (in genome.length units) where the "
                           f"simulations never exceeded {ranges['distance_max']:.4g}: the data's loci are longer than the "
                           "simulated ones (cut them with predict.data[].loci: windows, clusters or ids, or simulate longer loci)")
        if read & {"image", "distances"} and ranges["n_snps_min"] is not None and inputs["n_snps_min"] < ranges["n_snps_min"]:
            reasons.append(f"{inputs['n_snps_min']} SNPs fill the image where every simulation had at least "
                           f"{ranges['n_snps_min']}")
        if "image" in read and inputs["missing"] > ranges["missing_max"] + 0.01:
            reasons.append(f"{inputs['missing']:.1%} of the image's genotypes are missing where the simulations had at "
                           f"most {ranges['missing_max']:.1%} (simulate the data's missingness: features.missing_rate)")
    if misspecification and misspecification.get("flagged"):
        reasons.append(f"the summary statistics lie outside the simulations ({misspecification['summary']})")
    if calibration and calibration.get("at_bound"):
        warnings.append(f"the softmax temperature ({calibration.get('fitted', calibration.get('temperature'))}) was fitted "
                        "at its bound: the scenario probabilities are poorly calibrated")
    return {"reliable": not reasons, "reasons": reasons, "warnings": warnings, "inputs": inputs,
            "training": ranges}


#: An estimate within this share of its prior's range from one of the prior's bounds (on the scale the
#: prior is uniform on: log10 for a log-uniform prior) lies at that bound: the data may point beyond it.
PRIOR_EDGE = 0.02


def prior_edges(answer: dict, scenarios: dict) -> list[dict]:
    """The parameters of the answer's scenario whose estimate lies at a bound of its prior.

    ``answer``: :func:`network_answer`'s; ``scenarios``: the config's (a model bundle's ``config``),
    whose ``priors`` give each parameter's prior.  A parameter drawn from a uniform, log-uniform or
    truncated normal prior in every scenario that has it counts, its range the union of theirs; a
    derived, fixed or unbounded one does not.  An estimate within :data:`PRIOR_EDGE` of the range from a
    bound is flagged: the network never saw a value beyond it, so an estimate there says "at least"
    (or "at most") rather than "about"; widen the prior and rerun.
    """
    from popdl.errors import ConfigError
    from popdl.scenarios import Prior

    owned = set((answer.get("scenario_params") or {}).get(answer.get("scenario"), []))
    edges = []
    for name, value in (answer.get("params") or {}).items():
        if owned and name not in owned:
            continue
        specs = [(s, (cfg.get("priors") or {})[name]) for s, cfg in scenarios.items()
                 if name in (cfg.get("priors") or {})]
        try:
            priors = [Prior.parse(name, spec, where=f"scenarios.{s}.priors.{name}") for s, spec in specs]
        except ConfigError:  # a bundle's config was validated when written: not a prior this version reads
            continue
        if not priors or any(p.kind not in ("uniform", "loguniform", "truncnormal") for p in priors):
            continue
        lo, hi = min(p.bounds[0] for p in priors), max(p.bounds[1] for p in priors)
        log_scale = all(p.kind == "loguniform" for p in priors)
        est = float(value["estimate"])
        if log_scale and est <= 0:
            continue
        scale = np.log10 if log_scale else (lambda v: v)
        position = float((scale(est) - scale(lo)) / (scale(hi) - scale(lo)))
        if PRIOR_EDGE < position < 1 - PRIOR_EDGE:
            continue
        side = "upper" if position >= 1 - PRIOR_EDGE else "lower"
        edges.append({"parameter": name, "estimate": est, "side": side, "bound": hi if side == "upper" else lo,
                      "prior": f"{'loguniform' if log_scale else 'uniform'} [{lo:g}, {hi:g}]"
                      if len({p.kind for p in priors}) == 1 and priors[0].kind != "truncnormal"
                      else f"[{lo:g}, {hi:g}]", "position": position})
    return edges


def edge_warning(edge: dict) -> str:
    """One line for a parameter at a bound of its prior (:func:`prior_edges`)."""
    beyond = "above" if edge["side"] == "upper" else "below"
    est = edge["estimate"]
    return (f"{edge['parameter']}'s estimate ({f'{est:,.0f}' if abs(est) >= 100 else f'{est:.3g}'}) lies at the "
            f"{edge['side']} bound of its prior "
            f"({edge['prior']}): the data may point {beyond} {edge['bound']:g}, where nothing was simulated; widen "
            f"the prior of {edge['parameter']} and rerun before reading it as an estimate")


def predictions_frame(answer: dict, reliable: dict | None = None) -> pd.DataFrame:
    """predictions.csv's rows: scenarios, then parameters (see the module docstring)."""
    owners: dict[str, list[str]] = {}
    for scenario, names in (answer.get("scenario_params") or {}).items():
        for name in names:
            owners.setdefault(name, []).append(scenario)
    reliable = reliable or {"reliable": True, "reasons": [], "warnings": []}
    note = "; ".join([f"UNRELIABLE: {r}" for r in reliable["reasons"]] + list(reliable.get("warnings", [])))
    rows = [{"kind": "scenario", "name": k, "value": v, "lower": np.nan, "upper": np.nan, "scenarios": k}
            for k, v in answer["probabilities"].items()]
    rows += [{"kind": "parameter", "name": k, "value": v["estimate"], "lower": v["lower"], "upper": v["upper"],
              "scenarios": ";".join(owners.get(k, []))} for k, v in answer["params"].items()]
    frame = pd.DataFrame(rows, columns=["kind", "name", "value", "lower", "upper", "scenarios"])
    frame["reliable"] = "true" if reliable["reliable"] else "false"
    frame["note"] = note
    return frame


def predict_observed(
    observed_path: str | Path,
    *,
    model_dir: str | Path,
    dataset_dir: str | Path | None,
    alpha: float = 0.01,
    out_dir: str | Path | None = None,
    config_hash: str,
) -> dict:
    """Network predictions and the misspecification check for one ``observed.npz``.

    Writes ``predictions.json`` and ``predictions.csv`` into ``out_dir``
    (default: the folder of ``observed_path``).  ``dataset_dir`` holds the
    reference simulations for the check (None skips it).  ``config_hash``: the
    predict job's settings hash (:func:`popdl.stages.settings_hash`), recorded
    as the predictions' provenance.
    """
    observed_path = Path(observed_path)
    out_dir = Path(out_dir) if out_dir else observed_path.parent
    obs = load_observed(observed_path)
    summary = read_observed_summary(observed_path)
    result = predict_arrays(obs, summary, name=summary.get("name", observed_path.parent.name), model_dir=model_dir,
                            dataset_dir=dataset_dir, alpha=alpha, config_hash=config_hash, source=observed_path)
    write_predictions(out_dir, result)
    return result


def predict_arrays(obs: dict, summary: dict, *, name: str, model_dir: str | Path, dataset_dir: str | Path | None,
                   config_hash: str, alpha: float = 0.01, source: str | Path = "the observed data") -> dict:
    """What :func:`predict_observed` answers, from arrays in memory; nothing is written."""
    model = load_model(model_dir)
    expected = getattr(model, "stat_names", None)
    if expected is not None and list(expected) != np.asarray(obs["stat_names"]).tolist():
        raise DataError(f"{source}: its statistics differ from the model's; were they made with the same config?")
    answer = network_answer(model, obs)
    result = {"name": name, "network": answer, "observed": summary}
    ranges = None
    if dataset_dir is not None:
        ref = load_reference(dataset_dir, ("train", "validation", "test"))
        check = Misspecification(ref.stats, stat_names=ref.stat_names).score(obs["stats"], alpha=alpha)
        result["misspecification"] = check
        if check["flagged"]:
            log.warning("%s: the data lie outside the simulations: %s", result["name"], check["summary"])
        ranges = training_ranges(dataset_dir)
    result["reliability"] = reliability(obs, ranges, misspecification=result.get("misspecification"),
                                        calibration=model.bundle.get("calibration"),
                                        inputs=model.bundle.get("inputs", ("image", "distances", "stats")))
    edges = prior_edges(answer, (model.bundle.get("config") or {}).get("scenarios") or {})
    answer["prior_edges"] = edges
    result["reliability"]["warnings"] += [edge_warning(e) for e in edges]
    for reason in result["reliability"]["reasons"]:
        log.warning("%s: UNRELIABLE prediction: %s", result["name"], reason)
    for warning in result["reliability"]["warnings"]:
        log.warning("%s: %s", result["name"], warning)
    result["provenance"] = provenance(config_hash=config_hash, model=str(model_dir))
    return result


def write_predictions(out_dir: str | Path, result: dict) -> list[Path]:
    """Write predictions.json and predictions.csv into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    json_path, csv_path = out_dir / "predictions.json", out_dir / "predictions.csv"
    write_json(json_path, result)
    try:
        with atomic_path(csv_path) as tmp:
            predictions_frame(result["network"], result.get("reliability")).to_csv(tmp, index=False)
    except BaseException:
        json_path.unlink(missing_ok=True)
        raise
    return [json_path, csv_path]
