"""Scenarios: demes graphs with named parameters, priors and constraints.

A scenario is a demes graph (https://popsim-consortium.github.io/demes-spec-docs/)
whose numeric fields may be parameter names or expressions, for example::

    time_units: generations
    demes:
      - name: anc
        epochs: [{start_size: N_anc, end_time: T_split}]
      - name: pop1
        ancestors: [anc]
        epochs: [{start_size: N1}]

plus priors for those parameters.  Times are in generations and sizes in
diploid individuals (demes' convention).  :meth:`Scenario.draw` draws one
parameter set (rejection sampling on the constraints) and
:meth:`Scenario.graph` builds the concrete :class:`demes.Graph`.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

import demes
import numpy as np

from popdl.errors import ConfigError, shown
from popdl.expr import CONSTANTS, FUNCTIONS, Expression, ExprError, is_valid_name
from popdl.sweeps import SweepSpec

__all__ = [
    "Prior",
    "Scenario",
    "PRIOR_KINDS",
    "GENOME_PARAMETERS",
    "load_scenarios",
    "check_config",
]

#: demes fields that hold numbers and may therefore name parameters.
NUMERIC_KEYS = {
    "start_size",
    "end_size",
    "start_time",
    "end_time",
    "time",
    "rate",
    "proportions",
    "selfing_rate",
    "cloning_rate",
    "generation_time",
}
#: Genome settings that may be drawn from a prior (then recorded as parameters).
GENOME_PARAMETERS = ("mutation_rate", "recombination_rate")
_INFINITE = {"inf", "infinity", ".inf", "+inf"}

PRIOR_KINDS = ("fixed", "uniform", "loguniform", "normal", "truncnormal", "expr")


@dataclass
class Prior:
    """One parameter's prior.

    ``kind`` is one of :data:`PRIOR_KINDS`; ``args`` its numbers; ``expr`` the
    parsed expression of a derived parameter.
    """

    name: str
    kind: str
    args: tuple = ()
    expr: Expression | None = None

    @classmethod
    def parse(cls, name: str, spec, *, where: str) -> "Prior":
        check_parameter_name(name, where=where)
        if isinstance(spec, bool):
            raise ConfigError(f"config key '{where}': a prior must be a number or a mapping, not {spec!r}")
        if isinstance(spec, (int, float)):
            if not _is_finite(spec):
                raise ConfigError(f"config key '{where}': a fixed value must be a finite number, got {shown(spec)}")
            return cls(name, "fixed", (float(spec),))
        if isinstance(spec, dict) and sum(k in PRIOR_KINDS for k in spec) > 1:
            # e.g. {uniform: ..., loguniform: ...}: a later config file's prior merged into the earlier one's,
            # as Snakemake merges config files (mappings key by key).
            raise ConfigError(
                f"config key '{where}': a prior has one kind, this one has {len(spec)} ({', '.join(map(str, spec))}): "
                "keep one (a config file given after another merges its mappings into the earlier one's, kinds "
                "included: give the later file the earlier one's kind, or change the kind in the earlier file)"
            )
        if not isinstance(spec, dict) or len(spec) != 1:
            raise ConfigError(
                f"config key '{where}': a prior is a number or a mapping with exactly one of {', '.join(PRIOR_KINDS)}"
            )
        (kind, args), = spec.items()
        if kind not in PRIOR_KINDS:
            raise ConfigError(f"config key '{where}': unknown prior {kind!r} (valid: {', '.join(PRIOR_KINDS)})")
        if kind == "expr":
            try:
                return cls(name, kind, (), Expression(args))
            except ExprError as exc:
                raise ConfigError(f"config key '{where}': {exc}") from None
        if kind == "fixed":
            args = [args]
        n_args = {"fixed": 1, "uniform": 2, "loguniform": 2, "normal": 2, "truncnormal": 4}[kind]
        if (
            not isinstance(args, (list, tuple))
            or len(args) != n_args
            or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
            or not all(_is_finite(a) for a in args)
        ):
            raise ConfigError(f"config key '{where}': {kind} takes {n_args} finite number(s), got {shown(args)}")
        args = tuple(float(a) for a in args)
        if kind in ("uniform", "loguniform") and not args[0] < args[1]:
            raise ConfigError(f"config key '{where}': {kind} needs low < high, got {list(args)}")
        if kind == "uniform" and not math.isfinite(args[1] - args[0]):
            raise ConfigError(f"config key '{where}': uniform's range {list(args)} is too wide to draw from")
        if kind == "loguniform" and args[0] <= 0:
            raise ConfigError(f"config key '{where}': loguniform needs positive bounds, got {list(args)}")
        if kind in ("normal", "truncnormal") and args[1] <= 0:
            raise ConfigError(f"config key '{where}': {kind} needs a positive standard deviation, got {args[1]}")
        if kind == "truncnormal" and not args[2] < args[3]:
            raise ConfigError(f"config key '{where}': truncnormal needs low < high, got {list(args[2:])}")
        return cls(name, kind, args)

    @property
    def derived(self) -> bool:
        return self.kind == "expr"

    @property
    def log_scale(self) -> bool:
        """True when the parameter is best learned on a log scale."""
        return self.kind == "loguniform"

    @property
    def bounds(self) -> tuple[float, float]:
        """The prior's support (``(-inf, inf)`` when unbounded or derived)."""
        if self.kind == "fixed":
            return (self.args[0], self.args[0])
        if self.kind in ("uniform", "loguniform"):
            return self.args
        if self.kind == "truncnormal":
            return self.args[2:]
        return (-math.inf, math.inf)

    def sample(self, rng: np.random.Generator, *, max_tries: int = 10000) -> float:
        kind, a = self.kind, self.args
        if kind == "fixed":
            return a[0]
        if kind == "uniform":
            return float(rng.uniform(a[0], a[1]))
        if kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(a[0]), math.log(a[1]))))
        if kind == "normal":
            return float(rng.normal(a[0], a[1]))
        if kind == "truncnormal":
            for _ in range(max_tries):
                x = float(rng.normal(a[0], a[1]))
                if a[2] <= x <= a[3]:
                    return x
            raise ConfigError(f"prior of {self.name!r}: truncnormal{list(a)} rejected {max_tries} draws")
        raise AssertionError(kind)

    def describe(self) -> str:
        if self.kind == "expr":
            return f"= {self.expr.text}"
        return f"{self.kind}{list(self.args)}"


def check_parameter_name(name, *, where: str) -> None:
    """Refuse a parameter name that expressions could not refer to: not an
    ASCII identifier, a Python keyword, a constant or function of the
    expression language (``pi``, ``e``, ``exp``, ``log``...), or a word that a
    graph field reads as infinity (``inf``)."""
    if is_valid_name(name) and name.lower() not in _INFINITE:
        return
    if name in CONSTANTS:
        why = "is a constant of the expression language"
    elif name in FUNCTIONS:
        why = "is a function of the expression language"
    elif isinstance(name, str) and name.lower() in _INFINITE:
        why = "means infinity in a graph field"
    elif isinstance(name, str) and name.isascii() and name.isidentifier():
        why = "is a Python keyword"
    else:
        why = "is not a name (letters, digits and _, not starting with a digit)"
    raise ConfigError(f"config key '{where}': parameter name {name!r} {why}; choose another name")


def _walk_numeric(obj, fn, path=()):
    """Apply ``fn(value, path)`` to every numeric-field value of a demes mapping."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key in NUMERIC_KEYS:
                if isinstance(value, list):
                    out[key] = [fn(v, path + (key, i)) for i, v in enumerate(value)]
                else:
                    out[key] = fn(value, path + (key,))
            else:
                out[key] = _walk_numeric(value, fn, path + (key,))
        return out
    if isinstance(obj, list):
        return [_walk_numeric(v, fn, path + (i,)) for i, v in enumerate(obj)]
    return obj


def _is_finite(number) -> bool:
    """True for a number that is a finite float (a huge integer is not)."""
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _is_placeholder(value) -> bool:
    return isinstance(value, str) and value.strip().lower() not in _INFINITE


@dataclass
class Scenario:
    """A demographic scenario: a parameterised demes graph, priors and constraints."""

    name: str
    template: dict
    priors: dict[str, Prior]
    constraints: list[Expression] = field(default_factory=list)
    samples: dict[str, int] = field(default_factory=dict)
    simulator: str = "msprime"
    max_tries: int = 10000
    description: str = ""
    sweep: SweepSpec | None = None  #: the optional selective sweep (popdl.sweeps)
    _graph_exprs: dict = field(default_factory=dict, repr=False)
    _genome_params: frozenset = field(default=frozenset(), repr=False)  #: priors set in genome:, not in the scenario

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_config(cls, name: str, config: dict) -> "Scenario":
        """Build and check scenario ``name`` of a validated config (graphs resolved)."""
        spec = config["scenarios"][name]
        where = f"scenarios.{name}"
        priors: dict[str, Prior] = {}
        for gname in GENOME_PARAMETERS:
            gvalue = config["genome"][gname]
            if isinstance(gvalue, dict):
                priors[gname] = Prior.parse(gname, gvalue, where=f"genome.{gname}")
        for pname, pspec in spec["priors"].items():
            priors[pname] = Prior.parse(pname, pspec, where=f"{where}.priors.{pname}")
        constraints = []
        for i, text in enumerate(spec.get("constraints", [])):
            try:
                constraints.append(Expression(text))
            except ExprError as exc:
                raise ConfigError(f"config key '{where}.constraints[{i}]': {exc}") from None
        graph = spec["graph"]
        if isinstance(graph, str):
            raise ConfigError(f"config key '{where}.graph': graph file {graph!r} was not loaded")
        scenario = cls(
            name=name,
            template=copy.deepcopy(graph),
            priors=priors,
            constraints=constraints,
            samples=dict(config["samples"]),
            simulator=spec.get("simulator") or config["simulator"],
            max_tries=config["simulations"]["max_tries"],
            description=spec.get("description", ""),
        )
        scenario._genome_params = frozenset(g for g in GENOME_PARAMETERS if g in priors and g not in spec["priors"])
        if spec.get("sweep") is not None:
            scenario.sweep = SweepSpec.parse(spec["sweep"], where=f"{where}.sweep", known=set(priors),
                                             simulator=scenario.simulator, loci=int(config["genome"]["loci"]))
        scenario._check(where)
        return scenario

    def _check(self, where: str) -> None:
        exprs = {}

        def collect(value, path):
            if _is_placeholder(value):
                try:
                    exprs[path] = Expression(value)
                except ExprError as exc:
                    raise ConfigError(f"config key '{where}.graph.{'.'.join(map(str, path))}': {exc}") from None
            return value

        _walk_numeric(self.template, collect)
        self._graph_exprs = exprs
        known = set(self.priors)
        for path, expr in exprs.items():
            unknown = expr.names - known
            if unknown:
                raise ConfigError(
                    f"config key '{where}.graph.{'.'.join(map(str, path))}': "
                    f"parameter {sorted(unknown)[0]!r} has no prior in {where}.priors"
                )
        for pname, prior in self.priors.items():
            if prior.derived:
                unknown = prior.expr.names - known
                if unknown:
                    raise ConfigError(f"config key '{where}.priors.{pname}': {sorted(unknown)[0]!r} is not a parameter")
        for i, expr in enumerate(self.constraints):
            unknown = expr.names - known
            if unknown:
                raise ConfigError(f"config key '{where}.constraints[{i}]': {sorted(unknown)[0]!r} is not a parameter")
        self._order = self._derivation_order(where)
        # Build one graph from a first draw to catch structural errors now (a fixed
        # seed: a config passes or fails whatever its root seed; see popdl.seeds).
        rng = np.random.default_rng(0)
        params = self.draw(rng, where=where)
        graph = self.graph(params, where=where)
        if self.sweep is not None:
            self.sweep.check(graph, where=f"{where}.sweep")
            self.sweep.values(params, graph=graph, where=f"{where}.sweep")
        alive = {d.name for d in graph.demes if d.end_time == 0}
        for pop in self.samples:
            if pop not in {d.name for d in graph.demes}:
                raise ConfigError(f"config key 'samples.{pop}': scenario {self.name!r} has no deme {pop!r}")
            if pop not in alive:
                raise ConfigError(f"config key 'samples.{pop}': deme {pop!r} of scenario {self.name!r} does not exist at time 0")
        self._check_used(where, exprs)

    def _check_used(self, where: str, graph_exprs: dict) -> None:
        """Refuse a drawn parameter that nothing reads: neither the graph, a derived
        parameter, a constraint nor the sweep.  It would become an output the network is
        asked to estimate from data it leaves untouched (a misspelt name, or a part of the
        graph taken out).  Fixed values and derived parameters (reported quantities such as
        ``theta``) may stand unused; the genome's parameters are read by the simulator."""
        used = set().union(*(e.names for e in graph_exprs.values()), *(c.names for c in self.constraints),
                           *(p.expr.names for p in self.priors.values() if p.derived))
        if self.sweep is not None:
            used |= set().union(*(e.names for e in self.sweep.exprs.values() if e is not None))
        unused = [n for n, p in self.priors.items()
                  if not p.derived and p.kind != "fixed" and n not in used and n not in GENOME_PARAMETERS]
        if unused:
            names = sorted(n for n in set().union(*(e.names for e in graph_exprs.values())))
            raise ConfigError(
                f"config key '{where}.priors.{unused[0]}': parameter {unused[0]!r} is used nowhere (not in the graph, "
                f"a derived parameter, a constraint or the sweep), so the data would say nothing about it; the graph's "
                f"parameters are {', '.join(names) or 'none'} (a misspelt name?)")

    def _derivation_order(self, where: str) -> list[str]:
        order, done, visiting = [], set(), set()

        def visit(pname):
            if pname in done:
                return
            if pname in visiting:
                raise ConfigError(f"config key '{where}.priors.{pname}': derived parameters refer to each other in a cycle")
            visiting.add(pname)
            prior = self.priors[pname]
            if prior.derived:
                for dep in sorted(prior.expr.names):
                    visit(dep)
            visiting.discard(pname)
            done.add(pname)
            order.append(pname)

        for pname in self.priors:
            visit(pname)
        return order

    # -- parameters ----------------------------------------------------------------------
    @property
    def parameter_names(self) -> list[str]:
        """All parameters, free and derived, in config order."""
        return list(self.priors)

    def draw(self, rng: np.random.Generator, *, where: str | None = None) -> dict[str, float]:
        """Draw one parameter set; constraints are enforced by rejection sampling.

        Raises :class:`ConfigError` after ``max_tries`` rejected attempts.
        """
        params, _ = self.draw_with_tries(rng, where=where)
        return params

    def draw_with_tries(self, rng, *, where=None, samplers=None) -> tuple[dict[str, float], int]:
        """:meth:`draw`, and the attempts it took.  ``samplers``: parameter name -> a function of
        ``rng`` that draws that free parameter in place of its prior (derived parameters and the
        constraints as ever)."""
        where = where or f"scenarios.{self.name}"
        samplers = samplers or {}
        for attempt in range(1, self.max_tries + 1):
            values: dict[str, float] = {}
            for pname in self._order:
                prior = self.priors[pname]
                key = (f"config key 'genome.{pname}' (scenario {self.name!r})" if pname in self._genome_params
                       else f"config key '{where}.priors.{pname}'")
                try:
                    if prior.derived:
                        value = float(prior.expr.evaluate(values))
                    elif pname in samplers:
                        value = float(samplers[pname](rng))
                    else:
                        value = prior.sample(rng, max_tries=self.max_tries)
                except (ExprError, ConfigError) as exc:
                    raise ConfigError(f"{key}: {exc}") from None
                if not math.isfinite(value):
                    raise ConfigError(f"{key}: drew {value}, not a finite number")
                values[pname] = value
            ok = True
            for i, constraint in enumerate(self.constraints):
                try:
                    ok = bool(constraint.evaluate(values))
                except ExprError as exc:
                    raise ConfigError(f"config key '{where}.constraints[{i}]': {exc}") from None
                if not ok:
                    break
            if ok:
                return {p: values[p] for p in self.priors}, attempt
        raise ConfigError(
            f"config key '{where}.constraints': the priors never satisfied "
            f"{' and '.join(repr(c.text) for c in self.constraints)} in {self.max_tries} draws"
        )

    # -- graphs --------------------------------------------------------------------------
    def graph_dict(self, params: dict[str, float], *, where: str | None = None) -> dict:
        """The demes mapping with every placeholder replaced by its value."""
        where = where or f"scenarios.{self.name}"

        def substitute(value, path):
            expr = self._graph_exprs.get(path)
            if expr is None:
                return value
            try:
                return float(expr.evaluate(params))
            except ExprError as exc:
                raise ConfigError(f"config key '{where}.graph.{'.'.join(map(str, path))}': {exc}") from None

        return _walk_numeric(self.template, substitute)

    def graph(self, params: dict[str, float], *, where: str | None = None) -> demes.Graph:
        """The concrete demes graph for one parameter set."""
        where = where or f"scenarios.{self.name}"
        data = self.graph_dict(params, where=where)
        data.setdefault("time_units", "generations")
        try:
            return demes.Graph.fromdict(data)
        except Exception as exc:  # demes raises several exception types
            shown = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
            raise ConfigError(f"config key '{where}.graph': not a valid demes graph for {shown}: {exc}") from None

    def draw_problem(self, params: dict[str, float]) -> str | None:
        """Why the simulator cannot take one draw's parameters (a graph demes refuses, a
        negative genome rate), naming the drawn parameters at or below 0; None when it can."""
        bad_rates = [g for g in GENOME_PARAMETERS if g in params and params[g] < 0]
        try:
            self.graph(params)
            if not bad_rates:
                return None
            reason = f"{bad_rates[0]} = {params[bad_rates[0]]:.4g} is negative"
        except ConfigError as exc:  # "config key 'FIELD': why" -> "FIELD: why"
            reason = re.sub(r"^config key '([^']*)'", r"\1", str(exc))
        low = [n for n, v in params.items() if v <= 0 and not self.priors[n].derived]
        if low:
            reason += "; " + ", ".join(f"{n} = {params[n]:.4g} (prior {self.priors[n].describe()})" for n in low[:3])
        return reason

    def genome_value(self, key: str, params: dict[str, float], genome: dict) -> float:
        """A genome rate: the drawn parameter when it has a prior, else the fixed number."""
        return float(params[key]) if key in params else float(genome[key])


def load_scenarios(config: dict) -> dict[str, Scenario]:
    """All scenarios of a prepared config, by name, in config order."""
    return {name: Scenario.from_config(name, config) for name in config["scenarios"]}


def check_config(config: dict) -> None:
    """Parse every scenario of a validated config (priors, derived expressions,
    constraints, graph, sweep): raises :class:`ConfigError` (one line) at the
    first problem."""
    load_scenarios(config)
