"""The one graph edit that passes share: replace a node by another."""

from __future__ import annotations

from ..ir import Graph


def replace(g: Graph, old: str, new: str) -> None:
    """Make every reader of ``old`` read ``new`` instead, then drop ``old``.

    Mutates ``g``; passes call it on their own copy only.
    """
    for _, reader, data in list(g.nx.out_edges(old, data=True)):
        if g.nx.has_edge(new, reader):
            g.nx.edges[new, reader]["pos"] = tuple(sorted(g.nx.edges[new, reader]["pos"] + data["pos"]))
        else:
            g.nx.add_edge(new, reader, pos=data["pos"])
    g.nx.remove_node(old)
    g.redirect({old: new})
