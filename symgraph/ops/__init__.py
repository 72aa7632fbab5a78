"""The op registry. Importing this package registers every op family."""

from . import elementwise, linalg, nn, reduce  # noqa: F401  (registration)
from .registry import OUT, REGISTRY, REQUIRED, OpDef, X, apply, const, lookup, register
from .symbolic import from_sympy, local_derivatives

__all__ = ["OUT", "REGISTRY", "REQUIRED", "X", "OpDef", "apply", "const", "from_sympy", "local_derivatives", "lookup", "register"]
