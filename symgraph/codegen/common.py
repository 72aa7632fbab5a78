"""What the backends draw on besides the schedule: element-wise text,
derivation comments and what the templates of both targets say about a
program (both); nodes as emitters see them and statement records (NumPy)."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import sympy as sp

from ..builder import TRAIN_DEFAULTS
from ..errors import SpecError
from ..explain import Pretty, chain_rule, forward_text
from ..ir import Batch, Graph, is_batch, per_graph
from ..metrics import CLASSIFYING, ERRORS, classified, classes, sum_count, targets, top_k
from ..ops import REGISTRY
from ..ops.symbolic import fill, real_valued, structure, structure_expr
from .flags import c_options, c_string, help_text
from .schedule import node_order


@dataclass
class Node:
    """One node as an emitter sees it: names and shapes, no graph."""

    name: str
    op: str
    args: list[str]  # argument text: a variable name or a literal
    shapes: list[tuple]
    shape: tuple
    attrs: dict
    dtypes: list[str]
    arg_nodes: list[str] = field(default_factory=list)
    structure: tuple | None = None  # element-wise ops: (key, arrays), from ops.symbolic.structure
    leaf_shapes: list[tuple] = field(default_factory=list)  # element-wise ops: the shape of each array it reads


@dataclass
class Statement:
    target: str
    lines: list[str]
    fused: list[str]  # the producers computed inside it, first to last (their steps are commented above it)
    shape: tuple
    op: str
    needs: frozenset[str] = frozenset()  # what its lines read besides arrays (see ``need``)


# What the statements being emitted read besides arrays (the batch size n, the
# model's scratch buffers): a backend records into it as it writes them (see
# ``recording``), so that nothing is decided by searching the text afterwards.
_NEEDS: ContextVar[set[str] | None] = ContextVar("needs", default=None)


def need(name: str) -> str:
    """``name``, noted as read by the code being emitted."""
    found = _NEEDS.get()
    if found is not None:
        found.add(name)
    return name


@contextmanager
def recording():
    """The set of names that the code emitted meanwhile reads (see ``need``)."""
    found: set[str] = set()
    token = _NEEDS.set(found)
    try:
        yield found
    finally:
        _NEEDS.reset(token)


@contextmanager
def rewriting(statement: "Statement"):
    """Around new lines for ``statement``: its ``needs`` become what they read."""
    with recording() as used:
        yield
    statement.needs = frozenset(used)


def literal(value: float | Batch) -> str:
    if isinstance(value, Batch):
        return need("n")
    text = repr(float(value))
    return f"({text})" if text.startswith("-") else text


def arg_text(g: Graph, node: str) -> str:
    """Constants are inlined as literals; everything else by its name."""
    if g.op(node) == "const":
        return literal(g.attrs(node)["value"])
    return node


class CachedPrinter:
    """A sympy printer that prints each structure of element-wise expression
    once (see ``ops.symbolic.structure``); each use fills in its arrays."""

    def __init__(self, printer, constant: Callable[[object], sp.Expr]):
        self.printer = printer
        self.constant = constant
        self.cache: dict[tuple, tuple[str, frozenset[str]]] = {}

    def printed(self, key: tuple) -> tuple[str, frozenset[str]]:
        """The text of ``key``'s expression, and the runtime functions it calls (a printer's ``kernels``)."""
        if key not in self.cache:
            text = self.printer.doprint(real_valued(structure_expr(key, self.constant)))
            self.cache[key] = text, frozenset(getattr(self.printer, "kernels", ()))
        return self.cache[key]

    def fill(self, key: tuple, texts: list[str]) -> str:
        """The expression of ``key`` with leaf i written as ``texts[i]``."""
        return fill(self.printed(key)[0], texts)

    def kernels(self, key: tuple) -> frozenset[str]:
        return self.printed(key)[1]


def view(g: Graph, node: str, fused: frozenset[str] = frozenset(), written: dict[str, str] | None = None) -> Node:
    """``written`` gives the text of nodes that have no statement of their own (``x.T``)."""
    args = g.args(node)
    written = written or {}
    found = structure(g, node, fused.__contains__) if REGISTRY[g.op(node)].elementwise else None
    return Node(
        name=node,
        op=g.op(node),
        args=[written.get(a) or arg_text(g, a) for a in args],
        shapes=[g.shape(a) for a in args],
        shape=g.shape(node),
        attrs=g.attrs(node),
        dtypes=[g.dtype(a) for a in args],
        arg_nodes=args,
        structure=found,
        leaf_shapes=[g.shape(leaf) for leaf in found[1]] if found else [],
    )


def batch_input(g: Graph) -> str | None:
    """The input whose first axis is the batch (``n`` is read from it)."""
    shapes = any(is_batch(d) for n in g.nx for d in g.shape(n))
    constants = any(is_batch(g.attrs(n).get("value")) for n in g.nx)
    if not (shapes or constants):
        return None
    for name in g.inputs:
        shape = g.shape(name)
        if shape and is_batch(shape[0]):
            return name
    raise SpecError("the batch dim is used, but no input has it as its first axis", node="dims.batch", source=g.source)


def merged_batch(g: Graph) -> str | None:
    """The first node that folds the batch axis into another axis, or ties it
    to a fixed size, if any.

    ``reshape(x, [-1])`` of a ``[batch, d]`` input or ``concat`` along the
    batch axis has an axis whose size is a multiple of the batch size; a param
    as long as the batch, broadcast or contracted against it, pins it. Such a
    model runs only on whole batches of the compiled size.
    """
    for node in g.order():
        op = g.op(node)
        if op == "reshape":
            (x,) = g.args(node)
            if any(is_batch(d) for d in g.shape(x)) and not any(is_batch(d) for d in g.shape(node)):
                return node
        elif op in REGISTRY and REGISTRY[op].int_bound is not None and is_batch(
            REGISTRY[op].int_bound([g.shape(a) for a in g.args(node)], g.attrs(node))
        ):
            return node  # ids bounded by the batch size (the classes of a cross-entropy on the batch axis)
        elif op in REGISTRY and REGISTRY[op].elementwise:
            out = g.shape(node)
            for a in g.args(node):
                shape = g.shape(a)
                if any(is_batch(d) and not is_batch(e) for d, e in zip(reversed(shape), reversed(out))):
                    return node
        elif op == "matmul":
            a, b = (g.shape(arg) for arg in g.args(node))
            if is_batch(a[-1]) != is_batch(b[-2]):  # a sum over the batch axis against a fixed size
                return node
            out = g.shape(node)[:-2]
            if any(is_batch(d) and not is_batch(e) for s in (a[:-2], b[:-2]) for d, e in zip(reversed(s), reversed(out))):
                return node
        elif op == "concat":
            axis = g.attrs(node)["axis"]
            if any(is_batch(g.shape(a)[axis]) for a in g.args(node)):
                return node
    return None


def spec_named(program, g: Graph) -> frozenset[str]:
    """The nodes of ``g`` that the spec names (leaves and named nodes), under
    their variables' names: a comment may name them even where no variable holds them."""
    return frozenset(
        program.mangled.get(n, n) for n in program.graph.nx
        if program.graph.op(n) in ("input", "param") or program.graph.is_named(n)
    ) & frozenset(g.nx)


def derivation_comments(program, g: Graph, variables: set[str]) -> Callable[[list[str], str], list[str]]:
    """The derivation comments of a statement (its fused producers, its node)
    in code where ``variables`` exist: they name nothing else but the spec's names."""
    return chain_rule(g, frozenset(variables) | spec_named(program, g)).statement_comments


# -- what the templates of both targets say about a program ---------------------------------
def metric_roots(program) -> list[str]:
    """What evaluate() computes for the metrics' sums: the classifier's scores, the error sums."""
    g = program.eval_graph
    roots = []
    if any(m in CLASSIFYING or top_k(m) for m in program.metrics):
        roots.append(classified(g)[0])
    for m in program.metrics:
        if m in ERRORS:
            roots.append(error_sum(program, m))
    return list(dict.fromkeys(roots))


def error_sum(program, metric: str) -> str:
    """The evaluation graph's node summing an error metric's errors over the batch."""
    return program.eval_graph.results["abs_error_sum" if metric == "mae" else "squared_error_sum"]


def trainer_context(program) -> dict:
    """The spec's training settings, with the defaults both trainers use."""
    train = {**TRAIN_DEFAULTS, "batch_size": program.compiled_batch, **program.graph.train}
    context = dict(
        name=program.name,
        source=source_name(program),
        optimizer=train["optimizer"],
        lr=train["lr"],
        momentum=train["momentum"],
        nesterov=train["nesterov"],
        schedule=train["schedule"],
        warmup=train["warmup"],
        decay=train["decay"],
        step_epochs=train["step_epochs"],
        clip_norm=train["clip_norm"],
        patience=train["patience"],
        seed_text=f"{train['seed']}, or the resumed checkpoint's",
        beta1=train["beta1"],
        beta2=train["beta2"],
        eps=train["eps"],
        batch_size=train["batch_size"],
        epochs=train["epochs"],
        seed=train["seed"],
        normalize=list(train["normalize"]),
        weight_decay=train["weight_decay"],
        metric=program.metric,
        metrics=[dict(name=m, short=METRIC_SHORT.get(m, m), sums=sum_count(program.graph, m),
                      classes=classes(program.graph) if m == "macro_f1" else 0) for m in program.metrics],
        metric_sums=metric_sum_count(program),
        scored_elements=program.scored_elements,
        first_output=program.outputs[0],  # what --predict writes
        class_axis=class_axis(program),
        targets=targets(program.graph),  # inputs --normalize refuses
        merged_batch=program.merged_batch,
        coupling=repr(program.coupling),  # why data-parallel training is refused, as a Python literal
        coupling_c=json.dumps(program.coupling) if program.coupling else "NULL",  # ASCII: node names are identifiers
    )
    context["help"] = help_text(context)
    context["help_c"] = c_string(context["help"])
    context["c_options"] = c_options()
    return context


METRIC_SHORT = {"accuracy": "acc", "perplexity": "ppl", "macro_f1": "f1"}  # in the epoch line


def metric_sum_count(program) -> int:
    """How many sums evaluate() returns for all the metrics (at least 1: C has no empty arrays)."""
    return max(1, sum(sum_count(program.graph, m) for m in program.metrics))


def class_axis(program) -> bool:
    """Whether the first output has an axis of classes per example (for --argmax)."""
    shape = program.eval_graph.shape(program.output_nodes[0])
    return len(shape) - (1 if shape and is_batch(shape[0]) else 0) >= 1


def source_name(program) -> str:
    """The spec's file name for header comments, reduced to characters that
    cannot end a comment or a string in either target."""
    source = program.graph.source or "builder"
    name = Path(source).name if source.startswith(("/", ".")) or "/" in source else source
    return re.sub(r"[^A-Za-z0-9_.<>-]", "_", name)


def summary(program) -> str:
    g = program.graph
    return f"minimises {g.loss} = {forward_text(g, g.loss)}"


@per_graph
def describe(g: Graph) -> tuple[str, ...]:
    """The spec's named nodes, one per line, as the spec wrote them (made once per graph)."""
    printer = Pretty(g)
    return tuple(f"{node} = {forward_text(g, node, printer)}" for node in node_order(g) if g.is_named(node))
