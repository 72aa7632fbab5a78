"""YAML specs and the Python builder make the same graphs."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

import symgraph as sg
from symgraph.cli import main
from symgraph.codegen import build_program, render

ROOT = Path(__file__).resolve().parents[1]


def mlp_in_python() -> sg.Graph:
    g = sg.Graph("mlp", dims={"batch": 64, "d_in": 784})
    x = g.input("x", ["batch", "d_in"])
    y = g.input("y", ["batch"], dtype="int")
    W1 = g.param("W1", ["d_in", 256], init="he_normal")
    b1 = g.param("b1", [256], init="zeros")
    W2 = g.param("W2", [256, 10], init="xavier_uniform")
    b2 = g.param("b2", [10], init="zeros")
    h = g.define("h", sg.relu(x @ W1 + b1))
    logits = g.define("logits", h @ W2 + b2)
    g.set_loss(g.define("loss", sg.cross_entropy(logits, y)))
    g.add_output(logits)
    g.set_train(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=64, epochs=5, seed=0)
    return g


def test_builder_and_yaml_give_identical_graphs():
    from_yaml = sg.load(ROOT / "examples" / "mlp.yaml")
    built = mlp_in_python()
    assert nx.utils.graphs_equal(from_yaml.nx, built.nx)
    assert list(from_yaml.nx.nodes) == list(built.nx.nodes)
    assert (from_yaml.loss, from_yaml.outputs, from_yaml.train) == (built.loss, built.outputs, built.train)


def test_builder_and_yaml_compile_to_identical_code():
    from_yaml = sg.load(ROOT / "examples" / "mlp.yaml")
    built = mlp_in_python()
    built.source = from_yaml.source
    assert render(build_program(from_yaml), "numpy") == render(build_program(built), "numpy")


def test_graph_entries_may_come_in_any_order():
    text = """
params: {a: {shape: [], value: 3}, b: {shape: [], value: 1}, c: {shape: [], value: -2}}
graph: {L: c*e, e: a + d, d: 2*b}
loss: L
"""
    g = sg.load(text)
    assert g.args("L") == ["c", "e"] and g.args("e") == ["a", "d"]


def test_nodes_carry_op_shape_dtype_and_argument_positions():
    g = sg.load(ROOT / "examples" / "mlp.yaml")
    assert g.nx.nodes["h_1"]["op"] == "matmul"
    assert g.shape("h_1") == (64, 256) and g.dtype("y") == "int"
    assert g.nx.edges["x", "h_1"]["pos"] == (0,) and g.nx.edges["W1", "h_1"]["pos"] == (1,)
    square = sg.load("params: {a: {shape: [2]}}\ngraph: {s: sum(a * a)}\nloss: s\n")
    (product,) = [n for n in square.nx if square.op(n) == "mul"]
    assert square.nx.edges["a", product]["pos"] == (0, 1)


def test_dims_keep_the_batch_axis_symbolic():
    g = sg.load(ROOT / "examples" / "mlp.yaml")
    assert repr(g.shape("logits")[0]) == "batch=64"
    assert type(g.shape("logits")[1]) is int


ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}' if prev else 'x'] * 9)}]\n"
    for prev, name in zip([None, "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi")
)
DEEP_MINUS = "dims: {batch: 2}\ninputs: {x: {shape: [batch]}}\ngraph: {loss: 'sum(" + "-" * 3000 + "x)'}\nloss: loss\n"


@pytest.mark.parametrize(
    "text, says",
    [
        (ALIAS_BOMB, "expands to more than"),
        ("name: m\nname: n\n", "given twice"),
        (DEEP_MINUS, "nests too deeply"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: 'sum(x * " + "9" * 400 + ")'}\nloss: loss\n", "overflows"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: 'sum(x * 10 ** 400)'}\nloss: loss\n", "overflows"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: 'sum(x * 0 ** -1)'}\nloss: loss\n", "divides by zero"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: 'sum(x * (-8) ** 0.5)'}\nloss: loss\n", "not a finite real number"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: 'sum(softmax(x, axis=0, axis=0))'}\nloss: loss\n", "repeated"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: sum(x)}\nloss: loss\ntrain: {lr: .inf}\n", "finite"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: sum(x)}\nloss: loss\ntrain: {seed: 36893488147419103232}\n", "seed must be an integer"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: sum(x)}\nloss: loss\ntrain: {epochs: 99999999999}\n", "epochs must be an integer"),
        ("inputs: {x: {shape: [2]}}\ngraph: {loss: sum(x)}\nloss: loss\ntrain: {batch_size: 0}\n", "batch_size must be at least 1"),
        ("params: {c: {shape: [], value: .nan}}\ngraph: {loss: c * 2}\nloss: loss\n", "number"),
    ],
)
def test_hostile_specs_are_one_clear_error(text, says, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    assert main(["compile", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err and len(err) < 400, err
    assert not (tmp_path / "out").exists()


def test_numbers_in_yaml_are_what_they_look_like():
    g = sg.load("inputs: {x: {shape: [2]}}\ngraph: {loss: sum(x)}\nloss: loss\ntrain: {lr: 1e-3, momentum: 9E-1}\n")
    assert g.train["lr"] == 0.001 and g.train["momentum"] == 0.9


