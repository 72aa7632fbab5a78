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
    if not any(g.op(n) == "onehot" for n in g.nx):  # nothing to fuse: no copy, no walk (large graphs)
        return g
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
    return lowered(g, "matvec", contraction)


def contraction(g: Graph, node: str, roots: set[str]) -> tuple[list[str], dict] | None:
    """matvec's arguments and attributes where ``node`` sums a matrix times a vector over one axis."""
    axis = summed_axis(g, node)
    if axis is None:
        return None
    (product,) = g.args(node)
    if g.op(product) != "mul" or len(g.shape(product)) != 2 or not only_reader(g, product, node, roots):
        return None
    rows, cols = g.shape(product)
    for m, v in (g.args(product), g.args(product)[::-1]):
        if g.shape(m) != g.shape(product):
            continue
        if axis == 1 and g.shape(v) == (cols,):
            return [m, v], {"transposed": False}
        if (axis == 0 and g.op(v) == "broadcast_to" and g.attrs(v)["axes"] == (1,)
                and g.shape(g.args(v)[0]) == (rows,) and only_reader(g, v, product, roots)):
            return [m, g.args(v)[0]], {"transposed": True}
    return None


def lowered(g: Graph, op: str, match) -> Graph:
    """Every node that ``match(graph, node, roots)`` gives arguments and
    attributes for becomes ``op`` of them, in its place. A graph with no match
    is returned as it is: no copy of a large graph for nothing."""
    roots = set(g.roots())
    candidates = {node for node in g.nx if match(g, node, roots)}
    if not candidates:
        return g
    out = g.copy()
    edits = Substitutions(out)
    for node in g.order():
        # matched again in the edited graph: an earlier edit may have changed what this node reads
        found = match(out, node, roots) if node in candidates else None
        if found is not None:
            edits.substitute(node, apply(out, op, *found))
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
    return lowered(g, "matmul_bias", biased_product)


def biased_product(g: Graph, node: str, roots: set[str]) -> tuple[list[str], dict] | None:
    """matmul_bias's arguments where ``node`` adds a vector to every row of a product read by nothing else."""
    if g.op(node) != "add":
        return None
    for product, bias in (g.args(node), g.args(node)[::-1]):
        if (g.op(product) == "matmul" and len(g.shape(product)) == 2 and only_reader(g, product, node, roots)
                and g.shape(node) == g.shape(product) and g.shape(bias) == g.shape(product)[-1:]):
            return [*g.args(product), bias], {}
    return None


def sum_products(g: Graph) -> Graph:
    """``sum(x.T @ dy)`` over the leading axes of stacked products -> ``matmul_sum(x, dy, transposed=True)``:
    the gradient of a weight that every matrix of a stack meets (``x @ W`` with x [batch, seq, d]) as one
    product whose sum runs over the stack, instead of a [batch, d, n] array of products and a pass over it."""
    return lowered(g, "matmul_sum", summed_products)


def summed_products(g: Graph, node: str, roots: set[str]) -> tuple[list[str], dict] | None:
    """matmul_sum's arguments where ``node`` sums a stack of products over its leading axes."""
    if g.op(node) not in ("sum", "sum_to") or len(g.shape(node)) != 2:
        return None
    (product,) = g.args(node)
    shape = g.shape(product)
    if g.op(product) != "matmul" or len(shape) < 3 or not only_reader(g, product, node, roots):
        return None
    if g.op(node) == "sum_to" and sum_to_axes(shape, g.shape(node)) != (len(shape) - 2, ()):
        return None
    if g.op(node) == "sum" and (g.attrs(node)["keepdims"] or tuple(g.attrs(node)["axis"]) != tuple(range(len(shape) - 2))):
        return None
    a, b = g.args(product)
    if tuple(g.shape(a)[:-2]) != tuple(shape[:-2]) or tuple(g.shape(b)[:-2]) != tuple(shape[:-2]):
        return None  # a broadcast stack: not one matrix per item on both sides
    rank = len(shape)
    if g.op(a) == "transpose" and g.attrs(a)["axes"] == tuple(range(rank - 2)) + (rank - 1, rank - 2):
        return [g.args(a)[0], b], {"transposed": True}
    return [a, b], {"transposed": False}
