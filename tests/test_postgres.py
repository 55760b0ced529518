"""Optuna on PostgreSQL: two tune workers (real processes) share one RDB study.

A PostgreSQL server from Debian's packages is started by the fixture (initdb
into a temporary folder, the server on a free port, createdb) and stopped by
PID afterwards. Two ``popdl tune`` workers run at the same time against
``tuning.storage: postgresql://...``, on the tiny dataset; the study must end
with exactly ``tuning.trials`` finished trials, numbered without gaps, each
owned by one worker, none lost or run twice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from cluster import PostgresServer, Unavailable
from conftest import REPO, tiny_config, write_config

pytestmark = pytest.mark.postgres

TRIALS = 4
WORKERS = 2


@pytest.fixture(scope="module")
def postgres():
    """A running PostgreSQL server with an empty database; stopped after the module."""
    # Not under pytest's temporary folder: the server runs as the postgres
    # user, who cannot enter root's private folders.
    root = Path(tempfile.mkdtemp(prefix="popdl-pg-"))
    os.chmod(root, 0o755)
    server = PostgresServer(root / "pg")
    try:
        server.start()
    except Unavailable as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"no test PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgres_study(postgres, tiny_dataset, tmp_path):
    import optuna
    import sqlalchemy
    from optuna.trial import TrialState

    from popdl.tuning import worker_shares

    config = tiny_config(
        network="mlp",
        tuning={
            "workers": WORKERS,
            "trials": TRIALS,
            "max_epochs": 1,
            "patience": 0,
            "pruner": "none",
            "startup_trials": 1,
            "storage": postgres.url,
            "search_space": {"batch_size": 16, "dense_layers": 1, "dense_units": 8},
        },
    )
    cfg = write_config(tmp_path, config)
    tuning_dir = tmp_path / "tuning"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "scripts"), os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "popdl", "tune", "--configfile", str(cfg), "--dataset", str(tiny_dataset),
             "--worker", str(w), "--tuning-dir", str(tuning_dir), "--out", str(tmp_path / f"worker-{w}.json")],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for w in range(WORKERS)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    seconds = time.perf_counter() - started
    for w, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"worker {w} failed:\n{out[-4000:]}"
    summaries = [json.loads((tmp_path / f"worker-{w}.json").read_text()) for w in range(WORKERS)]

    # The study lives in PostgreSQL (no journal file was written).
    assert not (tuning_dir / "journal.log").exists()
    name = summaries[0]["study"]
    assert all(s["study"] == name for s in summaries)
    study = optuna.load_study(study_name=name, storage=postgres.url)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]

    # Exactly the requested number of finished trials, numbered 0..n-1 once each.
    assert len(finished) == TRIALS, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # Each worker ran its own share, and no trial is claimed by both.
    owners = Counter(t.user_attrs["worker"] for t in finished)
    assert owners == Counter(dict(enumerate(worker_shares(TRIALS, WORKERS))))
    claimed = [n for s in summaries for n in s["finished"]]
    assert sorted(claimed) == sorted(t.number for t in finished)
    assert len(set(claimed)) == len(claimed)
    # One record per finished trial on disk.
    for t in finished:
        assert (tuning_dir / "trials" / f"{t.number}.json").exists()
    # SQL's own count agrees with Optuna's view.
    engine = sqlalchemy.create_engine(postgres.url)
    with engine.connect() as conn:
        n_sql = conn.execute(sqlalchemy.text(
            "SELECT count(*) FROM trials JOIN studies USING (study_id) WHERE study_name = :n"), {"n": name}).scalar()
    engine.dispose()
    assert n_sql == len(trials)
    assert name.startswith(f"popdl-{config['run']}-")
    print(f"\nPostgreSQL study {name}: {len(finished)} finished trials from {WORKERS} worker processes "
          f"(shares {dict(sorted(owners.items()))}) in {seconds:.0f} s, {len(trials) - len(finished)} failed, "
          f"none lost or duplicated; schema-creation races retried: "
          f"{sum(out.count('being created by another worker') for out in outputs)}")
