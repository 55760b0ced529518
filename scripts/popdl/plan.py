"""Planning: the parameters and seeds of every draw, before any simulation.

Draw ``i`` of scenario ``s`` gets its parameters from the stream
:func:`popdl.seeds.priors` and its simulator seeds from
:func:`popdl.seeds.simulator_seeds` (root seed, scenario name, draw index), so
the plan, and everything simulated from it, is the same whatever the chunk
size and whichever other scenarios are in the config.
"""

from __future__ import annotations

import pandas as pd

from popdl import seeds
from popdl.errors import ConfigError
from popdl.io import atomic_path
from popdl.scenarios import Scenario

__all__ = ["plan_draws", "write_plan", "read_plan", "SEED_COLUMNS", "chunk_bounds", "n_chunks"]

SEED_COLUMNS = ("seed_ancestry", "seed_mutation", "seed_fsc")


def plan_draws(scenario: Scenario, *, root_seed: int, start: int, stop: int) -> pd.DataFrame:
    """Parameters and seeds of draws ``start`` (inclusive) to ``stop`` (exclusive).

    Columns: ``draw``, ``tries`` (rejection-sampling attempts), the seeds in
    :data:`SEED_COLUMNS`, then one column per parameter (generations,
    diploid individuals, per-generation rates, as the priors define them).
    """
    rows, problems = [], []
    for draw in range(start, stop):
        params, tries = scenario.draw_with_tries(seeds.priors(root_seed, scenario.name, draw))
        problem = scenario.draw_problem(params)
        if problem:
            problems.append((draw, problem))
        rows.append((draw, tries, *seeds.simulator_seeds(root_seed, scenario.name, draw), *params.values()))
    if problems:
        # A prior that reaches values no history can have (a normal prior on a size, a difference of
        # times without a constraint) would fail simulate jobs mid-run: refused here, before any runs.
        first, reason = problems[0]
        raise ConfigError(
            f"config key 'scenarios.{scenario.name}.priors': {len(problems)} of draws {start}-{stop - 1} give "
            f"parameters the simulator cannot take, the first draw {first}: {reason}; bound the priors (uniform, "
            "loguniform, or truncnormal: [mean, sd, low, high]) or add a constraint")
    columns = ["draw", "tries", *SEED_COLUMNS, *scenario.parameter_names]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({c: "int64" for c in ("draw", "tries", *SEED_COLUMNS)})


#: pandas < 3 needs asking for exact float parsing; pandas 3 does it by default (and warns if asked).
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def write_plan(scenario: Scenario, path, *, root_seed: int, n: int, block: int = 50_000) -> dict:
    """Plan draws ``0..n-1`` into the TSV ``path``, ``block`` draws at a time.

    Memory stays bounded by a block however many draws there are; the file
    is the same as one written whole, and it appears atomically.  Returns a
    summary (draws, mean tries).
    """
    tries = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        for start in range(0, max(n, 1), block):
            frame = plan_draws(scenario, root_seed=root_seed, start=start, stop=min(start + block, n))
            frame.to_csv(fh, sep="\t", index=False, header=start == 0)
            tries += int(frame["tries"].sum())
    return {"draws": n, "mean_tries": tries / n if n else 0.0}


def read_plan(path, *, start: int = 0, stop: int | None = None) -> pd.DataFrame:
    """Read rows ``start:stop`` of a plan table (exact float round trip)."""
    nrows = None if stop is None else stop - start
    frame = pd.read_csv(path, sep="\t", skiprows=range(1, start + 1) if start else None, nrows=nrows, **_EXACT_FLOATS)
    return frame


def n_chunks(per_scenario: int, chunk: int) -> int:
    return -(-per_scenario // chunk)


def chunk_bounds(index: int, *, per_scenario: int, chunk: int) -> tuple[int, int]:
    """Draw range ``[start, stop)`` of chunk ``index``."""
    start = index * chunk
    if not 0 <= start < per_scenario:
        raise ValueError(f"chunk {index} is out of range (0..{n_chunks(per_scenario, chunk) - 1})")
    return start, min(start + chunk, per_scenario)
