"""Weight initialisation schemes, as written in a spec's ``init:``.

``zeros``, ``ones``, ``constant(v)``, ``normal(std)``, ``uniform(a)`` (on
[-a, a]), and the fan-scaled ``xavier_uniform``, ``xavier_normal``,
``he_uniform``, ``he_normal``. Fans follow the usual convention: the last axis
is fan-out, the one before fan-in, and any leading axes (a conv kernel's
width) multiply both.
"""

from __future__ import annotations

import ast
import math

from .errors import SpecError

SCHEMES = {
    "zeros": 0, "ones": 0, "constant": 1, "normal": 1, "uniform": 1,
    "xavier_uniform": 0, "xavier_normal": 0, "he_uniform": 0, "he_normal": 0,
}


def fans(shape: tuple) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    receptive = math.prod(int(d) for d in shape[:-2])
    return int(shape[-2]) * receptive, int(shape[-1]) * receptive


def parse_init(text: object) -> tuple[str, float]:
    """``"normal(0.01)"`` -> ``("normal", 0.01)``; raises SpecError when unknown."""
    if not isinstance(text, str):
        raise SpecError(f"init must be a scheme name such as 'he_normal', got {text!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise SpecError(f"init {text!r} is not a scheme") from None
    if isinstance(tree, ast.Name):
        name, args = tree.id, []
    elif isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and not tree.keywords:
        name, args = tree.func.id, tree.args
    else:
        raise SpecError(f"init {text!r} is not a scheme")
    if name not in SCHEMES:
        raise SpecError(f"unknown init scheme {name!r} (known: {', '.join(SCHEMES)})")
    if len(args) != SCHEMES[name]:
        raise SpecError(f"init {name} takes {SCHEMES[name]} argument(s)")
    value = 0.0
    if args:
        node = args[0]
        sign = 1.0
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            node, sign = node.operand, -1.0
        if not (isinstance(node, ast.Constant) and type(node.value) in (int, float)):
            raise SpecError(f"init {name}() needs a number")
        value = sign * float(node.value)
        if not math.isfinite(value) or (name in ("normal", "uniform") and value < 0):
            raise SpecError(f"init {name}({value}) is out of range")
    return name, value


def init_text(scheme: str, value: float) -> str:
    """The canonical spelling, ``normal(0.1)``: what generated comments show (never the raw spec text)."""
    return f"{scheme}({value!r})" if SCHEMES[scheme] else scheme


def scale(scheme: str, value: float, shape: tuple) -> float:
    """The std (normal schemes) or bound (uniform schemes) for ``shape``."""
    fan_in, fan_out = fans(shape)
    return {
        "normal": value,
        "uniform": value,
        "xavier_uniform": math.sqrt(6.0 / (fan_in + fan_out)),
        "xavier_normal": math.sqrt(2.0 / (fan_in + fan_out)),
        "he_uniform": math.sqrt(6.0 / fan_in),
        "he_normal": math.sqrt(2.0 / fan_in),
    }.get(scheme, value)


def distribution(scheme: str) -> str:
    """'constant', 'normal' or 'uniform': what the generated code draws."""
    if scheme in ("zeros", "ones", "constant"):
        return "constant"
    return "normal" if scheme.endswith("normal") else "uniform"


def constant_value(scheme: str, value: float) -> float:
    return {"zeros": 0.0, "ones": 1.0}.get(scheme, value)
