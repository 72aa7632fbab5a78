"""Common-subexpression elimination."""

from __future__ import annotations

from ..ir import Graph, freeze
from ..ops import REGISTRY
from .rewrite import redirect_all, replace


def eliminate_common_subexpressions(g: Graph) -> Graph:
    """Merge nodes computing the same op on the same arguments with the same attrs.

    Keys are ``(op, attrs, args)``, like PyTensor's ``__props__`` merge; random
    ops (dropout masks) are never merged. The first node in topological order
    survives, so spec names win over names made up for the gradient.
    """
    out = g.copy()
    seen: dict[tuple, str] = {}
    redirected: dict[str, str] = {}
    for node in g.order():
        op = out.op(node)
        if op in ("input", "param") or (op in REGISTRY and REGISTRY[op].random):
            continue
        key = (op, freeze(out.attrs_key(node)), tuple(out.args(node)))
        if op in REGISTRY and REGISTRY[op].commutative:
            key = (op, key[1], tuple(sorted(key[2])))
        if key in seen:
            replace(out, node, seen[key], redirected)
        else:
            seen[key] = node
    redirect_all(out, redirected)
    return out

