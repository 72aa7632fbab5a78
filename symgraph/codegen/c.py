"""The C backend: loop nests, kernels, the memory plan, and rendering of the C sources.

Element-wise chains become one loop nest each (a producer whose only reader
is an element-wise op of the same shape is printed inside that reader's
expression); shape ops, reductions and broadcasting are loop nests over
strided views; everything else calls a kernel of the C runtime, ``templates/c/sg_kernels.h``,
which a generated folder ships beside its models.
Intermediates live in one static arena laid out by ``memory.place``; results
are written straight into the caller's gradient and output buffers, and
sgd_step adds product and embedding gradients straight into their parameters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import sympy as sp
from sympy.codegen.ast import float32, real
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import PRECEDENCE

from ..errors import SpecError
from ..ir import Graph, batch_axis, is_batch, numel
from ..metrics import ERRORS, classifier_term, sum_count, top_k
from ..names import c_prefix
from ..ops import REGISTRY
from ..ops.reduce import sum_to_axes
from ..ops.symbolic import BATCH
from ..sharding import placed_masks
from .common import (
    CachedPrinter,
    derivation_comments,
    describe,
    error_sum,
    metric_roots,
    metric_sum_count,
    source_name,
    summary,
    trainer_context,
)
from .memory import Buffer, available_memory, human_bytes, place, report
from .schedule import schedule

CTYPE = {"float32": "float", "float64": "double"}
SUFFIX = {"float32": "f", "float64": ""}  # libm names: expf vs exp
DROPOUT_STREAM = 1 << 20
SHUFFLE_STREAM = 1 << 21


# -- sizes: c * n**p, so that strides involving the run-time batch size stay exact ------
@dataclass(frozen=True)
class Extent:
    coef: int
    power: int = 0  # of the batch size n

    def __mul__(self, other: Extent) -> Extent:
        if self.coef == 0 or other.coef == 0:
            return ZERO
        return Extent(self.coef * other.coef, self.power + other.power)

    def text(self) -> str:
        if self.power == 0:
            return str(self.coef)
        factors = ["n"] * self.power + ([str(self.coef)] if self.coef != 1 else [])
        return "*".join(factors)

    def at(self, batch: int) -> int:
        return self.coef * batch**self.power


ZERO, ONE = Extent(0), Extent(1)


def extent(dim) -> Extent:
    return Extent(1, 1) if is_batch(dim) else Extent(int(dim))


def size(shape) -> Extent:
    out = ONE
    for d in shape:
        out = out * extent(d)
    return out


def strides(shape) -> list[Extent]:
    out, acc = [], ONE
    for d in reversed(shape):
        out.append(acc)
        acc = acc * extent(d)
    return out[::-1]


def aligned(shape, target) -> list[Extent]:
    """Strides of ``shape`` broadcast against ``target`` (NumPy rules: 0 where stretched)."""
    own = strides(shape)
    lead = len(target) - len(shape)
    out = [ZERO] * lead
    for i, d in enumerate(shape):
        out.append(ZERO if int(d) == 1 and int(target[lead + i]) != 1 else own[i])
    return out


def offset(index: list[tuple[str, Extent]]) -> str:
    terms = []
    for var, stride in index:
        if stride.coef:
            terms.append(var if stride == ONE else f"{var}*{stride.text()}")
    return " + ".join(terms) or "0"


def loop_nest(sizes: list[Extent], arrays: dict[str, list[Extent]], body, names: list[str], split: str | None = None) -> list[str]:
    """Loops over ``sizes``; ``body`` gets each array's index text and returns lines.

    Axes of size one are dropped and neighbours merged wherever every array
    is contiguous across them, so that same-shaped arrays get one flat loop.
    With ``split``, the array the body writes, the outer loop is split over
    threads (SG_PARALLEL_FOR) where each of its steps writes elements of its
    own: a reduction over the outer axis stays on one thread.
    """
    dims = [(s, [arrays[a][i] for a in arrays]) for i, s in enumerate(sizes) if s != ONE]
    merged: list[tuple[Extent, list[Extent]]] = []
    for s, st in reversed(dims):
        if merged:
            inner_size, inner = merged[-1]
            if all(outer == stride * inner_size for outer, stride in zip(st, inner)):
                merged[-1] = (inner_size * s, inner)
                continue
        merged.append((s, st))
    merged.reverse()
    if len(merged) > len(names):
        raise SpecError(f"too many nested loops ({len(merged)})", node="codegen")
    lines, indent = [], ""
    if split is not None and merged and merged[0][1][list(arrays).index(split)] != ZERO:
        lines.append("SG_PARALLEL_FOR")
    index = {a: [] for a in arrays}
    for k, (s, st) in enumerate(merged):
        var = names[k]
        lines.append(f"{indent}for (long {var} = 0; {var} < {s.text()}; {var}++)")
        indent += "    "
        for a, stride in zip(arrays, st):
            index[a].append((var, stride))
    return lines + [indent + line for line in body({a: offset(ix) for a, ix in index.items()})]


# -- element-wise expressions ---------------------------------------------------------
class Printer(C99CodePrinter):
    """C99 in the model's precision (``expf`` and ``1.0F`` for float32)."""

    def __init__(self, dtype: str):
        super().__init__({"type_aliases": {real: float32}} if dtype == "float32" else {})
        self.dtype = dtype
        self.suffix = "F" if dtype == "float32" else ""  # of literals: 1.0F
        self.kernels: set[str] = set()

    def number(self, value: float) -> str:
        text = repr(float(value))
        return f"{text}{self.suffix}"

    def _print_Rational(self, expr):
        return self.number(float(expr))

    def _print_Integer(self, expr):
        # an int literal past 2**31 would overflow (an attribute alpha=1e20 is the integer 10**20 to sympy)
        return super()._print_Integer(expr) if abs(int(expr)) < 2**31 else self.number(float(expr))

    def _print_Float(self, expr):
        return self.number(float(expr))

    def _print_NumberSymbol(self, expr):
        # E, pi, ...: C99 has no M_E or M_PI
        return self.number(float(expr))

    _print_Exp1 = _print_Pi = _print_EulerGamma = _print_GoldenRatio = _print_NumberSymbol

    def _print_Pow(self, expr):
        # Every form is one parenthesised term: a product stands in a
        # denominator too (x/(w*w), never x/w*w).
        base, exp = expr.base, expr.exp
        b = self.parenthesize(base, PRECEDENCE["Pow"])
        if exp.is_Integer and 1 <= abs(int(exp)) <= 3:
            product = "*".join([b] * abs(int(exp)))
            return f"({product})" if exp > 0 else f"({self.number(1)}/({product}))"
        if exp == sp.Rational(1, 2):
            return f"{self.function('sqrt')}({self._print(base)})"
        if exp == -sp.Rational(1, 2):
            return f"({self.number(1)}/{self.function('sqrt')}({self._print(base)}))"
        return f"{self.function('pow')}({self._print(base)}, {self.number(float(exp))})"

    def tanh(self) -> str:
        """float32's own tanh, which vectorises (``sg_tanh``, a kernel: see ``kernels``), else libm's."""
        if self.dtype == "float32":
            self.kernels.add("tanh")
            return "sg_tanh"
        return "tanh"

    def doprint(self, expr, assign_to=None):
        """The text, with ``kernels`` the runtime functions it calls."""
        self.kernels: set[str] = set()
        return super().doprint(expr, assign_to)

    def _print_tanh(self, expr):
        return f"{self.tanh()}({self._print(expr.args[0])})"

    def _print_sigmoid(self, expr):
        # (1 + tanh(x/2)) / 2 equals 1/(1 + exp(-x)) and never overflows.
        x = self._print(expr.args[0])
        return f"({self.number(0.5)} + {self.number(0.5)}*{self.tanh()}({self.number(0.5)}*({x})))"

    def _print_relu(self, expr):
        x = self._print(expr.args[0])
        return f"(({x}) < 0 ? 0 : ({x}))"  # keeps NaN, like np.maximum

    def _print_step(self, expr):
        return f"(({self._print(expr.args[0])}) > 0 ? 1 : 0)"

    def _print_softplus(self, expr):
        # max(x, 0) + log1p(exp(-|x|)) equals log(1 + exp(x)) and never overflows
        x = self._print(expr.args[0])
        return f"({self.function('fmax')}({x}, 0) + {self.function('log1p')}({self.function('exp')}(-{self.function('fabs')}({x}))))"

    def _print_sgn(self, expr):
        x = self._print(expr.args[0])
        return f"(({x}) != ({x}) ? ({x}) : (({x}) > 0) - (({x}) < 0))"  # NaN stays NaN, as np.sign keeps it

    def function(self, name: str) -> str:
        """A libm function in the model's precision."""
        return name + SUFFIX[self.dtype]


def printed_number(printer: Printer, value) -> str:
    return "n" if is_batch(value) else printer.number(value)


# -- one generated function -------------------------------------------------------------
@dataclass
class Function:
    """The C text of a schedule: statements computing ``roots`` of ``g``;
    ``dests`` maps a root to the caller's buffer."""

    ctx: "Context"
    g: Graph
    roots: list[str]
    dests: dict[str, str]
    updates: dict[str, str] = field(default_factory=dict)  # a gradient the SGD step adds into its parameter -> that parameter
    arguments: set[str] = field(default_factory=set)  # the function's arguments it reads (ARGUMENTS)

    def __post_init__(self):
        self.s = schedule(self.g, self.roots, frozenset(self.dests))
        self.names = loop_names(self.g)

    def plan(self) -> list[Buffer]:
        return self.s.buffers(lambda v: size(self.g.shape(v)).at(self.ctx.batch))

    def body(self, buffers: list[Buffer]) -> list[str]:
        g, ctx = self.g, self.ctx
        offsets = {b.name: b.offset for b in buffers}
        used = set(self.roots) | {a for v in self.s.order for a in self.s.reads[v]}
        lines = []
        for leaf in ctx.program.params:
            if leaf.var in used:
                lines.append(f"const real *{leaf.var} = params[{ctx.api}_param_{leaf.name}];{self.spec_note(leaf.var)}")
        for leaf in ctx.program.inputs:
            if leaf.var in used:
                ctype = "real" if leaf.dtype == "float" else "int64_t"
                lines.append(f"const {ctype} *{leaf.var} = inputs[{ctx.api}_input_{leaf.name}];{self.spec_note(leaf.var)}")
        variables = set(self.s.order) | {leaf.var for leaf in ctx.program.params + ctx.program.inputs if leaf.var in used}
        comments = derivation_comments(ctx.program, g, variables)
        for v in self.s.order:
            lines.append("")
            lines += [f"/* {comment_text(comment)} */" for comment in comments(self.s.fused(v), v)]
            if v in self.s.aliases:
                kind = "a view of" if g.op(v) == "reshape" else "in place of"
                lines.append(f"real *{v} = {self.s.aliases[v]};  /* {shape_comment(g.shape(v))}, {kind} {self.s.aliases[v]}{self.spec_note(v, ';')} */")
                if g.op(v) != "reshape":
                    lines += self.emit(v)
                continue
            where = self.dests[v] if v in self.dests else f"arena + {offsets[v]}"
            lines.append(f"real *{v} = {where};  /* {shape_comment(g.shape(v))}{self.spec_note(v, ';')} */")
            lines += self.emit_update(v) if v in self.updates else self.emit(v)
        return lines

    def spec_note(self, var: str, joint: str = "") -> str:
        """For a variable under a mangled name, the words tying it to the spec's name."""
        name = self.ctx.program.spec_name(var)
        if name == var:
            return ""
        words = f"the spec's {name}"
        return f"{joint} {words}" if joint else f"  /* {words} */"

    # -- emitters: each returns lines assigning node ``v``
    def emit(self, v: str) -> list[str]:
        op = self.g.op(v)
        if REGISTRY[op].elementwise:
            return self.emit_elementwise(v)
        return EMIT[op](self, v)

    def access(self, node: str, index: str) -> str:
        if self.g.op(node) == "const":
            return printed_number(self.ctx.printer, self.g.attrs(node)["value"])
        return f"{node}[{index}]"

    def emit_elementwise(self, v: str) -> list[str]:
        g = self.g
        shape = g.shape(v)
        key, leaves = self.s.structure(v)
        arrays = {v: strides(shape), **{a: aligned(g.shape(a), shape) for a in leaves}}

        def body(ix):
            return [f"{v}[{ix[v]}] = {self.ctx.cached.fill(key, [f'{a}[{ix[a]}]' for a in leaves])};"]

        for kernel in self.ctx.cached.kernels(key):
            self.ctx.use(kernel)
        return self.nest(shape, arrays, body, v)

    def nest(self, shape, arrays, body, written: str | None = None) -> list[str]:
        """The loops; those over at least PARALLEL_ELEMENTS elements, which write
        ``written``, are split over threads where that is safe (loop_nest)."""
        big = written is not None and size(shape).at(self.ctx.batch) >= PARALLEL_ELEMENTS
        lines = loop_nest([extent(d) for d in shape], arrays, body, self.names, written if big else None)
        if lines and lines[0] == "SG_PARALLEL_FOR":
            self.ctx.use("parallel")
        return lines

    def copy(self, v: str, src: str, shape, dst_strides, src_strides, base: str = "", op: str = "=") -> list[str]:
        return self.nest(
            shape, {v: dst_strides, src: src_strides},
            lambda ix: [f"{v}[{join(base, ix[v])}] {op} {self.access(src, ix[src])};"], v,
        )

    def fill(self, v: str, value: str) -> list[str]:
        return self.nest(self.g.shape(v), {v: strides(self.g.shape(v))}, lambda ix: [f"{v}[{ix[v]}] = {value};"], v)

    def emit_matvec(self, v: str) -> list[str]:
        m, vector = self.g.args(v)
        rows, cols = (extent(d).text() for d in self.g.shape(m))
        if self.g.attrs(v)["transposed"]:
            return self.kernel("vecmat", rows, cols, vector, m, v)
        return self.kernel("matvec", rows, cols, m, vector, v)

    def emit_transpose(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        own = strides(self.g.shape(x))
        permuted = [own[a] for a in self.g.attrs(v)["axes"]]
        return self.copy(v, x, self.g.shape(v), strides(self.g.shape(v)), permuted)

    def emit_reshape(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        flat = (size(self.g.shape(v)),)
        return loop_nest(list(flat), {v: [ONE], x: [ONE]}, lambda ix: [f"{v}[{ix[v]}] = {self.access(x, ix[x])};"], self.names)

    def emit_concat(self, v: str) -> list[str]:
        axis = self.g.attrs(v)["axis"]
        out = strides(self.g.shape(v))
        lines, at = [], 0
        for part in self.g.args(v):
            shape = self.g.shape(part)
            base = (Extent(at) * out[axis]).text() if at else ""
            lines += self.copy(v, part, shape, out, strides(shape), base)
            at += int(shape[axis])
        return lines

    def emit_slice(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        attrs = self.g.attrs(v)
        own = strides(self.g.shape(x))
        base = (Extent(attrs["start"]) * own[attrs["axis"]]).text() if attrs["start"] else ""
        shape = self.g.shape(v)
        return self.nest(shape, {v: strides(shape), x: own}, lambda ix: [f"{v}[{ix[v]}] = {x}[{join(base, ix[x])}];"], v)

    def emit_pad_slice(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        attrs = self.g.attrs(v)
        out = strides(self.g.shape(v))
        base = (Extent(attrs["start"]) * out[attrs["axis"]]).text() if attrs["start"] else ""
        return self.fill(v, "0") + self.copy(v, x, self.g.shape(x), out, strides(self.g.shape(x)), base)

    def reduce(self, v, init: str, combine) -> list[str]:
        (x,) = self.g.args(v)
        axes = self.g.attrs(v)["axis"]
        shape = self.g.shape(x)
        kept = iter(strides(tuple(d for i, d in enumerate(shape) if i not in axes)))
        out = [ZERO if i in axes else next(kept) for i in range(len(shape))]
        return self.fill(v, init) + self.nest(shape, {v: out, x: strides(shape)}, lambda ix: [combine(f"{v}[{ix[v]}]", self.access(x, ix[x]))], v)

    def emit_sum(self, v: str) -> list[str]:
        return self.reduce(v, "0", lambda acc, x: f"{acc} += {x};")

    def emit_mean(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        shape = self.g.shape(x)
        count = size([shape[a] for a in self.g.attrs(v)["axis"]]).text()
        return self.emit_sum(v) + self.fill_scaled(v, count)

    def fill_scaled(self, v, count: str) -> list[str]:
        return self.nest(self.g.shape(v), {v: strides(self.g.shape(v))}, lambda ix: [f"{v}[{ix[v]}] /= {count};"], v)

    def emit_max(self, v: str) -> list[str]:
        # a store on every step, so that the compiler may vectorise (it adds no stores to a conditional one);
        # a NaN is taken and kept, as NumPy's max does
        return self.reduce(v, "-INFINITY", lambda acc, x: f"{acc} = {x} > {acc} || {x} != {x} ? {x} : {acc};")

    def emit_broadcast_to(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        attrs = self.g.attrs(v)
        shape = attrs["shape"]
        kept = [d for i, d in enumerate(shape) if i not in attrs["axes"]]
        inner = iter(aligned(self.g.shape(x), kept))
        src = [ZERO if i in attrs["axes"] else next(inner) for i in range(len(shape))]
        return self.copy(v, x, shape, strides(shape), src)

    def emit_sum_to(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        src = self.g.shape(x)
        lead, stretched = sum_to_axes(src, self.g.shape(v))
        own = strides(self.g.shape(v))
        dst = [ZERO] * lead + [ZERO if lead + i in stretched else s for i, s in enumerate(own)]
        return self.fill(v, "0") + self.copy(v, x, src, dst, strides(src), op="+=")

    def kernel(self, name: str, *args) -> list[str]:
        """A call of kernel ``sg_<name>``, which (and whatever it calls) the model then includes."""
        self.ctx.use(name)
        return [f"sg_{name}({', '.join(str(a) for a in args)});"]

    def emit_matmul(self, v: str) -> list[str]:
        g = self.g
        a, b = g.args(v)
        sa, sb, out = g.shape(a), g.shape(b), g.shape(v)
        m, k, p = extent(sa[-2]), extent(sa[-1]), extent(sb[-1])
        batch = out[:-2]
        if not batch:
            return self.kernel("matmul", *self.product_arguments(v), v)
        if len(sb) == 2 and tuple(sa[:-2]) == tuple(batch):  # a stack times one matrix: one product of all the stack's rows
            return self.kernel("matmul", size(sa[:-1]).text(), k.text(), p.text(), a, k.text(), "1", *self.operand(b, k, p), v)
        arrays = {
            v: [s * m * p for s in strides(batch)],
            a: [s * m * k for s in aligned(sa[:-2], batch)],
            b: [s * k * p for s in aligned(sb[:-2], batch)],
        }
        self.ctx.use("matmul")
        return self.nest(batch, arrays, lambda ix: [
            f"sg_matmul({m.text()}, {k.text()}, {p.text()}, {a} + {ix[a]}, {k.text()}, 1, {b} + {ix[b]}, {p.text()}, 1, {v} + {ix[v]});"
        ])

    def emit_matmul_sum(self, v: str) -> list[str]:
        a, b = self.g.args(v)
        sa, sb = self.g.shape(a), self.g.shape(b)
        m, p = extent(self.g.shape(v)[0]), extent(self.g.shape(v)[1])
        k = extent(sb[-2])
        # A[r, c] of stack item i, read across where a holds the items' transposes
        strides = ["1", m.text()] if self.g.attrs(v)["transposed"] else [k.text(), "1"]
        return self.kernel("matmul_sum", size(sa[:-2]).text(), m.text(), k.text(), p.text(), a, *strides, b, v)

    def emit_matmul_bias(self, v: str) -> list[str]:
        a, b, bias = self.g.args(v)
        call = self.kernel("matmul_bias", *self.product_arguments(v), bias, v)
        return [f"/* {v} = {a} @ {b} + {bias}, one product that starts from the bias */", *call]

    def product_arguments(self, product: str) -> list[str]:
        """m, k, p and both operands of a 2-D product, as the matmul kernels take them."""
        a, b = self.g.args(product)[:2]
        m, k, p = extent(self.g.shape(a)[0]), extent(self.g.shape(a)[1]), extent(self.g.shape(b)[1])
        return [m.text(), k.text(), p.text(), *self.operand(a, m, k), *self.operand(b, k, p)]

    def emit_update(self, v: str) -> list[str]:
        """Gradient ``v``, or in the SGD step, ``v`` scaled by -lr and added into its parameter."""
        param = self.updates[v]
        dest = f"params[{self.ctx.api}_param_{self.ctx.program.spec_name(param)}]"
        if self.g.op(v) == "matmul":
            (fused,) = self.kernel("matmul_add", *self.product_arguments(v), "-lr", dest)
        else:
            (fused,) = self.embedding_backward(v, "-lr", 1, dest)
        (plain,) = self.emit(v)
        return [f"if (step)  /* {param} -= lr * dL/d{param}, added in as it is computed: nothing reads {param} after this */",
                f"    {fused}", "else", f"    {plain}"]

    def operand(self, node: str, rows: "Extent", cols: "Extent") -> tuple[str, str, str]:
        """A 2-D matmul operand as (array, row stride, column stride); a folded x.T is x read across."""
        if node in self.s.transposed:
            return self.s.transposed[node], "1", rows.text()
        return node, cols.text(), "1"

    def emit_embedding(self, v: str) -> list[str]:
        table, ids = self.g.args(v)
        return self.kernel("embedding", size(self.g.shape(ids)).text(), int(self.g.shape(table)[1]), table, ids, v)

    def emit_embedding_backward(self, v: str) -> list[str]:
        return self.embedding_backward(v, 1, 0, v)

    def embedding_backward(self, v, scale, accumulate: int, dest: str) -> list[str]:
        ids, cot = self.g.args(v)
        rows, width = self.g.shape(v)
        return self.kernel("embedding_backward", size(self.g.shape(ids)).text(), int(rows), int(width), ids, cot, scale, accumulate, dest)

    def conv_dims(self, x_shape, out_shape, width, attrs):
        return [extent(x_shape[0]).text(), extent(x_shape[1]).text(), extent(x_shape[2]).text(), extent(out_shape[1]).text(),
                extent(out_shape[2]).text(), width, attrs["stride"], attrs["padding"]]

    def emit_conv1d(self, v: str) -> list[str]:
        x, kernel = self.g.args(v)
        dims = self.conv_dims(self.g.shape(x), self.g.shape(v), int(self.g.shape(kernel)[0]), self.g.attrs(v))
        return self.kernel("conv1d", *dims, x, kernel, v)

    def emit_conv1d_backward_input(self, v: str) -> list[str]:
        cot, kernel = self.g.args(v)
        dims = self.conv_dims(self.g.shape(v), self.g.shape(cot), int(self.g.shape(kernel)[0]), self.g.attrs(v))
        return self.kernel("conv1d_backward_input", *dims, cot, kernel, v)

    def emit_conv1d_backward_kernel(self, v: str) -> list[str]:
        x, cot = self.g.args(v)
        dims = self.conv_dims(self.g.shape(x), self.g.shape(cot), self.g.attrs(v)["width"], self.g.attrs(v))
        return self.kernel("conv1d_backward_kernel", *dims, x, cot, v)

    def pool(self, name: str, v: str, x_shape, out_shape, *arrays) -> list[str]:
        attrs = self.g.attrs(v)
        # any axis may be the batch axis (a transpose puts it last): each is n there, not the compiled size
        dims = [extent(x_shape[0]).text(), extent(x_shape[1]).text(), extent(x_shape[2]).text(), extent(out_shape[1]).text(),
                attrs["size"], attrs["stride"]]
        return self.kernel(name, *dims, *arrays, v)

    def emit_max_pool1d(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        return self.pool("max_pool1d", v, self.g.shape(x), self.g.shape(v), x)

    def emit_avg_pool1d(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        return self.pool("avg_pool1d", v, self.g.shape(x), self.g.shape(v), x)

    def emit_max_pool1d_backward(self, v: str) -> list[str]:
        x, cot = self.g.args(v)
        return self.pool("max_pool1d_backward", v, self.g.shape(x), self.g.shape(cot), x, cot)

    def emit_avg_pool1d_backward(self, v: str) -> list[str]:
        (cot,) = self.g.args(v)
        return self.pool("avg_pool1d_backward", v, self.g.shape(v), self.g.shape(cot), cot)

    def image_dims(self, x_shape, out_shape) -> list[str]:
        """batch, height, width, channels of an image and height, width of the output: the 2-D kernels' first arguments."""
        return [extent(d).text() for d in (*x_shape, *out_shape[1:3])]

    def emit_conv2d(self, v: str) -> list[str]:
        x, kernel = self.g.args(v)
        k_shape, attrs = self.g.shape(kernel), self.g.attrs(v)
        dims = self.image_dims(self.g.shape(x), self.g.shape(v))
        return self.kernel("conv2d", *dims, int(k_shape[3]), int(k_shape[0]), int(k_shape[1]), attrs["stride"], attrs["padding"], x, kernel, v)

    def emit_conv2d_backward_input(self, v: str) -> list[str]:
        cot, kernel = self.g.args(v)
        k_shape, attrs = self.g.shape(kernel), self.g.attrs(v)
        dims = self.image_dims(self.g.shape(v), self.g.shape(cot))
        return self.kernel("conv2d_backward_input", *dims, int(k_shape[3]), int(k_shape[0]), int(k_shape[1]), attrs["stride"],
                           attrs["padding"], cot, kernel, v)

    def emit_conv2d_backward_kernel(self, v: str) -> list[str]:
        x, cot = self.g.args(v)
        attrs = self.g.attrs(v)
        dims = self.image_dims(self.g.shape(x), self.g.shape(cot))
        return self.kernel("conv2d_backward_kernel", *dims, int(self.g.shape(v)[3]), attrs["kh"], attrs["kw"], attrs["stride"],
                           attrs["padding"], x, cot, v)

    def pool2d(self, name: str, v: str, x_shape, out_shape, *arrays) -> list[str]:
        attrs = self.g.attrs(v)
        return self.kernel(name, *self.image_dims(x_shape, out_shape), attrs["size"], attrs["stride"], *arrays, v)

    def emit_max_pool2d(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        return self.pool2d("max_pool2d", v, self.g.shape(x), self.g.shape(v), x)

    def emit_avg_pool2d(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        return self.pool2d("avg_pool2d", v, self.g.shape(x), self.g.shape(v), x)

    def emit_max_pool2d_backward(self, v: str) -> list[str]:
        x, cot = self.g.args(v)
        return self.pool2d("max_pool2d_backward", v, self.g.shape(x), self.g.shape(cot), x, cot)

    def emit_avg_pool2d_backward(self, v: str) -> list[str]:
        (cot,) = self.g.args(v)
        return self.pool2d("avg_pool2d_backward", v, self.g.shape(v), self.g.shape(cot), cot)

    def emit_upsample2d(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        return self.kernel("upsample2d", *(extent(d).text() for d in self.g.shape(x)), self.g.attrs(v)["factor"], x, v)

    def emit_layer_norm(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        attrs = self.g.attrs(v)
        return self.kernel("layer_norm", *self.split(self.g.shape(x), attrs["axis"]), repr(attrs["eps"]), x, v)

    def emit_layer_norm_backward(self, v: str) -> list[str]:
        x, cot = self.g.args(v)
        attrs = self.g.attrs(v)
        return self.kernel("layer_norm_backward", *self.split(self.g.shape(x), attrs["axis"]), repr(attrs["eps"]), x, cot, v)

    def split(self, shape, axis: int) -> list[str]:
        """(outer, length, inner) around ``axis``: the layout the axis kernels take."""
        return [size(shape[:axis]).text(), extent(shape[axis]).text(), size(shape[axis + 1 :]).text()]

    def emit_max_backward(self, v: str) -> list[str]:
        x, cot = self.g.args(v)
        (axis,) = self.g.attrs(v)["axis"]
        return self.kernel("max_backward", *self.split(self.g.shape(x), axis), x, cot, v)

    def emit_softmax(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        return self.kernel("softmax", *self.split(self.g.shape(x), self.g.attrs(v)["axis"]), x, v)

    def emit_log_softmax(self, v: str) -> list[str]:
        (x,) = self.g.args(v)
        return self.kernel("log_softmax", *self.split(self.g.shape(x), self.g.attrs(v)["axis"]), x, v)

    def emit_onehot(self, v: str) -> list[str]:
        (labels,) = self.g.args(v)
        return self.kernel("onehot", size(self.g.shape(labels)).text(), self.g.attrs(v)["classes"], labels, v)

    def emit_cross_entropy(self, v: str) -> list[str]:
        logits, labels = self.g.args(v)
        gradient = next((grad for grad, loss in self.s.losses.items() if loss == v), None)
        if gradient:
            return [f"/* set below, with {gradient} */"]
        shape = self.g.shape(logits)
        self.ctx.use("cross_entropy")
        return [f"{v}[0] = (real)sg_cross_entropy({size(shape[:-1]).text()}, {extent(shape[-1]).text()}, {logits}, {labels});"]

    def emit_softmax_cross_entropy_grad(self, v: str) -> list[str]:
        z, y, scale = self.g.args(v)
        shape = self.g.shape(z)
        call = self.kernel("softmax_cross_entropy_grad", size(shape[:-1]).text(), extent(shape[-1]).text(), z, y, self.access(scale, "0"), v)[0]
        return [f"{self.s.losses[v]}[0] = (real){call}" if v in self.s.losses else call]

    def emit_binary_cross_entropy(self, v: str) -> list[str]:
        z, y = self.g.args(v)
        shape = self.g.shape(z)
        fmax, log1p, exp, fabs = (self.ctx.printer.function(name) for name in ("fmax", "log1p", "exp", "fabs"))
        lines = ["{", "    double sg_total = 0;"]
        lines += ["    " + line for line in self.nest(shape, {z: strides(shape), y: strides(shape)}, lambda ix: [
            f"sg_total += {fmax}({z}[{ix[z]}], 0) - {z}[{ix[z]}] * {self.access(y, ix[y])} + {log1p}({exp}(-{fabs}({z}[{ix[z]}])));"
        ])]
        return lines + [f"    {v}[0] = (real)(sg_total / ({size(shape).text()}));", "}"]

    def emit_dropout_mask(self, v: str) -> list[str]:
        attrs = self.g.attrs(v)
        p = attrs["p"]
        stream = attrs["index"] + DROPOUT_STREAM
        shape = self.g.shape(v)
        axis = batch_axis(shape)
        # [outer, rows, inner] around the batch axis, whose rows are examples [first, first + n) of total
        layout = [size(shape).text(), "1", "1", "0", "1"] if axis is None else [
            size(shape[:axis]).text(), "n", size(shape[axis + 1 :]).text(), "first", "total"]
        return self.kernel("dropout_mask", *layout, repr(float(p)), self.ctx.printer.number(1.0 / (1.0 - p)), "training", "seed", stream, v)

    # -- results that are not statements of their own
    def store(self, root: str, dest: str) -> list[str]:
        """Copy a root that another destination, a leaf or a constant already holds."""
        shape = self.g.shape(root)
        return loop_nest(
            [size(shape)], {"out": [ONE], root: [ONE]}, lambda ix: [f"{dest}[{ix['out']}] = {self.access(root, ix[root])};"], self.names
        )


# The emitter of each op that is not element-wise (those are printed from their sympy expression).
EMIT = {
    "matvec": Function.emit_matvec,
    "transpose": Function.emit_transpose,
    "reshape": Function.emit_reshape,
    "concat": Function.emit_concat,
    "slice": Function.emit_slice,
    "pad_slice": Function.emit_pad_slice,
    "sum": Function.emit_sum,
    "mean": Function.emit_mean,
    "max": Function.emit_max,
    "broadcast_to": Function.emit_broadcast_to,
    "sum_to": Function.emit_sum_to,
    "matmul": Function.emit_matmul,
    "matmul_sum": Function.emit_matmul_sum,
    "matmul_bias": Function.emit_matmul_bias,
    "embedding": Function.emit_embedding,
    "embedding_backward": Function.emit_embedding_backward,
    "conv1d": Function.emit_conv1d,
    "conv1d_backward_input": Function.emit_conv1d_backward_input,
    "conv1d_backward_kernel": Function.emit_conv1d_backward_kernel,
    "max_pool1d": Function.emit_max_pool1d,
    "avg_pool1d": Function.emit_avg_pool1d,
    "max_pool1d_backward": Function.emit_max_pool1d_backward,
    "avg_pool1d_backward": Function.emit_avg_pool1d_backward,
    "conv2d": Function.emit_conv2d,
    "conv2d_backward_input": Function.emit_conv2d_backward_input,
    "conv2d_backward_kernel": Function.emit_conv2d_backward_kernel,
    "max_pool2d": Function.emit_max_pool2d,
    "avg_pool2d": Function.emit_avg_pool2d,
    "max_pool2d_backward": Function.emit_max_pool2d_backward,
    "avg_pool2d_backward": Function.emit_avg_pool2d_backward,
    "upsample2d": Function.emit_upsample2d,
    "layer_norm": Function.emit_layer_norm,
    "layer_norm_backward": Function.emit_layer_norm_backward,
    "max_backward": Function.emit_max_backward,
    "softmax": Function.emit_softmax,
    "log_softmax": Function.emit_log_softmax,
    "onehot": Function.emit_onehot,
    "cross_entropy": Function.emit_cross_entropy,
    "softmax_cross_entropy_grad": Function.emit_softmax_cross_entropy_grad,
    "binary_cross_entropy": Function.emit_binary_cross_entropy,
    "dropout_mask": Function.emit_dropout_mask,
}


def fused_updates(fn: Function, gradients: dict[str, str]) -> dict[str, str]:
    """Gradients that the SGD step adds into their parameter (scaled by -lr) as
    they are computed -> that parameter, which saves writing the gradient and a
    pass over both: 2-D products and embedding scatters, each the gradient of
    one parameter and read by nothing else, computed after the last statement
    that reads the parameter. A parameter that is itself some gradient keeps the
    plain update, which reads it after every statement."""
    g, last_read = fn.g, fn.s.last_read
    index = {v: i for i, v in enumerate(fn.s.order)}
    owners = Counter(gradients.values())
    found = {}
    for param, node in gradients.items():
        if node not in index or owners[node] > 1 or param in owners or node in last_read:
            continue
        if not (g.op(node) == "matmul" and len(g.shape(node)) == 2 or g.op(node) == "embedding_backward"):
            continue
        if last_read.get(param, -1) < index[node]:
            found[node] = param
    return found


def join(base: str, index: str) -> str:
    if not base:
        return index
    return base if index == "0" else f"{base} + {index}"


def shape_comment(shape) -> str:
    return "[" + ", ".join("n" if is_batch(d) else str(int(d)) for d in shape) + "]"


PARALLEL_ELEMENTS = 1 << 16  # loops this long (element-wise ones at the compiled batch) are split over threads with OpenMP

LOOP_NAMES = ["i", "j", "k", "l", "m", "p", "q", "r", "s", "t", "u"] + [f"i{k}" for k in range(1, 40)]


def loop_names(g: Graph) -> list[str]:
    """Loop variables that no node of ``g`` is named."""
    return [name for name in LOOP_NAMES if name not in g.nx and name != "n"]


# -- the whole model -------------------------------------------------------------------
@dataclass
class Context:
    program: object
    api: str
    dtype: str
    printer: Printer
    batch: int
    kernels: set[str] = field(default_factory=set)

    def use(self, kernel: str) -> None:
        """The model calls runtime kernel ``sg_<kernel>`` (the runtime pulls in what that calls)."""
        self.kernels.add(kernel)

    @property
    def cached(self) -> CachedPrinter:
        if self.dtype not in CACHED_PRINTERS:
            CACHED_PRINTERS[self.dtype] = CachedPrinter(self.printer, constant)
        return CACHED_PRINTERS[self.dtype]


def constant(value) -> sp.Expr:
    """A constant of a structure key; the batch size is n, known at run time."""
    return sp.Symbol("n", positive=True, integer=True) if value == BATCH else sp.Float(value)


CACHED_PRINTERS: dict[str, CachedPrinter] = {}


LARGE_ARENA = 1 << 30  # bytes: a static array from 2 GiB on fails to link under the default code model

# The arguments of each function, in order: one the model does not read is cast to void.
ARGUMENTS = {"forward": ("params", "inputs", "outputs"), "evaluate": ("params", "inputs"),
             "loss_and_grads": ("params", "inputs", "grads", "step", "lr")}


def leaf_arguments(g: Graph, roots: list[str]) -> set[str]:
    """params and inputs, where the nodes that ``roots`` read include one of either."""
    kinds = {g.op(v) for v in g.needed_by(roots)}
    return {name for name, op in (("params", "param"), ("inputs", "input")) if op in kinds}


def compiled_batch(program) -> int:
    return program.compiled_batch


def functions(ctx: Context, forward_only: bool = False) -> dict[str, tuple[Function, list[str]]]:
    """forward, evaluate and loss_and_grads (which sgd_step shares): each a Function
    and its result lines (forward alone for an inference library)."""
    program, api = ctx.program, ctx.api
    ev, train = program.eval_graph, program.train_graph
    out = {}

    dests, tail = {}, []
    for name, node in zip(program.outputs, program.output_nodes):
        dest = f"outputs[{api}_output_{name}]"
        if node in dests or ev.op(node) in ("input", "param", "const"):
            tail.append((node, dest))
        else:
            dests[node] = dest
    fn = Function(ctx, ev, list(program.output_nodes), dests)
    fn.arguments = leaf_arguments(ev, program.output_nodes) | ({"outputs"} if program.output_nodes else set())
    out["forward"] = (fn, [line for node, dest in tail for line in fn.store(node, dest)])
    if forward_only:
        return out

    fn = Function(ctx, ev, [ev.loss] + metric_roots(program), {})
    fn.arguments = leaf_arguments(ev, fn.roots)
    lines = [f"*loss_value = {scalar(fn, ev.loss)};"] + metric_lines(fn, program)
    out["evaluate"] = (fn, lines)

    dests, tail = {}, []
    for param, node in program.gradients.items():
        dest = f"grads[{api}_param_{program.spec_name(param)}]"
        if node in dests or train.op(node) in ("input", "param", "const"):
            tail.append((node, dest))
        else:
            dests[node] = dest
    fn = Function(ctx, train, [train.loss, *program.gradients.values()], dests)
    # every gradient is written to grads, and with step, added into its param
    fn.arguments = leaf_arguments(train, fn.roots) | ({"params", "grads", "step", "lr"} if program.gradients else set())
    fn.updates = fused_updates(fn, program.gradients)
    lines = [line for node, dest in tail for line in fn.store(node, dest)] + [f"*loss_value = {scalar(fn, train.loss)};"]
    plain = [param for param, node in program.gradients.items() if node not in fn.updates]
    if plain:
        lines += ["", f"if (step) {{  /* the step of {', '.join(plain)}, from {'its gradient' if len(plain) == 1 else 'their gradients'} */"]
        for param in plain:
            where = f"{api}_param_{program.spec_name(param)}"
            step = fn.nest([numel(train.shape(param))], {"p": [ONE]},
                           lambda ix: [f"params[{where}][{ix['p']}] -= lr * grads[{where}][{ix['p']}];"], "p")
            lines += ["    " + line for line in step]
        lines.append("}")
    out["loss_and_grads"] = (fn, lines)  # behind sgd_step too
    return out


def scalar(fn: Function, node: str) -> str:
    return fn.access(node, "0")


def metric_lines(fn: Function, program) -> list[str]:
    """metric_sums[...] for every metric, in order (see metrics.sum_count)."""
    g, lines, at = program.eval_graph, [], 0
    term = classifier_term(g)
    for metric in program.metrics:
        if metric in ERRORS:
            lines.append(f"metric_sums[{at}] = {scalar(fn, error_sum(program, metric))};")
        elif metric == "perplexity":
            continue
        elif g.op(term) == "cross_entropy":
            scores, labels = g.args(term)
            shape = g.shape(scores)
            rows, width = size(shape[:-1]).text(), extent(shape[-1]).text()
            if metric == "accuracy":
                fn.ctx.use("count_correct")
                lines.append(f"metric_sums[{at}] = (double)sg_count_correct({rows}, {width}, {scores}, {labels});")
            elif metric == "macro_f1":
                fn.ctx.use("confusion")
                lines.append(f"sg_confusion({rows}, {width}, {scores}, {labels}, metric_sums + {at});")
            else:
                fn.ctx.use("count_top")
                lines.append(f"metric_sums[{at}] = (double)sg_count_top({rows}, {width}, {scores}, {labels}, {top_k(metric)});")
        else:  # a binary classifier: class 1 where the logit is positive
            lines += binary_lines(fn, g, term, metric, at)
        at += sum_count(program.graph, metric)
    return lines or ["(void)metric_sums;  /* no metric needs a sum */"]


def binary_lines(fn: Function, g: Graph, term: str, metric: str, at: int) -> list[str]:
    """Accuracy's count, or macro-F1's six counts, of a binary classifier."""
    scores, labels = g.args(term)
    shape = g.shape(scores)
    arrays = {scores: strides(shape), labels: strides(shape)}
    if metric == "accuracy":
        body = lambda ix: [f"metric_sums[{at}] += ({scores}[{ix[scores]}] > 0) == ({labels}[{ix[labels]}] > 0.5);"]
        start = [f"metric_sums[{at}] = 0;"]
    else:  # true positives, false positives, false negatives of classes 0 and 1
        body = lambda ix: [
            f"{{ const int predicted = {scores}[{ix[scores]}] > 0, truth = {labels}[{ix[labels]}] > 0.5;",
            f"  metric_sums[{at} + (predicted == truth ? truth : 2 + predicted)] += 1;",
            f"  if (predicted != truth) metric_sums[{at} + 4 + truth] += 1; }}",
        ]
        start = [f"for (int c = 0; c < 6; c++) metric_sums[{at} + c] = 0;"]
    return start + loop_nest([extent(d) for d in shape], arrays, body, fn.names)


def plan_memory(fns: dict[str, tuple[Function, list[str]]]) -> tuple[dict[str, list[Buffer]], int]:
    """Each function's buffers placed in one arena (the functions never run at once)."""
    plans, total = {}, 0
    for name, (fn, _) in fns.items():
        plans[name], size_ = place(fn.plan())
        total = max(total, size_)
    return plans, total


def leaf_info(leaf) -> dict:
    shape = leaf.shape
    batched = bool(shape) and is_batch(shape[0])
    return dict(
        name=leaf.name,
        rank=len(shape),
        dims=[int(d) for d in shape] or [1],
        batched=int(batched),
        size=numel(shape) // (int(shape[0]) if batched else 1),
        shape=shape_comment(shape),
        dtype=leaf.dtype,
        bound=leaf.bound or 0,
        init=leaf.init,
        distribution=leaf.distribution,
        scale=repr(float(leaf.scale)),
        stream=leaf.index,
    )


def model_context(program, api: str, dtype: str, forward_only: bool = False) -> tuple[dict, str]:
    printer = Printer(dtype)
    ctx = Context(program, api, dtype, printer, compiled_batch(program))
    fns = functions(ctx, forward_only)
    plans, total = plan_memory(fns)
    bodies = {}
    for name, (fn, tail) in fns.items():
        lines = fn.body(plans[name]) + ([""] + tail if tail else [])
        unused = [a for a in ARGUMENTS[name] if a not in fn.arguments]
        lines = [f"(void){a};  /* this model does not read it */" for a in unused] + lines
        bodies[name] = ["    " + line if line else "" for line in lines]
    for leaf in program.params if not forward_only else ():
        ctx.use("fill" if leaf.distribution == "constant" else f"fill_{leaf.distribution}")
    itemsize = 4 if dtype == "float32" else 8
    context = dict(
        name=program.name,
        api=api,
        API=api.upper(),
        real=CTYPE[dtype],
        dtype=dtype,
        f=SUFFIX[dtype],
        summary=comment_text(summary(program)),
        source=source_name(program),
        description=[comment_text(line) for line in describe(program.graph)],
        batch=ctx.batch,
        batched=program.batch_input is not None,
        merged_batch=program.merged_batch,
        params=[leaf_info(p) for p in program.params],
        inputs=[leaf_info(i) for i in program.inputs],
        outputs=[output_info(o, program.eval_graph.shape(node)) for o, node in zip(program.outputs, program.output_nodes)],
        max_rank=max([len(x.shape) for x in program.params + program.inputs] + [len(program.eval_graph.shape(n)) for n in program.output_nodes] + [1]),
        forward_reads=[int(leaf in program.eval_inputs()) for leaf in program.inputs],
        metric=program.metric,
        metrics=program.metrics,
        metric_sums=metric_sum_count(program),
        forward_inputs=[leaf.name for leaf in program.eval_inputs()],
        arena=max(total, 1),
        arena_bytes=total * itemsize,
        large_arena=total * itemsize >= LARGE_ARENA,
        kernels=sorted(ctx.kernels),
        parallel_elements=PARALLEL_ELEMENTS,
        training_used=bool(program.train_graph.nodes_of("dropout_mask")),
        share_used=placed_masks(program.train_graph),
        bodies=bodies,
        shuffle_stream=SHUFFLE_STREAM,
        forward_only=forward_only,
    )
    return context, report(plans, itemsize, total, program.spec_names)


def comment_text(text: str) -> str:
    """Text safe inside a C comment (the expressions never hold these pairs; this makes it certain)."""
    return text.replace("*/", "* /").replace("/*", "/ *")


def output_info(name: str, shape) -> dict:
    batched = bool(shape) and is_batch(shape[0])
    return dict(name=name, rank=len(shape), dims=[int(d) for d in shape] or [1], batched=int(batched),
                size=size_per_example(shape), shape=shape_comment(shape))


def size_per_example(shape) -> int:
    static = 1
    for d in shape:
        if not is_batch(d):
            static *= int(d)
    return static


# What the C interface of a model called NAME declares, as NAME_<suffix> and
# NAME_<kind>_<leaf>; the float64 twin declares the same under NAME_f64. A
# test checks this list against the templates.
def render_model(program, env, stem: str, api: str, dtype: str) -> tuple[dict[str, str], dict]:
    """``stem``.h and ``stem``.c of the model in one precision, and their context."""
    context, _ = model_context(program, api, dtype)
    context["header"] = f"{stem}.h"
    files = {f"{stem}.{ext}": env.get_template(f"c/model.{ext}.j2").render(context) for ext in ("h", "c")}
    return files, context


def render_files(program, env) -> dict[str, str]:
    """model.h, model.c, train.c and Makefile, plus a float64 twin of the model
    (model_f64.*) for the trainer's ``--gradcheck`` when the model is float32."""
    api = c_prefix(program.graph.name)
    files, context = render_model(program, env, "model", api, program.dtype)
    twin = program.dtype == "float32"
    if twin:
        files.update(render_model(replace(program, dtype="float64"), env, "model_f64", f"{api}_f64", "float64")[0])
    trainer = dict(context, **trainer_context(program), twin=twin)
    files["train.c"] = env.get_template("c/train.c.j2").render(trainer)
    files["Makefile"] = env.get_template("c/Makefile.j2").render(trainer)
    return {**files, **runtime_files(env)}


RUNTIME = ("sg_kernels.h", "sg_npy.h", "sg_train.h")  # the C runtime: ordinary C, shipped as it is beside the code that includes it
LIBRARY = ("model.h", "model.c", "sg_kernels.h")  # what the model library of a generated folder is built from


def runtime_files(env) -> dict[str, str]:
    return {name: env.loader.get_source(env, f"c/{name}")[0] for name in RUNTIME}


def planned_bytes(program) -> tuple[int, int, int]:
    """Bytes of the work arena, of one batch of inputs, and of the parameters
    with their gradients and two optimiser slots."""
    ctx = Context(program, program.name, program.dtype, Printer(program.dtype), compiled_batch(program))
    _, total = plan_memory(functions(ctx))
    itemsize = 4 if program.dtype == "float32" else 8
    batch = sum(numel(leaf.shape) * (8 if leaf.dtype == "int" else itemsize) for leaf in program.inputs)
    return total * itemsize, batch, 4 * itemsize * sum(numel(p.shape) for p in program.params)


def check_memory(program, limit: int | None = None) -> None:
    """Refuse a model whose planned memory exceeds ``limit`` bytes (default: the memory available now)."""
    limit = available_memory() if limit is None else limit
    if limit is None:  # the platform does not say
        return
    arena, batch, state = planned_bytes(program)
    if arena + batch + state > limit:
        raise SpecError(
            f"the model needs {human_bytes(arena + batch + state)} (work arena {human_bytes(arena)}, a batch of inputs "
            f"{human_bytes(batch)}, parameters with gradients and optimiser state {human_bytes(state)}), more than the "
            f"limit of {human_bytes(limit)}; set it with --max-memory",
            node="dims", source=program.graph.source,
        )


def memory_report(program) -> str:
    """The arena plan of the model's three functions, as ``compile --report`` prints it."""
    return model_context(program, program.name, program.dtype)[1]


