"""The NumPy backend: emitter table, printer, and rendering of ``model.py``/``train.py``."""

from __future__ import annotations

import functools
import inspect
import math
import re
from contextvars import ContextVar

import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence

from ..ir import Graph, batch_axis, is_batch, numel
from ..metrics import ERRORS, classes, classifier_term, top_k
from ..ops import REGISTRY
from ..ops.registry import axes_text, broadcast_shapes
from ..ops.reduce import sum_to_axes
from ..ops.symbolic import BATCH, fill, op_expr, placeholder, real_valued, relu, sgn, sigmoid, softplus, step, structure_expr
from ..sharding import placed_masks
from .schedule import Schedule, cross_entropy_pairs, schedule
from .common import (
    arg_text,
    CachedPrinter,
    derivation_comments,
    describe,
    error_sum,
    metric_roots,
    literal,
    need,
    Node,
    recording,
    rewriting,
    source_name,
    Statement,
    summary,
    trainer_context,
    view,
)


class Printer(NumPyPrinter):
    """sympy's NumPy printer, writing ``np.`` and our stable primitives."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        return "np." + fqn.split(".", 1)[1] if fqn.startswith("numpy.") else fqn

    def _print_sigmoid(self, expr):
        # (1 + tanh(x/2)) / 2 equals 1/(1 + exp(-x)) and never overflows.
        return f"(0.5 + 0.5*np.tanh(0.5*{self.parenthesize(expr.args[0], PRECEDENCE['Mul'])}))"

    def _print_relu(self, expr):
        return f"np.maximum({self._print(expr.args[0])}, 0)"

    def _print_step(self, expr):
        # a comparison is 50 times faster than np.heaviside
        return f"({self._print(expr.args[0])} > 0).astype(DTYPE)"

    def _print_sgn(self, expr):
        return f"np.sign({self._print(expr.args[0])})"

    def _print_softplus(self, expr):
        return f"np.logaddexp({self._print(expr.args[0])}, 0)"  # log(exp(x) + exp(0)), which never overflows

    def _print_erf(self, expr):
        return f"erf({self._print(expr.args[0])})"  # the model's own, vectorised: NumPy has no erf

    def _print_Add(self, expr, order=None):
        # negative terms last: a leading one would cost NumPy a pass to negate it
        terms = sorted(self._as_ordered_terms(expr, order=order), key=lambda t: t.could_extract_minus_sign())
        text = ""
        for term in terms:
            printed = self._print(term)
            sign = "+"
            if printed.startswith("-") and not term.is_Add:
                sign, printed = "-", printed[1:]
            if precedence(term) < precedence(expr) or term.is_Add:
                printed = f"({printed})"
            text += f" {sign} {printed}" if text else ("-" if sign == "-" else "") + printed
        return text

    def _print_Integer(self, expr):
        # 10**20 as a float: a Python int that large meets an array as an object, or overflows
        return super()._print_Integer(expr) if abs(int(expr)) < 2**31 else literal(float(expr))

    def _print_Pow(self, expr, rational=False):
        if expr.exp == -1:
            return f"1/{self.parenthesize(expr.base, 100)}"
        if expr.exp.is_Integer and abs(int(expr.exp)) > 2**31:  # a float, not a 300-digit integer literal
            return f"{self.parenthesize(expr.base, PRECEDENCE['Pow'])}**{literal(float(expr.exp))}"
        return super()._print_Pow(expr, rational)


PRINTER = CachedPrinter(Printer({"fully_qualified_modules": False}), lambda value: sp.Symbol(constant_text(value), real=True))


def constant_text(value) -> str:
    """A constant of a structure key as NumPy text (the batch size is n)."""
    return need("n") if value == BATCH else literal(value)


def shape_text(shape: tuple) -> str:
    dims = [need("n") if is_batch(d) else str(int(d)) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def count_text(dims) -> str:
    """How many elements an array of ``dims`` holds, as a divisor (the batch size is n)."""
    static = math.prod(int(d) for d in dims if not is_batch(d))
    parts = [need("n") for d in dims if is_batch(d)]
    if static != 1 or not parts:
        parts.append(str(static))
    return parts[0] if len(parts) == 1 else f"({' * '.join(parts)})"


def mean_text(expr: str, dims) -> str:
    """The mean of all of ``expr`` (an array of ``dims``) as its sum over the count:
    ndarray.mean spends about 2.5 us in Python, more than the whole sum of a small array."""
    return f"{expr}.sum() / {count_text(dims)}"


# -- element-wise expressions as ufunc calls writing into one buffer ----------------------
UFUNCS = {sp.Abs: "np.absolute", sgn: "np.sign"}  # the others as sympy's NumPy printer names them (see ufunc)


class InPlace:
    """An element-wise expression as a sequence of NumPy ufunc calls that
    write into the result's own buffer (``sg_out``), with a scratch buffer
    (``sg_tmp1``, ...) only where a second operand must be computed first:
    no temporary arrays for a big result."""

    def __init__(self):
        self.lines: list[str] = []
        self.temps = 0

    @classmethod
    def lines_of(cls, expr: sp.Expr) -> tuple[list[str], int]:
        writer = cls()
        result = writer.value(expr, "sg_out")
        if result != "sg_out":  # an expression without an operation: a copy
            writer.lines.append(f"np.copyto(sg_out, {result})")
        return writer.lines, writer.temps

    def atom(self, expr: sp.Expr) -> str | None:
        if expr.is_Symbol:
            return expr.name
        if expr.is_number:  # 2, but also pi and sqrt(2): a constant
            try:
                return literal(float(expr))
            except TypeError:  # a function sympy leaves unevaluated at a constant, relu(1): computed like any other
                return None
        return None

    @staticmethod
    def ufunc(expr: sp.Expr) -> str | None:
        """The NumPy ufunc of a function of one argument, if there is one."""
        if type(expr) in UFUNCS:
            return UFUNCS[type(expr)]
        name = PRINTER.printer.known_functions.get(type(expr).__name__, "")
        return "np." + name.split(".", 1)[1] if name.startswith("numpy.") else None

    def value(self, expr: sp.Expr, target: str) -> str:
        """Text of ``expr``'s value: an atom as it is, else computed into ``target``."""
        text = self.atom(expr)
        if text is not None:
            return text
        if expr.is_Add:
            return self.fold(expr.args, target, "np.add", "np.subtract", lambda t: t.could_extract_minus_sign(), lambda t: -t)
        if expr.is_Mul:
            coefficient, factors = expr.as_coeff_mul()
            if coefficient == -1:
                self.call("np.negative", [self.value(sp.Mul(*factors), target)], target)
                return target
            parts = ([coefficient] if coefficient != 1 else []) + list(factors)
            return self.fold(parts, target, "np.multiply", "np.divide", lambda f: f.is_Pow and f.exp.is_negative, lambda f: 1 / f)
        if expr.is_Pow:
            base = self.value(expr.base, target)
            if expr.exp == 2:
                self.call("np.square", [base], target)
            elif expr.exp == sp.Rational(1, 2):
                self.call("np.sqrt", [base], target)
            elif expr.exp == -1:
                self.call("np.divide", ["1.0", base], target)
            else:
                self.call("np.power", [base, literal(float(expr.exp))], target)
            return target
        if len(expr.args) != 1 or not (isinstance(expr, (relu, step, sigmoid, softplus)) or self.ufunc(expr)):
            self.lines.append(f"np.copyto({target}, {PRINTER.printer.doprint(expr)})")  # as the printer writes it
            return target
        (arg,) = expr.args
        inner = self.value(arg, target)
        if isinstance(expr, relu):
            self.call("np.maximum", [inner, "0.0"], target)
        elif isinstance(expr, step):
            self.call("np.greater", [inner, "0.0"], target)
        elif isinstance(expr, softplus):
            self.call("np.logaddexp", [inner, "0.0"], target)
        elif isinstance(expr, sigmoid):  # (1 + tanh(x/2)) / 2, as the printer writes it
            self.call("np.multiply", [inner, "0.5"], target)
            self.call("np.tanh", [target], target)
            self.call("np.multiply", [target, "0.5"], target)
            self.call("np.add", [target, "0.5"], target)
        else:
            self.call(self.ufunc(expr), [inner], target)
        return target

    def fold(self, terms, target: str, join: str, inverse_join: str, inverted, invert) -> str:
        """terms joined by ``join``; those ``inverted`` says are joined by the inverse instead."""
        direct = [t for t in terms if not inverted(t)]
        inverse = [invert(t) for t in terms if inverted(t)]
        # atoms last: each compound term before them can then use the target itself
        order = sorted(direct, key=lambda t: self.atom(t) is not None)
        if not order:  # only inverse terms: start from the identity
            order = [sp.Integer(0 if join == "np.add" else 1)]
        acc = self.value(order[0], target)
        for term in order[1:]:
            acc = self.join(join, acc, term, target)
        for term in inverse:
            acc = self.join(inverse_join, acc, term, target)
        return acc

    def join(self, ufunc: str, acc: str, term: sp.Expr, target: str) -> str:
        text = self.atom(term)
        if text is None and acc != target:  # the target is still free: the term goes there
            text = self.value(term, target)
        elif text is None:
            self.temps += 1
            temp = f"sg_tmp{self.temps}"
            text = self.value(term, temp)
        self.call(ufunc, [acc, text], target)
        return target

    def call(self, ufunc: str, args: list[str], target: str) -> None:
        self.lines.append(f"{ufunc}({', '.join(args)}, out={target})")


# -- emitters: one per non-element-wise op; each returns statements assigning node.name
SCRATCH_ELEMENTS = 1 << 14  # at the spec's batch size; fresh arrays this big cost page faults on every call


# The scratch buffer of each node the statements being emitted write into one (see ``plan_scratch``).
_BUFFERS: ContextVar[dict[str, int]] = ContextVar("buffers", default={})


def scratch(name: str, shape: str) -> str:
    """The text of a reused buffer (the model's ``scratch``) for ``name``, of
    shape ``shape`` (text): a node's numbered buffer of the memory plan, or
    a helper array's own."""
    key = _BUFFERS.get().get(name)
    return f'{need("scratch")}({key if key is not None else repr(name)}, {shape})'


def zeros(name: str, shape: tuple, reuse: bool) -> list[str]:
    if not reuse:
        return [f"{name} = np.zeros({shape_text(shape)}, DTYPE)"]
    return [f"{name} = {scratch(name, shape_text(shape))}", f"{name}.fill(0)"]


def emit_matmul(n: Node, reuse: bool = False):
    a, b = n.args
    if len(n.shapes[1]) == 2 and len(n.shapes[0]) > 2 and tuple(n.shapes[0][:-2]) == tuple(n.shape[:-2]):
        # a stack times one matrix: one product of all the stack's rows (np.matmul takes them matrix by matrix)
        k, columns = int(n.shapes[0][-1]), int(n.shape[-1])
        return product_into(n.name, f"{a}.reshape(-1, {k}), {b}", n.shape, columns, reuse)
    if reuse:
        return [f"{n.name} = np.matmul({a}, {b}, out={scratch(n.name, shape_text(n.shape))})"]
    return [f"{n.name} = {a} @ {b}"]


def emit_matmul_sum(n: Node):
    a, b = n.args
    lead = tuple(range(len(n.shapes[1]) - 2))
    inner = len(lead) + (0 if n.attrs["transposed"] else 1)
    return [f"{n.name} = np.tensordot({a}, {b}, axes=({lead + (inner,)}, {lead + (len(lead),)}))"]


def emit_matmul_bias(n: Node, reuse: bool = False):
    a, b, bias = n.args
    product = f"np.matmul({a}, {b}, out={scratch(n.name, shape_text(n.shape))})" if reuse else f"{a} @ {b}"
    return [f"{n.name} = {product}", f"{n.name} += {bias}"]


def emit_matvec(n: Node):
    m, v = n.args
    return [f"{n.name} = {v} @ {m}" if n.attrs["transposed"] else f"{n.name} = {m} @ {v}"]


def emit_transpose(n: Node):
    axes = n.attrs["axes"]
    if axes == tuple(range(len(axes))):
        return [f"{n.name} = {n.args[0]}"]
    if axes == (1, 0):
        return [f"{n.name} = {method_target(n.args[0])}.T"]
    return [f"{n.name} = np.transpose({n.args[0]}, {axes})"]


def emit_reshape(n: Node):
    return [f"{n.name} = {method_target(n.args[0])}.reshape({shape_text(n.shape)})"]


def emit_concat(n: Node, reuse: bool = False):
    into = f", out={scratch(n.name, shape_text(n.shape))}" if reuse else ""
    return [f"{n.name} = np.concatenate(({', '.join(n.args)},), axis={n.attrs['axis']}{into})"]


def emit_slice(n: Node):
    index = ", ".join([":"] * n.attrs["axis"] + [f"{n.attrs['start']}:{n.attrs['stop']}"])
    return [f"{n.name} = {n.args[0]}[{index}]"]


def emit_pad_slice(n: Node, reuse: bool = False):
    index = ", ".join([":"] * n.attrs["axis"] + [f"{n.attrs['start']}:{n.attrs['stop']}"])
    return [*zeros(n.name, n.shape, reuse), f"{n.name}[{index}] = {n.args[0]}"]


def emit_mean(n: Node):
    """The sum over the axes, over their count (see mean_text)."""
    (line,) = EMIT["sum"](n)
    return [f"{line} / {count_text([n.shapes[0][axis] for axis in n.attrs['axis']])}"]


def emit_reduction(function: str):
    def emit(n: Node):
        keep = ", keepdims=True" if n.attrs.get("keepdims") else ""
        # the method: np.sum(x, ...) spends a microsecond more in Python, a lot for a small batch
        return [f"{n.name} = {method_target(n.args[0])}.{function}(axis={axes_text(n.attrs['axis'])}{keep})"]

    return emit


def emit_max_backward(n: Node, reuse: bool = False):
    (axis,) = n.attrs["axis"]
    x, cot = n.args
    first = ", ".join([":"] * axis + ["0:1"])  # the cotangent is the same along the axis: one slice of it
    return [
        *zeros(n.name, n.shape, reuse),
        f"np.put_along_axis({n.name}, np.expand_dims({x}.argmax(axis={axis}), {axis}), {cot}[{first}], axis={axis})",
    ]


def emit_broadcast_to(n: Node):
    return [f"{n.name} = np.broadcast_to({expanded(n)}, {shape_text(n.shape)})"]


def expanded(n: Node) -> str:
    """A broadcast_to's argument with its new axes inserted (size 1): NumPy's broadcasting does the rest."""
    value, axes = n.args[0], n.attrs["axes"]
    if not axes:
        return method_target(value)
    rank = len(n.shapes[0]) + len(axes)
    index = ["None" if i in axes else ":" for i in range(rank)]
    while index[-1] == ":":
        index.pop()
    return f"{method_target(value)}[{', '.join(index)}]"


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


def emit_embedding(n: Node, reuse: bool = False):
    if reuse:
        return [f"{n.name} = np.take({n.args[0]}, {n.args[1]}, axis=0, out={scratch(n.name, shape_text(n.shape))})"]
    return [f"{n.name} = {n.args[0]}[{n.args[1]}]"]


def emit_embedding_backward(n: Node, reuse: bool = False):
    ids, cot = n.args
    width = n.shape[1]
    # np.add.at over single elements: its fast path, three times quicker than over whole rows
    return [
        *zeros(n.name, n.shape, reuse),
        f"np.add.at({n.name}.reshape(-1), ({ids}.reshape(-1, 1) * {width} + np.arange({width})).reshape(-1), {cot}.reshape(-1))",
    ]


def windows(x: str, size: int, stride: int) -> str:
    view = f"np.lib.stride_tricks.sliding_window_view({x}, {size}, axis=1)"
    return view if stride == 1 else f"{view}[:, ::{stride}]"


def rows_name(x: str, attrs: dict, width: int) -> str:
    """The window rows of ``x`` one conv1d and its kernel gradient share."""
    name = f"sg_rows_{x}_{width}"
    if attrs["stride"] != 1:
        name += f"_stride{attrs['stride']}"
    return name + (f"_pad{attrs['padding']}" if attrs["padding"] else "")


def rows_statement(n: Node, x: str, width: int, steps: int, c_in: int) -> tuple[str, str]:
    """(its name, the statement computing it): the [batch*steps, width*c_in] matrix of window rows."""
    name = rows_name(x, n.attrs, width)
    into = ""
    if numel((n.shape[0], steps, width, c_in)) >= SCRATCH_ELEMENTS:
        batch = need("n") if is_batch(n.shape[0]) else str(int(n.shape[0]))
        into = f", {scratch(name, f'({batch} * {steps}, {width * c_in})')}"
    return name, Shared(f"{name} = window_rows({x}, {width}, {n.attrs['stride']}, {n.attrs['padding']}{into})", name)


def product_into(name: str, product: str, shape: tuple, columns: int, reuse: bool) -> list[str]:
    """``name = np.matmul(product)`` (a [rows, columns] matrix) seen as ``shape``; with ``reuse``, in name's scratch buffer."""
    if reuse:
        return [f"{name} = {scratch(name, shape_text(shape))}", f"np.matmul({product}, out={name}.reshape(-1, {columns}))"]
    return [f"{name} = np.matmul({product}).reshape({shape_text(shape)})"]


def emit_conv1d(n: Node, reuse: bool = False):
    x, kernel = n.args
    width, c_in, c_out = (int(d) for d in n.shapes[1])
    rows, line = rows_statement(n, x, width, int(n.shape[1]), c_in)
    # one product: K[width, c_in, c_out] is already the [width*c_in, c_out] matrix the rows meet
    return [line, *product_into(n.name, f"{rows}, {kernel}.reshape({width * c_in}, {c_out})", n.shape, c_out, reuse)]


def emit_conv1d_backward_kernel(n: Node, reuse: bool = False):
    x, cot = n.args
    width, c_in, c_out = (int(d) for d in n.shape)
    rows, line = rows_statement(n, x, width, int(n.shapes[1][1]), c_in)
    return [line, *product_into(n.name, f"{rows}.T, {cot}.reshape(-1, {c_out})", n.shape, c_out, reuse)]


def scatter_windows(n: Node, steps: int, contribution: str, width: int, per_tap, reuse: bool = False) -> list[str]:
    """Add each tap of a windowed contribution (``steps`` windows) back at its input positions."""
    stride, padding, length = n.attrs["stride"], n.attrs.get("padding", 0), int(n.shape[1])
    full = f"sg_padded_{n.name}" if padding else n.name  # the result is a view of it
    lines = zeros(full, (n.shape[0], length + 2 * padding, n.shape[2]), reuse)
    lines.append(f"for tap in range({width}):")
    lines.append(f"    {full}[:, tap : tap + {stride * (int(steps) - 1) + 1} : {stride}] += {per_tap(contribution)}")
    if padding:
        lines.append(f"{n.name} = {full}[:, {padding}:{padding + length}]")
    return lines


def emit_conv1d_backward_input(n: Node, reuse: bool = False):
    cot, kernel = n.args
    width, c_in, c_out = (int(d) for d in n.shapes[1])
    steps = int(n.shapes[0][1])
    # every tap's contribution in one product, [batch, steps, width, c_in], then added back tap by tap
    taps_shape = (n.shape[0], steps, width, c_in)
    product = f"{cot}.reshape(-1, {c_out}), {kernel}.reshape({width * c_in}, {c_out}).T"
    taps = product_into("sg_taps", product, taps_shape, width * c_in, numel(taps_shape) >= SCRATCH_ELEMENTS)
    return [*taps, *scatter_windows(n, steps, "sg_taps", width, lambda c: f"{c}[:, :, tap]", reuse)]


def pool_by_taps(n: Node, combine: str) -> list[str]:
    """A pooling as one pass per tap over strided slices of the input: twice
    as fast as reducing a window view across its last axis."""
    x, size, stride = n.args[0], n.attrs["size"], n.attrs["stride"]
    stop = stride * (int(n.shape[1]) - 1) + 1
    return [
        f"{n.name} = {x}[:, 0:{stop}:{stride}].copy()",
        f"for tap in range(1, {size}):",
        f"    {combine}({n.name}, {x}[:, tap : tap + {stop} : {stride}], out={n.name})",
    ]


def emit_max_pool1d(n: Node):
    return pool_by_taps(n, "np.maximum")


def emit_avg_pool1d(n: Node):
    return [*pool_by_taps(n, "np.add"), f"{n.name} /= {n.attrs['size']}"]


def emit_max_pool1d_backward(n: Node):
    x, cot = n.args
    size, stride = n.attrs["size"], n.attrs["stride"]
    first = f"np.argmax({windows(x, size, stride)}, axis=3)"
    lines = [f"sg_first = {first}"]
    return lines + scatter_windows(n, n.shapes[1][1], cot, size, lambda c: f"{c} * (sg_first == tap)")


def emit_avg_pool1d_backward(n: Node):
    size = n.attrs["size"]
    return scatter_windows(n, n.shapes[0][1], n.args[0], size, lambda c: f"{c} / {size}")


def image_taps(out_shape: tuple, size: tuple[int, int], stride: int):
    """For each tap (u, v) of a window over images, the slice of the input (its
    [batch, height, width, c] layout) that the tap reads for every output pixel."""
    stop_h, stop_w = stride * (int(out_shape[1]) - 1) + 1, stride * (int(out_shape[2]) - 1) + 1
    for u in range(size[0]):
        for v in range(size[1]):
            yield (u, v), f"[:, {u}:{u + stop_h}:{stride}, {v}:{v + stop_w}:{stride}]"


def patches_line(n: Node, x: str, kh: int, kw: int) -> tuple[str, str]:
    """(its name, the line computing it): the [batch*out_h*out_w, kh*kw*c_in] patches of x that a conv2d and its kernel gradient share."""
    stride, padding = n.attrs["stride"], n.attrs["padding"]
    name = f"sg_patches_{x}_{kh}x{kw}" + (f"_stride{stride}" if stride != 1 else "") + (f"_pad{padding}" if padding else "")
    return name, Shared(f"{name} = window_patches({x}, {kh}, {kw}, {stride}, {padding})", name)


def emit_conv2d(n: Node, reuse: bool = False):
    x, kernel = n.args
    kh, kw, c_in, c_out = (int(d) for d in n.shapes[1])
    patches, line = patches_line(n, x, kh, kw)
    # one product: K[kh, kw, c_in, c_out] is already the [kh*kw*c_in, c_out] matrix the patches meet
    return [line, *product_into(n.name, f"{patches}, {kernel}.reshape({kh * kw * c_in}, {c_out})", n.shape, c_out, reuse)]


def emit_conv2d_backward_kernel(n: Node, reuse: bool = False):
    x, cot = n.args
    kh, kw, c_in, c_out = (int(d) for d in n.shape)
    patches, line = patches_line(n, x, kh, kw)
    return [line, *product_into(n.name, f"{patches}.T, {cot}.reshape(-1, {c_out})", n.shape, c_out, reuse)]


def emit_conv2d_backward_input(n: Node):
    cot, kernel = n.args
    kh, kw, c_in, c_out = (int(d) for d in n.shapes[1])
    padding, (batch, height, width, _) = n.attrs["padding"], n.shape
    # every tap's contribution in one product, [batch, out_h, out_w, kh, kw, c_in], then added back tap by tap
    taps = f"({cot}.reshape(-1, {c_out}) @ {kernel}.reshape({kh * kw * c_in}, {c_out}).T)"
    out_h, out_w = (int(d) for d in n.shapes[0][1:3])
    full = f"sg_padded_{n.name}" if padding else n.name
    lines = [f"sg_taps = {taps}.reshape({shape_text((batch, out_h, out_w, kh, kw, c_in))})",
             f"{full} = np.zeros({shape_text((batch, int(height) + 2 * padding, int(width) + 2 * padding, c_in))}, DTYPE)"]
    lines += [f"{full}{window} += sg_taps[:, :, :, {u}, {v}]" for (u, v), window in image_taps(n.shapes[0], (kh, kw), n.attrs["stride"])]
    if padding:
        lines.append(f"{n.name} = {full}[:, {padding}:{padding + int(height)}, {padding}:{padding + int(width)}]")
    return lines


def pool2d_by_taps(n: Node, combine: str) -> list[str]:
    x, size = n.args[0], n.attrs["size"]
    (_, window), *rest = image_taps(n.shape, (size, size), n.attrs["stride"])
    return [f"{n.name} = {x}{window}.copy()", *(f"{combine}({n.name}, {x}{tap}, out={n.name})" for _, tap in rest)]


def emit_max_pool2d(n: Node):
    return pool2d_by_taps(n, "np.maximum")


def emit_avg_pool2d(n: Node):
    return [*pool2d_by_taps(n, "np.add"), f"{n.name} /= {n.attrs['size'] ** 2}"]


def emit_max_pool2d_backward(n: Node):
    x, cot = n.args
    size, stride = n.attrs["size"], n.attrs["stride"]
    out = n.shapes[1]
    # the first maximum of each window in row-major order, as the C kernel takes it (np.argmax picks the first NaN)
    windows = f"np.lib.stride_tricks.sliding_window_view({x}, ({size}, {size}), axis=(1, 2))[:, ::{stride}, ::{stride}]"
    lines = [f"sg_first = np.argmax({windows}.reshape({shape_text(tuple(out) + (size * size,))}), axis=4)", *zeros(n.name, n.shape, False)]
    return lines + [f"{n.name}{window} += {cot} * (sg_first == {u * size + v})" for (u, v), window in image_taps(out, (size, size), stride)]


def emit_avg_pool2d_backward(n: Node):
    (cot,), size = n.args, n.attrs["size"]
    taps = image_taps(n.shapes[0], (size, size), n.attrs["stride"])
    return [*zeros(n.name, n.shape, False), f"sg_share = {cot} / {size * size}", *(f"{n.name}{window} += sg_share" for _, window in taps)]


def emit_upsample2d(n: Node):
    factor = n.attrs["factor"]
    return [f"{n.name} = {n.args[0]}.repeat({factor}, axis=1).repeat({factor}, axis=2)"]


def emit_layer_norm(n: Node):
    (x,), axis, eps = n.args, n.attrs["axis"], n.attrs["eps"]
    # in float64, as the C kernel: float32 squares of large values overflow, and their sums lose the spread;
    # the variance from the deviations (two passes): a constant row gives 0, exactly
    return [f"sg_centered = {x} - np.mean({x}, axis={axis}, keepdims=True, dtype=np.float64)",
            f"{n.name} = (sg_centered / np.sqrt(np.mean(np.square(sg_centered), axis={axis}, keepdims=True) + {literal(eps)}))"
            ".astype(DTYPE, copy=False)"]


def emit_layer_norm_backward(n: Node):
    x, cot = n.args
    axis, eps = n.attrs["axis"], n.attrs["eps"]
    return [
        f"sg_normed = {x} - np.mean({x}, axis={axis}, keepdims=True, dtype=np.float64)",
        f"sg_rstd = 1 / np.sqrt(np.mean(np.square(sg_normed), axis={axis}, keepdims=True) + {literal(eps)})",
        "sg_normed *= sg_rstd",
        f"{n.name} = (sg_rstd * ({cot} - np.mean({cot}, axis={axis}, keepdims=True, dtype=np.float64)"
        f" - sg_normed * np.mean({cot} * sg_normed, axis={axis}, keepdims=True))).astype(DTYPE, copy=False)",
    ]


def emit_dropout_mask(n: Node):
    p = n.attrs["p"]
    axis = batch_axis(n.shape)
    stream, shape = f"{n.attrs['index']} + DROPOUT_STREAM", shape_text(n.shape)
    draws = f"random_uniform(seed, {stream}, {shape})" if axis is None else f"example_uniform(seed, {stream}, {shape}, {axis}, first, total)"
    return [
        f"{n.name} = ({draws} >= {p!r})"
        f" * DTYPE({1.0 / (1.0 - p)!r}) if training else DTYPE(1)"
    ]


def emit_softmax(n: Node, reuse: bool = False):
    axis = n.attrs["axis"]
    return [
        *shift(n.name, n.args[0], axis, n.shape, reuse),
        f"np.exp({n.name}, out={n.name})",
        f"{n.name} /= np.sum({n.name}, axis={axis}, keepdims=True)",
    ]


def emit_log_softmax(n: Node, reuse: bool = False):
    axis = n.attrs["axis"]
    return [
        *shift(n.name, n.args[0], axis, n.shape, reuse),
        f"{n.name} -= np.log(np.sum(np.exp({n.name}), axis={axis}, keepdims=True))",
    ]


def shift(name: str, z: str, axis: int, shape: tuple, reuse: bool) -> list[str]:
    """``name = z - max(z)`` along ``axis`` (a fresh array, or a reused one)."""
    if reuse:
        return [f"{name} = np.subtract({z}, np.max({z}, axis={axis}, keepdims=True), out={scratch(name, shape_text(shape))})"]
    return [f"{name} = {z} - np.max({z}, axis={axis}, keepdims=True)"]


def emit_onehot(n: Node):
    return [f"{n.name} = (np.arange({n.attrs['classes']}) == {n.args[0]}[..., None]).astype(DTYPE)"]


def emit_softmax_cross_entropy_grad(n: Node, reuse: bool = False):
    z, y, scale = n.args
    v = n.name
    return [
        *shift(v, z, -1, n.shape, reuse),
        f"np.exp({v}, out={v})",
        *gradient_from_exps(v, y, scale, f"np.sum({v}, axis=-1, keepdims=True)"),
    ]


def emit_cross_entropy(n: Node):
    logits, labels = n.args
    v = n.name
    log_total = f"np.log(np.sum(np.exp({v}), axis=-1))"
    return [*shift(v, logits, -1, (), False), f"{v} = {mean_cross_entropy(log_total, v, labels, n.shapes[1])}"]


# The text cross-entropy's loss and gradient share (``share_softmax`` puts them together).
def mean_cross_entropy(log_total: str, shifted_z: str, y: str, label_dims) -> str:
    return mean_text(f"({log_total} - np.take_along_axis({shifted_z}, {y}[..., None], axis=-1)[..., 0])", label_dims)


def gradient_from_exps(v: str, y: str, scale: str, total: str) -> list[str]:
    """``v`` holds exp(z - max z): make it (softmax(z) - onehot(y)) * scale."""
    return [
        f"{v} *= {scale} / {total}",
        f"np.put_along_axis({v}, {y}[..., None], np.take_along_axis({v}, {y}[..., None], axis=-1) - {scale}, axis=-1)",
    ]


def emit_binary_cross_entropy(n: Node):
    z, y = n.args
    # softplus(z) - z*y, with np.logaddexp(0, z) = log(1 + e^z) computed without overflow in one pass
    return [f"{n.name} = {mean_text(f'(np.logaddexp(0, {z}) - {z} * {y})', n.shapes[0])}"]


def emit(n: Node, reuse: bool = False) -> list[str]:
    """Statements assigning ``n.name``: a fresh array, or with ``reuse`` one of
    the model's scratch buffers, where the op can write into one."""
    if n.structure is not None:
        key, arrays = n.structure
        if reads_batch(key):  # printed once per structure: the cached text does not note n again
            need("n")
        if reuse:
            return in_place(n, key, arrays)
        text = PRINTER.fill(key, arrays)
        if text in arrays:  # sympy left an argument itself (x*1): a copy, so that no two nodes share an array
            text = f"{text}.copy()"
        elif not fills_shape(n, key):
            text = f"DTYPE({text})" if not n.shape else f"np.full({shape_text(n.shape)}, {text}, DTYPE)"
        return [f"{n.name} = {text}"]
    if reuse and n.op in WRITES_INTO:
        return EMIT[n.op](n, reuse=True)
    return EMIT[n.op](n)


def reads_batch(key: tuple) -> bool:
    """Whether a structure's expression holds the batch size (a walk without
    recursion: a 400-term sum is a key 400 deep)."""
    stack = [key]
    while stack:
        for part in stack.pop()[2]:
            if part == ("const", BATCH):
                return True
            if part[0] not in ("const", "leaf"):
                stack.append(part)
    return False


def fills_shape(n: Node, key: tuple) -> bool:
    """Whether the arrays an expression still reads after sympy's evaluation
    broadcast to the node's whole shape (``x/x`` is 1, ``0*x + w`` is ``w``)."""
    read = leaves_read(key, len(n.leaf_shapes))
    if not read:  # constants alone make a Python number, not an array
        return False
    if len(read) < len(n.leaf_shapes):
        # sympy cancelled an array (x - x): what is left may be one that NumPy's
        # broadcasting keeps smaller than its node (see implicit_broadcasts)
        return False
    whole = broadcast_shapes(*n.leaf_shapes)
    return tuple(map(int, whole)) == tuple(map(int, n.shape))


@functools.lru_cache(maxsize=None)
def leaves_read(key: tuple, count: int) -> frozenset[int]:
    """Which of a structure's ``count`` leaves its expression still reads once sympy has evaluated it."""
    free = structure_expr(key, PRINTER.constant).free_symbols
    return frozenset(i for i in range(count) if placeholder(i) in free)


IN_PLACE: dict[tuple, tuple[list[str], int]] = {}


def in_place(n: Node, key: tuple, arrays: list[str]) -> list[str]:
    """The expression as ufunc calls into a scratch buffer; the one-line form, as a comment, says what they compute."""
    if key not in IN_PLACE:
        IN_PLACE[key] = InPlace.lines_of(real_valued(structure_expr(key, PRINTER.constant)))
    calls, temps = IN_PLACE[key]
    shape = shape_text(n.shape)
    lines = [f"# {n.name} = {PRINTER.fill(key, arrays)}", f"{n.name} = {scratch(n.name, shape)}"]
    lines += [f"sg_tmp{i} = {scratch(f'sg_tmp{i}', shape)}" for i in range(1, temps + 1)]
    return lines + [re.sub(r"\bsg_out\b", n.name, fill(call, arrays)) for call in calls]


EMIT = {
    "matvec": emit_matvec,
    "matmul_sum": emit_matmul_sum,
    "conv2d": emit_conv2d,
    "conv2d_backward_input": emit_conv2d_backward_input,
    "conv2d_backward_kernel": emit_conv2d_backward_kernel,
    "max_pool2d": emit_max_pool2d,
    "avg_pool2d": emit_avg_pool2d,
    "max_pool2d_backward": emit_max_pool2d_backward,
    "avg_pool2d_backward": emit_avg_pool2d_backward,
    "upsample2d": emit_upsample2d,
    "layer_norm": emit_layer_norm,
    "layer_norm_backward": emit_layer_norm_backward,
    "matmul_bias": emit_matmul_bias,
    "matmul": emit_matmul,
    "transpose": emit_transpose,
    "reshape": emit_reshape,
    "concat": emit_concat,
    "slice": emit_slice,
    "pad_slice": emit_pad_slice,
    "sum": emit_reduction("sum"),
    "mean": emit_mean,
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
# the ops whose emitters can write into a scratch buffer: those that take ``reuse``
WRITES_INTO = frozenset(op for op, emitter in EMIT.items() if "reuse" in inspect.signature(emitter).parameters)


# -- files ---------------------------------------------------------------------------
def uses_erf(g: Graph) -> bool:
    """Whether the model must define erf, which NumPy lacks (see ``Printer._print_erf``)."""
    return any(REGISTRY[g.op(v)].elementwise and op_expr(g.op(v), g.attrs_key(v)).has(sp.erf) for v in g.nx if g.op(v) in REGISTRY)


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


def spec_note(program, var: str) -> str:
    name = program.spec_name(var)
    return "" if name == var else f"  # the spec's {name}"


def body(program, g: Graph, roots: list[str], returns: list[str], needs: set[str]) -> list[str]:
    """Unpack the leaves the roots read, then one block per statement; adds to
    ``needs`` what the statements read of the module (``scratch``)."""
    fresh = escaping(g, roots)
    read = g.needed_by(roots)
    s = schedule(g, roots, views=VIEWS, in_place=False)
    buffers = plan_scratch(s, fresh)
    written = {v: f"{x}.T" for v, x in s.transposed.items()}  # a matrix transpose read only by products
    statements = []
    token = _BUFFERS.set(buffers)
    try:
        for v in s.order:
            with recording() as used:
                lines = emit(view(g, v, s.absorbed, written), reuse=v in buffers)
            statements.append(Statement(v, lines, s.fused(v), g.shape(v), g.op(v), frozenset(used)))
        statements = implicit_broadcasts(g, share_lines(share_softmax(g, statements, fresh)), fresh, read)
    finally:
        _BUFFERS.reset(token)
    used = set().union(*(st.needs for st in statements))
    needs |= used
    lines = []
    for leaf in program.params:
        if leaf.var in read:
            lines.append(f'{leaf.var} = params["{leaf.name}"]{spec_note(program, leaf.var)}')
    for leaf in program.inputs:
        if leaf.var in read:
            lines.append(f'{leaf.var} = np.asarray(inputs["{leaf.name}"]{", DTYPE" if leaf.dtype == "float" else ""}){spec_note(program, leaf.var)}')
    if program.batch_input is not None and "n" in used:
        # n from an input this function reads (forward gets no labels), else the compiled size
        batched = [leaf.var for leaf in program.inputs if leaf.var in read and leaf.shape and is_batch(leaf.shape[0])]
        lines.append(f"n = {batched[0]}.shape[0]" if batched else f"n = {int(program.graph.dims['batch'])}")
    comments = derivation_comments(program, g, {st.target for st in statements} | {leaf.var for leaf in program.params + program.inputs if leaf.var in read})
    for st in statements:
        lines.extend(f"# {comment}" for comment in comments(st.fused, st.target))
        if program.spec_name(st.target) != st.target:
            lines.append(f"# {st.target} holds the spec's {program.spec_name(st.target)}")
        lines.extend(st.lines)
    return lines + returns


VIEWS = frozenset(op for op, definition in REGISTRY.items() if definition.view)  # written as NumPy views of their argument


def plan_scratch(s: Schedule, fresh: set[str]) -> dict[str, int]:
    """The nodes written into scratch buffers -> their buffer's number.

    Big arrays (``SCRATCH_ELEMENTS``) that no caller gets, of ops that can
    write into a buffer, share numbered buffers wherever their lifetimes
    (the schedule's, a view keeping its argument alive) do not overlap; each
    takes the free buffer nearest its size, so that a buffer, which grows to
    its largest use, grows little.
    """
    g = s.g
    own = {v for v in s.order if v not in fresh and numel(g.shape(v)) >= SCRATCH_ELEMENTS
           and (REGISTRY[g.op(v)].elementwise or g.op(v) in WRITES_INTO)}
    found: dict[str, int] = {}
    sizes: list[int] = []  # each buffer's largest use so far
    free_from: list[int] = []  # each buffer's position after which it is free
    for buffer in sorted(s.buffers(lambda v: numel(g.shape(v)), own), key=lambda b: b.first):
        free = [k for k, at in enumerate(free_from) if at < buffer.first]
        if free:
            fits = [k for k in free if sizes[k] >= buffer.size]
            k = min(fits, key=lambda k: sizes[k]) if fits else max(free, key=lambda k: sizes[k])
            sizes[k] = max(sizes[k], buffer.size)
            free_from[k] = buffer.last
        else:
            k = len(sizes)
            sizes.append(buffer.size)
            free_from.append(buffer.last)
        found[buffer.name] = k
    return found


def escaping(g: Graph, roots: list[str]) -> set[str]:
    """The roots and what they are views of: arrays the caller gets, which no
    later call may overwrite, so they are never scratch buffers."""
    found, stack = set(), list(roots)
    while stack:
        v = stack.pop()
        if v not in found:
            found.add(v)
            if g.op(v) in REGISTRY and REGISTRY[g.op(v)].view:
                stack.extend(g.args(v))
    return found


def share_softmax(g: Graph, statements: list[Statement], fresh: set[str]) -> list[Statement]:
    """Cross-entropy's loss and its gradient both take exp(z - max z) over the
    logits, a [batch, classes] array: where one function computes both, the
    loss keeps its exponentials and total for the gradient, which reuses them."""
    by_target = {st.target: st for st in statements}
    for grad, loss_node in cross_entropy_pairs(g, list(by_target)).items():
        st, loss = by_target[grad], by_target[loss_node]
        z, y, scale = g.args(grad)
        # named after the loss: two losses on the same logits each keep their own (the gradient overwrites them)
        shifted_z, exps, total = f"sg_shifted_{loss_node}", f"sg_exp_{loss_node}", f"sg_total_{loss_node}"
        big = numel(g.shape(z)) >= SCRATCH_ELEMENTS
        # the exponentials become the gradient: a scratch buffer only if that is not returned
        with rewriting(loss):
            into = f", out={scratch(exps, shape_text(g.shape(z)))}" if big and st.target not in fresh else ""
            loss.lines = [
                *shift(shifted_z, z, -1, g.shape(z), big),
                f"{exps} = np.exp({shifted_z}{into})",
                f"{total} = {exps}.sum(axis=-1, keepdims=True)",
                f"{loss.target} = {mean_cross_entropy(f'np.log({total}[..., 0])', shifted_z, y, g.shape(y))}",
            ]
        with rewriting(st):  # the loss is computed: its exponentials become the gradient in place
            st.lines = [f"{st.target} = {exps}", *gradient_from_exps(st.target, y, arg_text(g, scale), total)]
    return statements


def implicit_broadcasts(g: Graph, statements: list[Statement], fresh: set[str], needed: set[str]) -> list[Statement]:
    """A broadcast is left to NumPy's broadcasting (just its new axes
    inserted: np.broadcast_to alone costs microseconds) where that changes no
    result: the smaller arrays it leads to reach only element-wise ops, until
    each meets an array of the full shape, and are not returned."""
    actual: dict[str, tuple] = {}  # node -> its NumPy shape, where that is smaller than its own
    for st in statements:
        if st.op == "dropout_mask":  # a scalar 1 in evaluation mode
            actual[st.target] = ()
    for st in statements:
        if st.op != "broadcast_to" or st.target in fresh:
            continue
        (arg,) = g.args(st.target)
        axes = g.attrs(st.target)["axes"]
        shape = list(actual.get(arg, g.shape(arg)))
        for axis in sorted(axes):
            shape.insert(axis, 1)
        trial = {st.target: tuple(shape)}
        if spreads_safely(g, st.target, trial, actual, fresh, needed):
            actual.update(trial)
            with rewriting(st):
                st.lines = [f"{st.target} = {expanded(view(g, st.target))}"]
    return statements


def spreads_safely(g: Graph, start: str, trial: dict, actual: dict, fresh: set[str], needed: set[str]) -> bool:
    """Whether ``start`` at the smaller shape ``trial`` gives it changes no
    result; ``trial`` collects the other nodes it makes smaller."""
    stack = [start]
    while stack:
        for reader in g.nx.successors(stack.pop()):
            if reader not in needed:
                continue
            if not REGISTRY[g.op(reader)].elementwise:
                return False
            shape = broadcast_shapes(*(trial.get(a, actual.get(a, g.shape(a))) for a in g.args(reader)))
            if shape == g.shape(reader):
                continue
            if reader in fresh:
                return False
            if trial.get(reader) != shape:
                trial[reader] = shape
                stack.append(reader)
    return True


class Shared(str):
    """A line computing a value that other statements may compute too (the
    window rows a conv1d and its kernel gradient read, conv2d's patches): the
    first statement keeps it, the later ones use what it made."""

    def __new__(cls, text: str, name: str):
        line = super().__new__(cls, text)
        line.name = name
        return line


def share_lines(statements: list[Statement]) -> list[Statement]:
    made = set()
    for st in statements:
        st.lines = [line for line in st.lines if not (isinstance(line, Shared) and line.name in made)]
        made |= {line.name for line in st.lines if isinstance(line, Shared)}
    return statements


def value_text(g: Graph, node: str) -> str:
    """A returned value: a fresh array of the model's dtype (a leaf, or a view
    of one or of another result, is copied: the caller may write into it)."""
    text = arg_text(g, node)
    if g.op(node) in ("input", "param", "const") or g.shape(node) == () or REGISTRY[g.op(node)].view:
        return f"np.array({text}, DTYPE)"
    return text


def output_texts(program) -> list[str]:
    """forward()'s results, each an array of its own (an output that another
    output also is, is copied)."""
    g, texts, seen = program.eval_graph, [], set()
    for name, node in zip(program.outputs, program.output_nodes):
        texts.append(f'"{name}": ' + (f"np.array({arg_text(g, node)}, DTYPE)" if node in seen else value_text(g, node)))
        seen.add(node)
    return texts


def gradient_texts(program) -> dict[str, str]:
    """Each param's returned gradient: an array of its own (a node that is the
    gradient of two params is copied for the second), a NumPy scalar for a
    scalar param (arithmetic on those costs half as much as on 0-d arrays)."""
    g, texts, seen = program.train_graph, {}, set()
    for var, node in program.gradients.items():
        param = program.spec_name(var)
        if g.shape(node) == ():  # computed: a scalar already; a leaf or a view of one: made one
            leaf = g.op(node) in ("input", "param", "const") or REGISTRY[g.op(node)].view
            texts[param] = f"DTYPE({arg_text(g, node)})" if leaf or node in seen else node
        else:
            texts[param] = f"np.array({node}, DTYPE)" if node in seen else value_text(g, node)
        seen.add(node)
    return texts


def metric_sums(program) -> str | None:
    """The NumPy text of what evaluate() returns beside the loss: one float64
    vector of every metric's sums over the batch (None where none needs any)."""
    g = program.eval_graph
    pieces = []
    term = classifier_term(g)
    for metric in program.metrics:
        if metric in ERRORS:
            pieces.append(f"[{arg_text(g, error_sum(program, metric))}]")
            continue
        if metric == "perplexity":
            continue
        scores, labels = g.args(term)
        binary = g.op(term) == "binary_cross_entropy"
        predicted = f"({scores} > 0)" if binary else f"np.argmax({scores}, axis=-1)"
        truth = f"({labels} > 0.5)" if binary else labels
        if metric == "accuracy":
            pieces.append(f"[np.sum({predicted} == {truth})]")
        elif metric == "macro_f1":
            pieces.append(f"confusion({predicted}, {truth}, {classes(program.graph)})")
        else:
            pieces.append(f"[np.sum(np.sum({scores} > np.take_along_axis({scores}, {labels}[..., None], axis=-1), axis=-1) < {top_k(metric)})]")
    return f"np.concatenate(({', '.join(pieces)},), dtype=np.float64)" if pieces else None


def render_files(program, env) -> dict[str, str]:
    train = program.train_graph
    evaluation = program.eval_graph
    grads = ", ".join(f'"{p}": {text}' for p, text in gradient_texts(program).items())
    outputs = ", ".join(output_texts(program))
    found = metric_sums(program)
    eval_roots = [evaluation.loss] + metric_roots(program)
    eval_return = f"return float({arg_text(evaluation, evaluation.loss)})" + (f", {found}" if found else "")
    needs: set[str] = set()  # what the bodies read of the module besides arrays (see body)
    context = dict(
        name=program.name,
        summary=summary(program),
        source=source_name(program),
        dtype=program.dtype,
        description=describe(program.graph),
        params=[dict(name=p.name, shape=shape_text(p.shape), init=p.init, init_code=init_code(p)) for p in program.params],
        inputs=[dict(name=i.name, shape=leaf_shape(i.shape), dtype=i.dtype, bound=i.bound) for i in program.inputs],
        outputs=list(program.outputs),
        forward_inputs=[leaf.name for leaf in program.eval_inputs()],
        output_batched={name: bool(shape) and is_batch(shape[0]) for name, shape in
                        zip(program.outputs, (evaluation.shape(n) for n in program.output_nodes))},
        batch_input=repr(program.batch_input),
        whole_batch=repr(program.whole_batch),
        batch=program.compiled_batch,
        merged_batch=program.merged_batch,
        metric=program.metric if found else None,
        confusion="macro_f1" in program.metrics,
        metrics=list(program.metrics),
        share_used=placed_masks(train),
        window_rows=any(program.graph.op(node) == "conv1d" for node in program.graph.nx),
        window_patches=any(program.graph.op(node) == "conv2d" for node in program.graph.nx),
        erf=any(uses_erf(gg) for gg in (evaluation, train)),
        forward_body=body(program, evaluation, program.output_nodes, [f"return {{{outputs}}}"], needs),
        evaluate_body=body(program, evaluation, eval_roots, [eval_return], needs),
        train_body=body(program, train, [train.loss, *program.gradients.values()], [f"return float({arg_text(train, train.loss)}), {{{grads}}}"], needs),
    )
    context["scratch"] = "scratch" in needs or any(numel(p.shape) >= SCRATCH_ELEMENTS for p in program.params)
    context["scratch_elements"] = SCRATCH_ELEMENTS
    files = {"model.py": env.get_template("numpy/model.py.j2").render(context),
             "__init__.py": env.get_template("numpy/__init__.py.j2").render(context)}
    files["train.py"] = env.get_template("numpy/train.py.j2").render(trainer_context(program))
    return files
