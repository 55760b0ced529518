"""A small, safe evaluator for arithmetic expressions in config files.

Derived parameters (``T2: {expr: "T1 + dT"}``), constraints (``"Tsc < T"``)
and numeric fields of scenario graphs (``start_size: "0.1 * N1"``) are
written as text.  They are parsed with :mod:`ast` and evaluated by walking the
tree; only numbers, parameter names, arithmetic, comparisons, boolean
operators, conditional expressions and a short list of math functions are
allowed.  Nothing is ever passed to :func:`eval`.
"""

from __future__ import annotations

import ast
import math
import operator

__all__ = ["ExprError", "Expression", "FUNCTIONS"]


class ExprError(ValueError):
    """An expression could not be parsed or evaluated."""


FUNCTIONS = {
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sqrt": math.sqrt,
    "abs": abs,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "round": round,
}
CONSTANTS = {"pi": math.pi, "e": math.e}

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: math.pow,  # floats: a huge integer power such as 9 ** 9 ** 9 overflows at once instead of hanging
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


class Expression:
    """A parsed expression such as ``"T1 + dT"`` or ``"Tsc < T"``.

    >>> Expression("T1 + dT").evaluate({"T1": 10, "dT": 5})
    15
    >>> sorted(Expression("max(N1, N2) * 2").names)
    ['N1', 'N2']
    """

    def __init__(self, text: str | int | float):
        self.text = str(text)
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"cannot parse expression {self.text!r}: {exc.msg}") from None
        self._tree = tree.body
        self.names: set[str] = set()
        self._check(self._tree)

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExprError(f"only numbers are allowed in {self.text!r}, not {node.value!r}")
        elif isinstance(node, ast.Name):
            if node.id not in CONSTANTS and node.id not in FUNCTIONS:
                self.names.add(node.id)
            elif node.id in FUNCTIONS:
                raise ExprError(f"function {node.id!r} used without a call in {self.text!r}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ExprError(f"operator not allowed in {self.text!r}")
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise ExprError(f"operator not allowed in {self.text!r}")
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise ExprError(f"comparison not allowed in {self.text!r}")
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
                raise ExprError(f"unknown function in {self.text!r} (allowed: {allowed})")
            if node.keywords:
                raise ExprError(f"keyword arguments are not allowed in {self.text!r}")
            for arg in node.args:
                self._check(arg)
        else:
            raise ExprError(f"{type(node).__name__} is not allowed in expression {self.text!r}")

    def evaluate(self, values: dict[str, float]) -> float:
        """Evaluate with ``values`` bound to the names used in the expression."""
        missing = self.names - set(values)
        if missing:
            raise ExprError(f"expression {self.text!r} uses undefined name(s): {', '.join(sorted(missing))}")
        try:
            return self._eval(self._tree, values)
        except (ArithmeticError, ValueError) as exc:
            raise ExprError(f"cannot evaluate {self.text!r}: {exc}") from None

    def _eval(self, node: ast.AST, values):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return CONSTANTS[node.id] if node.id in CONSTANTS else values[node.id]
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, values), self._eval(node.right, values))
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
            return FUNCTIONS[node.func.id](*(self._eval(a, values) for a in node.args))
        raise ExprError(f"cannot evaluate {self.text!r}")  # unreachable after _check

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"
