"""Finite-difference checks of generated code (central differences, float64)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .compiler import compile as compile_graph
from .ir import Graph

EPS = 1e-6
RTOL = 1e-6
ATOL = 1e-8
ELEMENTWISE_LIMIT = 32  # params up to this size are probed one element at a time
DIRECTIONS = 6  # random unit directions for larger params


@dataclass
class Row:
    param: str
    size: int
    probes: int
    max_abs_error: float
    max_rel_error: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= ATOL or self.max_rel_error <= RTOL


@dataclass
class Report:
    target: str
    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    def table(self) -> str:
        width = max([5] + [len(r.param) for r in self.rows])
        lines = [f"{'param':<{width}}  {'size':>9}  {'probes':>6}  {'max abs err':>11}  {'max rel err':>11}  result"]
        for r in self.rows:
            lines.append(
                f"{r.param:<{width}}  {r.size:>9}  {r.probes:>6}  {r.max_abs_error:>11.3e}  {r.max_rel_error:>11.3e}  {'ok' if r.ok else 'FAIL'}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"gradient check ({self.target}, float64)\n{self.table()}"


def random_inputs(model, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the compiled batch size: normal floats, ids in their valid range."""
    rng = np.random.default_rng(seed)
    out = {}
    for leaf in model.program.inputs:
        shape = tuple(int(d) for d in leaf.shape)
        if leaf.dtype == "int":
            out[leaf.name] = rng.integers(0, min(leaf.bound, 10**6), size=shape, dtype=np.int64)
        else:
            out[leaf.name] = rng.standard_normal(shape)
    return out


def gradcheck(g: Graph, target: str = "numpy", dtype: str = "float64", seed: int = 0, model=None) -> Report:
    """Compare the generated code's gradients with central differences.

    Each param of up to 32 elements is probed element by element; larger
    ones along random unit directions. ``dtype`` must be float64: central
    differences in float32 cannot resolve relative errors near 1e-6.
    """
    if dtype != "float64":
        raise ValueError("gradient checks run in float64")
    model = model or compile_graph(g, target=target, dtype="float64")
    rng = np.random.default_rng(seed)
    inputs = random_inputs(model, seed)
    params = model.init_params(seed)
    for leaf in model.program.params:  # leave symmetric starting points
        if leaf.distribution == "constant" and g.get(leaf.name, "value") is None:
            params[leaf.name] = params[leaf.name] + 0.1 * rng.standard_normal(params[leaf.name].shape)
    _, grads = model.loss_and_grads(params, inputs)
    report = Report(target)
    for name, value in params.items():
        if value.size <= ELEMENTWISE_LIMIT:
            directions = [unit(value.shape, i) for i in range(value.size)]
        else:
            directions = [d / np.linalg.norm(d) for d in rng.standard_normal((DIRECTIONS,) + value.shape)]
        worst_abs = worst_rel = 0.0
        for direction in directions:
            shifted = dict(params)
            shifted[name] = value + EPS * direction
            up, _ = model.loss_and_grads(shifted, inputs)
            shifted[name] = value - EPS * direction
            down, _ = model.loss_and_grads(shifted, inputs)
            numeric = (up - down) / (2 * EPS)
            analytic = float(np.sum(np.asarray(grads[name]) * direction))
            error = abs(numeric - analytic)
            worst_abs = max(worst_abs, error)
            worst_rel = max(worst_rel, error / max(abs(numeric), abs(analytic), 1e-300))
        report.rows.append(Row(name, int(value.size), len(directions), worst_abs, worst_rel))
    return report


def unit(shape: tuple, index: int) -> np.ndarray:
    out = np.zeros(shape)
    out.flat[index] = 1.0
    return out
