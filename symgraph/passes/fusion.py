"""Element-wise fusion: which nodes are computed inside another node's loop."""

from __future__ import annotations

from ..ir import Graph
from ..ops import REGISTRY


def fusion_groups(
    g: Graph,
    roots: list[str] | None = None,
    keep: frozenset[str] = frozenset(),
    order: list[str] | None = None,
    same_shape: bool = True,
) -> dict[str, str]:
    """Element-wise node -> the node whose expression computes it.

    A node is fused into its reader when both are element-wise, have the
    same shape, the reader is its only reader among what ``roots`` need and
    reads it once, and the node is neither a root nor in ``keep``: then it
    needs no buffer and no loop of its own. Chains fuse transitively, so every fused node maps
    to the head of its group (the node that is stored). ``order`` is
    ``g.order()``, for callers that have it already. Without ``same_shape``
    a node also joins a reader that broadcasts it: an expression, not a loop.
    """
    roots = g.roots() if roots is None else roots
    if order is None:
        order = g.order()
    needed = g.needed_by(roots)
    roots = set(roots)
    into: dict[str, str] = {}
    for v in order:
        if v not in needed or v in roots or v in keep or not is_elementwise(g, v):
            continue
        readers = [s for s in g.nx.successors(v) if s in needed]
        if len(readers) != 1:
            continue
        (reader,) = readers
        if is_elementwise(g, reader) and (g.shape(reader) == g.shape(v) or not same_shape) and g.args(reader).count(v) == 1:
            into[v] = reader
    head: dict[str, str] = {}
    for v in reversed(list(into)):  # readers come later in the order: their heads are known first
        h = into[v]
        head[v] = head.get(h, h)
    return head


def is_elementwise(g: Graph, node: str) -> bool:
    op = g.op(node)
    return op in REGISTRY and REGISTRY[op].elementwise
