"""Element-wise ops: each is a sympy expression and nothing else.

The shape rule is NumPy broadcasting, the derivative is ``sympy.diff`` of the
expression, and the NumPy and C text come from sympy's printers.
"""

from __future__ import annotations

import operator

import sympy as sp

from .registry import REQUIRED, OpDef, X, broadcast_shapes, register
from .symbolic import elementwise_vjp, relu, sgn, sigmoid, step

P = sp.Symbol("p", real=True)


def _broadcast(shapes: list, attrs: dict) -> tuple:
    return broadcast_shapes(*shapes)


def elementwise(name: str, expr: sp.Expr, doc: str, **extra) -> OpDef:
    arity = max(i for i, x in enumerate(X) if expr.has(x)) + 1
    return register(
        OpDef(name, arity, infer_shape=_broadcast, vjp=elementwise_vjp, expr=expr, doc=doc, **extra)
    )


x0, x1 = X[0], X[1]
elementwise("add", x0 + x1, "x + y", fold=operator.add, example="x + v")
elementwise("sub", x0 - x1, "x - y", fold=operator.sub, example="x - v")
elementwise("mul", x0 * x1, "x * y", fold=operator.mul, example="x * v")
elementwise("div", x0 / x1, "x / y", domain="nonzero", fold=operator.truediv, example="x / v")
elementwise("neg", -x0, "-x", fold=operator.neg, example="-x")
elementwise("pow", x0**P, "x ** p for a constant p", attrs=(("p", REQUIRED),), domain="positive", example="x ** 3")
elementwise("exp", sp.exp(x0), "e ** x")
elementwise("log", sp.log(x0), "natural logarithm", domain="positive")
elementwise("sqrt", sp.sqrt(x0), "x ** (1/2)", domain="positive")
elementwise("abs", sp.Abs(x0), "|x|", domain="nonzero")
elementwise("sigmoid", sigmoid(x0), "1 / (1 + exp(-x)), evaluated as (1 + tanh(x/2)) / 2")
elementwise("tanh", sp.tanh(x0), "hyperbolic tangent")
elementwise("relu", relu(x0), "max(x, 0)", domain="nonzero")
elementwise("step", step(x0), "1 if x > 0 else 0", domain="nonzero")
elementwise("sign", sgn(x0), "-1, 0 or 1", domain="nonzero")
