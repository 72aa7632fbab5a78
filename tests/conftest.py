"""Shared helpers: build a one-op graph and check it against central differences."""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pytest

import symgraph as sg
from symgraph.ops import REGISTRY

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-8


def sample(rng: np.random.Generator, shape: tuple, domain: str) -> np.ndarray:
    """Values inside an op's domain, away from its kinks and poles."""
    if domain == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "nonzero":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.2, 2.0, shape)
    return rng.standard_normal(shape)


def one_op_graph(op: str, args: list, attrs: dict) -> sg.Graph:
    """loss = sum(op(args) * w): float args are params, int args are inputs."""
    g = sg.Graph(f"check_{op}")
    tensors = []
    for i, (shape, dtype) in enumerate(args):
        if dtype == "int":
            tensors.append(g.input(f"ids{i}", shape, "int"))
        else:
            tensors.append(g.param(f"a{i}", shape, init="zeros"))
    out = g.define("result", g.apply(op, *tensors, **attrs))
    w = g.input("w", out.shape)
    g.set_loss(g.define("loss", sg.sum(out * w)))
    g.add_output(out)
    return g


def central_difference_errors(model, params: dict, inputs: dict, rng) -> dict[str, tuple[float, float]]:
    """Per param: (analytic, numeric) directional derivative along a random direction."""
    _, grads = model.loss_and_grads(params, inputs)
    out = {}
    for name, value in params.items():
        direction = rng.standard_normal(value.shape)
        direction /= np.linalg.norm(direction) or 1.0
        up = dict(params, **{name: value + EPS * direction})
        down = dict(params, **{name: value - EPS * direction})
        numeric = (model.loss_and_grads(up, inputs)[0] - model.loss_and_grads(down, inputs)[0]) / (2 * EPS)
        out[name] = (float(np.sum(grads[name] * direction)), numeric)
    return out


def inputs_for(model, rng) -> dict:
    inputs = {}
    for leaf in model.program.inputs:
        shape = tuple(int(d) for d in leaf.shape)
        if leaf.dtype == "int":
            inputs[leaf.name] = rng.integers(0, leaf.bound, shape)
        else:
            inputs[leaf.name] = rng.standard_normal(shape)
    return inputs


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_configure(config):
    # C builds of this run go to a fresh cache, so the cold path is what is tested.
    config._symgraph_cache = tempfile.mkdtemp(prefix="symgraph-cache-")
    os.environ["SYMGRAPH_CACHE"] = config._symgraph_cache


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_symgraph_cache", ""), ignore_errors=True)


__all__ = ["ATOL", "EPS", "REGISTRY", "RTOL", "central_difference_errors", "inputs_for", "one_op_graph", "sample"]


def require_tool(name: str, package: str) -> str:
    """The tool's path; a skip where it is missing, except in CI, which installs it."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("SYMGRAPH_REQUIRE_TOOLS"):
            pytest.fail(f"{name} is missing; .ci/run installs Debian's {package}")
        pytest.skip(f"{name} is not installed (Debian package {package})")
    return path
