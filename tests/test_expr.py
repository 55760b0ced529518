"""The safe expression evaluator used for derived parameters, constraints and graph fields."""

from __future__ import annotations

import math

import pytest

from popdl.expr import MAX_DEPTH, MAX_LENGTH, MAX_NODES, RESERVED, Expression, ExprError, is_valid_name


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("T1 + dT", {"T1": 10, "dT": 5}, 15),
        ("0.2 * T_split", {"T_split": 1000}, 200.0),
        ("2 ** k - 1", {"k": 3}, 7),
        ("N1 // 3 % 4", {"N1": 100}, 1),
        ("-x + +y", {"x": 1, "y": 2}, 1),
        ("max(N1, N2) * 2", {"N1": 3, "N2": 7}, 14),
        ("min(a, b, c)", {"a": 3, "b": 1, "c": 2}, 1),
        ("log(exp(2)) + sqrt(16) + log10(100) + log2(8)", {}, 2 + 4 + 2 + 3),
        ("abs(-3) + floor(2.7) + ceil(2.1) + round(2.4)", {}, 3 + 2 + 3 + 2),
        ("pi * e", {}, math.pi * math.e),
        ("1e-8 * 4 * Ne", {"Ne": 1e4}, 4e-4),
        ("a if a > b else b", {"a": 1, "b": 2}, 2),
    ],
)
def test_arithmetic_and_functions(text, values, expected):
    assert Expression(text).evaluate(values) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("Tsc < T", {"Tsc": 1, "T": 2}, True),
        ("Tsc < T", {"Tsc": 3, "T": 2}, False),
        ("0 < a <= b", {"a": 1, "b": 1}, True),
        ("a < b and b < c", {"a": 1, "b": 2, "c": 1}, False),
        ("a > b or not c", {"a": 1, "b": 2, "c": 0}, True),
        ("a == b != c", {"a": 1, "b": 1, "c": 2}, True),
        ("a >= 2", {"a": 2}, True),
    ],
)
def test_comparisons(text, values, expected):
    assert bool(Expression(text).evaluate(values)) is expected


def test_names_lists_parameters_not_functions_or_constants():
    assert Expression("max(N1, N2) * pi + T").names == {"N1", "N2", "T"}
    assert Expression(3.5).names == set()
    assert Expression(3.5).evaluate({}) == 3.5


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('true')", "unknown function"),
        ("x.__class__", "Attribute is not allowed"),
        ("T.real", "Attribute is not allowed"),
        ("open('f')", "unknown function"),
        ("eval('1')", "unknown function"),
        ("exec('x = 1')", "unknown function"),
        ("getattr(x, 'y')", "unknown function"),
        ("(lambda: 1)()", "unknown function"),
        ("lambda x: x", "Lambda is not allowed"),
        ("'abc'", "only numbers are allowed"),
        ("x + 'a'", "only numbers are allowed"),
        ("b'x'", "only numbers are allowed"),
        ("True", "only numbers are allowed"),
        ("[1, 2]", "List is not allowed"),
        ("{1: 2}", "Dict is not allowed"),
        ("(1, 2)", "Tuple is not allowed"),
        ("x[0]", "Subscript is not allowed"),
        ("[i for i in x]", "ListComp is not allowed"),
        ("max(*x)", "Starred is not allowed"),
        ("max(x, key=abs)", "keyword arguments are not allowed"),
        ("exp", "used without a call"),
        ("(x := 3)", "NamedExpr is not allowed"),
        ("a in b", "comparison not allowed"),
        ("a is b", "comparison not allowed"),
        ("a @ b", "operator not allowed"),
        ("a << 2", "operator not allowed"),
        ("~a", "operator not allowed"),
        ("f'{x}'", "JoinedStr is not allowed"),
        ("1 +", "cannot parse"),
        ("import os", "cannot parse"),
        ("x = 1", "cannot parse"),
    ],
)
def test_rejects_everything_else(text, message):
    with pytest.raises(ExprError, match=message):
        Expression(text)


def test_evaluation_errors_are_expr_errors():
    with pytest.raises(ExprError, match="undefined name"):
        Expression("T1 + dT").evaluate({"T1": 1})
    with pytest.raises(ExprError, match="cannot evaluate"):
        Expression("1 / x").evaluate({"x": 0})
    with pytest.raises(ExprError, match="cannot evaluate"):
        Expression("log(x)").evaluate({"x": -1})


def test_huge_powers_fail_fast_instead_of_hanging():
    with pytest.raises(ExprError, match="cannot evaluate"):
        Expression("9 ** 9 ** 9").evaluate({})


def test_every_number_is_a_float():
    for text in ("7 // 2", "floor(2.7)", "round(2.5)", "abs(-3)", "2 ** 3", "max(1, 2)"):
        assert type(Expression(text).evaluate({})) is float, text
    assert Expression("round(x, 2)").evaluate({"x": 1.23456}) == 1.23
    assert Expression("round(x, 2.0)").evaluate({"x": 1.23456}) == 1.23


@pytest.mark.parametrize("text", ["min()", "min(1)", "max(x)", "exp()", "exp(1, 2)", "log(1, 2, 3)", "round(1, 2, 3)", "sqrt()"])
def test_calls_with_the_wrong_number_of_arguments_fail_at_parse_time(text):
    with pytest.raises(ExprError, match="argument"):
        Expression(text)


@pytest.mark.parametrize("text, message", [
    ("x + " * (MAX_LENGTH // 4) + "1", "longer than"),
    ("-" * (MAX_DEPTH + 1) + "x", "nested more than"),
    ("max(x, " + ",".join(["1"] * MAX_NODES) + ")", "more than"),
    ("1" * 400, "too large"),
    ("1e400", "too large"),
])
def test_size_limits_and_huge_numbers_fail_at_parse_time(text, message):
    with pytest.raises(ExprError, match=message):
        Expression(text)


@pytest.mark.parametrize("text, values", [
    ("1e308 * 10", {}),
    ("x * x", {"x": 1e200}),
    ("exp(x)", {"x": 1000}),
    ("round(x, 0.5)", {"x": 1}),
    ("floor(x) ** 4", {"x": 1e300}),
    ("x % 0", {"x": 1}),
])
def test_non_finite_and_failing_results_are_expr_errors(text, values):
    with pytest.raises(ExprError, match="cannot evaluate"):
        Expression(text).evaluate(values)


def test_reserved_names():
    assert {"pi", "e", "exp", "log", "min", "round"} <= RESERVED
    assert is_valid_name("N_anc") and is_valid_name("_x")
    for name in ("pi", "e", "exp", "if", "None", "1N", "N 1", "N\n", "Ñ", "", 3):
        assert not is_valid_name(name), name
