"""Importing fastsimcoal2 ``.tpl`` / ``.est`` pairs as popdl scenarios.

The template's placeholders (``$NAME$`` or bare names) become parameters,
``[PARAMETERS]`` ``unif`` / ``logunif`` lines become uniform / loguniform
priors, ``[RULES]`` become constraints and ``[COMPLEX PARAMETERS]`` derived
(``expr``) priors, written for :mod:`popdl.expr` (``a %min% b`` becomes
``min(a, b)``, ``%max%`` ``max``, ``%abs% a`` ``abs(a)``, ``^`` ``**``; an
integer complex parameter is wrapped in ``round``).

The template itself becomes a demes graph with placeholders, the inverse of
:func:`popdl.simulators.fastsimcoal2.graph_to_par`:

- deme ``i`` is named ``pop{i}`` (or from ``names``); its size is the
  template's size (gene copies) divided by 2 (diploid individuals);
- an event moving all lineages (``migrants`` 1) from ``source`` to ``sink``
  ends ``source`` there: ``source`` gets ``ancestors: [sink]`` and
  ``start_time`` the event time (a split, forward in time);
- an event with ``0 < migrants < 1`` (or a placeholder) is a pulse from
  ``sink`` into ``source`` (forward in time) of that proportion;
- every event's ``new_size`` resizes the sink: relative to its current size,
  or absolute (gene copies) with ``absoluteResize``; a factor of 1 changes
  nothing;
- migration matrices: entry ``M[i][j]`` between two matrix switches becomes
  a migration ``source: pop{j}, dest: pop{i}`` over that interval (clipped to
  the lifetimes of both demes); ``nomig`` is a zero matrix, ``keep`` keeps the
  current growth rate or matrix.

Events must be listed from the present backward (their placeholder times
cannot be sorted before drawing).  Growth rates other than 0, sample ages,
``instbot`` and non-DNA marker blocks have no counterpart here and stop with
"not supported".  The genome (loci, length, rates) and the samples come from
the popdl config; the sample sizes found in the template are reported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from popdl.errors import ConfigError
from popdl.expr import Expression, ExprError

__all__ = ["FscImportError", "import_fsc", "parse_est", "parse_tpl", "translate_expression"]


class FscImportError(ConfigError):
    """A template or estimation file that popdl cannot import (one line)."""


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _is_number(token: str) -> bool:
    return bool(_NUMBER.match(token))


def _name(token: str) -> str:
    name = token.strip().strip("$")
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
        raise FscImportError(f"placeholder {token!r} is not a usable parameter name (letters, digits and _)")
    return name


def _value(token: str):
    """A template field: a float, or the expression text of a placeholder."""
    return float(token) if _is_number(token) else _name(token)


def translate_expression(text: str) -> str:
    """fastsimcoal2 complex-parameter syntax -> popdl.expr syntax."""
    out = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)\$", r"\1", text.strip())
    for op in ("min", "max"):
        pattern = re.compile(rf"([A-Za-z0-9_.()]+)\s*%{op}%\s*([A-Za-z0-9_.()]+)")
        while pattern.search(out):
            out = pattern.sub(rf"{op}(\1, \2)", out)
    out = re.sub(r"%abs%\s*([A-Za-z0-9_.]+|\([^()]*\))", r"abs(\1)", out)
    out = out.replace("^", "**")
    if "%" in out:
        raise FscImportError(f"complex parameter expression {text!r}: operator {out[out.index('%'):].split()[0]!r} is not supported")
    try:
        Expression(out)
    except ExprError as exc:
        raise FscImportError(f"complex parameter expression {text!r}: {exc}") from None
    return out


def _lines(text: str) -> list[str]:
    """Non-empty lines without ``//`` comments."""
    out = []
    for line in text.splitlines():
        line = line.split("//", 1)[0].strip()
        if line:
            out.append(line)
    return out


@dataclass
class Template:
    sizes: list
    samples: list[int]
    growth: list
    matrices: list[list[list]]
    events: list[dict] = field(default_factory=list)


def parse_tpl(text: str) -> Template:
    """Read a fastsimcoal2 ``.tpl`` (or ``.par``) file's demography."""
    lines = _lines(text)
    pos = 0

    def take(what: str) -> list[str]:
        nonlocal pos
        if pos >= len(lines):
            raise FscImportError(f".tpl ends before the {what}")
        pos += 1
        return lines[pos - 1].split()

    try:
        k = int(take("number of demes")[0])
        sizes = [_value(take("deme sizes")[0]) for _ in range(k)]
        samples = []
        for _ in range(k):
            tokens = take("sample sizes")
            if len(tokens) > 1 and tokens[1] not in ("0",) and _is_number(tokens[1]) and float(tokens[1]) != 0:
                raise FscImportError("sample ages (ancient samples) are not supported by import-fsc")
            if not _is_number(tokens[0]):
                raise FscImportError(f"sample size {tokens[0]!r} must be a number")
            samples.append(int(float(tokens[0])))
        growth = [_value(take("growth rates")[0]) for _ in range(k)]
        n_mat = int(take("number of migration matrices")[0])
        matrices = []
        for _ in range(n_mat):
            rows = [[_value(t) for t in take("migration matrix")[:k]] for _ in range(k)]
            matrices.append(rows)
        n_ev = int(take("number of historical events")[0])
        events = []
        for _ in range(n_ev):
            tokens = take("historical events")
            words = {t for t in tokens[7:]} | {t for t in tokens[:7] if t in ("keep", "nomig")}
            if "instbot" in tokens:
                raise FscImportError("the instbot keyword is not supported by import-fsc")
            fields = tokens[:7]
            events.append(
                {
                    "time": _value(fields[0]),
                    "source": int(fields[1]),
                    "sink": int(fields[2]),
                    "migrants": _value(fields[3]),
                    "size": _value(fields[4]),
                    "growth": None if fields[5] == "keep" else _value(fields[5]),
                    "matrix": "keep" if fields[6] == "keep" else ("nomig" if fields[6] == "nomig" else int(fields[6])),
                    "absolute": "absoluteResize" in words,
                }
            )
    except (ValueError, IndexError):
        raise FscImportError(f".tpl line {lines[pos - 1]!r} is not in fastsimcoal2's format") from None
    rest = lines[pos:]
    for line in rest:
        if line.split()[0].upper() in ("MICROSAT", "STANDARD", "FREQ", "SNP"):
            raise FscImportError(f"marker block {line.split()[0]!r} is not supported (popdl simulates DNA; set genome in the config)")
    for g in growth:
        if g != 0.0:
            raise FscImportError(f"growth rate {g!r} is not supported by import-fsc (only 0)")
    for ev in events:
        if ev["growth"] not in (None, 0.0):
            raise FscImportError(f"historical event growth rate {ev['growth']!r} is not supported by import-fsc (only 0 or keep)")
    return Template(sizes, samples, growth, matrices, events)


def parse_est(text: str) -> tuple[dict, list[str]]:
    """Priors and constraints of a fastsimcoal2 ``.est`` file."""
    priors: dict[str, dict] = {}
    constraints: list[str] = []
    section = None
    for line in _lines(text):
        if line.startswith("["):
            section = line.strip("[] ").upper()
            continue
        tokens = line.split()
        if section == "PARAMETERS":
            if len(tokens) < 5:
                raise FscImportError(f".est [PARAMETERS] line {line!r} needs: isInt name dist min max")
            name, dist = _name(tokens[1]), tokens[2].lower()
            try:
                lo, hi = float(tokens[3]), float(tokens[4])
            except ValueError:
                raise FscImportError(f".est [PARAMETERS] line {line!r}: bounds must be numbers") from None
            kind = {"unif": "uniform", "logunif": "loguniform"}.get(dist)
            if kind is None:
                raise FscImportError(f".est parameter {name}: distribution {dist!r} is not supported (unif, logunif)")
            priors[name] = {"fixed": lo} if lo == hi else {kind: [lo, hi]}
        elif section == "RULES":
            constraints.append(translate_expression(line))
        elif section == "COMPLEX PARAMETERS":
            m = re.match(r"^(\d)\s+(\S+)\s*=\s*(.*?)(\s+(output|hide|bounded))*\s*$", line)
            if not m:
                raise FscImportError(f".est [COMPLEX PARAMETERS] line {line!r} needs: isInt name = expression")
            expr = translate_expression(m.group(3))
            priors[_name(m.group(2))] = {"expr": f"round({expr})" if m.group(1) == "1" else expr}
    return priors, constraints


def _times(a, b):
    """Expression for a * b (either may be a number or a name)."""
    if a == 1.0:
        return b
    if b == 1.0:
        return a
    if isinstance(a, float) and isinstance(b, float):
        return a * b
    return f"({a}) * ({b})"


def _half(v):
    return v / 2 if isinstance(v, float) else f"{v} / 2"


def import_fsc(tpl_text: str, est_text: str, *, names: list[str] | None = None, description: str = "") -> dict:
    """A scenario from a ``.tpl``/``.est`` pair.

    Returns ``{"graph": demes mapping with placeholders, "priors": ...,
    "constraints": [...], "samples": {deme: diploid individuals}}``.
    """
    tpl = parse_tpl(tpl_text)
    priors, constraints = parse_est(est_text)
    k = len(tpl.sizes)
    names = list(names) if names else [f"pop{i}" for i in range(k)]
    if len(names) != k or len(set(names)) != k:
        raise FscImportError(f"--names needs {k} distinct names, got {names}")

    sizes = [_half(s) for s in tpl.sizes]  # current size of each deme (diploid), as an expression
    epochs: list[list[tuple]] = [[] for _ in range(k)]  # (end_time, size) of closed epochs, youngest first
    ended: dict[int, tuple] = {}
    pulses = []
    matrix, intervals, last_t = 0 if tpl.matrices else None, [], 0.0
    for ev in tpl.events:
        t, src, sink = ev["time"], ev["source"], ev["sink"]
        if not (0 <= src < k and 0 <= sink < k):
            raise FscImportError(f"historical event deme index out of range 0..{k - 1}: {src} -> {sink}")
        if sink in ended:
            raise FscImportError(f"deme {sink} receives lineages after it ended (events must be listed from the present backward)")
        # migration matrix switches
        new_matrix = matrix if ev["matrix"] == "keep" else ev["matrix"]
        if tpl.matrices and new_matrix != matrix:
            intervals.append((last_t, t, matrix))
            matrix, last_t = new_matrix, t
        # lineage movement
        migrants = ev["migrants"]
        if src != sink and migrants == 1.0:
            if src in ended:
                raise FscImportError(f"deme {src} ends twice")
            ended[src] = (t, sink)
        elif src != sink and migrants != 0.0:
            pulses.append({"sources": [names[sink]], "dest": names[src], "time": t, "proportions": [migrants]})
        # resize of the sink
        if ev["absolute"]:
            new = _half(ev["size"])
        else:
            new = _times(sizes[sink], ev["size"])
        if new != sizes[sink]:
            epochs[sink].append((t, sizes[sink]))
            sizes[sink] = new
    if tpl.matrices:
        intervals.append((last_t, math.inf, matrix))

    demes_list = []
    for i in range(k):
        closed = epochs[i] + [(None, sizes[i])]  # youngest first; the last one is the oldest
        items = []
        for j in range(len(closed) - 1, -1, -1):
            end_time = 0 if j == 0 else closed[j - 1][0]
            items.append({"start_size": closed[j][1], "end_time": end_time})
        deme = {"name": names[i], "epochs": items}
        if i in ended:
            t, sink = ended[i]
            deme["ancestors"] = [names[sink]]
            deme["start_time"] = t
        demes_list.append(deme)
    # demes: ancestors must be listed before their descendants
    order, placed = [], set()
    while len(order) < k:
        progressed = False
        for d in demes_list:
            if d["name"] not in placed and all(a in placed for a in d.get("ancestors", [])):
                order.append(d)
                placed.add(d["name"])
                progressed = True
        if not progressed:
            raise FscImportError("the template's demes merge into each other in a cycle")

    migrations = []
    for start, end, idx in intervals:
        if idx is None or idx == "nomig":
            continue
        if not 0 <= idx < len(tpl.matrices):
            raise FscImportError(f"migration matrix {idx} does not exist (the template has {len(tpl.matrices)})")
        M = tpl.matrices[idx]
        for i in range(k):
            for j in range(k):
                if i == j or M[i][j] == 0.0:
                    continue
                limits = [end] + [ended[d][0] for d in (i, j) if d in ended]
                finite = [x for x in limits if not (isinstance(x, float) and math.isinf(x))]
                mig = {"source": names[j], "dest": names[i], "rate": M[i][j]}
                if finite:
                    mig["start_time"] = finite[0] if len(finite) == 1 else f"min({', '.join(map(str, finite))})"
                if start != 0.0:
                    mig["end_time"] = start
                migrations.append(mig)

    graph = {"description": description or "Imported from a fastsimcoal2 template", "time_units": "generations", "demes": order}
    if migrations:
        graph["migrations"] = migrations
    if pulses:
        graph["pulses"] = pulses
    used = set()
    _collect_names(graph, used)
    missing = sorted(n for n in used if n not in priors)
    if missing:
        raise FscImportError(f"template parameter {missing[0]!r} has no prior in the .est file")
    samples = {names[i]: n // 2 for i, n in enumerate(tpl.samples) if n}
    return {"graph": graph, "priors": priors, "constraints": constraints, "samples": samples}


def _collect_names(obj, out: set) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("name", "source", "dest", "description", "time_units", "ancestors", "sources"):
                continue
            _collect_names(value, out)
    elif isinstance(obj, list):
        for v in obj:
            _collect_names(v, out)
    elif isinstance(obj, str):
        try:
            out |= Expression(obj).names
        except ExprError:
            pass
