"""YAML specs -> graphs.

Expressions are parsed with Python's ``ast`` and walked through a whitelist
(numbers, names, ``+ - * / ** @``, unary minus, op calls with literal
keywords). Nothing in a spec is ever evaluated.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from . import ops
from .builder import Graph, Tensor
from .errors import SpecError
from .names import check_name

TOP_KEYS = ("name", "dims", "inputs", "params", "graph", "loss", "outputs", "train")
LEAF_KEYS = {"inputs": ("shape", "dtype", "value"), "params": ("shape", "init", "value")}
BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.MatMult: "matmul"}


def load(source: str | Path) -> Graph:
    """Load a spec from a path or from YAML text.

    Raises
    ------
    SpecError
        On any bad input, naming the file and the node.
    """
    text, where = read_source(source)
    try:
        return build(parse_yaml(text), where)
    except SpecError as exc:
        raise exc.located(where) from None


def read_source(source: str | Path) -> tuple[str, str]:
    if isinstance(source, Path) or ("\n" not in str(source) and str(source).endswith((".yaml", ".yml"))):
        path = Path(source)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read the spec: {exc.__class__.__name__}: {exc.args[-1] if exc.args else exc}", node="<file>", source=str(path)) from None
    return str(source), "<string>"


class SpecLoader(yaml.SafeLoader):
    """YAML as a spec means it: a key given twice is an error (not the last one
    silently), ``1e-3`` is the number it looks like (YAML 1.2's rule; 1.1
    wanted ``1.0e-3``), and ``NULL``, ``true`` or ``on`` are names like any
    other (a spec holds no YAML booleans or nulls; an empty value stays empty)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {str(key)[:40]!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)
SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:null")]
    for first, resolvers in SpecLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|)$"), ["~", ""])

MAX_VALUES = 100_000  # a spec's values after YAML's aliases are expanded: no spec needs more


def expanded_size(data, limit: int = MAX_VALUES) -> int:
    """How many values ``data`` holds with every alias expanded, counting no
    further than ``limit`` (an alias bomb of 600 bytes expands to billions)."""
    sizes: dict[int, int] = {}

    def size(value) -> int:
        if id(value) in sizes:
            return sizes[id(value)]
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        total = 1
        for child in children:
            total = min(limit + 1, total + size(child))
        sizes[id(value)] = total
        return total

    return size(data)


def parse_yaml(text: str) -> dict:
    try:
        data = yaml.load(text, Loader=SpecLoader)  # noqa: S506 - SpecLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise SpecError(f"malformed YAML{line}: {problem}", node="<yaml>") from None
    except RecursionError:
        raise SpecError("the YAML nests too deeply", node="<yaml>") from None
    if expanded_size(data) > MAX_VALUES:
        raise SpecError(f"the spec expands to more than {MAX_VALUES:,} values (YAML aliases?)", node="<yaml>")
    if not isinstance(data, dict):
        raise SpecError("a spec must be a YAML mapping", node="<yaml>")
    unknown = [str(k) for k in data if k not in TOP_KEYS]
    if unknown:
        raise SpecError(f"unknown top-level key(s) {', '.join(map(repr, unknown))} (known: {', '.join(TOP_KEYS)})", node="<spec>")
    return data


def mapping(data: dict, key: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"{key} must be a mapping", node=key)
    return value


def build(data: dict, where: str) -> Graph:
    name = data.get("name", Path(where).stem if where != "<string>" else "model")
    dims = mapping(data, "dims")
    if "name" not in data and not str(name).isidentifier():
        name = "model"
    if not isinstance(name, str):
        raise SpecError(f"name must be an identifier, got {name!r}", node="name")
    g = Graph(name, source=where)
    for key, value in dims.items():
        g.add_dim(key, value)
    for kind in ("inputs", "params"):
        for leaf, fields in mapping(data, kind).items():
            add_leaf(g, kind, leaf, fields)
    build_expressions(g, mapping(data, "graph"))
    loss = data.get("loss")
    if loss is None:
        raise SpecError("missing 'loss': name the scalar to minimise", node="loss")
    if not isinstance(loss, str) or loss not in g.nx:
        raise SpecError(f"the loss {loss!r} is not a node of the graph", node="loss")
    g.set_loss(loss)
    outputs = data.get("outputs") or []
    if not isinstance(outputs, list):
        raise SpecError("outputs must be a list of names", node="outputs")
    for out in outputs:
        if not isinstance(out, str) or out not in g.nx:
            raise SpecError(f"unknown output {out!r}", node="outputs")
        g.add_output(out)
    train = mapping(data, "train")
    g.set_train(**{str(k): v for k, v in train.items()})
    return g.finish()


def add_leaf(g: Graph, kind: str, name: Any, fields: Any) -> None:
    shown = name if isinstance(name, str) and name.isidentifier() else kind
    if not isinstance(fields, dict):
        raise SpecError(f"{kind} entries must be mappings like {{shape: [...]}}", node=shown)
    unknown = [k for k in fields if k not in LEAF_KEYS[kind]]
    if unknown:
        raise SpecError(f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(LEAF_KEYS[kind])})", node=shown)
    if "shape" not in fields:
        raise SpecError("missing shape", node=shown)
    if kind == "inputs":
        g.input(name, fields["shape"], fields.get("dtype", "float"), fields.get("value"))
    else:
        g.param(name, fields["shape"], fields.get("init"), fields.get("value"))


def build_expressions(g: Graph, entries: dict) -> None:
    """Build the ``graph:`` section in dependency order (entries may come in any order)."""
    trees: dict[str, ast.expr] = {}
    deps = nx.DiGraph()
    for name in entries:
        check_name(name, node=name if isinstance(name, str) and name.isidentifier() else "graph")
        if name in g.dims:
            raise SpecError(f"{name!r} is both a dim and a graph entry: rename one of them", node=name)
        if name in g.nx:
            raise SpecError(f"{name!r} is defined twice", node=name)
    for name, text in entries.items():
        shown = name
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise SpecError(f"an expression must be a string, got {type(text).__name__}", node=shown)
        try:
            trees[name] = ast.parse(str(text).strip(), mode="eval").body
        except SyntaxError as exc:
            raise SpecError(f"syntax error in expression: {exc.msg}", node=shown) from None
        except (RecursionError, MemoryError):
            raise SpecError("the expression nests too deeply for Python's parser: split it into named parts", node=shown) from None
        deps.add_node(name)
        called = {id(call.func) for call in ast.walk(trees[name]) if isinstance(call, ast.Call)}  # an op, even where a node shares its name
        for ref in ast.walk(trees[name]):
            if isinstance(ref, ast.Name) and ref.id in entries and id(ref) not in called:
                deps.add_edge(ref.id, name)
    try:
        cycle = nx.find_cycle(deps)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise SpecError(f"cycle: {path}", node=cycle[0][0])
    g.claimed = frozenset(entries)  # h's unnamed parts become h_1, h_2, ... unless the spec names one so
    rank = {n: i for i, n in enumerate(entries)}
    for name in nx.lexicographical_topological_sort(deps, key=rank.__getitem__):
        try:
            g.define(name, Expression(g).build(trees[name]))
        except SpecError as exc:
            if exc.node is None:
                exc.node = name
            raise
        except RecursionError:
            raise SpecError("the expression nests too deeply: split it into named parts", node=name) from None


class Expression:
    """Walks one expression's ``ast`` through the whitelist, building nodes."""

    def __init__(self, g: Graph):
        self.g = g

    def build(self, node: ast.expr) -> Tensor | float:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise SpecError(f"{describe(node)} is not allowed in an expression")
        return method(node)

    def tensor(self, node: ast.expr) -> Tensor:
        return self.as_tensor(self.build(node))

    def visit_Constant(self, node: ast.Constant) -> float:
        if type(node.value) not in (int, float):
            raise SpecError(f"{excerpt(node)} is not allowed in an expression (numbers only)")
        return number(lambda: float(node.value), node)

    def visit_Name(self, node: ast.Name) -> Tensor:
        if node.id in self.g.nx:
            return Tensor(self.g, node.id)
        if node.id in self.g.dims:
            return self.g.dim(node.id)
        raise SpecError(f"unknown name {node.id!r}")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Tensor | float:
        value = self.build(node.operand)
        if isinstance(node.op, ast.UAdd):
            return value
        if isinstance(node.op, ast.USub):
            return -value
        raise SpecError(f"{describe(node)} is not allowed in an expression")

    def visit_BinOp(self, node: ast.BinOp) -> Tensor | float:
        if isinstance(node.op, ast.Pow):
            return self.visit_Pow(node)
        # a + b + c + ... nests to the left: walk the chain in a loop, so a
        # sum of thousands of terms does not run out of Python's stack
        chain = []
        while isinstance(node, ast.BinOp) and not isinstance(node.op, ast.Pow):
            chain.append(node)
            node = node.left
        value = self.build(node)
        for link in reversed(chain):
            value = self.binary(link, value)
        return value

    def visit_Pow(self, node: ast.BinOp) -> Tensor | float:
        exponent = self.build(node.right)
        if not isinstance(exponent, (int, float)):
            raise SpecError("the exponent of ** must be a constant number")
        base = self.build(node.left)
        if isinstance(base, (int, float)):
            return number(lambda: float(base) ** exponent, node)
        return base**exponent

    def binary(self, node: ast.BinOp, left: Tensor | float) -> Tensor | float:
        """``left`` (the value of node.left) combined with node.right by node's operator."""
        op = BINARY.get(type(node.op))
        if op is None:
            raise SpecError(f"{describe(node)} is not allowed in an expression")
        right = self.build(node.right)
        scalar = ops.REGISTRY[op].fold
        if isinstance(left, (int, float)) and isinstance(right, (int, float)) and scalar is not None:
            return number(lambda: scalar(float(left), float(right)), node)
        return self.g.apply(op, self.as_tensor(left), self.as_tensor(right))

    def as_tensor(self, value: Tensor | float) -> Tensor:
        return value if isinstance(value, Tensor) else self.g.const(value)

    def visit_Call(self, node: ast.Call) -> Tensor:
        if not isinstance(node.func, ast.Name):
            raise SpecError("only calls of ops by name are allowed, like relu(x)")
        name = node.func.id
        opdef = ops.REGISTRY.get(name)
        if opdef is None or not opdef.public:
            raise SpecError(ops.registry.unknown_op(name))
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise SpecError(f"{name}(): * and ** arguments are not allowed")
        if opdef.arity is None:
            split = len(node.args)
            while split > 0 and is_literal(node.args[split - 1]):
                split -= 1
        else:
            split = min(opdef.arity, len(node.args))
            given = split + sum(1 for a in node.args[split:] if not is_literal(a) and not is_dim(a, self.g))
            if given > opdef.arity:
                raise SpecError(f"{name}() takes {opdef.arity} tensor argument(s), got {given}")
        tensors = [self.tensor(a) for a in node.args[:split]]
        positional = [self.literal(a, name) for a in node.args[split:]]
        repeated = sorted({k.arg for k in node.keywords if sum(j.arg == k.arg for j in node.keywords) > 1})
        if repeated:
            raise SpecError(f"{name}(): the keyword {repeated[0]!r} is repeated")
        keywords = {k.arg: self.literal(k.value, name) for k in node.keywords}
        return self.g.apply(name, *tensors, positional=positional, **keywords)

    def literal(self, node: ast.expr, op: str) -> Any:
        """An attribute value: a number, None, a bool, a dim, or a list of those."""
        if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (int, float, bool)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.literal(node.operand, op)
            if type(value) in (int, float):
                return -value
        if isinstance(node, ast.Name) and node.id in self.g.dims:
            return self.g.dims[node.id]
        if isinstance(node, (ast.List, ast.Tuple)):
            return tuple(self.literal(e, op) for e in node.elts)
        raise SpecError(f"{op}(): attributes must be literal numbers, lists or dim names, not {shown(node)}")


def shown(node: ast.expr) -> str:
    """The text of an expression, for a message (a name: what it was called)."""
    if isinstance(node, ast.Name):
        return f"'{node.id}' (not a dim)"
    if isinstance(node, ast.Constant):
        return f"the {type(node.value).__name__} {node.value!r:.40}"
    return describe(node)


def number(compute, node: ast.expr) -> float:
    """Arithmetic on literals, done here: a finite real number, or a clear error."""
    try:
        value = compute()
    except ZeroDivisionError:
        raise SpecError(f"{excerpt(node)} divides by zero") from None
    except OverflowError:
        raise SpecError(f"{excerpt(node)} overflows a double") from None
    if isinstance(value, complex) or not math.isfinite(value):
        raise SpecError(f"{excerpt(node)} is not a finite real number")
    return value


def excerpt(node: ast.expr, limit: int = 40) -> str:
    text = ast.unparse(node)
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def is_dim(node: ast.expr, g: Graph) -> bool:
    return isinstance(node, ast.Name) and node.id in g.dims


def is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp):
        return is_literal(node.operand)
    return isinstance(node, (ast.Constant, ast.List, ast.Tuple))


def describe(node: ast.AST) -> str:
    return {
        "Attribute": "attribute access", "Subscript": "indexing", "Lambda": "a lambda",
        "Compare": "a comparison", "BoolOp": "and/or", "IfExp": "a conditional",
        "JoinedStr": "an f-string", "Dict": "a dict", "Set": "a set",
    }.get(type(node).__name__, f"'{type(node).__name__}'")
