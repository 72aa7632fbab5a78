"""Lowering passes: rewrites for the generated code only.

They trade the textbook form of a gradient, which ``explain`` shows, for
fewer passes over memory; ``CODEGEN`` runs them after the pipeline.
"""

from __future__ import annotations

from ..ir import Graph
from ..ops import apply, const
from .rewrite import named, replace


def fuse_softmax_cross_entropy(g: Graph) -> Graph:
    """``(softmax(z) - onehot(y)) * s`` (or ``/ s``) -> one ``softmax_cross_entropy_grad(z, y, s)``.

    Cross-entropy's gradient is written ``(softmax(z) - onehot(y)) / n``
    times the incoming scalar; computed as written it takes four passes over
    a [batch, classes] array and a dense one-hot. The fused op takes one. A
    difference that is not scaled by a scalar is fused with s = 1.
    """
    out = g.copy()
    for node in g.order():
        if node not in out.nx or out.op(node) != "sub":
            continue
        soft, hot = out.args(node)
        if out.op(soft) != "softmax" or out.op(hot) != "onehot":
            continue
        (z,) = out.args(soft)
        (y,) = out.args(hot)
        if out.attrs(soft)["axis"] != len(out.shape(z)) - 1 or out.shape(node) != out.shape(z):
            continue
        readers = list(out.nx.successors(node))
        target, scale = node, None
        if len(readers) == 1 and out.args(readers[0]).count(node) == 1 and out.shape(readers[0]) == out.shape(node):
            reader = readers[0]
            other = [a for a in out.args(reader) if a != node][0] if len(out.args(reader)) == 2 else None
            if other is not None and out.shape(other) == ():
                if out.op(reader) == "mul":
                    target, scale = reader, other
                elif out.op(reader) == "div" and out.args(reader)[0] == node:  # (softmax - onehot) / s
                    target, scale = reader, named(out, apply(out, "div", [named(out, const(out, 1.0), "one"), other]), f"{reader}_scale")
                    fwd, arg, role = out.chain(reader)
                    if role is not None:
                        out.set(scale, chain=(fwd, arg, "part"))
        fused = apply(out, "softmax_cross_entropy_grad", [z, y, scale if scale is not None else named(out, const(out, 1.0), "one")])
        out.carry(target, fused)
        name = target
        replace(out, target, fused)
        out.rename({fused: name})
    return out
