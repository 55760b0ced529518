"""Dry runs of the workflow: the default config, every example, and 3 x 1,000,000 simulations."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_config, write_config
from dry_runs import dry_run, job_stats

from popdl.plan import n_chunks

EXAMPLES = sorted((REPO / "config" / "examples").glob("*.yaml"))


def test_dry_run_of_the_default_config(tmp_path):
    counts = dry_run(tmp_path)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    chunks = n_chunks(config["simulations"]["per_scenario"], config["simulations"]["chunk"])
    scenarios = len(config["scenarios"])
    assert counts["plan"] == scenarios and counts["dataset"] == 1
    assert counts["simulate"] == counts["features"] == scenarios * chunks
    assert counts["check_fit"] == counts["predict"] == len(config["predict"]["data"])  # each data set's fit check
    assert counts["prior_check"] == len(config["predict"]["data"])  # ... and prior check
    assert not (tmp_path / "results").exists()


def test_the_fit_check_is_planned_only_where_the_answer_names_a_scenario(tmp_path):
    """predict.fit_check 0 skips it; so does a network that estimates parameters without telling
    several scenarios apart (there is no answer to simulate); one scenario needs no classifier."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["predict"]["data"][0]["vcf"] = str(REPO / "config" / "data" / "example.vcf.gz")
    config["predict"]["data"][0]["popmap"] = str(REPO / "config" / "data" / "example_popmap.tsv")
    for scenario in config["scenarios"].values():
        scenario["graph"] = str(REPO / scenario["graph"])

    def planned(**changes):
        return dry_run(tmp_path, configfile=write_config(tmp_path, {**config, **changes})).get("check_fit", 0)

    assert planned() == 1 and planned(predict={**config["predict"], "fit_check": 0}) == 0
    assert planned(task=["regress"]) == 0
    one = {"isolation": config["scenarios"]["isolation"]}
    assert planned(task=["regress"], scenarios=one) == 1
    # predict.prior_check off skips the prior check; stop passes --stop to it.
    off = dry_run(tmp_path, configfile=write_config(tmp_path, {**config, "predict": {**config["predict"],
                                                                                     "prior_check": "off"}}))
    assert "prior_check" not in off and off["check_fit"] == 1
    text = write_config(tmp_path, config).read_text()
    assert "\npredict:\n" in text and "prior_check" not in text
    bare = tmp_path / "bare-off.yaml"  # a bare off, which YAML 1.1 reads as false
    bare.write_text(text.replace("\npredict:\n", "\npredict:\n  prior_check: off\n", 1))
    off = dry_run(tmp_path, configfile=bare)
    assert "prior_check" not in off and off["check_fit"] == 1
    from conftest import snakemake

    stop = write_config(tmp_path, {**config, "predict": {**config["predict"], "prior_check": "stop"}})
    proc = snakemake(tmp_path, "-n", "-p", configfile=stop)
    command, = [line for line in proc.stdout.splitlines() if "popdl prior-check" in line]
    assert command.split(" 2> ")[0].endswith(" --stop") and command.count("/0.npz") == len(config["scenarios"])


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_dry_run_of_each_example(tmp_path, example):
    config = yaml.safe_load(example.read_text())
    counts = dry_run(tmp_path, configfile=example)
    chunks = n_chunks(config["simulations"]["per_scenario"], config["simulations"]["chunk"])
    assert counts["plan"] == len(config["scenarios"])
    assert counts["simulate"] == counts["features"] == len(config["scenarios"]) * chunks


def test_examples_include_conservation_and_divergence_order():
    names = {p.stem for p in EXAMPLES}
    assert {"conservation", "divergence_order"} <= names
    order = yaml.safe_load((REPO / "config" / "examples" / "divergence_order.yaml").read_text())
    assert set(order["scenarios"]) == {"AB_C", "AC_B", "BC_A"}
    assert {"theta", "T1", "T2", "Ne"} <= set(order["scenarios"]["AB_C"]["priors"])


def test_three_million_simulations_dry_run_is_fast_and_chunked(tmp_path):
    """3 scenarios x 1,000,000 simulations: one plan job per scenario, one job per chunk, seconds.

    Timed as CPU seconds of the Snakemake process (the figure that does not
    depend on what else the machine runs) and as wall-clock seconds.
    """
    per_scenario, chunk = 1_000_000, 2_000
    config = tiny_config(run="big")
    config["simulations"].update(per_scenario=per_scenario, chunk=chunk, shard_size=10_000)
    cfg = write_config(tmp_path, config)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    counts = dry_run(tmp_path, configfile=cfg)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    chunks = n_chunks(per_scenario, chunk)
    print(f"\ndry run of 3 scenarios x {per_scenario:,} simulations ({chunks} chunks each): "
          f"{cpu:.1f} s CPU, {wall:.1f} s wall, {counts['total']:,} jobs: {counts}")
    assert counts["plan"] == 3  # one per scenario
    assert counts["simulate"] == counts["features"] == 3 * chunks  # one per chunk
    assert counts["dataset"] == 1
    assert all(n <= 3 * chunks for rule, n in counts.items() if rule != "total")  # never one per simulation
    assert cpu < 30
    assert wall < 120  # generous: the machine may be shared
    assert not (tmp_path / "results").exists()


def test_deployed_as_a_module_into_another_project(tmp_path):
    """popdl used as a Snakemake module from a clone, by a project folder of
    its own with its own config (what `snakedeploy deploy-workflow` writes,
    with the clone as the module's source): the dry run plans every job."""
    import subprocess

    from conftest import BIN

    project = tmp_path / "my project"
    (project / "config").mkdir(parents=True)
    (project / "workflow").mkdir()
    config = tiny_config(run="deployed")
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (project / "workflow" / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        "module popdl:\n"
        f"    snakefile:\n        {str(REPO / 'workflow' / 'Snakefile')!r}\n"
        "    config:\n        config\n\n\n"
        "use rule * from popdl\n")
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1"], cwd=project, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(line.split()[:2] for line in proc.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert counts["simulate"] == str(len(config["scenarios"]) * 2) and counts["report"] == "1", proc.stdout
    assert "results/deployed/report.html" in proc.stdout
    assert not (project / "results").exists()


def test_tune_and_train_jobs_get_snakemakes_threads(tmp_path):
    """A SLURM profile's set-threads (or --set-threads) reaches the tune and train
    commands, whatever tuning.threads and train.threads say."""
    from conftest import snakemake

    path = write_config(tmp_path, tiny_config())
    proc = snakemake(tmp_path, "-n", "-p", "--cores", "8", "--set-threads", "tune=3", "train=5", configfile=path)
    lines = proc.stdout.splitlines()
    assert any("popdl tune" in line and "--threads 3" in line for line in lines), proc.stdout[-3000:]
    assert any("popdl train" in line and "--threads 5" in line for line in lines)


def test_quick_sweep_overlay_on_an_example(tmp_path):
    """config/overlays/quick_sweep.yaml given after an example: Snakemake merges the two files,
    the example's scenarios and simulations stay, the sweep and final fit are the overlay's."""
    from conftest import snakemake

    from popdl.config import deep_update, load_yaml, prepare

    example, overlay = REPO / "config" / "examples" / "divergence_order.yaml", REPO / "config" / "overlays" / "quick_sweep.yaml"
    proc = snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile", str(example), str(overlay))
    counts = job_stats(proc.stdout + proc.stderr)
    merged = prepare(deep_update(load_yaml(example), load_yaml(overlay)), base_dirs=(REPO,))
    assert counts["tune"] == merged["tuning"]["workers"] == 2
    assert merged["network"] == ["mlp", "exchangeable_stats"] and merged["train"]["ensemble"] == 8
    assert set(merged["scenarios"]) == {"AB_C", "AC_B", "BC_A"}
    assert counts["simulate"] == 3 * n_chunks(merged["simulations"]["per_scenario"], merged["simulations"]["chunk"])


def test_a_data_set_of_one_vcf_per_chromosome_is_one_observe_job_on_every_file(tmp_path):
    """predict.data[].vcf as a glob: the observe job's inputs are the files it matches, in natural
    order; a pattern matching nothing is Snakemake's missing input, naming the pattern."""
    from conftest import snakemake

    calls = tmp_path / "calls"
    calls.mkdir()
    for name in ("chr10.vcf.gz", "chr2.vcf.gz", "chr1.vcf.gz"):
        (calls / name).write_bytes(b"")  # a dry run reads nothing
    (tmp_path / "popmap.tsv").write_text("a1\tpop1\n")
    entry = {"name": "perchr", "vcf": str(calls / "chr*.vcf.gz"), "popmap": str(tmp_path / "popmap.tsv")}
    scan = {"name": "perchr", "vcf": entry["vcf"]}
    path = write_config(tmp_path, tiny_config(predict={"data": [entry]}, scan={"data": [scan]}))
    proc = snakemake(tmp_path, "-n", "-p", "results/tiny/predict/perchr/observed.npz", "results/tiny/scan/perchr.tsv",
                     configfile=path)
    for rule in ("observe", "scan"):
        block = proc.stdout[proc.stdout.index(f"rule {rule}:"):]
        inputs = next(line for line in block.splitlines() if line.strip().startswith("input:"))
        assert [calls / n for n in ("chr1.vcf.gz", "chr2.vcf.gz", "chr10.vcf.gz")] == \
            [Path(p) for p in inputs.split(":", 1)[1].replace(",", " ").split() if p.endswith(".vcf.gz")], inputs
    command = next(line for line in proc.stdout.splitlines() if "popdl scan" in line)
    assert " --vcf " + " ".join(str(calls / n) for n in ("chr1.vcf.gz", "chr2.vcf.gz", "chr10.vcf.gz")) + " " in command
    entry["vcf"] = [str(calls / "chr1.vcf.gz"), str(calls / "chrX*.vcf.gz")]
    path = write_config(tmp_path, tiny_config(predict={"data": [entry]}))
    proc = snakemake(tmp_path, "-n", configfile=path, check=False)
    assert proc.returncode != 0 and "chrX*.vcf.gz" in proc.stdout + proc.stderr
    assert "Missing input files" in proc.stdout + proc.stderr
