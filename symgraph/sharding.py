"""Whether a model's loss splits over examples, so that data-parallel training
gives the gradient of one process.

Each of K processes computes the loss and gradients of its share of a batch of
B examples, m_k of them, and the gradients are summed with weights m_k / B.
That is the gradient of the whole batch exactly when the loss is

    L(batch) = mean over the examples of l(example) + R,

R independent of the data (a weight penalty): an affine map of such a mean
commutes with the weighted sum, as the weights sum to one. A loss that sums
over the batch, or an op that lets examples see each other (a softmax along
the batch axis, a product contracting it, a max over it), has no such split.

The check follows the batch axis through the graph, reading from each op only
what ``OpDef.combines`` says it combines: an op that does not say is assumed
to combine every axis, so a new op can refuse data-parallel training, never
make it silently wrong.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from .ir import Graph, batch_axis
from .ops.registry import REGISTRY, X

# what a node's value is, as a function of the examples of the batch
FIXED = "fixed"  # the same for any batch: params, constants, inputs without a batch axis
PER_EXAMPLE = "per example"  # one slice per example along the batch axis, each from its own example alone
MEAN = "mean"  # an affine function of a mean over the examples


class Coupled(Exception):
    """The node whose value couples examples, and how."""


@lru_cache(maxsize=None)
def affine_in(expr: sp.Expr, positions: tuple[int, ...]) -> bool:
    """Whether an element-wise op is jointly affine in these arguments."""
    symbols = [X[i] for i in positions]
    return all(sp.simplify(sp.diff(expr, a, b)) == 0 for a in symbols for b in symbols)


def called(g: Graph, node: str) -> str:
    """``node`` as the spec's author knows it: its name where the spec gave
    one, else the named node whose expression holds it (``loss (a sum in it)``)."""
    op = g.op(node)
    if g.is_named(node) or op in ("input", "param"):
        return f"{node} ({op})"
    seen, frontier = {node}, [node]
    while frontier:
        reader = frontier.pop(0)
        if g.is_named(reader):
            return f"{reader} (a {op} in it)"
        for after in g.nx.successors(reader):
            if after not in seen:
                seen.add(after)
                frontier.append(after)
    return f"{node} ({op})"


def classify(g: Graph, node: str, kinds: dict[str, str]) -> str:
    op = g.op(node)
    args = g.args(node)
    arg_kinds = [kinds[a] for a in args]
    if not args:  # a leaf, a constant or a random mask
        return PER_EXAMPLE if batch_axis(g.shape(node)) is not None else FIXED
    if all(k == FIXED for k in arg_kinds):
        return FIXED
    definition = REGISTRY[op]
    means = [i for i, k in enumerate(arg_kinds) if k == MEAN]
    if means:
        if PER_EXAMPLE in arg_kinds:
            raise Coupled(f"{called(g, node)} combines a mean over the batch with single examples")
        linear = affine_in(definition.expr, tuple(means)) if definition.elementwise else len(means) == 1 and means[0] in definition.linear_in
        if not linear:
            raise Coupled(f"{called(g, node)} is not affine in the mean over the batch it reads")
        return MEAN
    if definition.elementwise:
        return PER_EXAMPLE
    shapes = [g.shape(a) for a in args]
    combined = definition.combines(shapes, g.attrs(node)) if definition.combines else tuple(tuple(range(len(s))) for s in shapes)
    over_batch = any(k == PER_EXAMPLE and batch_axis(s) in axes for k, s, axes in zip(arg_kinds, shapes, combined))
    if not over_batch and batch_axis(g.shape(node)) is not None:
        return PER_EXAMPLE
    if over_batch and definition.averages and batch_axis(g.shape(node)) is None:
        return MEAN
    how = "sums over" if op == "sum" else "combines examples along"
    raise Coupled(f"{called(g, node)} {how} the batch axis")


def coupling(g: Graph) -> str | None:
    """None where the loss splits over examples as above; else why not, naming the node."""
    kinds: dict[str, str] = {}
    needed = g.needed_by([g.loss])
    try:
        for node in g.order():
            if node in needed:
                kinds[node] = classify(g, node, kinds)
    except Coupled as why:
        return str(why)
    if kinds[g.loss] == PER_EXAMPLE:
        return f"the loss {g.loss} keeps the batch axis"
    return None


def placed_masks(g: Graph) -> bool:
    """Whether a dropout mask of ``g`` has a batch axis: its examples then draw
    their masks by their place in the batch, which a share of a batch is told."""
    return any(batch_axis(g.shape(v)) is not None for v in g.nodes_of("dropout_mask"))
