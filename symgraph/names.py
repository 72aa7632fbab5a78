"""Which names a spec may use, and how generated Python and C emit them.

A spec may name anything with any identifier that its expression syntax can
hold: everything but Python's keywords. Generated code keeps its own names
(``n``, ``params``, ``np``, the ``sg_`` helpers, the C library) apart: a spec
name that would clash with one of them, or that C cannot take (``int``), is
emitted under a mangled name (``int_``), chosen once per compiled program,
and every declaration of such a variable says which spec name it holds.
"""

from __future__ import annotations

import builtins
import keyword
import re

from .errors import SpecError

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern
    float for goto if inline int long register restrict return short signed
    sizeof static struct switch typedef union unsigned void volatile while
    _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn
    _Static_assert _Thread_local bool true false alignas alignof noreturn
    static_assert thread_local asm typeof NULL""".split()
)

# Functions and macros of <math.h>, <stdlib.h>, <stdio.h>, <string.h> and
# <stdint.h> that the generated C calls or that a local would shadow.
C_LIBRARY = frozenset(
    """exp expf log logf log1p log1pf sqrt sqrtf fabs fabsf tanh tanhf pow powf
    fmax fmaxf fmin fminf floor ceil isfinite isnan isinf INFINITY NAN
    HUGE_VAL malloc calloc realloc free abort exit memcpy memset memmove
    printf fprintf snprintf fopen fclose fread fwrite stderr stdout stdin
    strcmp strlen size_t ptrdiff_t int32_t int64_t uint32_t uint64_t
    uint8_t errno main assert offsetof FILE EOF""".split()
) | frozenset(
    # the object-like macros that <math.h>, <stdint.h> and <string.h> define
    # under -std=c99 (cc -std=c99 -dM -E): a variable of that name is rewritten
    """FP_ILOGB0 FP_ILOGBNAN FP_INFINITE FP_NAN FP_NORMAL FP_SUBNORMAL FP_ZERO
    HUGE_VAL HUGE_VALF HUGE_VALL INFINITY NAN NULL MATH_ERREXCEPT MATH_ERRNO
    math_errhandling INT8_MAX INT8_MIN INT16_MAX INT16_MIN INT32_MAX INT32_MIN
    INT64_MAX INT64_MIN INTMAX_MAX INTMAX_MIN INTPTR_MAX INTPTR_MIN
    INT_FAST8_MAX INT_FAST8_MIN INT_FAST16_MAX INT_FAST16_MIN INT_FAST32_MAX
    INT_FAST32_MIN INT_FAST64_MAX INT_FAST64_MIN INT_LEAST8_MAX INT_LEAST8_MIN
    INT_LEAST16_MAX INT_LEAST16_MIN INT_LEAST32_MAX INT_LEAST32_MIN
    INT_LEAST64_MAX INT_LEAST64_MIN PTRDIFF_MAX PTRDIFF_MIN SIG_ATOMIC_MAX
    SIG_ATOMIC_MIN SIZE_MAX UINT8_MAX UINT16_MAX UINT32_MAX UINT64_MAX
    UINTMAX_MAX UINTPTR_MAX UINT_FAST8_MAX UINT_FAST16_MAX UINT_FAST32_MAX
    UINT_FAST64_MAX UINT_LEAST8_MAX UINT_LEAST16_MAX UINT_LEAST32_MAX
    UINT_LEAST64_MAX WCHAR_MAX WCHAR_MIN WINT_MAX WINT_MIN""".split()
)

# Names that the generated modules and trainers define or import themselves.
RUNTIME = frozenset(
    """np n real_t params inputs grads outputs training rng seed state first total
    step lr loss_value arena mask ids self args data math os sys time json
    argparse idx tap correct metric_sums real""".split()
)

# Module-level names of the NumPy model that its functions read: a node so
# named would shadow them there (the model's own name never reaches Python code).
NUMPY_MODULE = frozenset(
    """DTYPE scratch window_rows random_bits random_uniform random_normal example_uniform
    DROPOUT_STREAM SHUFFLE_STREAM BATCH BATCH_INPUT WHOLE_BATCH PARAMS INPUTS
    OUTPUTS""".split()
)


def refused(name: str) -> str | None:
    """Why ``name`` cannot name anything in a spec, or None: only what the
    expression syntax cannot hold (a non-identifier, a Python keyword)."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        return f"{name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"
    if keyword.iskeyword(name):
        return f"{name!r} is a Python keyword, which an expression cannot hold as a name"
    return None


def emittable(name: str) -> bool:
    """Whether ``name`` may stand as it is for a variable in both targets: not a
    keyword of either, not a name the generated code or its libraries use, not
    a prefix reserved to the generated code (``sg_``) or to C (``__``, ``_X``)."""
    return not (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or name in C_KEYWORDS
        or name in C_LIBRARY
        or name in RUNTIME
        or name in NUMPY_MODULE
        or hasattr(builtins, name)
        or name.startswith(("sg_", "SG_", "__"))
        or re.match(r"_[A-Z]", name) is not None
    )


def mangled(name: str, taken) -> str:
    """The variable that generated code uses for a spec name that is not
    emittable: ``name_`` (``u_name`` for reserved prefixes), numbered on past
    anything in ``taken``."""
    stem = f"{name}_" if emittable(f"{name}_") else f"u_{name}"
    candidate, k = stem, 0
    while candidate in taken or not emittable(candidate):
        k += 1
        candidate = f"{stem}{k}"
    return candidate


def check_name(name: str, node: str | None = None) -> str:
    """Return ``name`` if a spec may use it; raise otherwise."""
    why = refused(name)
    if why is not None:
        shown = node if node is not None else (name if IDENTIFIER.match(str(name)) else "<name>")
        raise SpecError(why, node=shown)
    return name


def c_prefix(model: str) -> str:
    """The prefix of the model's public C symbols: its name, unless that name
    would start them in the generated code's own namespace (``sg_``) or C's (``_``)."""
    lowered = model.lower()
    if lowered == "sg" or lowered.startswith("sg_") or model.startswith("_"):
        return f"model_{model}"
    return model


# What the C interface declares once per model (NAME_forward, NAME_params, ...).
INTERFACE_SUFFIXES = (
    "real", "leaf", "num_params", "num_inputs", "num_outputs", "params", "inputs", "load", "error", "predict",
    "outputs", "init_params", "forward", "evaluate", "loss_and_grads", "loss_and_grads_of_share", "sgd_step", "random_bits",
)
INTERFACE_MACROS = ("BATCH", "MAX_RANK", "MODEL_H", "METRIC_SUMS", "H")


def interface_names(model: str, leaves: dict[str, list[str]]) -> set[str]:
    """Every public C symbol of a model and of its float64 twin; ``leaves``:
    kind (param, input, output) -> the spec names that get an enum constant."""
    names = set()
    api = c_prefix(model)
    for prefix in (api, f"{api}_f64"):
        names |= {f"{prefix}_{suffix}" for suffix in INTERFACE_SUFFIXES}
        names |= {f"{prefix.upper()}_{macro}" for macro in INTERFACE_MACROS}
        for kind, named in leaves.items():
            names |= {f"{prefix}_{kind}_{name}" for name in named}
    return names
