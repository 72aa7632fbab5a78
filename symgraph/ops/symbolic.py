"""sympy functions that element-wise ops need, and sympy <-> graph conversion.

The non-smooth and stabilised primitives are sympy ``Function`` classes whose
``fdiff`` states their derivative, so ``sympy.diff`` derives gradients through
them like through ``exp``; printers render them (see ``symgraph.codegen``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Hashable

import sympy as sp

from ..ir import Graph, is_batch
from .registry import COTANGENT, OUT, REGISTRY, X, apply, const


class sigmoid(sp.Function):  # noqa: N801 - printed by name
    """1 / (1 + exp(-x))"""

    is_real = True

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return self * (1 - self)


class step(sp.Function):  # noqa: N801
    """1 where x > 0, else 0 (the derivative of relu; zero at the kink)."""

    is_real = True

    @classmethod
    def eval(cls, arg):
        if isinstance(arg, relu):  # relu(x) > 0 exactly where x > 0
            return cls(arg.args[0])
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.Zero


class relu(sp.Function):  # noqa: N801
    """max(x, 0)"""

    is_real = True

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return step(self.args[0])


class softplus(sp.Function):  # noqa: N801
    """log(1 + exp(x)), printed in a form that never overflows (max(x, 0) + log1p(exp(-|x|)))."""

    is_real = True

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sigmoid(self.args[0])


class sgn(sp.Function):  # noqa: N801
    """-1, 0 or 1 (the derivative of abs; its own derivative is zero a.e.)."""

    is_real = True

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.Zero


def substitute_attrs(expr: sp.Expr, attrs: dict) -> sp.Expr:
    subs = {
        sp.Symbol(k, real=True): sp.nsimplify(v, rational=True)
        for k, v in attrs.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return expr.subs(subs) if subs else expr


@lru_cache(maxsize=None)
def op_expr(op_name: str, attrs: tuple) -> sp.Expr:
    """An element-wise op's expression with its attributes put in (``attrs`` as a
    node stores them); cached, because nsimplify is slow and graphs repeat ops."""
    return substitute_attrs(REGISTRY[op_name].expr, dict(attrs))


# -- structures: element-wise expressions up to the names of what they read -----------
# Large graphs repeat a few element-wise expressions over different arrays, and
# building and printing sympy expressions is slow. A structure is a hashable key
# of the expression, with each array it reads a numbered leaf: built once per
# node, turned into sympy once per key, printed once per key.
BATCH = "batch"  # the constant holding the batch size, which is known at run time


def structure(g: Graph, node: str, inline: Callable[[str], bool], leaf: Callable[[str], Hashable] = str) -> tuple[tuple, list]:
    """The key of the element-wise ``node``'s expression, and its leaves.

    The key is ``(op, attrs, parts)``; a part is ``("const", value)`` (value
    ``BATCH`` for the batch size), an argument's own key where ``inline`` says
    so, or ``("leaf", i)`` for ``leaves[i]``, which is ``leaf(argument)``
    (equal leaves share one number).
    """
    leaves: list = []

    def walk(v: str) -> tuple:
        parts = []
        for a in g.args(v):
            if g.op(a) == "const":
                value = g.attrs(a)["value"]
                parts.append(("const", BATCH if is_batch(value) else float(value)))
            elif inline(a):
                parts.append(walk(a))
            else:
                name = leaf(a)
                if name not in leaves:
                    leaves.append(name)
                parts.append(("leaf", leaves.index(name)))
        return (g.op(v), g.attrs_key(v), tuple(parts))

    return walk(node), leaves


def structure_size(key: tuple) -> int:
    """The number of ops in a structure."""
    return 1 + sum(structure_size(part) for part in key[2] if part[0] not in ("const", "leaf"))


def placeholder(i: int) -> sp.Symbol:
    """Leaf i of a structure's sympy expression (``sg_`` names are no spec's)."""
    return sp.Symbol(f"sg_ph{i}", real=True)


def structure_expr(key: tuple, constant: Callable[[object], sp.Expr], tidy: Callable[[sp.Expr], sp.Expr] | None = None) -> sp.Expr:
    """The sympy expression of a structure: leaf i is ``placeholder(i)``, a
    constant is ``constant(value)``, and ``tidy`` rewrites each op's expression."""
    op, attrs, parts = key
    subs = {}
    for i, part in enumerate(parts):
        if part[0] == "const":
            subs[X[i]] = constant(part[1])
        elif part[0] == "leaf":
            subs[X[i]] = placeholder(part[1])
        else:
            subs[X[i]] = structure_expr(part, constant, tidy)
    expr = op_expr(op, attrs).xreplace(subs)
    return tidy(expr) if tidy is not None else expr


def real_valued(expr: sp.Expr) -> sp.Expr:
    """``expr`` with every part that sympy's evaluation made complex (the log or
    the square root of a negative constant) written as NaN, which is what both
    targets compute there."""
    if not expr.has(sp.I):
        return expr
    return expr.replace(lambda e: e.is_number and e.is_real is False, lambda e: sp.nan)


def fill(text: str, leaves: list[str]) -> str:
    """Printed text of a structure with each placeholder written as its leaf's text."""
    return re.sub(r"\bsg_ph(\d+)\b", lambda m: leaves[int(m.group(1))], text)


@lru_cache(maxsize=None)
def rational(value: float) -> sp.Expr:
    """A float constant as the exact number it spells (0.5 -> 1/2), for simplifying and reading."""
    return sp.nsimplify(value, rational=True)


@lru_cache(maxsize=None)
def local_derivatives(op_name: str, attrs: tuple) -> tuple[sp.Expr, ...]:
    """d out / d x_i for each argument, derived by sympy and simplified.

    Occurrences of the op's own value are written as ``OUT``, so that the
    backward pass reuses the forward result (``1 - out**2`` for tanh).
    """
    op = REGISTRY[op_name]
    expr = substitute_attrs(op.expr, dict(attrs))
    derivatives = []
    for i in range(op.arity):
        d = sp.diff(expr, X[i]).replace(sp.sign, sgn)
        if not expr.is_Symbol and not expr.is_Add:
            d = d.subs(expr, OUT)
        if expr.func is relu:
            # relu(x) > 0 exactly where x > 0: reading the output lets x live only inside relu's loop
            d = d.subs(step(expr.args[0]), step(OUT))
        # simplified where symgraph's ops can build that (sympy may bring in cosh, say), else as derived
        derivatives.append(next((e for e in (sp.factor_terms(sp.simplify(d)), sp.factor_terms(d)) if buildable(e)), d))
    return tuple(derivatives)


def elementwise_vjp(g: Graph, node: str, cotangent: str) -> tuple[str | None, ...]:
    """The chain rule for any element-wise op: cotangent * d out / d x_i."""
    args = g.args(node)
    env = {X[i]: a for i, a in enumerate(args)}
    env[OUT] = node
    env[COTANGENT] = cotangent
    grads: list[str | None] = []
    for arg, d in zip(args, local_derivatives(g.op(node), g.attrs_key(node))):
        if d == 0 or g.dtype(arg) == "int":
            grads.append(None)
        else:
            grads.append(from_sympy(g, COTANGENT * d, env))
    return tuple(grads)


def buildable(expr: sp.Expr) -> bool:
    """Whether ``from_sympy`` can build ``expr`` from symgraph's element-wise ops."""
    known = set(function_ops())
    for sub in sp.preorder_traversal(expr):
        if isinstance(sub, sp.Function) and type(sub) not in known:
            return False
        if sub.is_Pow and not sub.exp.is_number:
            return False
        if sub.is_Number and not (sub.is_real and sub.is_finite):
            return False
        if sub.is_number and sub.is_real is False:  # log(-1) is log(1) + I*pi to sympy
            return False
    return True


def function_ops() -> dict[type, str]:
    """sympy function class -> unary element-wise op, read off the registry."""
    table = {}
    for op in REGISTRY.values():
        if op.elementwise and op.arity == 1 and isinstance(op.expr, sp.Function):
            table[op.expr.func] = op.name
    table[sp.sign] = "sign"
    return table


def from_sympy(g: Graph, expr: sp.Expr, env: dict[sp.Symbol, str]) -> str:
    """Build graph nodes computing ``expr``; symbols are looked up in ``env``."""
    if expr.is_Symbol:
        return env[expr]
    if expr.is_Number or expr.is_NumberSymbol:  # 2, 1/2, but also E and pi, which sympy keeps as symbols of their own
        return const(g, float(expr))
    if expr.is_Add:
        terms = list(expr.as_ordered_terms())
        positive = [t for t in terms if not t.could_extract_minus_sign()]
        negative = [-t for t in terms if t.could_extract_minus_sign()]
        if not positive:
            return apply(g, "neg", [from_sympy(g, sp.Add(*negative), env)])
        node = from_sympy(g, positive[0], env)
        for t in positive[1:]:
            node = apply(g, "add", [node, from_sympy(g, t, env)])
        for t in negative:
            node = apply(g, "sub", [node, from_sympy(g, t, env)])
        return node
    if expr.is_Mul:
        if expr.could_extract_minus_sign():
            return apply(g, "neg", [from_sympy(g, -expr, env)])
        number, rest = expr.as_independent(*expr.free_symbols, as_Add=False)
        if number.is_number and not number.is_Rational:  # sqrt(2)/sqrt(pi): one constant, not a computation
            return apply(g, "mul", [const(g, float(number)), from_sympy(g, rest, env)])
        num, den = sp.fraction(expr)
        if den != 1:
            return apply(g, "div", [from_sympy(g, num, env), from_sympy(g, den, env)])
        factors = expr.as_ordered_factors()
        node = from_sympy(g, factors[0], env)
        for f in factors[1:]:
            node = apply(g, "mul", [node, from_sympy(g, f, env)])
        return node
    if expr.is_Pow:
        base, exponent = expr.args
        if exponent == sp.Rational(1, 2):
            return apply(g, "sqrt", [from_sympy(g, base, env)])
        if exponent.is_negative:
            return apply(g, "div", [const(g, 1.0), from_sympy(g, base ** (-exponent), env)])
        return apply(g, "pow", [from_sympy(g, base, env)], {"p": float(exponent)})
    ops = function_ops()
    if expr.func in ops:
        return apply(g, ops[expr.func], [from_sympy(g, expr.args[0], env)])
    raise NotImplementedError(f"no op computes {expr.func}")
