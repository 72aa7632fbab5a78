"""Constant folding and algebraic identities."""

from __future__ import annotations

import math

from ..ir import Batch, Graph
from ..ops import REGISTRY
from .rewrite import redirect_all, replace



def const_value(g: Graph, node: str) -> float | None:
    if g.op(node) != "const":
        return None
    value = g.attrs(node)["value"]
    return None if isinstance(value, Batch) else value


def fold_constants(g: Graph) -> Graph:
    """Evaluate scalar arithmetic on constants and drop identities.

    ``1 * x``, ``x * 1``, ``x + 0``, ``0 + x``, ``x - 0``, ``x / 1`` and
    ``-(-x)`` become ``x`` when that does not change the shape; arithmetic
    whose arguments are all plain constants becomes a constant. Constants
    holding the batch size are left alone: their value is known at run time.
    """
    out = g.copy()
    redirected: dict[str, str] = {}
    for node in g.order():
        op = out.op(node)
        scalar = REGISTRY[op].fold if op in REGISTRY else None
        if scalar is None:
            continue
        args = out.args(node)
        values = [const_value(out, a) for a in args]
        folded = fold_value(scalar, values)
        if folded is not None:
            # the node itself becomes the constant, so its name and role stay
            out.become_constant(node, folded)
            continue
        kept = REGISTRY[op].identity(values)
        keep = None if kept is None else args[kept]
        if keep is not None and out.shape(keep) == out.shape(node) and out.dtype(keep) == "float":
            replace(out, node, keep, redirected)
    redirect_all(out, redirected)
    return out


def fold_value(scalar, values: list) -> float | None:
    """The constant that folding gives, or None: an argument is not a plain
    constant, or the result is not a finite number (left to the run, which
    computes the inf or nan that the target's arithmetic gives)."""
    if any(v is None for v in values):
        return None
    try:
        value = float(scalar(*values))
    except (ZeroDivisionError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def fold_double_negation(g: Graph) -> Graph:
    """``-(-x)`` -> ``x``."""
    out = g.copy()
    redirected: dict[str, str] = {}
    for node in g.order():
        if node in out.nx and out.op(node) == "neg":
            (inner,) = out.args(node)
            if out.op(inner) == "neg":
                replace(out, node, out.args(inner)[0], redirected)
    redirect_all(out, redirected)
    return out
