"""The tiny config through the whole workflow to report.html, checked in a real headless browser."""

from __future__ import annotations

import copy
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import msprime
import pandas as pd
import pytest

from popdl.abc import who_won
from popdl.calibration import probability_text
from popdl.config import prepare
from popdl.scenarios import Scenario

from conftest import REPO, TINY, snakemake, tiny_config, write_config

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)

#: The observed data's file names carry a space, quotes and a command substitution:
#: every rule must pass them to its command quoted, never run them.
VCF_NAME = "obs data $(touch PWNED) it's.vcf.gz"
POPMAP_NAME = 'obs popmap "x".tsv'

#: Small but complete: 1 tuning trial of 2 epochs, a 1-epoch final fit, small forests.
EXTRA = {
    "network": "cnn2d_stats",
    "tuning": {"workers": 1, "trials": 1, "max_epochs": 2, "startup_trials": 1,
               "search_space": {"batch_size": 16, "conv_layers": 1, "filters": 4, "dense_units": 16, "dense_layers": 1,
                                "learning_rate": 0.003, "optimizer": "adam", "lr_decay": "none"}},
    "train": {"epochs": 1, "threads": 1, "ensemble": 1},
    "abc": {"tolerance": 0.2, "trees": 20},
    "predict": {"replicates": 3, "data": [{"name": "obs", "vcf": VCF_NAME, "popmap": POPMAP_NAME}]},
    "scan": {"data": [{"name": "obs", "vcf": VCF_NAME, "popmap": POPMAP_NAME}]},
}


def write_observed(folder: Path, config: dict, *, seed: int = 11) -> None:
    """A phased VCF of one isolation_migration simulation with one extra individual, and its popmap."""
    scenario = Scenario.from_config("isolation_migration", prepare(tiny_config(), base_dirs=(REPO,)))
    samples = dict(config["samples"])
    samples["pop1"] += 1
    graph = scenario.graph({"N_anc": 9000.0, "N1": 4000.0, "N2": 7000.0, "T_split": 3000.0, "m": 2e-4})
    ts = msprime.sim_ancestry(samples=samples, demography=msprime.Demography.from_demes(graph),
                              sequence_length=config["genome"]["length"], recombination_rate=1e-8, ploidy=2,
                              random_seed=seed)
    ts = msprime.sim_mutations(ts, rate=1e-8, model=msprime.BinaryMutationModel(), random_seed=seed)
    names = [f"{pop}_{i}" for pop, n in samples.items() for i in range(n)]
    buf = io.StringIO()
    ts.write_vcf(buf, individual_names=names, position_transform=lambda x: [1 + int(v) for v in x])
    text = re.sub(r"\t0\t1\t\.\tPASS", "\tA\tG\t.\tPASS", buf.getvalue())
    import gzip

    with gzip.open(folder / VCF_NAME, "wt") as fh:
        fh.write(text)
    (folder / POPMAP_NAME).write_text("".join(f"{n}\t{n.rsplit('_', 1)[0]}\n" for n in names))


#: The data stages: a config that differs from the session's tiny run only in the model
#: sections (and the observed data) must never rerun them.
DATA_RULES = {"plan", "simulate", "features", "dataset"}


@pytest.fixture(scope="module")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny run through report.html, in a copy of the session's tiny run to the dataset
    (Snakemake's records included: :func:`conftest.copy_work`).  Each job may import only its
    rule's conda env (``tests/only_envs.py``).  The rules the dry run planned first are kept
    in ``rules-planned.txt`` of the work folder."""
    from conftest import copy_work

    work = tmp_path_factory.mktemp("report_run")
    copy_work(tiny_dataset.parents[2], work)
    config = tiny_config(**EXTRA)
    write_observed(work, config)
    cfg = write_config(work, config)
    target = f"results/{TINY['run']}/report.html"
    (work / "rules-planned.txt").write_text("\n".join(sorted(_rules_to_run(work, target, cfg))))
    proc = snakemake(work, target, configfile=cfg, only_envs=True)
    (work / "run-output.txt").write_text(proc.stdout + proc.stderr)
    return work / "results" / TINY["run"]


@pytest.mark.slow
def test_model_sections_run_from_tune_and_never_the_data_stages(tiny_run):
    """The report run's config differs from the session's tiny run in the model sections:
    tune and what follows ran, with one tune worker, and the data stages did not; a new
    search space then reruns the sweep and what follows, and still none of them."""
    work = tiny_run.parents[1]
    planned = set((work / "rules-planned.txt").read_text().split())
    assert {"tune", "select_best", "train", "evaluate", "abc", "predict", "report"} <= planned, planned
    assert not planned & DATA_RULES, planned
    metrics = json.loads((tiny_run / "evaluation" / "metrics.json").read_text())
    assert metrics["n_test"] == 24 and "classification" in metrics and "regression" in metrics
    assert (tiny_run / "tuning" / "best.json").exists() and (tiny_run / "tuning" / "trials.csv").exists()
    assert len(list((tiny_run / "tuning").glob("worker-*.json"))) == EXTRA["tuning"]["workers"] == 1
    assert (tiny_run / "model" / "model.keras").exists()
    config = tiny_config(**EXTRA)
    config["tuning"]["search_space"] = {**config["tuning"]["search_space"], "dropout": 0.2}
    planned = _rules_to_run(work, f"results/{TINY['run']}/report.html",
                            write_config(work, config, name="config-space.yaml"))
    assert {"tune", "select_best", "train", "evaluate"} <= planned and not planned & DATA_RULES, planned


@pytest.mark.slow
def test_hostile_file_names_go_through_predict_and_scan_unexecuted(tiny_run):
    work = tiny_run.parents[1]
    assert (tiny_run / "predict" / "obs" / "predictions.json").exists()
    assert (tiny_run / "scan" / "obs.tsv").exists() and (tiny_run / "scan" / "obs.json").exists()
    assert not (work / "PWNED").exists() and not (REPO / "PWNED").exists()


@pytest.mark.slow
def test_each_rule_ran_with_only_its_env(tiny_dataset, tiny_run):
    """Every popdl command of the rules ran, in the session's tiny run (the data rules) or in
    this module's (the rest), able to import only its rule's conda env: an env that lacks a
    package its rule imports fails the run that needs it (the fixture names the package)."""
    from only_envs import commands_by_env, commands_run

    ran = {**commands_run(tiny_dataset.parents[2]), **commands_run(tiny_run.parents[1])}
    table = commands_by_env()
    assert set(ran) == set(table), f"never ran restricted: {sorted(set(table) - set(ran))}"
    assert all(ran[command] == table[command]["env"] for command in ran), ran


@pytest.mark.slow
def test_workflow_writes_predictions_abc_and_report(tiny_run):
    pred = json.loads((tiny_run / "predict" / "obs" / "predictions.json").read_text())
    net = pred["network"]
    assert set(net["probabilities"]) == {"isolation", "isolation_migration", "secondary_contact"}
    assert sum(net["probabilities"].values()) == pytest.approx(1, abs=1e-6)
    assert net["replicates"] in (1, 3)
    assert "flagged" in pred["misspecification"] and pred["observed"]["counts"]["individuals_in_file"] == 9
    csv = pd.read_csv(tiny_run / "predict" / "obs" / "predictions.csv")
    assert {"scenario", "parameter"} <= set(csv["kind"]) and (csv.query("kind == 'parameter'")["lower"]
                                                                <= csv.query("kind == 'parameter'")["upper"]).all()
    empirical = json.loads((tiny_run / "abc" / "empirical.json").read_text())["data"]
    assert set(empirical["obs"]) == {"rejection", "abc_rf"}
    comparison = pd.read_csv(tiny_run / "abc" / "comparison.tsv", sep="\t")
    assert comparison["method"].tolist() == ["network", "rejection ABC", "ABC-RF"]
    html = (tiny_run / "report.html").read_text()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # nothing fetched
    for section in ("Configuration", "Scenarios", "Prior draws", "Hyper-parameter tuning", "Test-set evaluation",
                    "Network vs. ABC baselines", "Last hidden layer", "Saliency over SNPs and haplotypes", "Observed data"):
        assert f">{section}</h2>" in html, section
    # The evaluation opens with who won each task: scenario accuracy, then every parameter's R².
    for task in ("scenario", "N1", "T_split", "f_sc"):
        assert f'id="won-{task}"' in html, task
    # ... with the network's difference from the best ABC method and its paired-bootstrap interval, computed
    # from the two tables of per-simulation test predictions (same simulations, same order).
    tests = pd.read_csv(tiny_run / "evaluation" / "test_predictions.tsv", sep="\t")
    abc_tests = pd.read_csv(tiny_run / "abc" / "test_predictions.tsv", sep="\t")
    assert len(tests) == len(abc_tests) and (tests["label"] == abc_tests["label"]).all()
    assert (tests["true_scenario"] == abc_tests["scenario"]).all() and {"p_isolation", "N1", "true_N1"} <= set(tests)
    assert html.count("95 % interval") >= 4 and "paired bootstrap" in html
    assert 'alt="network minus the best ABC method per task, with 95 % intervals"' in html  # the forest plot
    # Each task's values with three decimals, signed differences with a minus sign; "wins" only beyond the noise.
    for item in re.findall(r'<li id="won-[^"]+">(.*?)</li>', html):
        values = re.search(r"</b> \([^)]*\): (.*?): ", item).group(1)
        assert all(re.fullmatch(r".+ (-?\d+\.\d{3}|–)", part) for part in values.split(", ")), item
        assert "interval -" not in item and ("wins by" not in item or "the noise: level" not in item), item
    # The answer's probability is never shown as 1.000 or 0.000: "> 0.999" / "< 0.001" at the extremes.
    shown = re.search(r'id="answer-obs">[^<]*</b> \(probability ([^)]*)\)', html).group(1)
    assert shown == probability_text(net["probabilities"][net["scenario"]]) and shown not in ("1.000", "0.000")
    # The run ended with a summary of what it found, read from the same files.
    output = (tiny_run.parents[1] / "run-output.txt").read_text()
    said = [line for line in output.splitlines() if line.startswith("popdl: ")]
    # ... and neither the run's output nor a job's log carries TensorFlow's start-up chatter.
    for text in (output, (tiny_run / "logs" / "train.log").read_text(), (tiny_run / "logs" / "evaluate.log").read_text()):
        assert "absl::InitializeLog" not in text and "oneDNN custom operations" not in text, text[:2000]
    assert f"popdl: report: results/{TINY['run']}/report.html" in said, said
    evaluation = json.loads((tiny_run / "evaluation" / "metrics.json").read_text())
    scenario_task, *param_tasks = who_won(json.loads((tiny_run / "abc" / "metrics.json").read_text()), evaluation)
    accuracy = f"popdl: test set: scenario accuracy network {evaluation['classification']['accuracy']:.3f}, "
    assert any(line.startswith(accuracy) for line in said), said
    at_least = sum(max(v["values"].values()) == v["values"]["network"] for v in param_tasks)
    assert (f"popdl: test set: R² of the network at least the best ABC method's on {at_least} of {len(param_tasks)} "
            "parameters") in "\n".join(said), said
    assert f"popdl: obs: {net['scenario']} (probability {probability_text(net['probabilities'][net['scenario']])})" in "\n".join(said)
    # ... and whether the ABC baselines choose the same scenario for the data.
    agree = all(max(a["probabilities"], key=a["probabilities"].get) == net["scenario"] for a in empirical["obs"].values())
    line = re.search(r'<p class="(ok|flag)" id="agreement-obs">(.*?)</p>', html)
    assert line and (line.group(1) == "ok") == agree and "ABC-RF" in line.group(2), line
    # Calibration: ECE and the test set's NLL, before and after the temperature.
    assert re.search(r"after temperature scaling \(T = .*?\); mean negative log-likelihood \S+ before and \S+ after",
                     html), html[html.find("Calibration on the test set"):][:600]
    # The fit check: 100 data sets simulated from the answer (predict.fit_check's default), in the answer and in full.
    fit = json.loads((tiny_run / "predict" / "obs" / "fit_check.json").read_text())
    assert fit["replicates"] == 100 and fit["scenario"] == net["scenario"] and 1 / 101 <= fit["p_value"] <= 1
    assert fit["fits"] == (fit["p_value"] >= 0.01 and fit["p_outside"] >= 0.01) and len(fit["quantiles"]) == len(fit["p_values"]) > 10
    assert set(fit["parameters"]) == set(net["scenario_params"][net["scenario"]])
    assert html.count('id="fit-obs"') == 2 and "Fit check (posterior predictive)" in html
    # The prior check: the data among the first chunk of each scenario, in the answer.
    prior = json.loads((tiny_run / "predict" / "obs" / "prior_check.json").read_text())
    assert prior["simulations"] == 60 and prior["scenarios"] == {s: 20 for s in net["probabilities"]}
    assert prior["line"].startswith("obs: prior check, chunk 0 of each of 3 scenario(s) (60 simulations): ")
    assert html.count('id="prior-obs"') == 1


@pytest.mark.slow
def test_methods_that_disagree_on_the_data_are_flagged_in_the_report_and_the_summary(tiny_run, tmp_path):
    """The tiny run's results with the ABC answers for the data turned to another scenario than
    the network's: the report's answer flags it, and so does the summary at the end of a run."""
    from popdl.report import run_summary, write_report
    from popdl.stages import settings_hash, stage_config

    results = tmp_path / "results"
    shutil.copytree(tiny_run, results)
    net = json.loads((results / "predict" / "obs" / "predictions.json").read_text())["network"]
    other = next(s for s in net["probabilities"] if s != net["scenario"])
    empirical = json.loads((results / "abc" / "empirical.json").read_text())
    for answer in empirical["data"]["obs"].values():
        answer["probabilities"] = {s: float(s == other) for s in net["probabilities"]}
    (results / "abc" / "empirical.json").write_text(json.dumps(empirical))
    # ... and a prior check that warned: flagged beside the answer and in the summary.
    prior = json.loads((results / "predict" / "obs" / "prior_check.json").read_text())
    prior.update(warn=True, line="obs: prior check, chunk 0 of each of 3 scenario(s) (60 simulations): WARNING, "
                                 "more diversity in pop1 than any simulation")
    (results / "predict" / "obs" / "prior_check.json").write_text(json.dumps(prior))
    config = prepare(tiny_config(**EXTRA), base_dirs=(tiny_run.parents[1], REPO))
    write_report(config, results, tmp_path / "report.html",
                 config_hash=settings_hash(stage_config(config, "report")))
    html = (tmp_path / "report.html").read_text()
    line = re.search(r'<p class="flag" id="agreement-obs">(.*?)</p>', html)
    assert line and f"rejection ABC {other} (1); ABC-RF {other} (1)" in line.group(1), line
    assert re.search(r'<p class="flag" id="prior-obs">Prior check: <b>the data lie beyond the priors'
                     r"' simulations</b>: among chunk 0 of each of 3 scenario\(s\) \(60 simulations\): WARNING, more "
                     r"diversity in pop1", html), html[html.find('id="prior-obs"') - 40:][:400]
    said = [x for x in run_summary(results, ["obs"]) if x.startswith("obs: ")]
    assert len(said) == 1 and said[0].endswith(f"the ABC baselines disagree (rejection ABC {other}, ABC-RF {other})"), said
    assert "; the data lie beyond the priors' simulations (prior check); " in said[0], said
    # ... and an estimate at a bound of its prior: named in the summary too.
    predictions = json.loads((results / "predict" / "obs" / "predictions.json").read_text())
    predictions["network"]["prior_edges"] = [{"parameter": "N2", "side": "upper", "bound": 3000.0, "estimate": 2990.0,
                                              "position": 0.998, "prior": "loguniform [1000, 3000]"}]
    (results / "predict" / "obs" / "predictions.json").write_text(json.dumps(predictions))
    said = [x for x in run_summary(results, ["obs"]) if x.startswith("obs: ")]
    assert "(prior check); N2 at the upper bound of its prior (widen it); the ABC baselines disagree" in said[0], said


def test_report_section_without_inputs_says_so(tmp_path):
    from popdl.report import write_report
    from popdl.stages import settings_hash, stage_config

    config = prepare(tiny_config(), base_dirs=(REPO,))
    digest = settings_hash(stage_config(config, "report"))
    summary = write_report(config, tmp_path / "results", tmp_path / "report.html", config_hash=digest)
    html = (tmp_path / "report.html").read_text()
    assert "Not available: no dataset" in html and "Not available: no observed data sets" in html
    assert html.count("Not available: no interpretation of the network") == 2  # embedding and saliency
    assert f'<meta name="popdl-config-hash" content="{digest}">' in html and f'id="config-hash">{digest}<' in html
    assert summary["images"] >= 1  # the scenario diagrams need no results


def _browser_check(report: Path, tmp_path: Path) -> dict:
    """Open ``report`` in headless Chromium; a script run after load reports every image's state."""
    probe = """<script>window.addEventListener('load', function () {
      var imgs = Array.prototype.slice.call(document.images);
      var text = function (id) { var e = document.getElementById(id); return e ? e.textContent : null; };
      var out = {images: imgs.length, broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt; }),
                 accuracy: {network: text('accuracy-network'), rejection: text('accuracy-rejection'),
                            abc_rf: text('accuracy-abc_rf')},
                 prediction: text('prediction-obs')};
      var pre = document.createElement('pre'); pre.id = 'popdl-check'; pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    });</script>"""
    page = tmp_path / "page.html"
    page.write_text(report.read_text().replace("</body>", probe + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="popdl-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe output from chromium (exit {proc.returncode}): {proc.stderr[-2000:]}"
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1)))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (tests/system/install.sh installs it)")
def test_report_in_headless_browser(tiny_run, tmp_path):
    metrics = json.loads((tiny_run / "evaluation" / "metrics.json").read_text())
    abc = json.loads((tiny_run / "abc" / "metrics.json").read_text())
    pred = json.loads((tiny_run / "predict" / "obs" / "predictions.json").read_text())
    check = _browser_check(tiny_run / "report.html", tmp_path)
    assert check["images"] >= 10 and check["broken"] == [], check
    assert check["accuracy"]["network"] == f"{metrics['classification']['accuracy']:.3f}"
    for method in ("rejection", "abc_rf"):
        assert check["accuracy"][method] == f"{abc['methods'][method]['accuracy']:.3f}"
    assert check["prediction"] == pred["network"]["scenario"]


@pytest.mark.slow
def test_snakemake_report_has_captions(tiny_run, tmp_path):
    work = tiny_run.parents[1]
    out = tmp_path / "snakemake_report.zip"
    snakemake(work, f"results/{TINY['run']}/report.html", "--rerun-triggers", "mtime", "--report", str(out),
              configfile=work / "config.yaml")
    import zipfile

    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
    assert any(n.endswith("report.html") for n in names) and any(n.endswith("comparison.tsv") for n in names), names


@pytest.mark.slow
def test_predict_cli_by_hand(tiny_run, tmp_path):
    # --name obs: the data set's name keys its random streams (the SNP subsets), so it is the workflow's name.
    work = tiny_run.parents[1]
    proc = subprocess.run([sys.executable, "-m", "popdl", "predict", "--model", str(tiny_run / "model"),
                           "--configfile", str(work / "config.yaml"), "--vcf", str(work / VCF_NAME),
                           "--popmap", str(work / POPMAP_NAME), "--name", "obs", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_hand = json.loads((tmp_path / "out" / "predictions.json").read_text())["network"]["probabilities"]
    in_workflow = json.loads((tiny_run / "predict" / "obs" / "predictions.json").read_text())["network"]["probabilities"]
    assert by_hand == pytest.approx(in_workflow, abs=1e-3)  # the same SNP subsets: the same answer (float32 round-off)
    assert "obs: " in proc.stdout and "predictions.csv" in proc.stdout
    # The most probable scenario's estimates, each within its interval, on the console as in predictions.csv.
    answer = json.loads((tmp_path / "out" / "predictions.json").read_text())["network"]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("obs: estimates under "))
    assert line.startswith(f"obs: estimates under {answer['scenario']} (5%-95% interval): "), line
    for name in answer["scenario_params"][answer["scenario"]]:
        p = answer["params"][name]
        assert p["lower"] <= p["estimate"] <= p["upper"]
        assert f" {name} " in line, (name, line)
    assert f"obs: whether the answer reproduces the data: popdl check-fit --model {tiny_run / 'model'} " in proc.stdout
    # A bad VCF fails with one line and writes nothing.
    bad = tmp_path / "bad.vcf"
    bad.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    proc = subprocess.run([sys.executable, "-m", "popdl", "predict", "--model", str(tiny_run / "model"),
                           "--configfile", str(work / "config.yaml"), "--vcf", str(bad), "--popmap",
                           str(work / POPMAP_NAME), "--out", str(tmp_path / "bad")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("popdl: error: VCF") and "\n" not in proc.stderr.strip()
    assert not (tmp_path / "bad" / "predictions.json").exists()


@pytest.mark.slow
def test_check_fit_by_hand_is_reproducible_and_bad_input_is_one_line(tiny_run, tmp_path):
    """popdl check-fit on the workflow's prediction: the same replicates and p-values twice (its own
    random stream), every replicate's parameters inside their priors; too few replicates and a missing
    prediction are one line each, writing nothing."""
    def check_fit(*args):
        return subprocess.run([sys.executable, "-m", "popdl", "check-fit", "--model", str(tiny_run / "model"), *args],
                              capture_output=True, text=True, cwd=REPO)

    results = []
    for k in (1, 2):
        proc = check_fit("--prediction", str(tiny_run / "predict" / "obs"), "--replicates", "30",
                         "--out", str(tmp_path / f"fit{k}.json"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.startswith("obs: FITS: ") or proc.stdout.startswith("obs: DOES NOT FIT: "), proc.stdout
        results.append(json.loads((tmp_path / f"fit{k}.json").read_text()))
    same = [{k: v for k, v in r.items() if k not in ("seconds", "provenance")} for r in results]
    assert same[0] == same[1] and results[0]["replicates"] == 30
    config = prepare(tiny_config(**EXTRA), base_dirs=(tiny_run.parents[1], REPO))
    priors = Scenario.from_config(results[0]["scenario"], config).priors
    for name, summary in results[0]["parameters"].items():
        low, high = priors[name].bounds
        assert low <= summary["lower"] <= summary["median"] <= summary["upper"] <= high, (name, summary)
    proc = check_fit("--prediction", str(tiny_run / "predict" / "obs"), "--replicates", "5",
                     "--out", str(tmp_path / "few.json"))
    assert proc.returncode == 1 and "at least 20 replicates" in proc.stderr and not (tmp_path / "few.json").exists()
    proc = check_fit("--prediction", str(tmp_path / "nothing"), "--out", str(tmp_path / "none.json"))
    assert proc.returncode == 1 and "no predictions.json" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_predict_with_the_model_alone(tiny_run, tmp_path):
    """The model folder carries its run config: no --configfile needed, same answer."""
    import shutil

    work = tiny_run.parents[1]
    model = tmp_path / "elsewhere" / "model"
    shutil.copytree(tiny_run / "model", model)  # as if copied to another machine
    proc = subprocess.run([sys.executable, "-m", "popdl", "predict", "--model", str(model),
                           "--vcf", str(work / VCF_NAME), "--popmap", str(work / POPMAP_NAME), "--name", "obs",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    alone = json.loads((tmp_path / "out" / "predictions.json").read_text())["network"]["probabilities"]
    in_workflow = json.loads((tiny_run / "predict" / "obs" / "predictions.json").read_text())["network"]["probabilities"]
    assert alone == pytest.approx(in_workflow, abs=1e-3)


# ------------------------------------------------------------------ honest reruns


def _rules_to_run(work: Path, target: str, config: Path) -> set[str]:
    """The rules a dry run of ``target`` would run (all rerun triggers on)."""
    proc = snakemake(work, target, "-n", "--quiet", "rules", configfile=config)
    rows = [line.split() for line in proc.stdout.splitlines()]
    return {r[0] for r in rows if len(r) == 2 and r[1].isdigit()} - {"total"}


def _reformatted(config: dict) -> str:
    """The same config re-dumped with sorted keys and numbers spelt otherwise."""
    import yaml

    def respell(obj):
        if isinstance(obj, dict):
            return {k: respell(v) for k, v in reversed(list(obj.items()))}
        if isinstance(obj, list):
            return [respell(v) for v in obj]
        if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > 100:
            return float(obj)  # 20000 -> 20000.0
        return obj

    return yaml.safe_dump(respell(config), sort_keys=True, default_flow_style=True, width=60)


@pytest.mark.slow
def test_reformatted_config_reruns_nothing_and_abc_trees_rerun_only_abc(tiny_run):
    work = tiny_run.parents[1]
    target = f"results/{TINY['run']}/report.html"
    config = tiny_config(**EXTRA)
    assert _rules_to_run(work, target, work / "config.yaml") == set()
    moved = work / "config-reformatted.yaml"
    moved.write_text(_reformatted(config))
    assert moved.read_text() != (work / "config.yaml").read_text()
    proc = snakemake(work, target, "-n", configfile=moved)
    assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    config["abc"]["trees"] = 21
    changed = write_config(work, config, name="config-trees.yaml")
    assert _rules_to_run(work, target, changed) == {"abc", "report"}


def test_reformatted_default_config_gives_the_same_jobs(tmp_path):
    """The default config and its sorted, re-spelt dump give the same shell
    commands (the same settings files) for its 51 jobs (52 with `all`)."""
    from conftest import DEFAULT_CONFIG

    def commands(configfile):
        proc = snakemake(tmp_path, "-n", "-p", "--forceall", configfile=configfile)
        return sorted(line for line in proc.stdout.splitlines() if "python3 -m popdl" in line)

    original = write_config(tmp_path, DEFAULT_CONFIG)
    moved = tmp_path / "reformatted.yaml"
    moved.write_text(_reformatted(DEFAULT_CONFIG))
    first = commands(original)
    assert len(first) == 51 and not any("{" in c for c in first)  # no settings JSON in the commands
    assert commands(moved) == first
    changed = copy.deepcopy(DEFAULT_CONFIG)
    changed["scenarios"]["isolation"]["priors"]["N1"]["loguniform"][1] = 40000
    other = set(commands(write_config(tmp_path, changed, name="changed.yaml"))) - set(first)
    assert other and any("simulate" in c and "isolation " in c for c in other)


@pytest.mark.slow
def test_new_data_start_a_new_study(tiny_run, tmp_path):
    """After a complete run, more simulations rerun the dataset and the sweep
    with unchanged tuning settings: the tune job runs the configured number of
    new trials, and best.json names the new study and one of its trials."""
    from conftest import copy_work

    work = tmp_path
    copy_work(tiny_run.parents[1], work)  # the report run, complete
    run = work / "results" / TINY["run"]
    config = tiny_config(**EXTRA)
    target = f"results/{TINY['run']}/tuning/best.json"
    old = json.loads((run / "tuning" / "best.json").read_text())
    config["simulations"]["per_scenario"] += config["simulations"]["chunk"]
    path = write_config(work, config, name="config-more-draws.yaml")
    assert {"simulate", "features", "dataset", "tune", "select_best"} <= _rules_to_run(work, target, path)
    snakemake(work, target, configfile=path)
    worker = json.loads((run / "tuning" / "worker-0.json").read_text())
    best = json.loads((run / "tuning" / "best.json").read_text())
    assert len(worker["trials_run_now"]) == EXTRA["tuning"]["trials"]
    assert worker["study"] == best["study"] != old["study"]
    assert best["number"] in worker["trials_run_now"]


# ------------------------------------------------------------------ provenance


@pytest.mark.slow
def test_every_output_records_the_hash_of_its_jobs_settings(tiny_run):
    """Metrics, interpretation, ABC, predictions, scan, model and report each record a
    non-empty config hash: the one in the name of the settings file their job was given."""
    from popdl.stages import settings_hash, stage_config

    given: dict[str, set[str]] = {}
    for path in (tiny_run / "settings").glob("*.json"):
        stage, _, digest = path.stem.rpartition("-")
        given.setdefault(stage, set()).add(digest)

    def recorded(*parts: str) -> str:
        return json.loads(tiny_run.joinpath(*parts).read_text())["provenance"]["config_hash"]

    html = (tiny_run / "report.html").read_text()
    outputs = {
        "evaluate": [recorded("evaluation", "metrics.json"), recorded("evaluation", "interpretation.json")],
        "abc": [recorded("abc", "metrics.json"), recorded("abc", "empirical.json")],
        "observe": [recorded("predict", "obs", "predictions.json")],  # the predict job gets the observe settings
        "scan": [recorded("scan", "obs.json")],
        "train": [recorded("model", "bundle.json"), recorded("predict", "obs", "fit_check.json")],
        "report": [re.search(r'<meta name="popdl-config-hash" content="([0-9a-f]*)">', html).group(1),
                   re.search(r'<code id="config-hash">([0-9a-f]*)</code>', html).group(1)],
    }
    for stage, hashes in outputs.items():
        for digest in hashes:
            assert len(digest) == 16 and digest in given[stage], (stage, digest, given.get(stage))
    # The dataset comes from the session's tiny run (same data sections): the hash of its slice.
    config = prepare(tiny_config(**EXTRA), base_dirs=(tiny_run.parents[1], REPO))
    assert recorded("dataset", "manifest.json") == settings_hash(stage_config(config, "dataset"))



@pytest.mark.slow
def test_one_scenario_estimated_without_classification_runs_to_the_report(tmp_path):
    # task: [regress] with one scenario: no confusion matrix or reliability curve to draw, and the report
    # compares the parameters alone with the ABC baselines.
    config = tiny_config(task=["regress"], network="mlp", train={"epochs": 1, "threads": 1, "ensemble": 1},
                         tuning={"workers": 1, "trials": 1, "max_epochs": 2, "startup_trials": 1, "pruner": "none"})
    config["scenarios"] = {"isolation": dict(config["scenarios"]["isolation"],
                                             graph=str(REPO / config["scenarios"]["isolation"]["graph"]))}
    snakemake(tmp_path, "results/tiny/report.html", configfile=write_config(tmp_path, config))
    evaluation = tmp_path / "results" / "tiny" / "evaluation"
    assert (evaluation / "parameters.png").is_file() and not (evaluation / "confusion_matrix.png").exists()
    tests = pd.read_csv(evaluation / "test_predictions.tsv", sep="\t")
    assert {"N1", "true_N1"} <= set(tests) and not any(c.startswith("p_") for c in tests)
    html = (tmp_path / "results" / "tiny" / "report.html").read_text()
    assert 'id="won-N1"' in html and 'id="won-scenario"' not in html and "95 % interval" in html
