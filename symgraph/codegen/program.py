"""The backend-neutral description of a compiled model that templates render."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..autodiff import differentiate
from ..errors import SpecError
from ..init import constant_value, distribution, init_text, parse_init, scale
from ..ir import Graph, collector_paused
from ..metrics import add_error_sums, chosen, scored_elements, targets
from ..names import emittable, interface_names, mangled
from ..ops import REGISTRY
from ..passes import CODEGEN, optimize, remove_dropout
from ..sharding import coupling
from .common import batch_input, merged_batch

DTYPES = ("float32", "float64")


@dataclass
class Leaf:
    name: str  # the spec's name: the interface (files, dict keys, C enums) uses it
    shape: tuple
    dtype: str  # "float" or "int"
    index: int  # position among params (their random stream) or inputs
    init: str = ""  # the spec's init text
    distribution: str = ""  # "constant", "normal" or "uniform"
    scale: float = 0.0  # std, bound, or the constant
    bound: int | None = None  # int inputs: ids must lie in [0, bound)
    var: str = ""  # the variable generated code holds it in (see names.mangled)


@dataclass
class Program:
    graph: Graph  # the spec's graph
    train_graph: Graph  # optimised gradient graph (training mode)
    eval_graph: Graph  # optimised forward graph (evaluation mode)
    dtype: str
    params: list[Leaf]
    inputs: list[Leaf]
    outputs: list[str]  # the spec's output names, in order
    batch_input: str | None
    merged_batch: str | None = None  # a node that folds the batch axis into another: whole batches only
    coupling: str | None = None  # why the loss does not split over examples (data-parallel training refused), if so
    mangled: dict[str, str] = field(default_factory=dict)  # spec name -> its variable, where they differ
    metrics: list[str] = field(default_factory=list)  # what the trainers report next to the validation loss (see metrics)
    scored_elements: int = 1  # per example, the elements a metric averages over

    @property
    def metric(self) -> str | None:
        """The first metric: the one --patience and --save-best judge epochs by."""
        return self.metrics[0] if self.metrics else None

    @property
    def compiled_batch(self) -> int:
        """The spec's batch size (1 where no input has a batch axis)."""
        return 1 if self.batch_input is None else int(self.graph.shape(self.batch_input)[0])

    @property
    def whole_batch(self) -> int | None:
        """The one batch size a model that folds the batch axis takes; None where any up to the compiled one will do."""
        return None if self.merged_batch is None else self.compiled_batch

    @property
    def output_nodes(self) -> list[str]:
        """The node computing each output after optimisation (may be renamed)."""
        return self.eval_graph.outputs

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def loss(self) -> str:
        return self.train_graph.loss

    @property
    def gradients(self) -> dict[str, str]:
        return self.train_graph.gradients

    def spec_name(self, node: str) -> str:
        """The spec's name for a node of the optimised graphs."""
        return self.spec_names.get(node, node)

    @property
    def spec_names(self) -> dict[str, str]:
        return {var: name for name, var in self.mangled.items()}

    def eval_inputs(self) -> list[Leaf]:
        """Inputs that the outputs read (prediction needs no labels)."""
        # the evaluation graph also computes the loss, which reads the labels
        used = self.eval_graph.needed_by(self.output_nodes)
        return [leaf for leaf in self.inputs if leaf.var in used]


def int_bound(g: Graph, node: str) -> int | None:
    """The exclusive upper bound of an int input, from the ops that read it."""
    bounds = []
    for reader in g.nx.successors(node):
        op = REGISTRY[g.op(reader)]
        if op.int_bound is not None:
            bounds.append(int(op.int_bound([g.shape(a) for a in g.args(reader)], g.attrs(reader))))
    return min(bounds) if bounds else None


@collector_paused
def build_program(g: Graph, dtype: str = "float32", passes: list | None = None) -> Program:
    """Differentiate and optimise ``g`` for one dtype (``passes`` defaults to CODEGEN)."""
    if dtype not in DTYPES:
        raise SpecError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}", node="dtype", source=g.source)
    batch_input(g)
    params = []
    for i, name in enumerate(g.params):
        init = g.get(name, "init")
        scheme, value = parse_init(init)
        shape = g.shape(name)
        kind = distribution(scheme)
        amount = constant_value(scheme, value) if kind == "constant" else scale(scheme, value, shape)
        params.append(Leaf(name, shape, "float", i, init_text(scheme, value), kind, amount))
    inputs = [Leaf(name, g.shape(name), g.dtype(name), i, bound=int_bound(g, name) if g.dtype(name) == "int" else None) for i, name in enumerate(g.inputs)]
    for leaf in inputs:
        if leaf.dtype == "int" and leaf.bound is None:
            leaf.bound = 2**31 - 1
    passes = CODEGEN if passes is None else passes
    train_graph = optimize(differentiate(g), passes)
    metrics = chosen(g)
    for name in g.train.get("normalize", []):
        if name in targets(g):
            raise SpecError(f"{name} is the target the loss compares predictions with: standardising it would put the metric "
                            "and the predictions in standardised units; leave it out of normalize", node="train.normalize", source=g.source)
    evaluated = g.copy()
    evaluated.outputs = list(g.outputs) or [g.loss]
    add_error_sums(evaluated, metrics)
    eval_graph = optimize(remove_dropout(evaluated), passes)
    renamed = variables(g, train_graph, eval_graph)
    for graph in (train_graph, eval_graph):
        graph.rename({name: var for name, var in renamed.items() if name in graph.nx}, keep_order=True)
    for leaf in params + inputs:
        leaf.var = renamed.get(leaf.name, leaf.name)
    folded = merged_batch(g)
    coupled = f"{folded} folds the batch axis into another or ties it to a fixed size" if folded else coupling(g)
    return Program(g, train_graph, eval_graph, dtype, params, inputs, list(evaluated.outputs), batch_input(g), folded,
                   coupling=coupled, mangled=renamed, metrics=metrics, scored_elements=scored_elements(g, metrics[0] if metrics else None))


def variables(g: Graph, *graphs: Graph) -> dict[str, str]:
    """Node -> the variable generated code names it by, for every node of
    ``graphs`` whose name cannot be emitted as it is: a keyword or library name
    of either target, a name of the generated code, or a public C symbol of the
    model (names the compiler makes are emittable, so these are the spec's)."""
    leaves = {"param": g.params, "input": g.inputs, "output": list(g.outputs)}
    public = interface_names(g.name, leaves)
    taken = set(public).union(*(graph.nx for graph in graphs))
    mapping = {}
    for node in sorted(set().union(*(graph.nx for graph in graphs))):
        if not emittable(node) or node in public:
            mapping[node] = mangled(node, taken)
            taken.add(mapping[node])
    return mapping
