"""The model benchmarks run end to end at a tiny size (their figures are not
judged here: timings belong to quiet machines, not to tests)."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def _bench(script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_tuning_workers_benchmark_checks_every_study(tiny_dataset):
    out = _bench("bench_tuning_workers.py", "--dataset", str(tiny_dataset), "--networks", "mlp",
                 "--trials", "2", "--epochs", "1")
    # Each of the three runs finished and passed the study checks (no trial lost or duplicated).
    for mode in ("1 worker", "2 workers", "2 alone"):
        assert f"mlp rep 0, {mode}" in out, out
    assert "2 workers / 1 worker" in out and "(target >= 1.7)" in out


def test_streaming_benchmark_runs(tiny_dataset):
    out = _bench("bench_streaming.py", "--dataset", str(tiny_dataset), "--network", "mlp", "--epochs", "2",
                 "--reps", "1")
    assert "ratio (streaming / in memory)" in out, out


def test_simulation_benchmark_checks_both_sides_and_times_the_feature_step():
    # The default config's genome: 10 loci a draw, both hand-written loops timed.
    out = _bench("bench_simulation.py", "--draws", "4", "--reps", "1", "--startup-reps", "1")
    check = next((x for x in out.splitlines() if x.startswith("same process on both sides (first 4 draws x 10 loci")), "")
    assert check.endswith(": True"), out
    for line in ("sim_ancestry(num_replicates=loci)", "one sim_ancestry call per locus", "reference bare loop",
                 "throughput ratio workflow / bare:", "throughput ratio simulate + features / bare:", "job start-up"):
        assert line in out, out


def test_simulation_benchmark_one_locus_gives_the_same_genotypes_on_both_sides():
    out = _bench("bench_simulation.py", "--loci", "1", "--draws", "2", "--reps", "1", "--startup-reps", "0")
    assert "same genotypes on both sides (first 2 draws): True" in out, out
    assert "one sim_ancestry call per locus" not in out and "throughput ratio workflow / bare:" in out, out


def test_ld_benchmark_gives_both_sides_the_same_values():
    out = _bench("bench_ld.py", "--loci", "2", "--rad-loci", "60", "--reps", "1")
    lines = [x for x in out.splitlines() if "loop / batched" in x]
    assert [x.split(":")[0] for x in lines] == ["default genome", "RAD-like genome"], out
    # The exit status is 0 only when both sides agree; each line names the difference.
    assert all("largest difference" in x for x in lines), out


def test_gpu_benchmark_reports_each_network_asked_for_on_the_cpu(tiny_dataset, tmp_path):
    import json

    from popdl.models import NETWORKS

    # Three networks (an image, a stats-only and an exchangeable one; test_model.py fits every
    # registered network), bf16 on the exchangeable one alone: on a CPU bf16 fits are the slowest
    # (the bf16 graph compiles anew), and test_gpu.py trains cnn2d in bf16.
    networks, bf16 = ["cnn2d", "mlp", "exchangeable"], {"exchangeable"}
    out = _bench("bench_gpu.py", "--dataset", str(tiny_dataset), "--gpus", "0", "--threads", "2", "--batch", "16",
                 "--epochs", "1", "--networks", ",".join(networks), "--k", "2", "--trials-each", "1",
                 "--trial-epochs", "1", "--trial-networks", "mlp", "--bf16-networks", ",".join(sorted(bf16)),
                 "--json", str(tmp_path / "bench.json"))
    assert "device: bench_gpu trains on cpu" in out, out
    assert set(networks) <= set(NETWORKS)
    for network in networks:  # each network asked for, with each figure
        line = next((x for x in out.splitlines() if x.startswith(f"{network}: loader ")), None)
        assert line and "streamed / in memory" in line and "ms per step" in line, out
        assert ("bf16 / fp32" in line) == (network in bf16), line
    assert "mlp: trials/min" in out and "with 2 at once (2 / 1: " in out, out
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert [r["network"] for r in figures["rows"]] == networks and figures["complete"]
    assert {r["network"] for r in figures["rows"] if "bf16" in r} == bf16
    assert figures["rows"][networks.index("mlp")]["trials_per_min"]["ratio"] > 0


def test_many_loci_benchmark_times_every_layout():
    out = _bench("bench_many_loci.py", "--loci", "20", "--length", "64", "--diploids", "4", "--draws", "2",
                 "--alternatives", "5")
    assert "speed-up per-locus loop / popdl:" in out and "(target >= 10)" in out, out
    assert "speed-up replicates + sim_mutations per locus / popdl:" in out, out
    assert "coalescent alone" in out and "per-locus loop / coalescent alone:" in out, out
    for layout in ("log 2 between loci (Hudson)", "log 2 between loci, SMC(k=0)"):
        assert layout in out, out


def test_learning_curve_benchmark_prints_both_methods_per_budget(tmp_path):
    out = _bench("bench_learning_curve.py", "--budgets", "27,45", "--trials", "1", "--max-epochs", "2",
                 "--snps", "32", "--ensemble", "1", "--work", str(tmp_path), "--json", str(tmp_path / "curve.json"))
    assert "common test set: 15 simulations" in out, out
    table = out[out.index("network vs ABC-RF"):].splitlines()
    assert table[1].startswith("draws/scenario | accuracy net | ABC-RF | diff | R² N1 net / ABC-RF / diff")
    for row, budget in zip(table[2:4], ("27", "45")):
        cells = row.split(" | ")
        assert cells[0] == budget and len(cells) == 4 + 7, row
        net, rf, diff = (float(c) for c in cells[1:4])
        assert abs(net - rf - diff) < 1.5e-3
    import json

    rows = json.loads((tmp_path / "curve.json").read_text())["rows"]
    assert [r["budget"] for r in rows] == [27, 45] and set(rows[0]["abc_rf"]["r2"]) == set(rows[0]["network"]["r2"])


def test_unphased_benchmark_compares_the_three_modes():
    out = _bench("bench_unphased.py", "--per-scenario", "12", "--networks", "mlp", "--epochs", "1", "--reps", "1",
                 "--snps", "16")
    for mode in ("phased", "unphased genotypes", "unphased random_phase"):
        assert f"{mode:24} ABC-RF" in out and f"{mode:24} mlp" in out, out


def test_rad_example_benchmark_answers_on_the_shipped_vcf():
    out = _bench("bench_rad_example.py", "--per-scenario", "10", "--network", "mlp", "--epochs", "1")
    for line in ("test accuracy: unphased ", "shipped VCF: ", "reliability: ", "estimates inside their priors: "):
        assert line in out, out


def test_calibration_benchmark_scores_both_calibrations(tiny_dataset, tmp_path):
    import json

    from conftest import TINY_MLP, tiny_config, write_config

    results = tmp_path / "results"
    (results / "tuning").mkdir(parents=True)
    (results / "dataset").symlink_to(tiny_dataset)
    hyper = TINY_MLP
    (results / "tuning" / "best.json").write_text(json.dumps({"hyper_parameters": hyper, "best_epoch": 1}))
    config = write_config(tmp_path, tiny_config(network="mlp", train={"ensemble": 4, "epochs": 1}))
    out = _bench("bench_calibration.py", "--configfile", str(config), "--results", str(results))
    lines = out.splitlines()
    assert lines[0].endswith("4 fits per output") and "calibration part" in lines[1] and "cross-fitted" in lines[1]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:] if line.split()[0] in ("N1", "N2", "T_split")}
    assert set(rows) == {"N1", "N2", "T_split"}
    for cells in rows.values():  # examples, coverage raw, calibrated, R² for each of the two fits
        assert len(cells) == 8 and int(cells[4]) > int(cells[0])  # cross-fitting calibrates on more examples
    assert sum(line.startswith(("calibration part: accuracy", "cross-fitted: accuracy")) for line in lines) == 2


def test_stat_scale_benchmark_pairs_both_scales_per_seed(tiny_dataset, tmp_path):
    import json

    from conftest import TINY_MLP

    best = tmp_path / "best.json"
    best.write_text(json.dumps({"hyper_parameters": TINY_MLP}))
    out = _bench("bench_stat_scale.py", "--dataset", str(tiny_dataset), "--best", str(best), "--seeds", "1",
                 "--max-epochs", "2", "--patience", "1", "--json", str(tmp_path / "scale.json"))
    for task in ("classify", "regress"):
        assert f"mlp {task} seed 0 linear" in out and f"mlp {task} seed 0 log" in out, out
    rows = json.loads((tmp_path / "scale.json").read_text())["rows"]
    assert rows[0]["task"] == "accuracy" and all(r["task"].startswith("R² ") for r in rows[1:])
    for row in rows:
        line = next(x for x in out.splitlines() if x.startswith(f"{row['task']} | "))
        diff = float(line.split(" | ")[3])
        assert abs(diff - (row["log"][0] - row["linear"][0])) < 1e-4, line


def test_temperature_benchmark_compares_both_rules_on_resampled_splits(tiny_dataset, tmp_path):
    import json
    import os

    from conftest import TINY_MLP, tiny_config, write_config

    from popdl.dataset import Dataset

    results = tmp_path / "results"
    (results / "dataset").parent.mkdir(parents=True)
    (results / "dataset").symlink_to(tiny_dataset)
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"hyper_parameters": TINY_MLP, "best_epoch": 1}))
    config = write_config(tmp_path, tiny_config(network="mlp", train={"epochs": 1, "ensemble": 1}))
    proc = subprocess.run([sys.executable, "-m", "popdl", "train", "--configfile", str(config), "--dataset",
                           str(tiny_dataset), "--best", str(best), "--out", str(results / "model")], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = _bench("bench_temperature.py", "--results", str(results), "--splits", "4")
    lines = out.splitlines()
    n_cal = len(json.loads((results / "model" / "bundle.json").read_text())["calibration"]["draws"])
    n_test = Dataset(tiny_dataset).size("test")
    assert n_cal > 0 and lines[0].endswith(f": {n_cal} calibration and {n_test} test simulations, 3 scenarios"), out
    assert lines[1].startswith("the run's own split: T = 1: ECE ") and "fitted T = " in lines[1] and "popdl T = " in lines[1]
    assert lines[2].startswith(f"4 random splits of the {n_cal + n_test} simulations")
    for name in ("fitted", "popdl"):
        assert any(x.startswith(f"  {name}: T != 1 on ") for x in lines), out
    assert sum(x.startswith("ratio of the splits made worse") for x in lines) == 2, out


def test_vcf_reading_benchmark_keeps_the_same_genotypes_on_both_sides():
    out = _bench("bench_vcf_reading.py", "--samples", "24", "--loci", "100", "--reps", "1")
    assert out.splitlines()[0].startswith("300 records x 24 samples"), out
    assert "same genotypes kept on both sides: True" in out and "throughput ratio popdl / bare: " in out, out


def test_prior_check_benchmark_counts_the_false_alarms_of_data_from_the_priors(tiny_dataset):
    out = _bench("bench_prior_check.py", "--run", str(tiny_dataset.parent), "--draws", "10", "--trials", "30")
    line = next(x for x in out.splitlines() if "data sets drawn from the priors" in x)
    assert "3 scenario(s) x 10 simulations" in line and "30 data sets drawn from the priors: WARNING on " in line
    warned, scale, tempered = (int(x) for x in re.findall(r"WARNING on (\d+) .*?, (\d+) of them .*?, (\d+) of these",
                                                          line)[0])
    assert tempered <= scale <= warned <= 30, line
    # 30 simulations: each a share of 1/30; a few lie outside the others on some diversity statistic.
    share = float(re.search(r"median share ([\d.]+)%", line).group(1))
    assert 0 < share < 50, line
