"""Exact arithmetic on untrusted text: the expression's syntax tree is walked, never eval()'d."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from decimal import Context, Decimal
from fractions import Fraction

MAX_EXPRESSION = 500
MAX_BITS = 13_000
MAX_DIGITS = 3_900
"""No number may grow past this many bits (about 3,900 digits, under Python's 4,300-digit limit for
printing an int): 9**9**9 is refused, not computed."""
_OPERATORS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: lambda a, b: Fraction(a // b),
    ast.Mod: operator.mod,
}


class CalcError(ValueError):
    """The expression is not plain arithmetic, or its result would be unreasonable."""


def evaluate(expression: str) -> Fraction:
    """The exact value of numbers, + - * / // % ** and parentheses: 0.1 + 0.2 is exactly 3/10."""
    if len(expression) > MAX_EXPRESSION:
        raise CalcError(f"the expression is longer than {MAX_EXPRESSION} characters")
    source = expression.replace("^", "**").replace("×", "*").replace("÷", "/")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise CalcError(f"not an arithmetic expression: {expression!r}") from None
    return _value(tree.body, source)


def _value(node: ast.expr, source: str) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        # Read the literal's own digits, never the float: "0.1" is exactly 1/10.
        literal = (ast.get_source_segment(source, node) or "").replace("_", "")
        try:
            number = Decimal(literal)
        except ArithmeticError:
            raise CalcError(f"not a number: {literal!r}") from None
        if not number.is_finite() or abs(number.adjusted()) > MAX_DIGITS:  # 1e999999999
            raise CalcError(f"the number {literal} is too large")
        return _checked(Fraction(number))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        operand = _value(node.operand, source)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left, source), _value(node.right, source)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        operator = _OPERATORS.get(type(node.op))
        if operator is not None:
            if right == 0 and isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod):
                raise CalcError("division by zero")
            return _checked(operator(left, right))
    raise CalcError(f"only numbers and + - * / // % ** ( ) are allowed, not {ast.unparse(node)!r}")


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise CalcError("only whole exponents keep the result exact")
    bits = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(exponent)
    if bits > MAX_BITS:
        raise CalcError("the result would be too large")
    if base == 0 and exponent < 0:
        raise CalcError("division by zero")
    return base ** int(exponent)


def _checked(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise CalcError("the result would be too large")
    return value


def show(value: Fraction, digits: int = 20) -> str:
    """42, 0.3 (a terminating decimal, exact), or 1/3 ≈ 0.33333333333333333333."""
    if value.denominator == 1:
        return str(value.numerator)
    twos = fives = 0
    rest = value.denominator
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest == 1:  # terminates after max(twos, fives) places: print every digit
        places = max(twos, fives)
        text = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
        sign = "-" if value < 0 else ""
        return f"{sign}{text[:-places]}.{text[-places:]}"
    approx = Context(prec=digits).divide(Decimal(value.numerator), Decimal(value.denominator))
    return f"{value.numerator}/{value.denominator} ≈ {approx}"
