"""Derived gradients as a person reads them: simplified formulas in the spec's names.

For a graph of scalars each gradient is one sympy expression over the leaves,
simplified, with its value where every leaf has one. For tensor graphs it is
the gradient program: one assignment per adjoint, element-wise parts merged
into one simplified sympy expression, other ops written as NumPy-like calls.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import sympy as sp

from .autodiff import differentiate
from .errors import SpecError
from .ir import Batch, Graph, per_graph
from .ops import REGISTRY, X
from .ops.registry import axes_text
from .ops.reduce import sum_to_axes
from .ops.symbolic import BATCH, fill, op_expr, rational, relu, sgn, sigmoid, step, structure, structure_expr
from .passes import optimize

LEAVES = ("input", "param")


@dataclass
class Gradient:
    leaf: str
    formula: sp.Expr | str
    value: float | None
    math: sp.Expr | None = None  # the formula for typesetting (tensor ops as products and calls)


class Explanation:
    """The result of :func:`explain`; prints as text, displays as LaTeX in notebooks."""

    def __init__(self, loss: str, gradients: list[Gradient], program: list[tuple[str, str]] | None):
        self.loss = loss
        self.gradients = gradients
        self.program = program

    def text(self) -> str:
        if self.program is not None:
            return "\n".join(f"{name} = {rhs}" for name, rhs in self.program)
        return "\n".join(self._line(g) for g in self.gradients)

    def _line(self, g: Gradient) -> str:
        line = f"d{self.loss}/d{g.leaf} = {show(g.formula) if isinstance(g.formula, sp.Expr) else g.formula}"
        return line if g.value is None else f"{line} = {format_number(g.value)}"

    def latex(self) -> str:
        rows = []
        for g in self.gradients:
            if isinstance(g.formula, sp.Expr):
                formula = sp.latex(g.formula, symbol_names={x: latex_name(x.name) for x in g.formula.free_symbols if isinstance(x, sp.Symbol)})
            else:
                formula = r"\texttt{" + g.formula.replace("_", r"\_") + "}"
            row = rf"\frac{{\partial {latex_name(self.loss)}}}{{\partial {latex_name(g.leaf)}}} = {formula}"
            if g.value is not None:
                row += f" = {format_number(g.value)}"
            rows.append(row)
        return r"\begin{aligned}" + r" \\ ".join(r.replace(" = ", " &= ", 1) for r in rows) + r"\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"


    def mathml(self) -> list[str]:
        """One presentation-MathML ``<math>`` element per gradient, from sympy's printer."""
        from sympy.printing.mathml import mathml

        def symbol(name: str) -> str:
            return mathml(sp.Symbol(name), printer="presentation")

        out = []
        for g in self.gradients:
            formula = g.math if g.math is not None else g.formula
            row = (
                f"<mfrac><mrow><mo>&#8706;</mo>{symbol(self.loss)}</mrow><mrow><mo>&#8706;</mo>{symbol(g.leaf)}</mrow></mfrac>"
                f"<mo>=</mo>{mathml(formula, printer='presentation')}"
            )
            if g.value is not None:
                row += f"<mo>=</mo><mn>{format_number(g.value)}</mn>"
            out.append(f'<math display="block"><mrow>{row}</mrow></math>')
        return out

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()


def latex_name(name: str) -> str:
    """A spec name in LaTeX: sympy's subscript for one like x_1 or W_out, else
    the name as it is (a_b_c is no a with subscript b c, nor _X a bare subscript)."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)?", name):
        return sp.latex(sp.Symbol(name))
    return r"\mathit{" + name.replace("_", r"\_") + "}"


def show(expr: sp.Expr) -> str:
    """sympy's text, with positive terms first: ``sigmoid(z) - y``, not ``-y + sigmoid(z)``."""
    return sp.sstr(positive_first(expr), order="none")


def positive_first(expr: sp.Expr) -> sp.Expr:
    if expr.is_Add:
        ordered = [positive_first(t) for t in expr.as_ordered_terms()]
        terms = sorted(ordered, key=lambda t: t.could_extract_minus_sign())
        return sp.Add(*terms, evaluate=False)
    if expr.args and not expr.is_Function and not expr.is_Symbol:
        return expr.func(*(positive_first(a) for a in expr.args), evaluate=False)
    return expr


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def explain(g: Graph, wrt: str | list[str] | None = None) -> Explanation:
    """Each derived gradient of ``g``'s loss, simplified, in the spec's names.

    Parameters
    ----------
    g : Graph
    wrt : str or list of str, optional
        Params (or float inputs) to show; all params by default.
    """
    targets = [wrt] if isinstance(wrt, str) else list(wrt) if wrt else g.params
    for t in targets:
        if t not in g.nx or g.op(t) not in LEAVES:
            raise SpecError(f"--wrt {t!r} is not a param or input", node=str(t), source=g.source)
    gg = optimize(differentiate(g, targets))
    scalar = all(g.shape(n) == () for n in g.nx)
    if scalar:
        return Explanation(g.loss, [scalar_gradient(gg, t) for t in targets], None)
    printer = Pretty(gg)
    program = printer.program([gg.gradients[t] for t in targets])
    math = MathPretty(gg)
    gradients = [Gradient(t, printer.text(gg.gradients[t]), None, math.formula(gg.gradients[t])) for t in targets]
    return Explanation(g.loss, gradients, program)


SIMPLIFY_OPS = 40  # sympy.simplify on larger formulas took minutes (three tanh layers); they get factor_terms alone


def scalar_gradient(gg: Graph, leaf: str) -> Gradient:
    cache: dict[str, sp.Expr] = {}
    formula = symbolic(gg, gg.gradients[leaf], cache)
    formula = sp.simplify(formula) if sp.count_ops(formula) <= SIMPLIFY_OPS else sp.factor_terms(formula)
    values = {}
    for name in gg.nx:
        if gg.op(name) in LEAVES:
            value = gg.get(name, "value")
            if value is None:
                values = None
                break
            values[sp.Symbol(name, real=True)] = value
    number = None
    if values is not None and formula.free_symbols <= set(values):
        number = evaluate(formula.subs(values))
    return Gradient(leaf, formula, number)


def evaluate(expr: sp.Expr) -> float | None:
    """The value of a formula of numbers, with symgraph's own functions written
    out for sympy's evaluation; None unless that is a finite real number."""
    plain = expr.replace(sigmoid, lambda x: 1 / (1 + sp.exp(-x))).replace(relu, lambda x: sp.Max(x, 0))
    plain = plain.replace(step, lambda x: sp.Piecewise((1, x > 0), (0, True))).replace(sgn, sp.sign)
    value = plain.evalf()
    return float(value) if value.is_Number and value.is_finite and value.is_real else None


BATCH_SYMBOL = sp.Symbol("batch", positive=True)  # the batch size, as a reader sees it


def readable_constant(value) -> sp.Expr:
    """A constant as a reader sees it: 1/2, or the symbol batch (for a graph's
    Batch value and a structure's BATCH alike)."""
    return BATCH_SYMBOL if value == BATCH or isinstance(value, Batch) else readable_number(float(value))


@functools.lru_cache(maxsize=None)
def readable_number(value: float) -> sp.Expr:
    """1/2 for 0.5, and sqrt(2)/(2*sqrt(pi)) for 0.3989422804014327 (what d gelu
    brings in) where a short form with roots or pi gives the float back exactly."""
    with_pi = sp.nsimplify(value, [sp.pi])
    if not with_pi.is_Rational and sp.count_ops(with_pi) <= 6 and float(with_pi) == value:
        return with_pi
    return rational(value)


def symbolic(g: Graph, node: str, cache: dict[str, sp.Expr]) -> sp.Expr:
    """The whole expression of a scalar node over its leaves."""
    if node in cache:
        return cache[node]
    op = g.op(node)
    if op in LEAVES:
        expr = sp.Symbol(node, real=True)
    elif op == "const":
        expr = readable_constant(g.attrs(node)["value"])
    elif REGISTRY[op].elementwise:
        expr = op_expr(op, g.attrs_key(node))
        expr = expr.xreplace({X[i]: symbolic(g, a, cache) for i, a in enumerate(g.args(node))})
    else:
        raise SpecError(f"cannot show {op} as a scalar formula", node=node, source=g.source)
    cache[node] = expr
    return expr


_STRUCTURE_TEXT: dict[tuple, str] = {}


class Pretty:
    """Writes nodes of a tensor graph as readable NumPy-like text."""

    def __init__(self, g: Graph, shown: set[str] | None = None, labels: dict[str, str] | None = None, tidy: bool = True):
        self.g = g
        self.tidy = tidy  # factor common terms (for reading a formula; costly in generated-code comments)
        if shown is None:
            adjoint_nodes = set(g.cotangents.values()) | set(g.gradients.values())
            shown = {
                n for n in g.nx
                if (g.is_named(n) or g.op(n) in LEAVES or n in adjoint_nodes) and g.op(n) != "const"
            }
        self.shown = shown
        self.labels = labels or {}

    def symbol(self, node: str) -> sp.Symbol:
        return sp.Symbol(self.labels.get(node, node), real=True)

    def program(self, roots: list[str]) -> list[tuple[str, str]]:
        """Assignments for every shown backward node that the roots need."""
        needed = self.g.needed_by(roots)
        forward = {n for n in self.g.nx if self.g.is_named(n) or self.g.op(n) in LEAVES}
        lines = []
        for node in self.g.order():
            if node in needed and node in self.shown and node not in forward:
                lines.append((node, self.text(node, top=True)))
        return lines

    def text(self, node: str, top: bool = False) -> str:
        if not self.is_elementwise(node):
            return self.call(node)
        if self.g.op(node) == "const":
            return show(self.expr(node, top))
        if not top and node in self.shown:
            return self.labels.get(node, node)
        # Text of an element-wise expression depends only on its structure: print
        # each structure once (sympy is slow), then fill in the atoms' text.
        key, atoms = structure(
            self.g, node,
            inline=lambda a: a not in self.shown and self.is_elementwise(a),
            leaf=lambda a: self.labels.get(a, a) if a in self.shown else self.call(a),
        )
        if (self.tidy, key) not in _STRUCTURE_TEXT:
            _STRUCTURE_TEXT[self.tidy, key] = show(structure_expr(key, readable_constant, sp.factor_terms if self.tidy else None))
        return fill(_STRUCTURE_TEXT[self.tidy, key], atoms)

    def is_elementwise(self, node: str) -> bool:
        op = self.g.op(node)
        return op == "const" or (op in REGISTRY and REGISTRY[op].elementwise)

    def atom(self, node: str) -> sp.Expr:
        """An opaque symbol standing for a node (its name, or its call text)."""
        if node in self.shown:
            return self.symbol(node)
        if self.is_elementwise(node):
            return self.expr(node, top=True)
        return sp.Symbol(self.call(node), real=True)

    def expr(self, node: str, top: bool = False) -> sp.Expr:
        g = self.g
        if not top and node in self.shown:
            return self.symbol(node)
        op = g.op(node)
        if op == "const":
            return readable_constant(g.attrs(node)["value"])
        if not (op in REGISTRY and REGISTRY[op].elementwise):
            return self.atom(node)
        base = op_expr(op, g.attrs_key(node))
        expr = base.xreplace({X[i]: self.expr(a) for i, a in enumerate(g.args(node))})
        return sp.factor_terms(expr) if self.tidy else expr

    def arg(self, node: str) -> str:
        text = show(self.atom(node))
        simple = text.removesuffix(".T")
        called = simple.endswith(")") and simple.split("(")[0].isidentifier()
        atomic = simple.isidentifier() or simple in self.labels.values()
        return text if atomic or called else f"({text})"

    def call(self, node: str) -> str:
        g = self.g
        op, attrs, args = g.op(node), g.attrs(node), g.args(node)
        if op in LEAVES:
            return node
        shown = REGISTRY[op].shown if op in REGISTRY else None
        if shown is not None:  # the op says how it reads: lowered ops as what they compute
            return shown([self.arg(a) for a in args], attrs, [len(g.shape(a)) for a in args])
        if op == "transpose" and len(attrs["axes"]) == 2:
            return f"{self.arg(args[0])}.T"
        if op in ("sum_to", "sum"):
            axes = reduced_axes(g, node)
            # summed axes that stay, as size 1, must say so: read as NumPy, the sum would broadcast wrongly
            keep = ", keepdims=True" if axes and len(g.shape(node)) == len(g.shape(args[0])) else ""
            mean = self.mean_of(args[0], axes)
            if mean is not None:
                return f"mean({mean}, axis={axes_text(axes)}{keep})"
            return f"sum({show(self.atom(args[0]))}, axis={axes_text(axes)}{keep})"
        if op == "broadcast_to":
            inner = show(self.atom(args[0]))
            axes = attrs["axes"]
            return f"expand_dims({inner}, axis={axes_text(axes)})" if axes else inner
        if op == "softmax_cross_entropy_grad":
            return show((sp.Symbol(f"softmax({args[0]})") - sp.Symbol(f"onehot({args[1]})")) * self.atom(args[2]))
        shown = [show(self.atom(a)) for a in args]
        if op in ("softmax", "log_softmax") and attrs["axis"] == len(g.shape(node)) - 1:
            attrs = {}  # the default, last axis
        extra = [f"{k}={v}" for k, v in attrs.items() if k not in ("shape", "index")]
        return f"{op}({', '.join(shown + extra)})"

    def mean_of(self, node: str, axes: tuple[int, ...]) -> str | None:
        """``E`` when ``node`` is ``E / batch`` and the batch axis is what is summed."""
        shape = self.g.shape(node)
        if node in self.labels or axes != tuple(i for i, d in enumerate(shape) if isinstance(d, Batch)):
            return None
        expr = self.expr(node, top=True) if self.is_elementwise(node) else None
        batch = BATCH_SYMBOL
        if expr is None or not expr.has(batch):
            return None
        rest = sp.simplify(expr * batch)
        return None if rest.has(batch) else show(rest)


class MathPretty(Pretty):
    """Like :class:`Pretty`, but builds one sympy expression for typesetting:
    ``a @ b`` is a non-commutative product, ``x.T`` a superscript T, other
    ops are calls."""

    def formula(self, node: str) -> sp.Expr:
        return self.expr(node, top=True) if self.is_elementwise(node) else self.tensor(node)

    def atom(self, node: str) -> sp.Expr:
        if node in self.shown or self.is_elementwise(node):
            return super().atom(node)
        return self.tensor(node)

    def tensor(self, node: str) -> sp.Expr:
        g = self.g
        op, attrs, args = g.op(node), g.attrs(node), g.args(node)
        if op in LEAVES:
            return self.symbol(node)
        if op in ("matmul", "matvec"):
            if op == "matvec" and attrs["transposed"]:
                args = args[::-1]
            return sp.Mul(*(factor(self.atom(a)) for a in args), evaluate=False)
        if op == "matmul_sum":  # lowered: the sum over the stack of its products
            a = self.transposed(args[0]) if attrs["transposed"] else factor(self.atom(args[0]))
            lead = tuple(range(len(g.shape(args[0])) - 2))
            return sp.Function(f"sum_axis{axes_text(lead)}")(sp.Mul(a, factor(self.atom(args[1])), evaluate=False))
        if op == "transpose" and len(attrs["axes"]) == 2:
            return self.transposed(args[0])
        if op in ("sum_to", "sum"):
            axes = reduced_axes(g, node)
            return sp.Function(f"sum_axis{axes_text(axes)}")(self.atom(args[0]))
        if op == "broadcast_to":
            return self.atom(args[0])
        return sp.Function(op)(*(self.atom(a) for a in args))

    def transposed(self, node: str) -> sp.Expr:
        inner = self.atom(node)
        return sp.Symbol(f"{inner.name}^T", commutative=False) if inner.is_Symbol else sp.Function("transpose")(inner)


def factor(expr: sp.Expr) -> sp.Expr:
    """A matrix operand: kept in place by being non-commutative."""
    if expr.is_commutative is False:
        return expr
    return sp.Symbol(expr.name if expr.is_Symbol else f"({show(expr)})", commutative=False)


def reduced_axes(g: Graph, node: str) -> tuple[int, ...]:
    if g.op(node) == "sum":
        return tuple(g.attrs(node)["axis"])
    lead, kept = sum_to_axes(g.shape(g.args(node)[0]), g.shape(node))
    return tuple(range(lead)) + kept


def forward_text(g: Graph, node: str, printer: Pretty | None = None) -> str:
    """A forward node written over named nodes (used in generated headers)."""
    printer = printer or Pretty(g)
    was_shown = node in printer.shown
    printer.shown.discard(node)
    try:
        return printer.text(node, top=True)
    finally:
        if was_shown:
            printer.shown.add(node)


@per_graph
def chain_rules(g: Graph) -> dict:
    """The graph's ChainRules, by the names its code has (see ``chain_rule``)."""
    return {}


def chain_rule(g: Graph, known: frozenset[str] | None = None) -> "ChainRule":
    """The ChainRule of a graph for code in which ``known`` are the names that
    exist (variables, and the spec's names); None: every node. Made once each."""
    rules = chain_rules(g)
    if known not in rules:
        rules[known] = ChainRule(g, known)
    return rules[known]


class ChainRule:
    """The derivation comment of each backward statement in generated code.

    Differentiation tags every backward node with the chain-rule step that
    made it (see ``autodiff.tag_chain_steps``). The comment of a step's
    result restates it over adjoints, with the step's own temporaries
    inlined and the forward node it differentiates in brackets::

        dL/du = dL/dh*(1 - h**2)   [d tanh(u)/du]

    A comment names only ``known`` nodes: another forward node is written out
    (``dL/d(x @ W1)``), another adjoint by its forward node's name where that
    is known (``dL/dh``), else written out.
    """

    def __init__(self, g: Graph, known: frozenset[str] | None = None):
        self.g = g
        self.known = frozenset(n for n in g.nx if g.op(n) != "const") if known is None else known
        self.adjoint_of = {}
        for forward, adjoint in g.cotangents.items():  # nearest the loss first
            self.adjoint_of.setdefault(adjoint, forward)
        self.forward_printer = Pretty(g, {n for n in self.known if n in g.nx and g.op(n) != "const"}, tidy=False)
        parts = {n for n in g.nx if self.role(n) == "part"}
        labels = {a: f"dL/d{self.ref(f)}" for a, f in self.adjoint_of.items() if f in self.known or a not in self.known}
        shown = {n for n in self.known if n in g.nx and g.op(n) != "const" and n not in parts} | set(labels)
        self.printer = Pretty(g, shown, labels, tidy=False)
        self.comments: dict[str, str] = {}

    def ref(self, node: str) -> str:
        """A forward node as a comment may name it: its name where known, else its text in brackets."""
        return node if node in self.known else f"({forward_text(self.g, node, self.forward_printer)})"

    def role(self, node: str) -> str | None:
        return self.g.chain(node)[2]

    def statement_comments(self, fused: list[str], node: str) -> list[str]:
        """The lines above a statement that computes ``node`` with ``fused``
        (its producers, first to last) inside it: the steps the producers'
        results are, not their parts, then its own; each once, none empty."""
        comments = [self.comment(a) for a in fused if self.role(a) != "part"] + [self.comment(node)]
        return [c for i, c in enumerate(comments) if c and c not in comments[:i]]

    def comment(self, node: str) -> str:
        """One line for ``node``; empty for forward nodes."""
        if node not in self.comments:
            self.comments[node] = self.derive(node)
        return self.comments[node]

    def derive(self, node: str) -> str:
        g = self.g
        fwd, arg, role = g.chain(node)
        if any(n is not None and n not in g.nx for n in (fwd, arg)):
            role = None  # a pass merged the forward node away; say only what is computed
        if role is None:
            # a forward value that is also an adjoint (e in L = c*e is dL/dc)
            return f"dL/d{self.ref(self.adjoint_of[node])} = {self.printer.text(node, top=True)}" if node in self.adjoint_of else ""
        if role == "sum":
            return f"dL/d{self.ref(arg)} = {self.printer.text(node, top=True)}   [sum over the uses of {self.ref(arg)}]"
        step = f"[d{self.forward_text(fwd)}/d{self.ref(arg)}]" if arg is not None else f"[d{self.forward_text(fwd)}]"
        if role == "part":
            return f"part of dL/d{self.ref(arg)}   {step}" if arg is not None else f"part of the chain rule at {self.ref(fwd)}   {step}"
        whole = g.cotangents.get(arg) == node
        lhs = f"dL/d{self.ref(arg)}" if whole else f"dL/d{self.ref(arg)} through {self.ref(fwd)}"
        # the incoming adjoint may be shared with other nodes (x + y passes it on): name it after fwd
        incoming = g.cotangents.get(fwd)
        if incoming is None:
            return f"{lhs} = {self.printer.text(node, top=True)}   {step}"
        labels, shown = self.printer.labels, self.printer.shown
        saved, was_shown = labels.get(incoming), incoming in shown
        labels[incoming] = f"dL/d{self.ref(fwd)}"
        shown.add(incoming)
        try:
            return f"{lhs} = {self.printer.text(node, top=True)}   {step}"
        finally:
            if saved is None:
                del labels[incoming]
            else:
                labels[incoming] = saved
            if not was_shown:
                shown.discard(incoming)

    def forward_text(self, node: str) -> str:
        """``tanh(u)`` or ``(h @ W2)``: the forward node over its own arguments."""
        text = forward_text(self.g, node, self.forward_printer)
        head = text.split("(")[0]
        return f" {text}" if head.isidentifier() and text.endswith(")") and text.count("(") == 1 else f"({text})"
