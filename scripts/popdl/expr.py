"""A small, safe evaluator for arithmetic expressions in config files.

Derived parameters (``T2: {expr: "T1 + dT"}``), constraints (``"Tsc < T"``)
and numeric fields of scenario graphs (``start_size: "0.1 * N1"``) are
written as text.  They are parsed with :mod:`ast` and evaluated by walking the
tree; only numbers, parameter names, arithmetic, comparisons, boolean
operators, conditional expressions and a short list of math functions are
allowed.  Nothing is ever passed to :func:`eval`.

Every number is a float: integer literals and the results of ``floor``,
``ceil`` and ``round`` too, so that no operation can build a huge integer, and
``**`` is :func:`math.pow`, which overflows at once instead of computing
``10 ** 10 ** 10``.  Expressions are bounded in length, number of nodes and
nesting depth, and every error, at parse or at evaluation time, is an
:class:`ExprError` of one line; a result that is not finite (``inf``,
``nan``) is an error too.
"""

from __future__ import annotations

import ast
import keyword
import math
import operator

__all__ = ["ExprError", "Expression", "FUNCTIONS", "CONSTANTS", "RESERVED", "MAX_LENGTH", "MAX_NODES", "MAX_DEPTH"]

#: Longest expression text, in characters.
MAX_LENGTH = 2000
#: Most syntax-tree nodes of one expression (names, numbers, operators, calls).
MAX_NODES = 500
#: Deepest nesting of one expression's syntax tree.
MAX_DEPTH = 100


class ExprError(ValueError):
    """An expression could not be parsed or evaluated."""


def _round(x, ndigits=None):
    if ndigits is None:
        return round(x)
    if not float(ndigits).is_integer() or abs(ndigits) > 400:
        raise ValueError(f"round's number of digits must be a whole number between -400 and 400, not {ndigits:g}")
    return round(x, int(ndigits))


def _log(x, base=None):
    return math.log(x) if base is None else math.log(x, base)


#: name -> (function, smallest and largest number of arguments; None: any number).
_SIGNATURES = {
    "exp": (math.exp, 1, 1),
    "log": (_log, 1, 2),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "min": (min, 2, None),
    "max": (max, 2, None),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "round": (_round, 1, 2),
}
FUNCTIONS = {name: fn for name, (fn, _, _) in _SIGNATURES.items()}
CONSTANTS = {"pi": math.pi, "e": math.e}
#: Names a parameter cannot take: the expression language's constants and
#: functions (Python keywords cannot be names in an expression anyway).
RESERVED = frozenset(CONSTANTS) | frozenset(FUNCTIONS)

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: math.pow,  # floats: a huge power such as 9 ** 9 ** 9 overflows at once instead of hanging
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def is_valid_name(name) -> bool:
    """True when ``name`` can be a parameter: an ASCII identifier that is
    neither a Python keyword nor a constant or function of the expression language."""
    return (
        isinstance(name, str)
        and name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and name not in RESERVED
    )


def _shown(text: str, limit: int = 80) -> str:
    """``repr(text)``, shortened for messages."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


class Expression:
    """A parsed expression such as ``"T1 + dT"`` or ``"Tsc < T"``.

    >>> Expression("T1 + dT").evaluate({"T1": 10, "dT": 5})
    15.0
    >>> sorted(Expression("max(N1, N2) * 2").names)
    ['N1', 'N2']
    """

    def __init__(self, text: str | int | float):
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise ExprError(f"an expression is a number or a text, not {type(text).__name__}")
        if isinstance(text, float) and not math.isfinite(text):
            raise ExprError(f"{text} is not a finite number")
        if isinstance(text, int) and abs(text) > 1e300:
            raise ExprError("the number is too large")
        self.text = str(text)
        if len(self.text) > MAX_LENGTH:
            raise ExprError(f"expression {_shown(self.text)} is longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"cannot parse expression {_shown(self.text)}: {exc.msg}") from None
        except (ValueError, MemoryError, RecursionError):
            raise ExprError(f"cannot parse expression {_shown(self.text)}: it is nested too deeply or malformed") from None
        self._tree = tree.body
        self.names: set[str] = set()
        self._check_size(self._tree)
        self._check(self._tree)

    def _check_size(self, root: ast.AST) -> None:
        """Refuse trees with more than MAX_NODES nodes or deeper than MAX_DEPTH (without recursion)."""
        stack, count = [(root, 1)], 0
        while stack:
            node, depth = stack.pop()
            count += 1
            if count > MAX_NODES:
                raise ExprError(f"expression {_shown(self.text)} has more than {MAX_NODES} terms")
            if depth > MAX_DEPTH:
                raise ExprError(f"expression {_shown(self.text)} is nested more than {MAX_DEPTH} levels deep")
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExprError(f"only numbers are allowed in {_shown(self.text)}, not {node.value!r:.40}")
            try:
                value = float(node.value)
            except OverflowError:
                raise ExprError(f"a number in {_shown(self.text)} is too large") from None
            if not math.isfinite(value):
                raise ExprError(f"a number in {_shown(self.text)} is too large (not finite)")
            node.value = value  # every number is a float: no huge integer arithmetic
        elif isinstance(node, ast.Name):
            if node.id not in CONSTANTS and node.id not in FUNCTIONS:
                self.names.add(node.id)
            elif node.id in FUNCTIONS:
                raise ExprError(f"function {node.id!r} used without a call in {_shown(self.text)}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ExprError(f"operator not allowed in {_shown(self.text)}")
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise ExprError(f"operator not allowed in {_shown(self.text)}")
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise ExprError(f"comparison not allowed in {_shown(self.text)}")
            self._check(node.left)
            for comparator in node.comparators:
                self._check(comparator)
        elif isinstance(node, ast.IfExp):
            self._check(node.test)
            self._check(node.body)
            self._check(node.orelse)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                allowed = ", ".join(sorted(FUNCTIONS))
                raise ExprError(f"unknown function in {_shown(self.text)} (allowed: {allowed})")
            if node.keywords:
                raise ExprError(f"keyword arguments are not allowed in {_shown(self.text)}")
            for arg in node.args:
                self._check(arg)  # a Starred argument is refused here
            _, low, high = _SIGNATURES[node.func.id]
            n = len(node.args)
            if n < low or (high is not None and n > high):
                wanted = f"{low}" if low == high else f"{low} or {high}" if high is not None else f"at least {low}"
                raise ExprError(f"{node.func.id}() takes {wanted} argument(s), not {n}, in {_shown(self.text)}")
        else:
            raise ExprError(f"{type(node).__name__} is not allowed in expression {_shown(self.text)}")

    def evaluate(self, values: dict[str, float]) -> float | bool:
        """Evaluate with ``values`` bound to the names used in the expression.

        Returns a float, or a bool for a comparison; raises :class:`ExprError`
        (one line, with the values used) when the result is not a finite number.
        """
        missing = self.names - set(values)
        if missing:
            raise ExprError(f"expression {_shown(self.text)} uses undefined name(s): {', '.join(sorted(missing))}")
        try:
            result = self._eval(self._tree, values)
            _finite(result)
            return result
        except (ArithmeticError, ValueError, TypeError, MemoryError, RecursionError) as exc:
            used = ", ".join(f"{name}={_number(values[name])}" for name in sorted(self.names))
            why = _why(exc)
            raise ExprError(f"cannot evaluate {_shown(self.text)}{' for ' + used if used else ''}: {why}") from None

    def _eval(self, node: ast.AST, values):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return CONSTANTS[node.id] if node.id in CONSTANTS else _finite(float(values[node.id]))
        if isinstance(node, ast.BinOp):
            return _finite(_BINARY[type(node.op)](self._eval(node.left, values), self._eval(node.right, values)))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, values))
        if isinstance(node, ast.BoolOp):
            results = (self._eval(v, values) for v in node.values)
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, values)
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(comp, values)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            branch = node.body if self._eval(node.test, values) else node.orelse
            return self._eval(branch, values)
        if isinstance(node, ast.Call):
            result = FUNCTIONS[node.func.id](*(self._eval(a, values) for a in node.args))
            return _finite(float(result))
        raise ExprError(f"cannot evaluate {_shown(self.text)}")  # unreachable after _check

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def _finite(value):
    """``value``, or ArithmeticError when it is an infinite or NaN number."""
    if not isinstance(value, bool) and not math.isfinite(value):
        raise ArithmeticError(f"the result is not finite ({value})")
    return value


def _why(exc: BaseException) -> str:
    """An evaluation error in words."""
    if isinstance(exc, OverflowError):
        return "the result is too large"
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, MemoryError):
        return "out of memory"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if text == "math domain error":
        return "math domain error (log or sqrt of a number <= 0, or a fractional power of a negative number?)"
    return text


def _number(value) -> str:
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError, OverflowError):
        return repr(value)[:40]
