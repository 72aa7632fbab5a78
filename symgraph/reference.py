"""The reference pages of the documentation, written from the code itself.

    python -m symgraph.reference [DOCS]     (default docs/; writes DOCS/reference/*.md)

Ops come from the registry (signature, meaning, an example spec, its shapes
and the derivative symgraph derives), spec keys from the spec reader's and
builder's tables, the CLI from its argument parser, the trainers' flags from
a generated trainer, and the Python API from docstrings. A test checks that
the committed pages are what this writes.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import sympy as sp

from .builder import OPTIMIZERS, SCHEDULES, TRAIN_DEFAULTS, TRAIN_KEYS
from .errors import SpecError
from .init import SCHEMES
from .metrics import METRICS
from .ops.registry import REGISTRY, OpDef, X, signature, tensor_names
from .spec import LEAF_KEYS, TOP_KEYS, load

COLUMNS = 88  # the width argparse wraps help to, whatever the terminal

# The leaves every op's example may use: name -> (kind, shape, extra fields).
EXAMPLE_LEAVES = {
    "x": ("inputs", ["batch", 3], {}),
    "t": ("inputs", ["batch", 3], {}),
    "flags": ("inputs", ["batch"], {}),
    "labels": ("inputs", ["batch"], {"dtype": "int"}),
    "ids": ("inputs", ["batch", 5], {"dtype": "int"}),
    "seq": ("inputs", ["batch", 6, 3], {}),
    "img": ("inputs", ["batch", 6, 6, 3], {}),
    "v": ("params", [3], {}),
    "W": ("params", [3, 4], {}),
    "K": ("params", [2, 3, 4], {}),
    "K2": ("params", [3, 3, 3, 4], {}),
    "E": ("params", [10, 3], {}),
}


def public_ops() -> list[OpDef]:
    return [REGISTRY[name] for name in sorted(REGISTRY) if REGISTRY[name].public]


def example_call(op: OpDef) -> str:
    return op.example or f"{op.name}(x)"


def example_spec(op: OpDef) -> str:
    """A minimal spec that calls ``op``: its result ``out``, and a loss."""
    call = example_call(op)
    used = [name for name in EXAMPLE_LEAVES if f"{name}" in _names(call)]
    lines = [f"name: {op.name}_example", "dims: {batch: 4}"]
    for kind in ("inputs", "params"):
        leaves = [n for n in used if EXAMPLE_LEAVES[n][0] == kind]
        if leaves:
            lines.append(f"{kind}:")
            for n in leaves:
                _, shape, extra = EXAMPLE_LEAVES[n]
                fields = ", ".join([f"shape: [{', '.join(map(str, shape))}]"] + [f"{k}: {v}" for k, v in extra.items()])
                lines.append(f"  {n}: {{{fields}}}")
    lines += ["graph:", f"  out: {call}", "  loss: out" if op.name in LOSSES else "  loss: sum(out * out)", "loss: loss"]
    return "\n".join(lines) + "\n"


def _names(text: str) -> set[str]:
    import ast

    return {n.id for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Name)}


def shapes_text(op: OpDef) -> str:
    """The example's argument shapes and result shape, as the compiler infers them."""
    g = load(example_spec(op))
    node = "out"
    args = [a for a in _names(example_call(op)) if a in EXAMPLE_LEAVES]
    shown = ", ".join(f"{a} {shape_text(g.shape(a))}" for a in sorted(args))
    return f"{shown} -> out {shape_text(g.shape(node))}"


def shape_text(shape) -> str:
    return "[" + ", ".join("batch" if type(d).__name__ == "Batch" else str(int(d)) for d in shape) + "]"


def derivatives(op: OpDef, mathml: bool) -> list[tuple[str, str]]:
    """(argument, d op / d argument) for an element-wise op, from sympy's diff."""
    names = tensor_names(op)
    symbols = {X[i]: sp.Symbol(names[i], real=True) for i in range(op.arity)}
    found = []
    for i in range(op.arity):
        d = sp.diff(op.expr, X[i]).xreplace(symbols)
        if mathml:
            from sympy.printing.mathml import mathml as to_mathml

            found.append((names[i], f'<math display="inline">{to_mathml(d, printer="presentation")}</math>'))
        else:
            found.append((names[i], str(d)))
    return found


def backward_lines(op: OpDef) -> list[str]:
    """How symgraph differentiates the example: with loss sum(out * G), the
    gradient program from dout = dL/dout back to every float leaf (a loss op:
    the gradients of the example's own loss)."""
    from .explain import explain

    spec = example_spec(op)
    if op.name not in LOSSES:
        out = shape_text(load(spec).shape("out"))
        spec = spec.replace("  loss: sum(out * out)", "  loss: sum(out * G)").replace("inputs:\n", f"inputs:\n  G: {{shape: {out}}}\n", 1)
    g = load(spec)
    leaves = [leaf for leaf in g.params + g.inputs if g.dtype(leaf) == "float" and leaf != "G"]
    lines = str(explain(g, wrt=leaves)).splitlines()
    return lines if op.name in LOSSES else [line for line in lines if not line.startswith(("dloss", "dout = "))]


LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")


def op_section(op: OpDef, markdown: bool = True) -> str:
    """One op's reference: as a page section, or as plain text for ``symgraph ops NAME``."""
    lines = []
    code = (lambda t: f"`{t}`") if markdown else (lambda t: t)
    if markdown:
        lines += [f"## {op.name}", "", f"`{signature(op)}`", "", op.doc, ""]
    else:
        lines += [signature(op), "", f"  {op.doc}", ""]
    lines.append(f"{'**Targets:** ' if markdown else '  targets: '}NumPy and C")
    lines.append("")
    lines.append(f"{'**Shapes** (the example): ' if markdown else '  shapes (the example): '}{code(shapes_text(op))}")
    lines.append("")
    if op.elementwise:
        lines.append("**Local derivative** (sympy's):" if markdown else "  local derivative (sympy's):")
        lines.append("")
        for arg, d in derivatives(op, markdown):
            lines.append(f"- d {op.name} / d{arg} = {d}" if markdown else f"    d {op.name}/d{arg} = {d}")
        lines.append("")
    else:
        said = "**Gradients** of the example's loss:" if op.name in LOSSES else "**Backward** in the example, where `dout` is dL/dout:"
        lines.append(said if markdown else "  " + said.replace("**", "").replace("`", ""))
        lines.append("")
        lines += ["```text", *backward_lines(op), "```", ""] if markdown else [*("    " + line for line in backward_lines(op)), ""]
    if markdown:
        lines += ["**Example:**", "", "```yaml", example_spec(op).rstrip("\n"), "```", ""]
    else:
        lines += ["  example:", *("    " + line for line in example_spec(op).splitlines())]
    return "\n".join(lines)


def ops_page() -> str:
    head = [
        "# Ops",
        "",
        "Every op a spec may call, from the op registry. Element-wise ops broadcast",
        "like NumPy. `+ - * / **`, unary `-` and `@` are `add`, `sub`, `mul`, `div`,",
        "`pow`, `neg` and `matmul`. Each example is a complete spec over a few",
        "standard leaves (`x` is `[batch, 3]`, `W` is `[3, 4]`, `seq` is `[batch, 6, 3]`, ...);",
        "the tests compile every one of them.",
        "",
        "| op | meaning |",
        "|---|---|",
        *(f"| [`{signature(op)}`](#{op.name}) | {op.doc.replace('|', '&#124;')} |" for op in public_ops()),
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(op_section(op) for op in public_ops())


TOP_MEANING = {
    "name": ("identifier", "`model`", "the model's name: it names generated files' headers and prefixes every public C symbol"),
    "dims": ("mapping name -> positive int", "none", "named sizes; `batch` is the batch axis, the most examples one call takes"),
    "inputs": ("mapping name -> leaf", "none", "data fed each step, not trained"),
    "params": ("mapping name -> leaf", "none", "trained parameters"),
    "graph": ("mapping name -> expression", "none", "named nodes, in any order (a DAG); see Ops"),
    "loss": ("a node's name", "required", "the scalar to minimise"),
    "outputs": ("list of node names", "the loss", "what forward() and prediction return"),
    "train": ("mapping", "see below", "the generated trainers' defaults"),
}
LEAF_MEANING = {
    "shape": ("list of dim names and sizes", "required", "`[]` for a scalar; only an input's first axis may be `batch`"),
    "dtype": ("`float` or `int`", "`float`", "int inputs hold ids or labels (int64)"),
    "init": ("scheme", "`xavier_uniform` for rank 2 and more, else `zeros`", "see the schemes below"),
    "value": ("number", "none", "a scalar's value, which `symgraph grad` prints gradients at"),
}
SCHEME_MEANING = {
    "zeros": "all 0", "ones": "all 1", "constant": "constant(v): all v", "normal": "normal(std): N(0, std^2)",
    "uniform": "uniform(a): U[-a, a)", "xavier_uniform": "U[-a, a), a = sqrt(6 / (fan_in + fan_out))",
    "xavier_normal": "N(0, 2 / (fan_in + fan_out))", "he_uniform": "U[-a, a), a = sqrt(6 / fan_in)",
    "he_normal": "N(0, 2 / fan_in)",
}
TRAIN_MEANING = {
    "optimizer": "one of " + ", ".join(f"`{o}`" for o in OPTIMIZERS),
    "lr": "learning rate (the peak of a schedule)", "momentum": "SGD momentum", "nesterov": "SGD: Nesterov's momentum (`true` or `false`)",
    "beta1": "Adam's and AdamW's first-moment decay",
    "beta2": "the second-moment decay of Adam, AdamW and RMSprop", "eps": "Adam's, AdamW's and RMSprop's epsilon",
    "weight_decay": "L2 penalty added to each gradient; AdamW: decoupled, shrinking the params by lr * weight_decay",
    "schedule": "learning rate per epoch after the warm-up: " + ", ".join(f"`{s}`" for s in SCHEDULES)
                + " (step: times `decay` every `step_epochs`; exponential: times `decay` each epoch; cosine: down to 0)",
    "warmup": "epochs of linear warm-up from lr/warmup to lr", "decay": "the step and exponential schedules' factor",
    "step_epochs": "the step schedule's epochs between decays", "clip_norm": "scale the gradients down to this global norm when above it (0: never)",
    "patience": "stop after this many epochs without a better validation score (0: never)",
    "batch_size": "examples per step (at most `dims.batch`)", "epochs": "passes over the data", "seed": "initialisation, shuffling and dropout",
    "normalize": "float inputs to standardise with the training data's mean and std (stored in the checkpoint)",
    "metric": "reported next to the validation loss, one or a list: " + ", ".join(f"`{m}`" for m in METRICS)
              + ", or `topK` (the label among the K best scores, e.g. `top5`); the first is what --patience and --save-best judge by",
}


def spec_page() -> str:
    def table(rows):
        return ["| key | type | default | meaning |", "|---|---|---|---|", *(f"| `{k}` | {t} | {d} | {m} |" for k, (t, d, m) in rows)]

    missing = [k for k in TOP_KEYS if k not in TOP_MEANING] + [k for k in TRAIN_KEYS if k not in TRAIN_MEANING]
    missing += [k for keys in LEAF_KEYS.values() for k in keys if k not in LEAF_MEANING] + [s for s in SCHEMES if s not in SCHEME_MEANING]
    if missing:
        raise SpecError(f"the reference has no words for {', '.join(missing)}", node="reference")
    train_rows = []
    for key, kind in TRAIN_KEYS.items():
        default = TRAIN_DEFAULTS.get(key, "`dims.batch`" if key == "batch_size" else "from the loss" if key == "metric" else "none")
        shown = f"`{default}`" if key in TRAIN_DEFAULTS else default
        kinds = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        train_rows.append((key, (kinds, shown, TRAIN_MEANING[key])))
    lines = [
        "# Spec keys",
        "",
        "A spec is a YAML mapping with these top-level keys (any other is refused).",
        "",
        *table((k, TOP_MEANING[k]) for k in TOP_KEYS),
        "",
        "## Leaves",
        "",
        "Each entry of `inputs` and `params` is a mapping with these fields "
        f"(inputs: {', '.join(f'`{k}`' for k in LEAF_KEYS['inputs'])}; params: {', '.join(f'`{k}`' for k in LEAF_KEYS['params'])}).",
        "",
        *table((k, LEAF_MEANING[k]) for k in dict.fromkeys(LEAF_KEYS["inputs"] + LEAF_KEYS["params"])),
        "",
        "## Init schemes",
        "",
        "Fans: the last axis is fan-out, the one before fan-in, and leading axes (a kernel's width) multiply both.",
        "",
        "| scheme | arguments | values |",
        "|---|---|---|",
        *(f"| `{s}` | {n} | {SCHEME_MEANING[s]} |" for s, n in SCHEMES.items()),
        "",
        "## train",
        "",
        *table(train_rows),
        "",
        "## Names",
        "",
        "Any identifier but Python's keywords names a dim, input, param or node, "
        "`n`, `ids`, `int` and `max` included. Generated code emits a name it cannot take as it is "
        "(a C keyword, a name of the C library or of the generated code) under a mangled variable "
        "(`int_`), whose declaration says which spec name it holds. YAML's `true`, `NULL` or `on` are names in a spec.",
        "",
    ]
    return "\n".join(lines)


def cli_page() -> str:
    from .cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    lines = ["# Command line", "", f"`symgraph COMMAND ...`: {parser.description}", "",
             "Exit codes: 0 success, 1 a check failed, 2 bad input (one `error:` line, nothing written).", ""]
    for name, command in sub.choices.items():
        lines += [f"## symgraph {name}", "", helps[name], "", "```text", usage(command), "```", "",
                  "| argument | default | meaning |", "|---|---|---|"]
        for action in command._actions:
            if action.dest == "help":
                continue
            flag = ", ".join(action.option_strings) or action.dest.upper()
            choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
            default = "" if action.default in (None, False) else f"`{action.default}`"
            lines.append(f"| `{flag}` | {default} | {cell(action.help or '')}{choices} |")
        lines.append("")
    return "\n".join(lines)


def usage(parser) -> str:
    """The usage lines, wrapped at COLUMNS whatever the terminal (argparse reads $COLUMNS)."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(COLUMNS)
    try:
        return parser.format_usage().strip()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def cell(text: str) -> str:
    """Text for a Markdown table cell: no column breaks, no tags."""
    return text.replace("|", "&#124;").replace("<", "&lt;").replace(">", "&gt;")


def trainer_help() -> tuple[str, str]:
    """Both generated trainers' --help, for a small example model."""
    from .codegen import build_program, render, write_atomically

    g = load("name: m\ndims: {batch: 4}\ninputs: {x: {shape: [batch, 2]}, y: {shape: [batch], dtype: int}}\n"
             "params: {W: {shape: [2, 3]}}\ngraph: {loss: 'cross_entropy(x @ W, y)'}\nloss: loss\n")
    with tempfile.TemporaryDirectory(prefix="symgraph-reference-") as folder:
        out = write_atomically(render(build_program(g), "numpy"), Path(folder) / "numpy")
        env = {**os.environ, "COLUMNS": str(COLUMNS)}
        python = subprocess.run([sys.executable, str(out / "train.py"), "--help"], capture_output=True, text=True, check=True, env=env).stdout
        out = write_atomically(render(build_program(g), "c"), Path(folder) / "c")
        subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-O0"], capture_output=True, check=True)
        c = subprocess.run([str(out / "train"), "--help"], capture_output=True, text=True).stdout
    return python.replace("Trains m (generated by symgraph from builder)", "Trains NAME (generated by symgraph from SPEC)"), c


def trainers_page() -> str:
    python, c = trainer_help()
    return "\n".join([
        "# Trainer flags",
        "",
        "Both generated trainers take the same flags; the defaults of `--epochs`, `--lr`,",
        "`--batch-size`, `--seed`, `--optimizer`, `--momentum` and `--weight-decay` are the",
        "spec's `train:` values (see [Spec keys](spec.md)). The C trainer also takes `--gradcheck`,",
        "which checks its own gradients against central differences in float64.",
        "",
        "Data folders hold one `NAME.npy` per input of the spec, each with the examples",
        "along its first axis; an input declared without the batch axis (a causal mask",
        "`[seq, seq]`, say) is one array of its declared shape, read whole and used for every",
        "example. Every float value must be finite: a mask blocks with a large negative",
        "number such as -1e9, not -inf. A checkpoint (`--save`, `--init-from`) is a folder with one",
        "`NAME.npy` per parameter, the optimiser's state, `training.state.npy` and",
        "`symgraph-checkpoint.txt`; see [Checkpoints](../concepts/checkpoints.md).",
        "",
        "## NumPy (`python DIR/train.py`)",
        "",
        "```text",
        python.strip(),
        "```",
        "",
        "## C (`DIR/train` after `make -C DIR`)",
        "",
        "```text",
        c.strip(),
        "```",
        "",
    ])


PYTHON_API = ("load", "Graph", "Tensor", "differentiate", "compile", "CompiledModel", "load_checkpoint", "Checkpoint", "explain", "gradcheck", "SpecError")


def python_page() -> str:
    import symgraph

    lines = ["# Python API", "", "```python", "import symgraph as sg", "```", "",
             "Every op is also a function of the builder: `sg.tanh(h)`, `sg.conv1d(x, K, stride=2)`",
             "(see [Ops](ops.md)); `+ - * / ** @` work on tensors.", ""]
    for name in PYTHON_API:
        obj = getattr(symgraph, name)
        lines += [f"## sg.{name}", ""]
        if inspect.isclass(obj):
            lines += [f"```python\nclass {name}{_signature(obj)}\n```", "", *_doc(obj)]
            for member, value in vars(obj).items():
                if member.startswith("_") or not (inspect.isfunction(value) or isinstance(value, property)):
                    continue
                if isinstance(value, property):
                    lines += [f"### {name}.{member}", "", *_doc(value.fget)]
                else:
                    lines += [f"### {name}.{member}", "", f"```python\n{member}{_signature(value)}\n```", "", *_doc(value)]
        else:
            lines += [f"```python\n{name}{_signature(obj)}\n```", "", *_doc(obj)]
    return "\n".join(lines)


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj, eval_str=True))
    except (NameError, TypeError, ValueError):
        return str(inspect.signature(obj)).replace("'", "")


def _doc(obj) -> list[str]:
    """The docstring as it is written (NumPy style), in a block of its own."""
    text = inspect.getdoc(obj)
    if not text:
        raise SpecError(f"{getattr(obj, '__qualname__', obj)} has no docstring for the reference", node="reference")
    return ["```text", text, "```", ""]


def pages() -> dict[str, str]:
    """Path under docs/ -> text."""
    return {
        "reference/ops.md": ops_page(),
        "reference/spec.md": spec_page(),
        "reference/cli.md": cli_page(),
        "reference/trainers.md": trainers_page(),
        "reference/python.md": python_page(),
    }


def main(docs: Path) -> int:
    for name, text in pages().items():
        path = docs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs")))
