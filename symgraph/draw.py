"""Graph drawings: Graphviz DOT text, rendered to SVG or PNG by ``dot`` when present.

Each kind of node has its own look: inputs (blue boxes), params (yellow
rounded boxes), constants (plain text), ops (ellipses), the loss (red
double octagon), backward nodes (green ellipses) and the gradients of the
params (green double boxes). Element-wise nodes that the C target computes
in one loop are drawn inside one dashed cluster.
"""

from __future__ import annotations

import shutil
import subprocess

from .errors import SpecError
from .ir import NO_STEP, Graph
from .passes.fusion import fusion_groups

STYLE = {
    "input": 'shape=box, style=filled, fillcolor="#dbeafe"',
    "param": 'shape=box, style="filled,rounded", fillcolor="#fde68a"',
    "const": "shape=plaintext",
    "loss": 'shape=doubleoctagon, style=filled, fillcolor="#fecaca"',
    "backward": 'shape=ellipse, style=filled, fillcolor="#dcfce7"',
    "gradient": 'shape=box, peripheries=2, style=filled, fillcolor="#86efac"',
    "op": "shape=ellipse",
}

INSTALL_HINT = "install Graphviz (apt install graphviz, brew install graphviz or conda install graphviz)"


def label(g: Graph, node: str) -> str:
    op = g.op(node)
    if op == "const":
        value = g.attrs(node)["value"]
        return "batch" if type(value).__name__ == "Batch" else f"{value:g}"
    shape = "[" + ", ".join(str(int(d)) for d in g.shape(node)) + "]"
    kind = "" if op in ("input", "param") else f"\\n{op}"
    return f"{node}{kind}\\n{shape}"


def kind(g: Graph, node: str, backward: set[str]) -> str:
    op = g.op(node)
    if op in ("input", "param", "const"):
        return op
    if node == g.loss:
        return "loss"
    if node in backward:
        return "gradient" if node in g.gradients.values() else "backward"
    return "op"


def to_dot(g: Graph, backward: set[str] | None = None, clusters: bool = True) -> str:
    """DOT text for ``g``; nodes in ``backward`` are drawn as gradient nodes
    (by default, the nodes that differentiation made).

    With ``clusters``, each fused element-wise group is a dashed cluster.
    """
    if backward is None:  # a gradient graph marks what differentiation added
        backward = {n for n in g.nx if g.chain(n) != NO_STEP}
        backward |= {n for n in list(g.gradients.values()) + list(g.cotangents.values()) if g.op(n) not in ("input", "param", "const")}
    lines = [f'digraph "{g.name}" {{', "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=11];']
    groups: dict[str, list[str]] = {}
    if clusters:
        for member, head in fusion_groups(g).items():
            groups.setdefault(head, [head]).append(member)
    clustered = {n for members in groups.values() for n in members}
    rank = {n: i for i, n in enumerate(g.nx)}
    for node in g.order():
        if node not in clustered:
            lines.append(f'  "{node}" [label="{label(g, node)}", {STYLE[kind(g, node, backward)]}];')
    for i, (head, members) in enumerate(groups.items()):
        lines.append(f'  subgraph "cluster_fused_{i}" {{')
        lines.append(f'    label="fused: {head}"; style=dashed; color="#6b7280"; fontname="Helvetica"; fontsize=9;')
        for node in sorted(members, key=rank.__getitem__):
            lines.append(f'    "{node}" [label="{label(g, node)}", {STYLE[kind(g, node, backward)]}];')
        lines.append("  }")
    for u, v in g.nx.edges():
        lines.append(f'  "{u}" -> "{v}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def drawing(g: Graph, grad: bool = False) -> str:
    """DOT text of the forward graph, or with ``grad`` of the gradient graph as the generated code computes it."""
    if not grad:
        return to_dot(g)
    from .autodiff import differentiate
    from .passes import CODEGEN, optimize

    gg = optimize(differentiate(g), CODEGEN)
    return to_dot(gg, set(gg.nx) - set(g.nx))  # the forward nodes keep their look, e.g. e in L = c*e though it is dL/dc


def have_dot() -> bool:
    return shutil.which("dot") is not None


def render(dot_text: str, fmt: str) -> bytes:
    """SVG or PNG bytes from DOT text via Graphviz's ``dot``."""
    dot = shutil.which("dot")
    if dot is None:
        raise SpecError(f"Graphviz 'dot' is needed for .{fmt}: {INSTALL_HINT}; or write .dot instead", node="draw")
    done = subprocess.run([dot, f"-T{fmt}"], input=dot_text.encode(), capture_output=True)
    if done.returncode != 0:
        raise SpecError(f"dot failed: {done.stderr.decode(errors='replace').strip()}", node="draw")
    return done.stdout
