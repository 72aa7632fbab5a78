"""Property: random graphs keep their value and gradients through the pipeline."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

import symgraph as sg
from symgraph.passes import PIPELINE, optimize

UNARY = ["exp", "tanh", "sigmoid", "neg", "abs"]
BINARY = ["+", "-", "*"]


@st.composite
def expressions(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(["a", "b", "x", "2", "0", "1"]))
    if draw(st.booleans()):
        return f"{draw(st.sampled_from(UNARY))}({draw(expressions(depth=depth - 1))})"
    left, right = draw(expressions(depth=depth - 1)), draw(expressions(depth=depth - 1))
    return f"({left} {draw(st.sampled_from(BINARY))} {right})"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(expressions(), min_size=1, max_size=3))
def test_pipeline_preserves_values(bodies):
    lines = [f"  t{i}: {body} * a" for i, body in enumerate(bodies)]
    total = " + ".join(f"sum(t{i})" for i in range(len(bodies)))
    spec = "inputs: {x: {shape: [3]}}\nparams: {a: {shape: [3]}, b: {shape: [1]}}\ngraph:\n" + "\n".join(lines) + f"\n  L: {total}\nloss: L\n"
    g = sg.load(spec)
    model = sg.compile(g, dtype="float64")
    rng = np.random.default_rng(1)
    params = {"a": rng.standard_normal(3), "b": rng.standard_normal(1)}
    inputs = {"x": rng.standard_normal(3)}
    loss, grads = model.loss_and_grads(params, inputs)
    reference = sg.compile(g, dtype="float64", passes=[])  # no optimisation at all
    ref_loss, ref_grads = reference.loss_and_grads(params, inputs)
    assert np.isclose(loss, ref_loss, rtol=1e-12, atol=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-12, atol=1e-12)
    assert optimize(g, PIPELINE, check=True) is not None


# -- random graphs over every public op ---------------------------------------------
@st.composite
def chains(draw):
    """A random valid spec: a chain of ops from x [4, 6] (or embedded ids), each
    applicable to the shape so far, with fresh params where an op takes one."""
    params, lines = {}, []
    if draw(st.booleans()):
        params["E"] = [7, 6]
        lines.append("t0: embedding(E, tok)")
        shape = [4, 3, 6]
    else:
        lines.append("t0: tanh(x)")
        shape = [4, 6]
    for step in range(1, draw(st.integers(2, 7))):
        t, p = f"t{step - 1}", f"P{step}"
        moves = ["unary", "binary", "softmax", "dropout", "concat"]
        if len(shape) >= 2:
            moves += ["matmul", "reduce", "max", "flatten"]
        if len(shape) == 2:
            moves += ["transpose", "to3d"]
        if len(shape) == 3:
            moves += ["conv", "pool"]
        move = draw(st.sampled_from(moves))
        if move == "unary":
            op = draw(st.sampled_from(["tanh", "sigmoid", "relu", "abs", "neg", "exp(tanh", "sqrt(abs", "log(1 + abs", "sign"]))
            body = f"{op}({t})" + ")" * op.count("(")
            body = body.replace("sqrt(abs(", "sqrt(1 + abs(") if op == "sqrt(abs" else body
            if op == "sign":
                body = f"{t} * sign({t})"
        elif move == "binary":
            pshape = draw(st.sampled_from([shape, shape[-1:], [1]]))
            params[p] = list(pshape)
            body = draw(st.sampled_from([f"{t} * {p}", f"{t} + {p}", f"{t} - {p}", f"{t} / (1 + {p} * {p})", f"{t} ** 2 * {p}"]))
        elif move == "softmax":
            body = f"{draw(st.sampled_from(['softmax', 'log_softmax']))}({t}, axis=-1)"
        elif move == "dropout":
            body = f"dropout({t}, p=0.3)"
        elif move == "concat":
            body = f"concat({t}, tanh({t}), axis={len(shape) - 1})"
            shape = shape[:-1] + [2 * shape[-1]]
        elif move == "matmul":
            k = draw(st.integers(2, 5))
            params[p] = [shape[-1], k]
            body, shape = f"{t} @ {p}", shape[:-1] + [k]
        elif move == "reduce":
            axis, keep = draw(st.integers(1, len(shape) - 1)), draw(st.booleans())
            body = f"{draw(st.sampled_from(['sum', 'mean']))}({t}, axis={axis}, keepdims={keep})"
            shape = [1 if i == axis else d for i, d in enumerate(shape)] if keep else [d for i, d in enumerate(shape) if i != axis]
        elif move == "max":
            body, shape = f"max({t}, axis=1)", shape[:1] + shape[2:]
        elif move == "flatten":
            body, shape = f"flatten({t})", [shape[0], int(np.prod(shape[1:]))]
        elif move == "transpose":
            body, shape = f"transpose({t})", shape[::-1]
        elif move == "to3d":
            body, shape = f"reshape({t} * 1, shape=[{shape[0]}, {shape[1]}, 1])", shape + [1]
        elif move == "conv":
            width, stride, padding, out = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 2)), draw(st.integers(1, 4))
            if shape[1] + 2 * padding < width:
                padding = width
            params[p] = [width, shape[2], out]
            body = f"conv1d({t}, {p}, stride={stride}, padding={padding})"
            shape = [shape[0], (shape[1] + 2 * padding - width) // stride + 1, out]
        else:  # pool
            if shape[1] < 2:
                body = f"tanh({t})"
            else:
                kind, stride = draw(st.sampled_from(["max_pool1d", "avg_pool1d"])), draw(st.integers(1, 2))
                body = f"{kind}({t}, 2, stride={stride})"
                shape = [shape[0], (shape[1] - 2) // stride + 1, shape[2]]
        lines.append(f"t{step}: {body}")
    last = f"t{len(lines) - 1}"
    losses = [f"sum({last} * w)", f"mse({last}, w)", f"binary_cross_entropy({last}, step(w))"]
    if len(shape) == 2:
        losses.append(f"cross_entropy({last}, lab)")
    loss = draw(st.sampled_from(losses))
    params_text = "\n".join(f"  {name}: {{shape: {s}, init: normal(0.5)}}" for name, s in params.items()) or ""
    return (
        "name: chain\ninputs:\n  x: {shape: [4, 6]}\n  tok: {shape: [4, 3], dtype: int}\n"
        f"  lab: {{shape: [{shape[0]}], dtype: int}}\n  w: {{shape: {shape}}}\nparams:\n  Z: {{shape: [1], init: normal(0.5)}}\n{params_text}\ngraph:\n"
        + "".join(f"  {line}\n" for line in lines)
        + f"  L: {loss} + sum(Z * Z)\nloss: L\n"
    )


@settings(max_examples=40, deadline=None, derandomize=True)
@given(chains())
def test_pipeline_and_c_target_preserve_every_op(spec):
    """Optimised NumPy, unoptimised NumPy and optimised C agree on the loss and every gradient."""
    g = sg.load(spec)
    optimised, plain, c = (sg.compile(g, dtype="float64"), sg.compile(g, dtype="float64", passes=[]),
                           sg.compile(g, target="c", dtype="float64"))
    rng = np.random.default_rng(2)
    params = optimised.init_params(3)
    shapes = {leaf.name: tuple(int(d) for d in leaf.shape) for leaf in optimised.program.inputs}
    inputs = {"x": rng.standard_normal(shapes["x"]), "tok": rng.integers(0, 7, shapes["tok"]), "w": rng.standard_normal(shapes["w"])}
    bound = next(leaf.bound for leaf in optimised.program.inputs if leaf.name == "lab")
    inputs["lab"] = rng.integers(0, min(bound, 2**31 - 1), shapes["lab"])
    results = [model.loss_and_grads(params, inputs) for model in (optimised, plain, c)]
    for loss, grads in results[1:]:
        assert np.isclose(loss, results[0][0], rtol=1e-10, atol=1e-12), spec
        for name in grads:
            np.testing.assert_allclose(grads[name], results[0][1][name], rtol=1e-9, atol=1e-12, err_msg=spec)
