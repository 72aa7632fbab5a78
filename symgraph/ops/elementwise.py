"""Element-wise ops: each is a sympy expression and nothing else.

The shape rule is NumPy broadcasting, the derivative is ``sympy.diff`` of the
expression, and the NumPy and C text come from sympy's printers.
"""

from __future__ import annotations

import math
import operator

import sympy as sp
from sympy.codegen.cfunctions import expm1

from .registry import REQUIRED, OpDef, X, broadcast_shapes, register
from .symbolic import elementwise_vjp, relu, sgn, sigmoid, softplus, step

P, SLOPE, ALPHA = sp.symbols("p slope alpha", real=True)


def _broadcast(shapes: list, attrs: dict) -> tuple:
    return broadcast_shapes(*shapes)


def elementwise(name: str, expr: sp.Expr, doc: str, **extra) -> OpDef:
    arity = max(i for i, x in enumerate(X) if expr.has(x)) + 1
    return register(
        OpDef(name, arity, infer_shape=_broadcast, vjp=elementwise_vjp, expr=expr, doc=doc, canon=_numbers, **extra)
    )


def _numbers(shapes: list, attrs: dict) -> dict:
    """An element-wise op's attributes are numbers in its expression: finite reals, not flags or lists."""
    for key, value in attrs.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key} must be a finite number, got {value!r}")
    return attrs


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
# At the kink x = 0 their derivatives are slope and alpha, as PyTorch's (relu's is 0, as PyTorch's);
# min(x, 0) is x - relu(x), and elu's exp(x) - 1 is expm1, exact near 0.
elementwise("leaky_relu", SLOPE * x0 + (1 - SLOPE) * relu(x0), "x if x > 0 else slope * x", attrs=(("slope", 0.01),), domain="nonzero")
elementwise("elu", relu(x0) + ALPHA * expm1(x0 - relu(x0)), "x if x > 0 else alpha * (exp(x) - 1)", attrs=(("alpha", 1.0),), domain="nonzero")
elementwise("softplus", softplus(x0), "log(1 + exp(x)), without overflow")
elementwise("silu", x0 * sigmoid(x0), "x * sigmoid(x) (swish)")
elementwise("erf", sp.erf(x0), "the error function, 2/sqrt(pi) * integral of exp(-t**2) from 0 to x")
elementwise("gelu", x0 * (1 + sp.erf(x0 / sp.sqrt(2))) / 2, "x * Phi(x), Phi the standard normal CDF (exact, with erf)")
elementwise("gelu_tanh", x0 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x0 + sp.Rational(44715, 1000000) * x0**3))) / 2,
            "GELU's tanh approximation: x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3))) / 2")
