"""Which names from a spec may reach generated Python and C.

A name is emitted verbatim into both targets, so it must be an identifier in
both languages, must not be a keyword of either, and must not shadow a name
the generated code itself relies on (``np``, ``exp``, the runtime helpers).
Names are checked once, when they enter the graph; code generation trusts them.
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
    """np n real_t params inputs grads outputs training rng seed state
    step lr loss_value arena mask ids self args data math os sys time json
    argparse idx tap correct_count real""".split()
)

# Module-level names of the NumPy model that its functions read: a node so
# named would shadow them there (the model's own name never reaches Python code).
NUMPY_MODULE = frozenset(
    """DTYPE scratch window_rows random_bits random_uniform random_normal
    DROPOUT_STREAM SHUFFLE_STREAM BATCH BATCH_INPUT WHOLE_BATCH PARAMS INPUTS
    OUTPUTS""".split()
)


def reserved(name: str, model: bool = False) -> str | None:
    """Why ``name`` may not be used, or None when it may (``model``: as the model's name)."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        return f"{name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"{name!r} is a Python keyword"
    if name in C_KEYWORDS:
        return f"{name!r} is a C keyword"
    if name in C_LIBRARY or name in RUNTIME or hasattr(builtins, name) or (name in NUMPY_MODULE and not model):
        return f"{name!r} is reserved by the generated code"
    if name.startswith(("__", "sg_", "SG_")):
        return f"{name!r} starts with a prefix reserved by the generated code"
    return None


def check_name(name: str, node: str | None = None, model: bool = False) -> str:
    """Return ``name`` if it is safe to emit in both targets; raise otherwise."""
    why = reserved(name, model)
    if why is not None:
        shown = node if node is not None else (name if IDENTIFIER.match(str(name)) else "<name>")
        raise SpecError(why, node=shown)
    return name
