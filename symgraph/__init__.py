"""symgraph: compile static computation graphs into standalone training programs."""

from .builder import OP_FUNCTIONS, Graph, Tensor
from .errors import SpecError
from .spec import load

globals().update(OP_FUNCTIONS)

__all__ = ["Graph", "SpecError", "Tensor", "load", *OP_FUNCTIONS]

from .autodiff import differentiate  # noqa: E402
from .checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from .compiler import CompiledModel, compile  # noqa: E402,A004
from .explain import explain  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402

__all__ += ["Checkpoint", "CompiledModel", "compile", "differentiate", "explain", "gradcheck", "load_checkpoint"]
