#!/usr/bin/env bash
# Download, on a machine with network access, the wheels that benchmarks/device_check.sh
# installs on a GPU node without network: every package the workflow's simulate, features,
# dataset, tune, select_best and train steps and benchmarks/bench_gpu.py need, at the versions of
# requirements/lock.txt, for the GPU node's Python and platform.  Not carried: what a bare
# Python with JAX and CUDA already has (jax, jaxlib, numpy, scipy, ml-dtypes, opt-einsum),
# and what GPU jobs do not use (TensorFlow and its own dependencies, the SLURM plugin,
# cyvcf2, psycopg2, the development tools).  A package published only as a source archive
# (pure Python) is built into a wheel here.
#
#   benchmarks/prepare_device_wheels.sh [FOLDER] [PYTHON_VERSION]
#       FOLDER          where the wheels go (default: benchmarks/wheels, ignored by git)
#       PYTHON_VERSION  the GPU node's Python (default 3.12)
#
# Run it with the project's environment (make install): it uses its pip and packaging.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
DEST=${1:-$HERE/wheels}
PYVER=${2:-3.12}
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$DEST"

# Top-level packages of the GPU check (the rest of the lock is what they require); the
# steps it does not run (evaluate, abc, report, predict) need matplotlib, scikit-learn,
# demesdraw and cyvcf2 besides.
ROOTS=snakemake,msprime,tskit,demes,pandas,pyyaml,jsonschema,scikit-allel,keras,optuna
# Present with a bare Python + JAX, or not used there: pulp is Snakemake's ILP scheduler
# (profiles/default chooses the greedy one).  The wheels must stay under the 64 MiB that
# travel to the lent GPU machine with the repository.
SKIP=numpy,scipy,ml-dtypes,opt-einsum,jax,jaxlib,tensorflow-cpu,tensorboard,popdl,pip,setuptools,pulp

# name==version of every package the roots need, from the lock's "# via" graph, with the
# lock's markers evaluated for the GPU node (Linux x86-64, CPython $PYVER).
PINS=$("$PY" - "$REPO/requirements/lock.txt" "$ROOTS" "$SKIP" "$PYVER" <<'EOF'
import re
import sys

from packaging.markers import Marker
from packaging.utils import canonicalize_name

lock, roots, skip, pyver = sys.argv[1], set(sys.argv[2].split(",")), set(sys.argv[3].split(",")), sys.argv[4]
env = {"python_version": pyver, "python_full_version": f"{pyver}.0", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
versions, parents, current = {}, {}, None
for line in open(lock).read().splitlines():
    text = line.strip()
    if not text:
        continue
    if not line.startswith(" ") and "==" in text:
        spec, _, marker = text.partition(";")
        name, _, version = spec.strip().partition("==")
        current = canonicalize_name(name)
        if marker.strip() and not Marker(marker.strip()).evaluate(env):
            current = None
            continue
        versions[current] = version.strip()
        parents.setdefault(current, set())
    elif current and text.startswith("#"):
        m = re.match(r"#\s*(?:via\s+)?([A-Za-z0-9_.\-]+)", text)
        if m and m.group(1) != "via":
            parents[current].add(canonicalize_name(m.group(1)))
keep, grown = set(), True
while grown:
    grown = False
    for name, via in parents.items():
        if name not in keep and name not in skip and (name in roots or via & keep):
            keep.add(name)
            grown = True
missing = roots - set(versions)
if missing:
    sys.exit(f"not in the lock: {', '.join(sorted(missing))}")
print("\n".join(f"{n}=={versions[n]}" for n in sorted(keep)))
EOF
)

PLATFORMS=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 manylinux_2_17 manylinux2014 \
         manylinux2010 manylinux1 manylinux_2_5; do
  PLATFORMS+=(--platform "${p}_x86_64")
done

n=0
for pin in $PINS; do
  n=$((n + 1))
  name=${pin%%==*}
  if ls "$DEST" | grep -qi "^$(echo "$name" | tr '-' '_')-${pin##*==}-"; then
    continue  # already there
  fi
  if ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp "${PLATFORMS[@]}" -d "$DEST" "$pin" 2>/dev/null; then
    # Published as a source archive only: build a (pure-Python) wheel here.
    "$PY" -m pip wheel --quiet --no-deps -w "$DEST" "$pin"
    case "$(ls -t "$DEST" | head -1)" in
      *-py3-none-any.whl|*-py2.py3-none-any.whl) ;;
      *) echo "prepare_device_wheels: $pin has no wheel for Python $PYVER on Linux x86-64" >&2; exit 1 ;;
    esac
  fi
done
echo "$n packages for Python $PYVER in $DEST ($(du -sh "$DEST" | cut -f1))"
