"""Build the generated C into a shared library, once, and call it through ctypes.

A build is keyed by a content hash of the sources, the compiler's version
line, the host CPU's features and the flags; a library with that key in the cache folder is reused
without running the compiler. The cache folder is ``$SYMGRAPH_CACHE``, else
``$XDG_CACHE_HOME/symgraph``, else ``~/.cache/symgraph``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

from .codegen.c import compiled_batch
from .errors import BuildError
from .ir import is_batch
from .names import c_prefix

FLAGS = ("-std=c99", "-O3", "-march=native", "-fPIC", "-shared", "-Wall", "-Wextra")
LIBRARY = "libmodel.so"


def compiler() -> str:
    return os.environ.get("CC", "cc")


@functools.lru_cache(maxsize=None)
def compiler_version(cc: str) -> str:
    try:
        done = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"no working C compiler {cc!r} (set CC): {exc}") from None
    return done.stdout.splitlines()[0] if done.stdout else cc


def cache_dir() -> Path:
    if os.environ.get("SYMGRAPH_CACHE"):
        return Path(os.environ["SYMGRAPH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "symgraph"


def build_key(sources: dict[str, str], cc: str, flags: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        for part in (name, sources[name]):
            digest.update(part.encode())
            digest.update(b"\0")
    for part in (compiler_version(cc), host(), *flags):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


@functools.lru_cache(maxsize=None)
def host() -> str:
    """The machine and its CPU's features: -march=native code built for one CPU may not run on another
    (a cache folder in a shared home directory)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = next((line for line in handle if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {flags.strip()}"


DIGEST = LIBRARY + ".sha256"  # beside each cached library: its hash when it was built


def usable_cache() -> Path:
    """The cache folder, made if need be; refused (BuildError) when it is not a
    folder, cannot be made, or others can write it: a library planted there
    would run inside this process."""
    folder = cache_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = folder.stat()
    except OSError as exc:
        raise BuildError(f"cannot use the build cache {folder}: {exc.strerror or exc} (set SYMGRAPH_CACHE)") from None
    if status.st_mode & 0o022 or status.st_uid != os.getuid():
        raise BuildError(f"the build cache {folder} is not yours alone (others may write it); chmod go-w it or set SYMGRAPH_CACHE")
    return folder


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def intact(folder: Path) -> bool:
    """Whether a cache entry holds its library, unchanged since it was built."""
    try:
        return (folder / DIGEST).read_text(encoding="ascii").strip() == digest_of(folder / LIBRARY)
    except (OSError, UnicodeDecodeError):
        return False


def build(sources: dict[str, str], flags: tuple[str, ...] = FLAGS, verbose: bool = False) -> Path:
    """The shared library built from ``sources`` (name -> text; every ``.c`` is compiled).

    A cached build is reused only if its library still has the hash recorded
    when it was built; a damaged entry is built again.
    """
    cc = compiler()
    key = build_key(sources, cc, flags)
    root = usable_cache()
    folder = root / key
    library = folder / LIBRARY
    if intact(folder):
        say(verbose, f"reusing build {key}: same sources, compiler ({compiler_version(cc)}) and flags")
        return library
    if folder.exists() or folder.is_symlink():
        say(verbose, f"rebuilding {key}: the cached library is missing or damaged")
        remove(folder)
    else:
        say(verbose, f"compiling {', '.join(sorted(sources))}: no build with key {key} in {root}")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            for name, text in sources.items():
                (staging / name).write_text(text, encoding="utf-8")
            units = sorted(name for name in sources if name.endswith(".c"))
            done = subprocess.run([cc, *flags, "-o", LIBRARY, *units, "-lm"], cwd=staging, capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildError(f"{cc} failed on the generated code:\n{done.stderr}")
            (staging / DIGEST).write_text(digest_of(staging / LIBRARY) + "\n", encoding="ascii")
            try:
                os.replace(staging, folder)
            except OSError:  # another process finished the same build first
                if not intact(folder):
                    remove(folder)
                    os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise BuildError(f"cannot build in the cache {root}: {exc.strerror or exc}") from None
    return library


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def say(verbose: bool, message: str) -> None:
    if verbose:
        print(f"symgraph: {message}", file=sys.stderr)


def check_inputs(program, inputs: dict, names: list[str]) -> int:
    """Validate inputs like the generated NumPy module does; return the batch size n."""
    leaves = {leaf.name: leaf for leaf in program.inputs}
    n = None
    for name in names:
        if name not in inputs:
            raise ValueError(f"missing input {name!r}")
        leaf = leaves[name]
        value = np.asarray(inputs[name])
        expected = tuple(None if is_batch(d) else int(d) for d in leaf.shape)
        if value.ndim != len(expected) or any(d is not None and d != v for d, v in zip(expected, value.shape)):
            raise ValueError(f"input {name!r} has shape {value.shape}, expected {expected} (None: any batch size)")
        if expected and expected[0] is None:
            if n is not None and value.shape[0] != n:
                raise ValueError(f"input {name!r} has {value.shape[0]} examples, others have {n}")
            n = value.shape[0]
        if leaf.dtype == "int":
            if not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"input {name!r} must hold integers, got {value.dtype}")
            if value.size and (value.min() < 0 or value.max() >= leaf.bound):
                raise ValueError(f"input {name!r} has ids outside [0, {leaf.bound})")
        elif value.dtype.kind not in "biuf" or not np.all(np.isfinite(value)):  # real numbers: a complex part would be dropped
            raise ValueError(f"input {name!r} must hold finite numbers")
    return compiled_batch(program) if n is None else n


def pointers(arrays: list[np.ndarray]):
    return (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])


def load_private(path: Path) -> ctypes.CDLL:
    """The library, loaded from a copy of its own: the loader gives every load of
    one path the same handle, and with it the same static work area, which two
    models compiled from one spec would then share."""
    with tempfile.TemporaryDirectory(prefix="symgraph-lib-") as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        recorded = path.parent / DIGEST
        if recorded.exists() and recorded.read_text(encoding="ascii").strip() != digest_of(copy):
            raise BuildError(f"the cached library {path} changed after it was built; run again to rebuild it")
        return ctypes.CDLL(str(copy))  # mapped now: the file may go


class Library:
    """The generated model's functions, called with NumPy arrays.

    Each Library has its own copy of the code and so its own work area; a lock
    lets one call at a time use it, so that a model may be called from any thread.
    """

    def __init__(self, program, path: Path):
        self.program = program
        self.dtype = np.dtype(program.dtype)
        self.lib = load_private(path)
        self._lock = threading.Lock()
        api = c_prefix(program.name)
        p, i, long, u64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_uint64
        double_p = ctypes.POINTER(ctypes.c_double)
        self._init = self._function(f"{api}_init_params", None, [p, u64])
        self._forward = self._function(f"{api}_forward", i, [p, p, long, p])
        self._loss_and_grads = self._function(f"{api}_loss_and_grads_of_share", i, [p, p, long, long, long, i, u64, double_p, p])
        real = ctypes.c_float if self.dtype == np.float32 else ctypes.c_double
        self._sgd_step = self._function(f"{api}_sgd_step", i, [p, p, long, i, u64, real, double_p, p])

    def _function(self, name, restype, argtypes):
        fn = getattr(self.lib, name)
        fn.restype, fn.argtypes = restype, argtypes
        return fn

    def _param_arrays(self, params: dict) -> list[np.ndarray]:
        return [np.ascontiguousarray(params[leaf.name], dtype=self.dtype) for leaf in self.program.params]

    def _input_arrays(self, inputs: dict) -> list[np.ndarray]:
        arrays = []
        for leaf in self.program.inputs:
            if leaf.name in inputs:
                kind = np.int64 if leaf.dtype == "int" else self.dtype
                arrays.append(np.ascontiguousarray(inputs[leaf.name], dtype=kind))
            else:  # not read by this function: a harmless null pointer
                arrays.append(np.zeros(0, self.dtype))
        return arrays

    def check_inputs(self, inputs: dict, names: list[str]) -> int:
        return check_inputs(self.program, inputs, names)

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        arrays = [np.empty(tuple(int(d) for d in leaf.shape), self.dtype) for leaf in self.program.params]
        with self._lock:
            self._init(pointers(arrays), seed)
        return {leaf.name: a for leaf, a in zip(self.program.params, arrays)}

    def batch_size(self, inputs: dict) -> int:
        for leaf in self.program.inputs:
            if leaf.name in inputs and leaf.shape and is_batch(leaf.shape[0]):
                return len(inputs[leaf.name])
        return compiled_batch(self.program)

    def forward(self, params: dict, inputs: dict) -> dict[str, np.ndarray]:
        g, n = self.program.eval_graph, self.batch_size(inputs)
        outputs = [np.empty(tuple(n if is_batch(d) else int(d) for d in g.shape(node)), self.dtype) for node in self.program.output_nodes]
        args = self._param_arrays(params), self._input_arrays(inputs)  # alive until the call returns
        with self._lock:
            status = self._forward(pointers(args[0]), pointers(args[1]), n, pointers(outputs))
        self._check(status, n)
        return dict(zip(self.program.outputs, outputs))

    def loss_and_grads(self, params: dict, inputs: dict, training: bool = False, seed: int = 0, first: int = 0, total: int | None = None):
        n = self.batch_size(inputs)
        total = n if total is None else total
        grads = [np.empty(tuple(int(d) for d in leaf.shape), self.dtype) for leaf in self.program.params]
        loss = ctypes.c_double()
        args = self._param_arrays(params), self._input_arrays(inputs)
        with self._lock:
            status = self._loss_and_grads(pointers(args[0]), pointers(args[1]), n, first, total, int(training), seed, ctypes.byref(loss), pointers(grads))
        self._check(status, n)
        return loss.value, {leaf.name: g for leaf, g in zip(self.program.params, grads)}

    def sgd_step(self, params: dict, inputs: dict, lr: float, training: bool = False, seed: int = 0):
        """The loss and the parameters after one plain SGD step, through the
        model's fused sgd_step; ``params`` is left as it was."""
        n = self.batch_size(inputs)
        updated = [np.array(params[leaf.name], dtype=self.dtype, order="C") for leaf in self.program.params]
        work = [np.empty_like(a) for a in updated]
        loss = ctypes.c_double()
        inputs_ = self._input_arrays(inputs)
        with self._lock:
            status = self._sgd_step(pointers(updated), pointers(inputs_), n, int(training), seed, lr, ctypes.byref(loss), pointers(work))
        self._check(status, n)
        return loss.value, {leaf.name: a for leaf, a in zip(self.program.params, updated)}

    @staticmethod
    def _check(status: int, n: int) -> None:
        if status != 0:
            raise ValueError(f"the generated code refused a batch of {n} examples")
