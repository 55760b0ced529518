"""Bad inputs of every kind - names, expressions, priors, YAML - are refused with
one line naming the key or parameter, quickly, with no traceback and nothing written.

Each case is a config file (or a scenario graph file beside it) written in a
temporary folder and read the way the user's command reads it (load_config);
a few also go through `popdl check`, `popdl plan` and a Snakemake dry run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, snakemake, tiny_config, write_config

from popdl.config import MAX_YAML_BYTES, load_config, load_yaml, parse_yaml
from popdl.errors import ConfigError
from popdl.expr import MAX_LENGTH, Expression, ExprError

ISO = "scenarios.isolation"
ONE_POP = {"time_units": "generations", "demes": [{"name": "pop", "epochs": [{"start_size": "N"}]}]}


# ------------------------------------------------------------------------------ case builders
def config(change):
    """A case: the tiny config, changed by ``change(config)``, written as YAML."""

    def build(folder: Path) -> Path:
        c = tiny_config()
        change(c)
        return write_config(folder, c)

    return build


def setting(*path_and_value):
    """A case: the tiny config with one key (dotted path) set to a value."""
    *path, value = path_and_value

    def change(c):
        node = c
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
        node[path[-1]] = value

    return config(change)


def prior(name, spec):
    """A case: the isolation scenario with one more prior."""
    return setting("scenarios", "isolation", "priors", name, spec)


def derived(text):
    """A case: a derived parameter X of the isolation scenario."""
    return prior("X", {"expr": text})


def constraint(text):
    return setting("scenarios", "isolation", "constraints", [text])


def graph_field(text):
    """A case: a one-population scenario whose size is the expression ``text``."""
    graph = yaml.safe_load(yaml.safe_dump(ONE_POP))
    graph["demes"][0]["epochs"][0]["start_size"] = text

    def change(c):
        c["samples"] = {"pop": 3}
        c["scenarios"] = {"one": {"graph": graph, "priors": {"N": {"uniform": [100, 1000]}}}}

    return config(change)


def raw(content: str | bytes, name: str = "config.yaml"):
    """A case: a config file with exactly these bytes."""

    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return build


def tiny_text(**replace) -> str:
    """The tiny config as YAML text, with ``"run: tiny"`` etc. replaced."""
    text = yaml.safe_dump(tiny_config(), sort_keys=False)
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def with_text(old: str, new: str):
    """A case: the tiny config's YAML text with ``old`` replaced by ``new``."""
    return raw(tiny_text(**{old: new}) if old.isidentifier() else _replace(old, new))


def _replace(old, new):
    text = yaml.safe_dump(tiny_config(), sort_keys=False)
    assert old in text, old
    return text.replace(old, new, 1)


def graph_file(content: str | bytes):
    """A case: the isolation scenario's graph read from a file with these bytes."""

    def build(folder: Path) -> Path:
        (folder / "graph.yaml").write_bytes(content.encode() if isinstance(content, str) else content)
        c = tiny_config()
        c["scenarios"]["isolation"]["graph"] = "graph.yaml"
        return write_config(folder, c)

    return build


def lol_bomb(levels: int = 9) -> str:
    """Nested anchors and aliases of lists: 9 ** levels strings once expanded."""
    parts = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    parts += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


def dict_bomb(levels: int = 9) -> str:
    """The same with mappings: {k0: *a, k1: *a, ...} nested."""
    parts = ['&b0 {k0: lol, k1: lol, k2: lol, k3: lol, k4: lol, k5: lol, k6: lol, k7: lol, k8: lol}']
    parts += [f"&b{i} {{" + ", ".join(f"k{j}: *b{i - 1}" for j in range(9)) + "}" for i in range(1, levels)]
    return "{" + ", ".join(f"l{i}: {p}" for i, p in enumerate(parts)) + "}"


def merge_bomb(levels: int = 9) -> str:
    """Merge keys of merge keys: each level merges nine copies of the previous one."""
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: lol" for j in range(9)) + "}"]
    for i in range(1, levels):
        lines.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 9) + f"], x{i}: 1}}")
    return "\n".join(lines) + "\n"


def description(value: str):
    """A case: the tiny config's text with the isolation description set to raw YAML."""
    return raw(_replace("  isolation:\n", f"  isolation:\n    description: {value}\n"))


def directory(folder: Path) -> Path:
    (folder / "config.yaml").mkdir()
    return folder / "config.yaml"


def two_data_sets(c):
    c["predict"] = {"data": [{"name": "obs", "vcf": "a.vcf", "popmap": "p.txt"},
                             {"name": "obs", "vcf": "b.vcf", "popmap": "p.txt"}]}


def cycle(c):
    c["scenarios"]["isolation"]["priors"]["A"] = {"expr": "B + 1"}
    c["scenarios"]["isolation"]["priors"]["B"] = {"expr": "A + 1"}


def many_terms():
    return "max(N1, " + ",".join(["1"] * 600) + ")"


# ------------------------------------------------------------------------------------- the table
#: (id, case builder, text the one-line message must contain)
CASES = [
    # names used in paths: anchored at the true end, no newline, no path tricks
    ("run-trailing-newline", setting("run", "demo\n"), "config key 'run'"),
    ("run-trailing-crlf", setting("run", "demo\r\n"), "config key 'run'"),
    ("run-empty", setting("run", ""), "config key 'run'"),
    ("run-parent-folder", setting("run", "../elsewhere"), "config key 'run'"),
    ("run-slash", setting("run", "a/b"), "config key 'run'"),
    ("run-hidden", setting("run", ".hidden"), "config key 'run'"),
    ("run-not-text", setting("run", ["a"]), "config key 'run'"),
    ("predict-name-newline", setting("predict", {"data": [{"name": "obs\n", "vcf": "a.vcf", "popmap": "p"}]}),
     "config key 'predict.data.0.name'"),
    ("scan-name-newline", setting("scan", {"data": [{"name": "chr\n", "vcf": "a.vcf"}]}), "config key 'scan.data.0.name'"),
    ("predict-name-twice", config(two_data_sets), "config key 'predict.data.1.name'"),
    ("scenario-name-newline", setting("scenarios", "iso\n", tiny_config()["scenarios"]["isolation"]), "'iso\\n'"),
    ("scenario-name-space", setting("scenarios", "bad name", tiny_config()["scenarios"]["isolation"]), "'bad name'"),
    # parameter names
    ("parameter-name-newline", prior("N3\n", 5), "'N3\\n'"),
    ("parameter-name-digit-first", prior("1N", 5), "'1N'"),
    ("parameter-named-pi", prior("pi", {"uniform": [1, 2]}), f"config key '{ISO}.priors.pi'"),
    ("parameter-named-e", prior("e", {"uniform": [1, 2]}), f"config key '{ISO}.priors.e'"),
    ("parameter-named-exp", prior("exp", 3), f"config key '{ISO}.priors.exp'"),
    ("parameter-named-log", prior("log", 3), f"config key '{ISO}.priors.log'"),
    ("parameter-named-keyword", prior("lambda", 3), f"config key '{ISO}.priors.lambda'"),
    ("parameter-named-inf", prior("inf", 3), f"config key '{ISO}.priors.inf'"),
    # expressions: every error is one line naming the parameter
    ("expr-round-fraction-digits", derived("round(N1, 2.5)"), f"config key '{ISO}.priors.X'"),
    ("expr-min-no-argument", derived("min()"), f"config key '{ISO}.priors.X'"),
    ("expr-max-one-argument", derived("max(N1)"), f"config key '{ISO}.priors.X'"),
    ("expr-sqrt-two-arguments", derived("sqrt(N1, 2)"), f"config key '{ISO}.priors.X'"),
    ("expr-huge-floor-power", derived("floor(1e300) ** 4"), f"config key '{ISO}.priors.X'"),
    ("expr-20000-unary-minus", derived("-" * 20000 + "N1"), f"config key '{ISO}.priors.X'"),
    ("expr-1990-unary-minus", derived("-" * 1990 + "N1"), f"config key '{ISO}.priors.X'"),
    ("expr-overflow-to-inf", derived("1e308 * 10"), f"config key '{ISO}.priors.X'"),
    ("expr-tower-of-powers", derived("10 ** 10 ** 10"), f"config key '{ISO}.priors.X'"),
    ("expr-huge-integer-literal", derived("9" * 400), f"config key '{ISO}.priors.X'"),
    ("expr-float-literal-inf", derived("1e309 - N1"), f"config key '{ISO}.priors.X'"),
    ("expr-too-long", derived("N1 + " * (MAX_LENGTH // 5 + 1) + "1"), f"config key '{ISO}.priors.X'"),
    ("expr-too-many-terms", derived(many_terms()), f"config key '{ISO}.priors.X'"),
    ("expr-long-sum", derived(" + ".join(["N1"] * 300)), f"config key '{ISO}.priors.X'"),
    ("expr-nested-parentheses", derived("(" * 300 + "N1" + ")" * 300), f"config key '{ISO}.priors.X'"),
    ("expr-division-by-zero", derived("N1 / (N2 - N2)"), f"config key '{ISO}.priors.X'"),
    ("expr-modulo-zero", derived("N1 % 0"), f"config key '{ISO}.priors.X'"),
    ("expr-log-negative", derived("log(-N1)"), f"config key '{ISO}.priors.X'"),
    ("expr-fractional-power-of-negative", derived("(-N1) ** 0.5"), f"config key '{ISO}.priors.X'"),
    ("expr-exp-overflow", derived("exp(N1)"), f"config key '{ISO}.priors.X'"),
    ("expr-null-byte", derived("N1\x00 + 1"), f"config key '{ISO}.priors.X'"),
    ("expr-import", derived("__import__('os').system('true')"), f"config key '{ISO}.priors.X'"),
    ("expr-attribute", derived("N1.__class__"), f"config key '{ISO}.priors.X'"),
    ("expr-undefined-name", derived("N1 + nope"), f"config key '{ISO}.priors.X'"),
    ("expr-cycle", config(cycle), f"config key '{ISO}.priors.A'"),
    ("expr-not-text", derived(["N1"]), f"config key '{ISO}.priors.X'"),
    ("constraint-division-by-zero", constraint("N1 / (N2 - N2) > 1"), f"config key '{ISO}.constraints[0]'"),
    ("constraint-overflow", constraint("exp(N1) > 1"), f"config key '{ISO}.constraints[0]'"),
    ("constraint-syntax", constraint("N1 <"), f"config key '{ISO}.constraints[0]'"),
    ("graph-field-not-finite", graph_field("N * 1e308 * 10"), "config key 'scenarios.one.graph.demes.0.epochs.0.start_size'"),
    ("graph-field-domain", graph_field("sqrt(-N)"), "config key 'scenarios.one.graph.demes.0.epochs.0.start_size'"),
    ("graph-field-bad-arity", graph_field("round(N, 1, 2)"), "config key 'scenarios.one.graph.demes.0.epochs.0.start_size'"),
    # priors and numbers
    ("prior-uniform-too-wide", prior("W", {"uniform": [-1e308, 1e308]}), f"config key '{ISO}.priors.W'"),
    ("prior-fixed-huge-integer", with_text("N_anc:\n", "W: " + "9" * 400 + "\n      N_anc:\n"), f"config key '{ISO}.priors.W'"),
    ("prior-bound-huge-integer", with_text("N_anc:\n", "W: {uniform: [1, 1" + "0" * 400 + "]}\n      N_anc:\n"),
     f"config key '{ISO}.priors.W'"),
    ("prior-fixed-nan", with_text("N_anc:\n", "W: .nan\n      N_anc:\n"), f"config key '{ISO}.priors.W'"),
    ("genome-length-nan", with_text("length: 20000", "length: .nan"), "config key 'genome.length'"),
    ("genome-length-inf", with_text("length: 20000", "length: .inf"), "config key 'genome.length'"),
    # YAML: alias and merge bombs, recursion, depth
    ("alias-bomb-lists-in-description", description(lol_bomb()), f"config key '{ISO}.description'"),
    ("alias-bomb-mappings-in-run", with_text("run: tiny", "run: " + dict_bomb()), "config key 'run.l8"),
    ("alias-bomb-in-unknown-key", with_text("run: tiny", "run: tiny\nlol: " + lol_bomb()), "config key 'lol'"),
    ("merge-key-bomb", raw(merge_bomb() + tiny_text()), "merge keys"),
    ("recursive-alias", description("&r [1, *r]"), f"config key '{ISO}.description'"),
    ("deeply-nested-lists", description("[" * 2000 + "]" * 2000), "nested"),
    ("nested-deeper-than-limit", description("[" * 80 + "]" * 80), "line 13: nested more than"),
    # YAML: keys, tags, documents, encodings
    ("duplicate-top-level-key", raw(tiny_text() + "run: again\n"), "'run' appears twice"),
    ("duplicate-prior", with_text("N_anc:\n", "N1: 5\n      N_anc:\n"), "'N1' appears twice"),
    ("python-object-tag", with_text("run: tiny", "run: !!python/object/apply:os.system ['true']"),
     "tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("python-name-tag", with_text("run: tiny", "run: !!python/name:os.system ''"), "python/name:os.system"),
    ("unknown-local-tag", with_text("run: tiny", "run: !shell ls"), "'!shell'"),
    ("non-text-key", with_text("pop1: 4", "yes: 4"),
     "config key 'samples': key True is not text (quote it in the YAML file: unquoted yes"),
    ("integer-key", raw("1: x\n" + tiny_text()), "key 1 is not text"),
    # popmaps often label populations 1, 2, ...: the key is named with its list index and the fix
    ("integer-popmap-label", raw(tiny_text() + "predict:\n  data:\n    - {name: d, vcf: d.vcf, popmap: p.tsv, "
                                 "populations: {1: pop1}}\n"),
     "config key 'predict.data.0.populations': key 1 is not text (quote it in the YAML file, as '1')"),
    ("unhashable-key", raw("? [a, b]\n: 1\n" + tiny_text()), "unhashable"),
    ("config-is-a-list", raw("- run: tiny\n- seed: 1\n"), "holds a list"),
    ("config-is-a-scalar", raw("just some text\n"), "holds a single value"),
    ("config-is-empty", raw(""), "is empty"),
    ("config-only-comments", raw("# nothing here\n"), "is empty"),
    ("two-documents", raw(tiny_text() + "---\nrun: other\n"), "not valid YAML"),
    ("not-utf8", raw(tiny_text().encode().replace(b"tiny", b"t\xe9ny")), "not UTF-8"),
    ("control-character", raw(tiny_text(**{"run: tiny": "run: ti\x01ny"})), "line 1: the control character U+0001"),
    ("tab-indentation", raw("genome:\n\tloci: 1\n"), "line 2"),
    ("larger-than-limit", with_text("run: tiny", "run: tiny\n# " + "x" * MAX_YAML_BYTES), "larger than"),
    ("config-is-a-folder", directory, "cannot be read"),
    # scenario graph files are read the same way
    ("graph-file-alias-bomb", graph_file("description: " + lol_bomb() + "\ndemes: []\n"),
     f"config key '{ISO}.graph.description'"),
    ("graph-file-duplicate-key", graph_file("demes: []\ndemes: []\n"), f"config key '{ISO}.graph'"),
    ("graph-file-python-tag", graph_file("demes: !!python/object/new:os.system [true]\n"), f"config key '{ISO}.graph'"),
    ("graph-file-not-utf8", graph_file(b"description: \xff\xfe\ndemes: []\n"), f"config key '{ISO}.graph'"),
    ("graph-file-is-a-list", graph_file("- a\n- b\n"), f"config key '{ISO}.graph'"),
]
IDS = [case[0] for case in CASES]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("case_id, build, expected", CASES, ids=IDS)
def test_load_config_refuses_with_one_line(tmp_path, case_id, build, expected):
    path = build(tmp_path)
    before = files_under(tmp_path)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert expected in message, message
    assert len(message.splitlines()) == 1 and len(message) <= 2000, message[:300]
    assert elapsed < 5, f"{case_id} took {elapsed:.1f} s"
    assert files_under(tmp_path) == before  # nothing written


def test_the_table_has_many_distinct_cases():
    assert len(CASES) >= 50 and len(set(IDS)) == len(IDS)


# ---------------------------------------------------------------------------- the real commands
CLI_CASES = ["run-trailing-newline", "alias-bomb-lists-in-description", "merge-key-bomb", "duplicate-top-level-key",
             "parameter-named-pi", "expr-tower-of-powers", "expr-20000-unary-minus", "python-object-tag", "not-utf8",
             "config-is-a-list", "graph-file-alias-bomb"]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_popdl_check_prints_one_line(tmp_path, case_id):
    _, build, expected = CASES[IDS.index(case_id)]
    path = build(tmp_path)
    before = files_under(tmp_path)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "popdl", "check", "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("popdl:") and expected in lines[0], proc.stderr[-2000:]
    assert elapsed < 30, f"{case_id} took {elapsed:.1f} s"  # interpreter start-up included
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("case_id", ["run-trailing-newline", "alias-bomb-lists-in-description"])
def test_snakemake_dry_run_refuses_before_any_job(tmp_path, case_id):
    _, build, expected = CASES[IDS.index(case_id)]
    path = build(tmp_path)
    work = tmp_path / "work"
    proc = snakemake(work, "-n", configfile=path, check=False, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("popdl:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert not (work / "results").exists() and not (tmp_path / "results").exists()
    assert not any("demo" in p.name for p in tmp_path.rglob("*"))


# ----------------------------------------------------------------------- errors while drawing
def sometimes_failing(kind: str):
    """A scenario whose first draw (checked when the config is read) works but a later one fails."""
    c = tiny_config()
    priors = c["scenarios"]["isolation"]["priors"]
    if kind in ("derived", "constraint"):
        priors["U"] = {"uniform": [0, 1]}
    if kind == "derived":
        priors["X"] = {"expr": "log(U - 0.3)"}
    elif kind == "constraint":
        c["scenarios"]["isolation"]["constraints"] = ["log(U - 0.3) > -100"]
    elif kind == "genome":
        c["genome"]["mutation_rate"] = {"normal": [1e-8, 1.5e308]}
    else:
        graph = yaml.safe_load(yaml.safe_dump(ONE_POP))
        graph["demes"][0]["epochs"][0]["start_size"] = "1000 * sqrt(U - 0.3)"
        c["samples"] = {"pop": 3}
        c["scenarios"] = {"one": {"graph": graph, "priors": {"U": {"uniform": [0, 1]}}}}
    return c


DRAW_CASES = [
    ("derived", "isolation", f"config key '{ISO}.priors.X'"),
    ("constraint", "isolation", f"config key '{ISO}.constraints[0]'"),
    ("genome", "isolation", "config key 'genome.mutation_rate' (scenario 'isolation')"),
]


@pytest.mark.parametrize("kind, scenario, expected", DRAW_CASES, ids=[c[0] for c in DRAW_CASES])
def test_errors_while_planning_name_the_parameter_and_scenario(tmp_path, kind, scenario, expected):
    from popdl.plan import plan_draws
    from popdl.scenarios import Scenario

    cfg = write_config(tmp_path, sometimes_failing(kind))
    config = load_config(cfg)  # the first draw is fine
    sc = Scenario.from_config(scenario, config)
    with pytest.raises(ConfigError) as info:
        plan_draws(sc, root_seed=1, start=0, stop=200)
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    if kind != "genome":
        assert "U=" in message  # the values that broke it

    out = tmp_path / "plan.tsv"
    before = files_under(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "popdl", "plan", "--configfile", str(cfg), "--scenario", scenario,
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("popdl:") and expected in lines[0], proc.stderr[-2000:]
    assert files_under(tmp_path) == before


def test_errors_while_building_a_drawn_graph_name_the_field(tmp_path):
    from popdl.plan import plan_draws
    from popdl.scenarios import Scenario

    config = load_config(write_config(tmp_path, sometimes_failing("graph")))
    sc = Scenario.from_config("one", config)
    with pytest.raises(ConfigError) as info:
        sc.graph({"U": 0.1})
    message = str(info.value)
    assert "config key 'scenarios.one.graph.demes.0.epochs.0.start_size'" in message and "U=0.1" in message
    assert "\n" not in message
    # The plan (the run's first job) builds every draw's graph and refuses the run on those that fail.
    with pytest.raises(ConfigError) as info:
        plan_draws(sc, root_seed=1, start=0, stop=200)
    message = str(info.value)
    assert message.startswith("config key 'scenarios.one.priors': ") and "\n" not in message
    assert ": scenarios.one.graph.demes.0.epochs.0.start_size: cannot evaluate '1000 * sqrt(U - 0.3)' for U=" in message


# ------------------------------------------------------------------------- the public loaders
def test_load_yaml_reads_plain_files_and_merge_keys(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {a: 1, b: 2}\nmid: &m {<<: *b, b: 3}\ntop: {<<: *m, c: 4}\nreuse: *m\n")
    data = load_yaml(path)
    assert data["top"] == {"a": 1, "b": 3, "c": 4} and data["reuse"] == {"a": 1, "b": 3}
    assert parse_yaml("\ufeffrun: x\n") == {"run": "x"}  # a byte-order mark is fine


def test_load_yaml_refuses_a_bomb_in_milliseconds(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("x: " + lol_bomb(12) + "\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="more than .* values once YAML aliases are expanded"):
        load_yaml(path)
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("text, values", [
    ("round(N1, 2)", {"N1": 1.23456}),
    ("floor(x) * floor(x) * floor(x)", {"x": 1e100}),
    ("10 ** 300 / 10 ** 299", {}),
    ("max(" + ", ".join(["a"] * 100) + ")", {"a": 1}),
])
def test_expressions_near_the_limits_still_work(text, values):
    assert Expression(text).evaluate(values) > 0


@pytest.mark.parametrize("text, values", [
    ("floor(x) * floor(x) * floor(x) * floor(x)", {"x": 1e100}),
    ("x * x", {"x": float("inf")}),
    ("x - x", {"x": float("nan")}),
    ("round(x, 1e300)", {"x": 1.5}),
    ("x", {"x": None}),
])
def test_evaluation_errors_are_one_line_expr_errors(text, values):
    with pytest.raises(ExprError) as info:
        Expression(text).evaluate(values)
    assert "\n" not in str(info.value) and "cannot evaluate" in str(info.value)
