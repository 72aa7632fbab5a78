"""Graph-to-graph passes and the pipeline that orders them."""

from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold import fold_constants, fold_double_negation
from .lower import bias_products, contract_products, fuse_softmax_cross_entropy, sum_products
from .modes import remove_dropout
from .pipeline import CODEGEN, PIPELINE, optimize
from .simplify import simplify_elementwise

__all__ = ["CODEGEN", "PIPELINE", "bias_products", "contract_products", "fuse_softmax_cross_entropy", "remove_dropout", "eliminate_common_subexpressions", "eliminate_dead_code", "fold_constants", "fold_double_negation", "optimize", "simplify_elementwise", "sum_products"]
