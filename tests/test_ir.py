"""The IR's declared schema: every node attribute is declared, written only
through the Graph API, and kept by the passes; the IR imports nothing of
drawing, passes or differentiation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import symgraph as sg
from symgraph.codegen import build_program
from symgraph.ir import NODE_ATTRIBUTES, NO_STEP, Graph, verify

ROOT = Path(__file__).resolve().parents[1]


def test_undeclared_attributes_are_refused():
    g = Graph("schema")
    with pytest.raises(KeyError, match="undeclared"):
        g.add_node("param", (), (), (2,), "float", name="w", colour="red")
    w = g.add_node("param", (), (), (2,), "float", name="w", init="zeros")
    with pytest.raises(KeyError, match="undeclared"):
        g.set(w, colour="red")
    with pytest.raises(KeyError, match="undeclared"):
        g.get(w, "colour")
    assert g.get(w, "init") == "zeros" and g.chain(w) == NO_STEP and not g.is_named(w)
    g.nx.nodes[w]["colour"] = "red"  # written around the API: verify() finds it
    with pytest.raises(AssertionError, match="undeclared"):
        verify(g)


@pytest.mark.parametrize("example", ["digits_mlp", "nlm", "textcnn", "slide"])
def test_optimised_graphs_hold_declared_attributes_and_their_provenance(example):
    program = build_program(sg.load(str(ROOT / "examples" / f"{example}.yaml")))
    for graph in (program.train_graph, program.eval_graph):
        verify(graph)
        for node in graph.nx:
            assert set(graph.nx.nodes[node]) <= set(NODE_ATTRIBUTES)
    train = program.train_graph
    # every gradient is a node of some chain-rule step or a node of the spec, and the spec's names survive optimisation
    assert all(train.chain(node) != NO_STEP or node in program.graph.nx for node in program.gradients.values())
    assert any(train.is_named(node) for node in train.nx)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_ir_knows_nothing_of_drawing_passes_or_differentiation():
    local = {name for name in imported(ROOT / "symgraph" / "ir.py") if name.startswith(".")}
    assert local <= {".errors", ".names"}, local
