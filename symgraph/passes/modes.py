"""Mode passes: turn a training graph into an evaluation graph."""

from __future__ import annotations

from ..ir import Graph
from ..ops import const
from .rewrite import named, replace


def remove_dropout(g: Graph) -> Graph:
    """Evaluation mode: every dropout mask becomes 1 (folded away afterwards)."""
    out = g.copy()
    for node in g.nodes_of("dropout_mask"):
        replace(out, node, named(out, const(out, 1.0), "one"))
    return out
