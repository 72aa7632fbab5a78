"""The NumPy backend: emitter table, printer, and rendering of ``model.py``/``train.py``."""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ..ir import Graph, is_batch
from ..ops.reduce import sum_to_axes
from ..ops.symbolic import BATCH
from .common import (
    CachedPrinter,
    Node,
    Statement,
    arg_text,
    describe,
    literal,
    schedule,
    scored_output,
    source_name,
    summary,
    trainer_context,
)


class Printer(NumPyPrinter):
    """sympy's NumPy printer, writing ``np.`` and our stable primitives."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        return "np." + fqn.split(".", 1)[1] if fqn.startswith("numpy.") else fqn

    def _print_sigmoid(self, expr):
        # (1 + tanh(x/2)) / 2 equals 1/(1 + exp(-x)) and never overflows.
        return f"(0.5 + 0.5*np.tanh(0.5*{self._print(expr.args[0])}))"

    def _print_relu(self, expr):
        return f"np.maximum({self._print(expr.args[0])}, 0)"

    def _print_step(self, expr):
        # a comparison is 50 times faster than np.heaviside
        return f"({self._print(expr.args[0])} > 0).astype(DTYPE)"

    def _print_sgn(self, expr):
        return f"np.sign({self._print(expr.args[0])})"

    def _print_Pow(self, expr, rational=False):
        if expr.exp == -1:
            return f"1/{self.parenthesize(expr.base, 100)}"
        return super()._print_Pow(expr, rational)


PRINTER = CachedPrinter(Printer({"fully_qualified_modules": False}), lambda value: sp.Symbol(constant_text(value), real=True))


def constant_text(value) -> str:
    """A constant of a structure key as NumPy text (the batch size is n)."""
    return "n" if value == BATCH else literal(value)


def shape_text(shape: tuple) -> str:
    dims = ["n" if is_batch(d) else str(int(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def axes_text(axes) -> str:
    axes = tuple(axes)
    return str(axes[0]) if len(axes) == 1 else str(axes)


# -- emitters: one per non-element-wise op; each returns statements assigning node.name
def emit_matmul(n: Node):
    return [f"{n.name} = {n.args[0]} @ {n.args[1]}"]


def emit_transpose(n: Node):
    axes = n.attrs["axes"]
    if len(axes) == 2:
        return [f"{n.name} = {n.args[0]}.T"]
    return [f"{n.name} = np.transpose({n.args[0]}, {axes})"]


def emit_reshape(n: Node):
    return [f"{n.name} = {n.args[0]}.reshape({shape_text(n.shape)})"]


def emit_concat(n: Node):
    return [f"{n.name} = np.concatenate(({', '.join(n.args)},), axis={n.attrs['axis']})"]


def emit_slice(n: Node):
    index = ", ".join([":"] * n.attrs["axis"] + [f"{n.attrs['start']}:{n.attrs['stop']}"])
    return [f"{n.name} = {n.args[0]}[{index}]"]


def emit_pad_slice(n: Node):
    index = ", ".join([":"] * n.attrs["axis"] + [f"{n.attrs['start']}:{n.attrs['stop']}"])
    return [f"{n.name} = np.zeros({shape_text(n.shape)}, DTYPE)", f"{n.name}[{index}] = {n.args[0]}"]


def emit_reduction(function: str):
    def emit(n: Node):
        keep = ", keepdims=True" if n.attrs.get("keepdims") else ""
        # the method: np.sum(x, ...) spends a microsecond more in Python, a lot for a small batch
        return [f"{n.name} = {method_target(n.args[0])}.{function}(axis={axes_text(n.attrs['axis'])}{keep})"]

    return emit


def emit_max_backward(n: Node):
    (axis,) = n.attrs["axis"]
    x, cot = n.args
    return [
        f"{n.name} = np.zeros_like({x})",
        f"np.put_along_axis({n.name}, np.argmax({x}, axis={axis}, keepdims=True), "
        f"np.take({cot}, [0], axis={axis}), axis={axis})",
    ]


def emit_broadcast_to(n: Node):
    value = n.args[0]
    if n.attrs["axes"]:
        value = f"np.expand_dims({value}, {axes_text(n.attrs['axes'])})"
    return [f"{n.name} = np.broadcast_to({value}, {shape_text(n.shape)})"]


def emit_sum_to(n: Node):
    lead, kept = sum_to_axes(n.shapes[0], n.shape)
    value = n.args[0]
    if lead:
        value = f"{method_target(value)}.sum(axis={axes_text(range(lead))})"
    if kept:
        value = f"{value}.sum(axis={axes_text(i - lead for i in kept)}, keepdims=True)"
    return [f"{n.name} = {value}"]


def method_target(text: str) -> str:
    """An array to call a method on: a name as it is, a literal as an array."""
    return text if text.isidentifier() else f"np.asarray({text}, DTYPE)"


def emit_embedding(n: Node):
    return [f"{n.name} = {n.args[0]}[{n.args[1]}]"]


def emit_embedding_backward(n: Node):
    ids, cot = n.args
    width = n.shape[1]
    return [
        f"{n.name} = np.zeros({shape_text(n.shape)}, DTYPE)",
        f"np.add.at({n.name}, {ids}.reshape(-1), {cot}.reshape(-1, {width}))",
    ]


def windows(x: str, size: int, stride: int) -> str:
    view = f"np.lib.stride_tricks.sliding_window_view({x}, {size}, axis=1)"
    return view if stride == 1 else f"{view}[:, ::{stride}]"


def padded(x: str, padding: int) -> str:
    return x if padding == 0 else f"np.pad({x}, ((0, 0), ({padding}, {padding}), (0, 0)))"


def emit_conv1d(n: Node):
    x, kernel = n.args
    width = n.shapes[1][0]
    # windows: [batch, steps, c_in, width]; contract (c_in, width) with K[width, c_in, :]
    win = windows(padded(x, n.attrs["padding"]), width, n.attrs["stride"])
    return [f"{n.name} = np.tensordot({win}, {kernel}, axes=([3, 2], [0, 1]))"]


def emit_conv1d_backward_kernel(n: Node):
    x, cot = n.args
    win = windows(padded(x, n.attrs["padding"]), n.attrs["width"], n.attrs["stride"])
    # sum over (batch, steps): [c_in, width, c_out] -> [width, c_in, c_out]
    return [f"{n.name} = np.tensordot({win}, {cot}, axes=([0, 1], [0, 1])).transpose(1, 0, 2)"]


def scatter_windows(n: Node, steps: int, contribution: str, width: int, per_tap) -> list[str]:
    """Add each tap of a windowed contribution (``steps`` windows) back at its input positions."""
    stride, padding, length = n.attrs["stride"], n.attrs.get("padding", 0), int(n.shape[1])
    full = "sg_padded" if padding else n.name
    lines = [f"{full} = np.zeros({shape_text((n.shape[0], length + 2 * padding, n.shape[2]))}, DTYPE)"]
    lines.append(f"for tap in range({width}):")
    lines.append(f"    {full}[:, tap : tap + {stride * (int(steps) - 1) + 1} : {stride}] += {per_tap(contribution)}")
    if padding:
        lines.append(f"{n.name} = {full}[:, {padding}:{padding + length}]")
    return lines


def emit_conv1d_backward_input(n: Node):
    cot, kernel = n.args
    width = n.shapes[1][0]
    return scatter_windows(n, n.shapes[0][1], f"{cot} @ {kernel}[tap].T", width, lambda c: c)


def emit_max_pool1d(n: Node):
    return [f"{n.name} = np.max({windows(n.args[0], n.attrs['size'], n.attrs['stride'])}, axis=3)"]


def emit_avg_pool1d(n: Node):
    return [f"{n.name} = np.mean({windows(n.args[0], n.attrs['size'], n.attrs['stride'])}, axis=3)"]


def emit_max_pool1d_backward(n: Node):
    x, cot = n.args
    size, stride = n.attrs["size"], n.attrs["stride"]
    first = f"np.argmax({windows(x, size, stride)}, axis=3)"
    lines = [f"sg_first = {first}"]
    return lines + scatter_windows(n, n.shapes[1][1], cot, size, lambda c: f"{c} * (sg_first == tap)")


def emit_avg_pool1d_backward(n: Node):
    size = n.attrs["size"]
    return scatter_windows(n, n.shapes[0][1], n.args[0], size, lambda c: f"{c} / {size}")


def emit_dropout_mask(n: Node):
    p = n.attrs["p"]
    return [
        f"{n.name} = (random_uniform(seed, {n.attrs['index']} + DROPOUT_STREAM, {shape_text(n.shape)}) >= {p!r})"
        f" * DTYPE({1.0 / (1.0 - p)!r}) if training else DTYPE(1)"
    ]


def emit_softmax(n: Node):
    axis = n.attrs["axis"]
    return [
        f"{n.name} = np.exp({n.args[0]} - np.max({n.args[0]}, axis={axis}, keepdims=True))",
        f"{n.name} /= np.sum({n.name}, axis={axis}, keepdims=True)",
    ]


def emit_log_softmax(n: Node):
    axis = n.attrs["axis"]
    return [
        f"{n.name} = {n.args[0]} - np.max({n.args[0]}, axis={axis}, keepdims=True)",
        f"{n.name} -= np.log(np.sum(np.exp({n.name}), axis={axis}, keepdims=True))",
    ]


def emit_onehot(n: Node):
    return [f"{n.name} = (np.arange({n.attrs['classes']}) == {n.args[0]}[..., None]).astype(DTYPE)"]


def emit_softmax_cross_entropy_grad(n: Node):
    z, y, scale = n.args
    v = n.name
    return [f"{v} = np.exp({shifted(z)})", *gradient_from_exps(v, y, scale, f"np.sum({v}, axis=-1, keepdims=True)")]


def emit_cross_entropy(n: Node):
    logits, labels = n.args
    v = n.name
    return [f"{v} = {shifted(logits)}", f"{v} = {mean_cross_entropy(f'np.log(np.sum(np.exp({v}), axis=-1))', v, labels)}"]


# The text cross-entropy's loss and gradient share (``share_softmax`` puts them together).
def shifted(z: str) -> str:
    return f"{z} - np.max({z}, axis=-1, keepdims=True)"


def mean_cross_entropy(log_total: str, shifted_z: str, y: str) -> str:
    return f"np.mean({log_total} - np.take_along_axis({shifted_z}, {y}[..., None], axis=-1)[..., 0])"


def gradient_from_exps(v: str, y: str, scale: str, total: str) -> list[str]:
    """``v`` holds exp(z - max z): make it (softmax(z) - onehot(y)) * scale."""
    return [
        f"{v} *= {scale} / {total}",
        f"np.put_along_axis({v}, {y}[..., None], np.take_along_axis({v}, {y}[..., None], axis=-1) - {scale}, axis=-1)",
    ]


def emit_binary_cross_entropy(n: Node):
    z, y = n.args
    return [f"{n.name} = np.mean(np.maximum({z}, 0) - {z} * {y} + np.log1p(np.exp(-np.abs({z}))))"]


def emit(n: Node) -> list[str]:
    if n.structure is not None:
        key, arrays = n.structure
        return [f"{n.name} = {PRINTER.fill(key, arrays)}"]
    return EMIT[n.op](n)


EMIT = {
    "matmul": emit_matmul,
    "transpose": emit_transpose,
    "reshape": emit_reshape,
    "concat": emit_concat,
    "slice": emit_slice,
    "pad_slice": emit_pad_slice,
    "sum": emit_reduction("sum"),
    "mean": emit_reduction("mean"),
    "max": emit_reduction("max"),
    "max_backward": emit_max_backward,
    "broadcast_to": emit_broadcast_to,
    "sum_to": emit_sum_to,
    "embedding": emit_embedding,
    "embedding_backward": emit_embedding_backward,
    "conv1d": emit_conv1d,
    "conv1d_backward_input": emit_conv1d_backward_input,
    "conv1d_backward_kernel": emit_conv1d_backward_kernel,
    "max_pool1d": emit_max_pool1d,
    "avg_pool1d": emit_avg_pool1d,
    "max_pool1d_backward": emit_max_pool1d_backward,
    "avg_pool1d_backward": emit_avg_pool1d_backward,
    "dropout_mask": emit_dropout_mask,
    "softmax": emit_softmax,
    "log_softmax": emit_log_softmax,
    "onehot": emit_onehot,
    "cross_entropy": emit_cross_entropy,
    "softmax_cross_entropy_grad": emit_softmax_cross_entropy_grad,
    "binary_cross_entropy": emit_binary_cross_entropy,
}


# -- files ---------------------------------------------------------------------------
def leaf_shape(shape: tuple) -> str:
    dims = ["None" if is_batch(d) else str(int(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def init_code(leaf) -> str:
    shape = shape_text(leaf.shape)
    if leaf.distribution == "constant":
        return f"np.full({shape}, {leaf.scale!r}, DTYPE)"
    if leaf.distribution == "normal":
        return f"({leaf.scale!r} * random_normal(seed, {leaf.index}, {shape})).astype(DTYPE)"
    return f"({leaf.scale!r} * (2.0 * random_uniform(seed, {leaf.index}, {shape}) - 1.0)).astype(DTYPE)"


def body(program, g: Graph, roots: list[str], returns: list[str]) -> list[str]:
    """Unpack the leaves the roots read, then one block per statement."""
    statements = share_softmax(g, schedule(g, roots, emit))
    read = g.needed_by(roots)
    lines = []
    for leaf in program.params:
        if leaf.name in read:
            lines.append(f'{leaf.name} = params["{leaf.name}"]')
    for leaf in program.inputs:
        if leaf.name in read:
            lines.append(f'{leaf.name} = np.asarray(inputs["{leaf.name}"]{", DTYPE" if leaf.dtype == "float" else ""})')
    if program.batch_input is not None and any(re.search(r"\bn\b", s) for st in statements for s in st.lines):
        lines.append(f'n = np.shape(inputs["{program.batch_input}"])[0]')
    for st in statements:
        lines.extend(f"# {comment}" for comment in st.comments)
        lines.extend(st.lines)
    return lines + returns


def share_softmax(g: Graph, statements: list[Statement]) -> list[Statement]:
    """Cross-entropy's loss and its gradient both take exp(z - max z) over the
    logits, a [batch, classes] array: where one function computes both, the
    loss keeps its exponentials and total for the gradient, which reuses them."""
    losses = {tuple(g.args(st.target)): st for st in statements if st.op == "cross_entropy"}
    for st in statements:
        if st.op != "softmax_cross_entropy_grad":
            continue
        z, y, scale = g.args(st.target)
        loss = losses.get((z, y))
        if loss is None or statements.index(loss) > statements.index(st):
            continue
        shifted_z, exps, total = f"sg_shifted_{z}", f"sg_exp_{z}", f"sg_total_{z}"
        loss.lines = [
            f"{shifted_z} = {shifted(z)}",
            f"{exps} = np.exp({shifted_z})",
            f"{total} = {exps}.sum(axis=-1, keepdims=True)",
            f"{loss.target} = {mean_cross_entropy(f'np.log({total}[..., 0])', shifted_z, y)}",
        ]
        # the loss is computed: its exponentials become the gradient in place
        st.lines = [f"{st.target} = {exps}", *gradient_from_exps(st.target, y, arg_text(g, scale), total)]
    return statements


def value_text(g: Graph, node: str) -> str:
    """A returned value: a fresh array of the model's dtype."""
    text = arg_text(g, node)
    if g.op(node) in ("input", "param", "const") or g.shape(node) == () or g.op(node) == "broadcast_to":
        return f"np.array({text}, DTYPE)"
    return text


def metric(program) -> tuple[str, str] | None:
    """The scored output and the NumPy text counting its correct predictions."""
    g = program.eval_graph
    scores = scored_output(program)
    if scores is None:
        return None
    labels = g.args(g.loss)[1]
    if g.op(g.loss) == "cross_entropy":
        return scores, f"np.sum(np.argmax({scores}, axis=-1) == {labels})"
    return scores, f"np.sum(({scores} > 0) == ({labels} > 0.5))"


def render_files(program, env) -> dict[str, str]:
    train = program.train_graph
    evaluation = program.eval_graph
    grads = ", ".join(f'"{p}": {value_text(train, d)}' for p, d in program.gradients.items())
    outputs = ", ".join(f'"{o}": {value_text(evaluation, node)}' for o, node in zip(program.outputs, program.output_nodes))
    found = metric(program)
    eval_roots = [evaluation.loss] + ([found[0]] if found else [])
    eval_return = f"return float({arg_text(evaluation, evaluation.loss)})" + (f", int({found[1]})" if found else "")
    context = dict(
        name=program.name,
        summary=summary(program),
        source=source_name(program),
        dtype=program.dtype,
        description=describe(program.graph),
        params=[dict(name=p.name, shape=shape_text(p.shape), init=p.init, init_code=init_code(p)) for p in program.params],
        inputs=[dict(name=i.name, shape=leaf_shape(i.shape), dtype=i.dtype, bound=i.bound) for i in program.inputs],
        outputs=list(program.outputs),
        batch_input=repr(program.batch_input),
        metric=found is not None,
        forward_body=body(program, evaluation, program.output_nodes, [f"return {{{outputs}}}"]),
        evaluate_body=body(program, evaluation, eval_roots, [eval_return]),
        train_body=body(program, train, [train.loss, *program.gradients.values()], [f"return float({arg_text(train, train.loss)}), {{{grads}}}"]),
    )
    files = {"model.py": env.get_template("numpy/model.py.j2").render(context)}
    files["train.py"] = env.get_template("numpy/train.py.j2").render(trainer_context(program))
    return files
