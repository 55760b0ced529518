"""What the final network learnt: the analyses the report shows, computed once
by the evaluate job (which already holds the model and the test set) and
written as files that :mod:`popdl.report` only reads and draws.

Writes to ``results/{run}/evaluation/``:

``interpretation.json``
    ``importances``: Optuna's fANOVA importance of each varied
    hyper-parameter, from the sweep's trials table (``tuning/trials.csv``);
    ``embedding``: the last hidden layer (the activations feeding the
    ``scenario`` output) of the test simulations projected by PCA (with the
    variance each component explains) and, from 30 examples up, t-SNE;
    ``saliency``: occlusion saliency of a few test images per scenario.
    Each part holds ``unavailable`` (the reason) instead when it cannot be
    computed (no trials table, no scenario output, a network without image
    input...).  Plus ``seeds`` and ``provenance`` (the evaluate job's
    settings hash, versions).
``interpretation.npz``
    the arrays behind the figures: ``embedding_labels`` (n,) true scenario
    index, ``embedding_pca`` (n, 2), ``embedding_tsne`` (n, 2);
    ``saliency_images`` (k, haplotypes, snps) int8, ``saliency_labels`` (k,),
    ``saliency_snp`` (k, snps) and ``saliency_haplotype`` (k, haplotypes): the
    drop in the true scenario's probability when one SNP column or one
    haplotype row is masked.  Arrays of an unavailable part are absent.

Random streams: every choice here comes from :func:`popdl.seeds.report`
streams of the root seed (config key ``seed``), named ``test subsample``
(which test simulations, when there are more than ``max_test``),
``importances`` (the fANOVA forest's seed) and ``embedding`` (PCA's and
t-SNE's ``random_state``); the seeds drawn are recorded in the JSON.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from popdl import seeds
from popdl.io import provenance, save_npz, write_json

log = logging.getLogger("popdl.interpret")

__all__ = ["interpret", "param_importances", "hidden_embedding", "occlusion_saliency", "test_subsample"]

#: Most test simulations embedded and projected (a random subset beyond).
MAX_TEST = 600
#: Test images per scenario whose saliency is computed.
SALIENCY_PER_SCENARIO = 2
#: Fewest examples for a t-SNE projection.
MIN_TSNE = 30


def _stream_seed(root_seed: int, use: str) -> int:
    """An integer seed (0 .. 2**31 - 1) for a library call, from the report stream ``use``."""
    return int(seeds.report(root_seed, use).integers(2**31))


def test_subsample(n: int, *, root_seed: int, max_test: int = MAX_TEST) -> np.ndarray:
    """Sorted indices of the test simulations analysed: all of them up to
    ``max_test``, else a random subset (stream ``test subsample``)."""
    if n <= max_test:
        return np.arange(n)
    return np.sort(seeds.report(root_seed, "test subsample").choice(n, max_test, replace=False))


def param_importances(trials: pd.DataFrame, *, seed: int) -> dict[str, float]:
    """Optuna's hyper-parameter importances (fANOVA, seeded by ``seed``) from a trials
    table (``number``, ``value``, ``params_*`` columns) of completed trials: the trials
    are replayed into an in-memory study.  Empty when fewer than 2 trials or no
    hyper-parameter varied."""
    import optuna

    cols = [c for c in trials.columns if c.startswith("params_")]
    if len(trials) < 2 or not cols:
        return {}
    dists = {}
    for c in cols:
        v = trials[c].dropna()
        if v.nunique() < 2:
            continue
        num = pd.to_numeric(v, errors="coerce")
        if num.notna().all() and not v.map(lambda x: isinstance(x, (bool, np.bool_))).any():
            lo, hi = float(num.min()), float(num.max())
            dists[c[7:]] = optuna.distributions.FloatDistribution(lo, hi, log=bool(lo > 0 and hi / lo > 100))
        else:
            dists[c[7:]] = optuna.distributions.CategoricalDistribution(sorted(map(str, v.unique())))
    if not dists:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    for _, row in trials.iterrows():
        params, ds = {}, {}
        for name, d in dists.items():
            val = row[f"params_{name}"]
            if pd.isna(val):
                continue
            params[name] = float(val) if isinstance(d, optuna.distributions.FloatDistribution) else str(val)
            ds[name] = d
        study.add_trial(optuna.trial.create_trial(params=params, distributions=ds, value=float(row["value"])))
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError) as exc:
        log.info("importances unavailable: %s", exc)
        return {}
    return {k: float(v) for k, v in found.items()}


def completed_trials(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a trials table that finished with a finite objective."""
    done = table[table["state"] == "COMPLETE"] if "state" in table else table
    if "value" not in done:
        return done.iloc[:0]
    return done[np.isfinite(pd.to_numeric(done["value"], errors="coerce"))]


def hidden_embedding(model, test: dict, *, seed: int) -> dict:
    """The activations feeding the ``scenario`` output for ``test``, projected to two
    dimensions: ``{"pca": (n, 2), "tsne": (n, 2) or None, "explained": [2], "units": int}``;
    ``{"unavailable": reason}`` for a model without a scenario output."""
    import keras

    from popdl.models import scenario_head

    found = scenario_head(model.keras_model)
    if found is None:
        return {"unavailable": "the model has no scenario output"}
    network, head = found  # an ensemble's first member, a combined model's classifier
    extractor = copy.copy(model)
    extractor.keras_model = keras.Model(network.inputs, head.input)
    extractor.inputs = tuple(t.name.split(":")[0] for t in network.inputs)
    out = extractor.raw_outputs(test.get("images"), test.get("distances"), test.get("stats"))
    hidden = np.asarray(next(iter(out.values())), dtype=np.float64).reshape(len(test["labels"]), -1)
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    pcs = PCA(n_components=2, random_state=seed).fit(hidden)
    tsne = None
    if hidden.shape[0] >= MIN_TSNE:
        perplexity = float(min(30, (hidden.shape[0] - 1) / 3))
        tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(hidden)
    return {"pca": pcs.transform(hidden), "tsne": tsne, "explained": [float(v) for v in pcs.explained_variance_ratio_],
            "units": int(hidden.shape[1])}


def occlusion_saliency(model, images: np.ndarray, distances: np.ndarray, stats: np.ndarray, labels: np.ndarray):
    """Occlusion saliency (Zeiler & Fergus 2014) of each example: the drop in the true scenario's
    probability when one SNP column, or one haplotype row, of the image is masked (set to 0,
    the missing-data value).  Uses only the model's predictions, so it works on every Keras backend.

    Returns ``(snp, haplotype)`` arrays of shapes (n, snps) and (n, haplotypes).
    """
    n, haps, snps = images.shape
    per = 1 + snps + haps
    batch = np.repeat(np.asarray(images), per, axis=0).reshape(n, per, haps, snps)
    for j in range(snps):
        batch[:, 1 + j, :, j] = 0
    for h in range(haps):
        batch[:, 1 + snps + h, h, :] = 0
    d = np.repeat(distances, per, axis=0) if distances is not None else None
    s = np.repeat(stats, per, axis=0) if stats is not None else None
    probs = model.predict(batch.reshape(n * per, haps, snps), d, s).probabilities.reshape(n, per, -1)
    p = probs[np.arange(n), :, np.asarray(labels, dtype=int)]  # (n, per): the true scenario's probability
    return p[:, :1] - p[:, 1 : 1 + snps], p[:, :1] - p[:, 1 + snps :]


def _saliency(model, test: dict, *, per_scenario: int) -> tuple[dict, dict]:
    """(summary, arrays) of the occlusion saliency of ``per_scenario`` test images per scenario."""
    tasks = model.bundle.get("tasks")
    if "image" not in model.inputs or (tasks and "classify" not in tasks):
        return {"unavailable": f"the {model.bundle.get('network')} network does not classify genotype images"}, {}
    picks = []
    for s in range(len(model.scenarios)):
        picks += list(np.flatnonzero(test["labels"] == s)[:per_scenario])
    if not picks:
        return {"unavailable": "no test examples"}, {}
    idx = np.asarray(picks)
    images = np.asarray(test["images"][idx])
    labels = np.asarray(test["labels"][idx], dtype=np.int64)
    snp, hap = occlusion_saliency(model, images, test["distances"][idx], test["stats"][idx], labels)
    summary = {"examples": len(idx), "per_scenario": per_scenario}
    arrays = {"saliency_images": images.astype(np.int8), "saliency_labels": labels,
              "saliency_snp": snp.astype(np.float64), "saliency_haplotype": hap.astype(np.float64)}
    return summary, arrays


def interpret(model, test: dict, *, out: str | Path, root_seed: int, config_hash: str,
              trials: str | Path | None = None, max_test: int = MAX_TEST,
              per_scenario: int = SALIENCY_PER_SCENARIO) -> dict:
    """Compute the importances (from the ``trials`` table, when given), the
    embedding and the saliency of ``model`` (a loaded model folder) on ``test``
    (the test split: ``images``, ``distances``, ``stats``, ``labels``); write
    ``out``/interpretation.json and interpretation.npz.  Returns the JSON record."""
    out = Path(out)
    used = {"root": int(root_seed), "importances": _stream_seed(root_seed, "importances"),
            "embedding": _stream_seed(root_seed, "embedding")}
    record: dict = {}
    arrays: dict[str, np.ndarray] = {}

    table = pd.read_csv(trials) if trials is not None and Path(trials).is_file() else None
    if table is None:
        record["importances"] = {"unavailable": "no trials table (tuning/trials.csv)"}
    else:
        values = param_importances(completed_trials(table), seed=used["importances"])
        record["importances"] = ({"method": "fanova", "values": values} if values else
                                 {"unavailable": "fewer than 2 completed trials or no varied hyper-parameter"})

    n = len(test["labels"])
    keep = test_subsample(n, root_seed=root_seed, max_test=max_test)
    part = {k: (v[keep] if v is not None else None) for k, v in test.items()
            if k in ("images", "distances", "stats", "labels")}
    if n == 0:
        record["embedding"] = record["saliency"] = {"unavailable": "no test examples"}
    else:
        emb = hidden_embedding(model, part, seed=used["embedding"])
        if "unavailable" in emb:
            record["embedding"] = emb
        else:
            record["embedding"] = {"examples": int(len(keep)), "of": n, "units": emb["units"],
                                   "pca_explained": emb["explained"], "tsne": emb["tsne"] is not None}
            arrays["embedding_labels"] = np.asarray(part["labels"], dtype=np.int64)
            arrays["embedding_pca"] = np.asarray(emb["pca"], dtype=np.float64)
            if emb["tsne"] is not None:
                arrays["embedding_tsne"] = np.asarray(emb["tsne"], dtype=np.float64)
        record["saliency"], sal = _saliency(model, part, per_scenario=per_scenario)
        arrays.update(sal)
    record["scenarios"] = list(model.scenarios)
    record["seeds"] = used
    record["provenance"] = provenance(config_hash=config_hash, seeds=used)
    save_npz(out / "interpretation.npz", **arrays)
    write_json(out / "interpretation.json", record)
    log.info("interpret: %s", {k: ("unavailable" if "unavailable" in v else "ok") for k, v in record.items()
                               if k in ("importances", "embedding", "saliency")})
    return record
