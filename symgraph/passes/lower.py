"""Lowering passes: rewrites for the generated code only.

They trade the textbook form of a gradient, which ``explain`` shows, for
fewer passes over memory; ``CODEGEN`` runs them after the pipeline.
"""

from __future__ import annotations

from ..ir import Graph
from ..ops import apply, const
from ..ops.reduce import sum_to_axes
from .rewrite import Substitutions, named


def fuse_softmax_cross_entropy(g: Graph) -> Graph:
    """``(softmax(z) - onehot(y)) * s`` (or ``/ s``) -> one ``softmax_cross_entropy_grad(z, y, s)``.

    Cross-entropy's gradient is written ``(softmax(z) - onehot(y)) / n``
    times the incoming scalar; computed as written it takes four passes over
    a [batch, classes] array and a dense one-hot. The fused op takes one. A
    difference that is not scaled by a scalar is fused with s = 1.
    """
    out = g.copy()
    edits = Substitutions(out)
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
        edits.substitute(target, fused)
    return edits.settle()


def contract_products(g: Graph) -> Graph:
    """``sum(M * w, axis=1)`` -> ``matvec(M, w)`` and ``sum(v[:, None] * M, axis=0)``
    -> ``matvec(M, v, transposed=True)``: one matrix-vector product instead of
    a [rows, cols] array of products and a pass over it (logistic regression's
    forward and weight gradient). Only where nothing else reads the products."""
    out = g.copy()
    edits = Substitutions(out)
    roots = set(g.roots())
    for node in g.order():
        axis = summed_axis(out, node) if node in out.nx else None
        if axis is None:
            continue
        (product,) = out.args(node)
        if out.op(product) != "mul" or len(out.shape(product)) != 2 or not only_reader(out, product, node, roots):
            continue
        rows, cols = out.shape(product)
        for m, v in (out.args(product), out.args(product)[::-1]):
            if out.shape(m) != out.shape(product):
                continue
            if axis == 1 and out.shape(v) == (cols,):
                lowered = apply(out, "matvec", [m, v], {"transposed": False})
            elif (axis == 0 and out.op(v) == "broadcast_to" and out.attrs(v)["axes"] == (1,)
                  and out.shape(out.args(v)[0]) == (rows,) and only_reader(out, v, product, roots)):
                lowered = apply(out, "matvec", [m, out.args(v)[0]], {"transposed": True})
            else:
                continue
            edits.substitute(node, lowered)
            break
    return edits.settle()


def only_reader(g: Graph, node: str, reader: str, roots: set[str]) -> bool:
    return node not in roots and list(g.nx.successors(node)) == [reader]


def summed_axis(g: Graph, node: str) -> int | None:
    """The one axis a sum (or sum_to) of a matrix drops, if that is what it does."""
    if g.op(node) == "sum" and not g.attrs(node).get("keepdims") and len(g.attrs(node)["axis"]) == 1 and len(g.shape(g.args(node)[0])) == 2:
        return g.attrs(node)["axis"][0]
    if g.op(node) == "sum_to" and len(g.shape(node)) == 1 and sum_to_axes(g.shape(g.args(node)[0]), g.shape(node)) == (1, ()):
        return 0
    return None


def bias_products(g: Graph) -> Graph:
    """``x @ W + b`` (matrices, b a vector added to every row) -> ``matmul_bias(x, W, b)``:
    the product starts from b's rows and accumulates into them, which saves a
    pass over the result. Only where nothing else reads the product."""
    out = g.copy()
    edits = Substitutions(out)
    roots = set(g.roots())
    for node in g.order():
        if node not in out.nx or out.op(node) != "add":
            continue
        for product, bias in (out.args(node), out.args(node)[::-1]):
            if (out.op(product) == "matmul" and len(out.shape(product)) == 2 and only_reader(out, product, node, roots)
                    and out.shape(node) == out.shape(product) and out.shape(bias) == out.shape(product)[-1:]):
                edits.substitute(node, apply(out, "matmul_bias", [*out.args(product), bias]))
                break
    return edits.settle()
