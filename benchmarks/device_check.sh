#!/usr/bin/env bash
# Every GPU figure of docs/cluster.md in one run, in under 10 minutes on a node with one GPU and
# 16 cores, starting from a bare Python with JAX (CUDA) and no network: the project's other
# packages are installed from the wheels that benchmarks/prepare_device_wheels.sh put in
# benchmarks/wheels.  It
#   1. installs those wheels (into a temporary folder on PYTHONPATH);
#   2. simulates the 3 x 10,000 draws of config/examples/paper_scale.yaml with the workflow;
#   3. runs benchmarks/bench_gpu.py on that dataset (every network: streamed, in memory, bf16;
#      trials/min of 4 concurrent trials of one tune job / 1);
#   4. runs a short sweep of the paper_scale config over every registered network through Snakemake, the
#      tune and train jobs granted the GPU (gpu resource), 4 trials at once per tune job;
#   5. writes the figures to $OUT: summary.txt and summary.json (with the targets), device.txt,
#      bench_gpu.json, trials.csv, logs.tar.gz and this script's log.
# Each stage has a time limit, so the script ends, with the figures it has, inside the budget.
#
#   benchmarks/prepare_device_wheels.sh           # here, with network access (once)
#   benchmarks/device_check.sh                    # there
#
# Environment:
#   OUT                 output folder (default: a new temporary folder, printed)
#   PYTHON              interpreter with JAX (default python3)
#   WHEELS              wheels folder (default benchmarks/wheels; not needed when everything imports)
#   DEVICE_CHECK_SCALE  full (default: the sizes above) or tiny (seconds of work per stage: tests
#                       this script on a machine without a GPU, with train.allow_cpu_fallback)
#   DEVICE_CHECK_GPUS   GPUs granted to the tune and train jobs (default 1)
#   DEVICE_CHECK_CORES  cores for Snakemake and the jobs' threads (default: nproc)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
PY=${PYTHON:-python3}
SCALE=${DEVICE_CHECK_SCALE:-full}
GPUS=${DEVICE_CHECK_GPUS:-1}
CORES=${DEVICE_CHECK_CORES:-$(nproc)}
WHEELS=${WHEELS:-$HERE/wheels}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/popdl-device-check.XXXXXX")
OUT=${OUT:-$WORK/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_check.log") 2>&1
case "$SCALE" in
  full) LIMIT_SIM=150 LIMIT_BENCH=240 LIMIT_SWEEP=150 ;;  # + about 30 s of installing: < 10 min
  tiny) LIMIT_SIM=300 LIMIT_BENCH=600 LIMIT_SWEEP=600 ;;
  *) echo "device_check: DEVICE_CHECK_SCALE=$SCALE is not full or tiny" >&2; exit 1 ;;
esac
T0=$(date +%s)
stamp() { echo "== $(date -u +%H:%M:%S) (+$(( $(date +%s) - T0 )) s) $*"; }
seconds_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }
stamp "popdl device check, scale $SCALE, $GPUS GPU(s), $CORES cores; work in $WORK, figures to $OUT"

# 1. Packages --------------------------------------------------------------------------
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  stamp "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS"
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO/scripts${PYTHONPATH:+:$PYTHONPATH}"
# (Keras on JAX here: without TensorFlow, Keras starts only with a backend named.)
KERAS_BACKEND=jax "$PY" -c "import snakemake, msprime, tskit, demes, allel, keras, optuna, jax, yaml, jsonschema, pandas" || {
  echo "device_check: a package is missing; run benchmarks/prepare_device_wheels.sh where there is network" >&2
  exit 1
}
# Compiled XLA programs are kept across the processes of the run (trials of the same shapes).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$WORK/jax-cache}
{
  date -u +"%Y-%m-%d %H:%M:%S UTC"
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,mig.mode.current \
    --format=csv || echo "nvidia-smi: not found"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  uptime
  "$PY" - <<'EOF'
import sys
from importlib.metadata import version

import jax

print(f"python {sys.version.split()[0]}, jax {jax.__version__}, keras {version('keras')}")
print("jax devices:", ", ".join(f"{d.platform}:{d.device_kind}" for d in jax.devices()))
EOF
} > "$OUT/device.txt" 2>&1 || true
cat "$OUT/device.txt"

# 2. The paper-scale dataset, simulated with the workflow ------------------------------
# One config for the simulation and the sweep: only the model sections differ from
# paper_scale.yaml, so the sweep reuses the dataset.
KERAS_BACKEND=jax "$PY" - "$REPO/config/examples/paper_scale.yaml" "$WORK/config.yaml" "$SCALE" "$GPUS" "$CORES" <<'EOF'
import sys

import yaml

from popdl.models import NETWORKS

source, target, scale, gpus, cores = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
config = yaml.safe_load(open(source))
config["network"] = sorted(NETWORKS)  # every registered network
tuning = config["tuning"]
tuning.update(workers=1, trials=8, trials_per_gpu=4, max_epochs=3, gpu=gpus, threads=cores)
tuning["search_space"]["batch_size"] = {"choices": [256, 512, 1024]}
config["train"].update(gpu=gpus, threads=cores, backend="auto")
if scale == "tiny":
    config["simulations"].update(per_scenario=60, chunk=30, shard_size=40)
    tuning.update(trials=2, trials_per_gpu=2, max_epochs=1)
    tuning["search_space"]["batch_size"] = 16
    config["train"]["allow_cpu_fallback"] = True
yaml.safe_dump(config, open(target, "w"), sort_keys=False)
EOF
RESULTS=$WORK/results/paper_scale
SNAKEMAKE=("$PY" -m snakemake -s "$REPO/workflow/Snakefile" --directory "$WORK" --cores "$CORES")
# after the target: both options take several values
OPTIONS=(--resources "gpu=$GPUS" --configfile "$WORK/config.yaml")
stamp "simulating the dataset (limit $LIMIT_SIM s)"
t=$(date +%s%N)
(cd "$REPO" && timeout "$LIMIT_SIM" "${SNAKEMAKE[@]}" results/paper_scale/dataset/manifest.json \
  "${OPTIONS[@]}" > "$WORK/simulate.log" 2>&1) \
  && SIM_S=$(seconds_since "$t") || { SIM_S=; tail -30 "$WORK/simulate.log"; }
stamp "dataset: ${SIM_S:-failed or timed out} s"

# 3. bench_gpu ------------------------------------------------------------------------
if [ -n "$SIM_S" ]; then
  if [ "$SCALE" = tiny ]; then
    BENCH=(--batch 16 --epochs 1 --k 2 --trials-each 1 --trial-epochs 1 --trial-networks mlp --allow-cpu-fallback)
  else
    BENCH=(--batch 512 --epochs 2 --k 4 --trials-each 2 --trial-epochs 2 --trial-networks cnn2d)
  fi
  stamp "bench_gpu (limit $LIMIT_BENCH s)"
  (cd "$REPO" && timeout "$LIMIT_BENCH" "$PY" benchmarks/bench_gpu.py --dataset "$RESULTS/dataset" --gpus "$GPUS" \
    --threads "$CORES" --json "$OUT/bench_gpu.json" "${BENCH[@]}") || stamp "bench_gpu failed or timed out"
fi

# 4. A short sweep of every network through Snakemake, on the GPU -----------------------
SWEEP_S=
if [ -n "$SIM_S" ]; then
  stamp "sweep: tune, select_best, train (limit $LIMIT_SWEEP s)"
  t=$(date +%s%N)
  (cd "$REPO" && timeout "$LIMIT_SWEEP" "${SNAKEMAKE[@]}" results/paper_scale/model/bundle.json \
    "${OPTIONS[@]}" > "$WORK/sweep.log" 2>&1) \
    && SWEEP_S=$(seconds_since "$t") || tail -30 "$WORK/sweep.log"
  stamp "sweep: ${SWEEP_S:-failed or timed out} s"
  cp "$RESULTS/tuning/trials.csv" "$OUT/trials.csv" 2> /dev/null || true
fi

# 5. Figures ----------------------------------------------------------------------------
(cd "$WORK" && tar czf "$OUT/logs.tar.gz" simulate.log sweep.log results/paper_scale/logs \
   results/paper_scale/benchmarks 2> /dev/null) || true
"$PY" - "$OUT" "$WORK" "$SCALE" "${SIM_S:-}" "${SWEEP_S:-}" <<'EOF'
import csv
import json
import sys
from pathlib import Path

import yaml

out, work, scale, sim_s, sweep_s = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
config = yaml.safe_load((work / "config.yaml").read_text())
results = work / "results" / "paper_scale"
bench = json.loads((out / "bench_gpu.json").read_text()) if (out / "bench_gpu.json").exists() else None
summary = {"scale": scale, "device": (out / "device.txt").read_text() if (out / "device.txt").exists() else "",
           "draws": 3 * config["simulations"]["per_scenario"], "simulate_s": float(sim_s) if sim_s else None}
lines = [f"popdl device check ({scale})", summary["device"].strip(), ""]
if bench:
    summary["bench_device"] = bench["device"]
    rows = {r["network"]: r for r in bench["rows"]}
    summary["bench"] = rows
    lines.append(f"bench_gpu: {bench['training_examples']} training examples, batch {bench['batch']}, "
                 f"on {bench['device']['kind']} {bench['device']['name']} ({bench['device']['backend']})"
                 + ("" if bench.get("complete") else "; cut short by its time limit"))
    for name, r in rows.items():
        text = (f"  {name}: streamed {r['streamed']:,.0f} samples/s, in memory {r['in_memory']:,.0f}, "
                f"streamed / in memory {r['streamed'] / r['in_memory']:.3f}")
        if "bf16" in r:
            text += f", bf16 {r['bf16']:,.0f} (bf16 / fp32 {r['bf16'] / r['streamed']:.3f})"
        if "trials_per_min" in r:
            t = r["trials_per_min"]
            text += f"; trials/min {t['1']:.2f} alone, {bench['k']} at once / 1: {t['ratio']:.2f}"
        lines.append(text)
    if "cnn2d" in rows:
        c = rows["cnn2d"]
        summary["targets"] = {
            "cnn2d streamed samples/s >= 50,000": c["streamed"],
            "cnn2d streamed / in memory >= 0.9": c["streamed"] / c["in_memory"],
        }
        if "trials_per_min" in c:
            summary["targets"][f"{bench['k']} concurrent trials / 1 >= 3"] = c["trials_per_min"]["ratio"]
tsv = {}
for path in (results / "benchmarks").rglob("*.tsv") if (results / "benchmarks").exists() else []:
    with open(path) as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))
    tsv[str(path.relative_to(results / "benchmarks"))] = float(row["s"])
summary["job_seconds"] = tsv
if sweep_s:
    t = config["tuning"]
    tune = max((v for k, v in tsv.items() if k.startswith("tune/")), default=0.0)
    train = tsv.get("train.tsv", 0.0)
    other = float(sweep_s) - tune - train
    # Linear in trials x epochs: an upper bound (pruning and early stopping end trials sooner).
    scale_tune = (32 / t["trials"]) * (15 / t["max_epochs"])
    full = (float(sim_s) if sim_s else 0.0) + tune * scale_tune + train * 15 / t["max_epochs"] + other
    summary["sweep"] = {"seconds": float(sweep_s), "trials": t["trials"], "max_epochs": t["max_epochs"],
                        "trials_per_gpu": t["trials_per_gpu"], "networks": config["network"],
                        "tune_s": tune, "train_s": train,
                        "paper_scale_extrapolated_s": full}
    lines += ["", f"sweep of {t['trials']} trials (<= {t['max_epochs']} epochs, {t['trials_per_gpu']} at once) over "
              f"{', '.join(config['network'])}: {float(sweep_s):.0f} s (tune {tune:.0f} s, train {train:.0f} s)",
              f"paper scale (3 x 10,000 draws simulated, 32 trials of <= 15 epochs), extrapolated: "
              f"{full / 60:.1f} min (goal <= 30 min)"]
if sim_s:
    lines.insert(3, f"simulate + features + dataset, {summary['draws']} draws: {float(sim_s):.0f} s")
for key, value in summary.get("targets", {}).items():
    lines.append(f"target {key}: {value:,.3f}")
(out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
(out / "summary.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
stamp "done; figures in $OUT"
