"""``symgraph report``: one self-contained HTML page about a model.

The page needs no network and no JavaScript: the drawing is inline SVG, the
derived gradients are presentation MathML (which browsers render natively),
and everything else is text.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from markupsafe import Markup

from .codegen import ENV as CODE_ENV
from .codegen.c import memory_report
from .codegen.common import describe, summary
from .compiler import compile as compile_graph
from .draw import INSTALL_HINT, drawing, have_dot
from .draw import render as render_drawing
from .explain import explain
from .gradcheck import gradcheck
from .ir import Graph

ENV = CODE_ENV.overlay(autoescape=True, keep_trailing_newline=False)  # HTML: everything inserted is escaped


def report(g: Graph, spec_text: str | None = None) -> str:
    """The HTML text of ``g``'s report.

    Parameters
    ----------
    g : Graph
    spec_text : str, optional
        The spec as written (shown verbatim); without it the page lists the
        graph's equations.
    """
    with tempfile.TemporaryDirectory(prefix="symgraph-report-") as folder:
        # one compile serves the code shown, the memory plan and the gradient check
        model = compile_graph(g, target="numpy", out_dir=Path(folder) / "numpy", dtype="float64")
        source = (model.out_dir / "model.py").read_text(encoding="utf-8")
        check = gradcheck(g, target="numpy", model=model)
    program = model.program
    dot = drawing(g, grad=True)
    svg = render_drawing(dot, "svg").decode() if have_dot() else None
    if svg is not None:
        svg = svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG sits inside HTML
    backward = source[source.index("def loss_and_grads"):source.index("\n\n\ndef ", source.index("def loss_and_grads"))]
    explained = explain(g)
    return ENV.get_template("report/report.html.j2").render(
        name=g.name,
        summary=summary(program),
        svg=Markup(svg) if svg else None,
        dot=dot,
        install_hint=INSTALL_HINT,
        spec=spec_text,
        equations=describe(g),
        gradients=[(grad.leaf, Markup(math)) for grad, math in zip(explained.gradients, explained.mathml())],
        backward=backward,
        memory=memory_report(program),
        check=check,
    )
