"""Graph drawings: Graphviz DOT text, rendered to SVG or PNG by ``dot`` when present."""

from __future__ import annotations

import shutil
import subprocess

from .errors import SpecError
from .ir import Graph

STYLE = {
    "input": 'shape=box, style=filled, fillcolor="#dbeafe"',
    "param": 'shape=box, style="filled,rounded", fillcolor="#fde68a"',
    "const": 'shape=plaintext',
    "loss": 'shape=doubleoctagon, style=filled, fillcolor="#fecaca"',
    "gradient": 'shape=ellipse, style=filled, fillcolor="#dcfce7"',
    "op": 'shape=ellipse',
}


def label(g: Graph, node: str) -> str:
    op = g.op(node)
    if op == "const":
        value = g.attrs(node)["value"]
        return "batch" if type(value).__name__ == "Batch" else f"{value:g}"
    shape = "[" + ", ".join(str(int(d)) for d in g.shape(node)) + "]"
    kind = "" if op in ("input", "param") else f"\\n{op}"
    return f"{node}{kind}\\n{shape}"


def to_dot(g: Graph, backward: set[str] | None = None) -> str:
    """DOT text for ``g``; nodes in ``backward`` are drawn as gradient nodes."""
    backward = backward or set()
    lines = [f'digraph "{g.name}" {{', "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=11];']
    for node in g.order():
        op = g.op(node)
        kind = op if op in ("input", "param", "const") else "loss" if node == g.loss else "gradient" if node in backward else "op"
        lines.append(f'  "{node}" [label="{label(g, node)}", {STYLE[kind]}];')
    for u, v, data in g.nx.edges(data=True):
        lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot_text: str, fmt: str) -> bytes:
    """SVG or PNG bytes from DOT text via Graphviz's ``dot``."""
    dot = shutil.which("dot")
    if dot is None:
        raise SpecError(
            f"Graphviz 'dot' is needed for .{fmt} (apt install graphviz, or brew install graphviz); write .dot instead",
            node="draw",
        )
    return subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, check=True).stdout
