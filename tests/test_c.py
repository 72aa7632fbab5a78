"""The C target: every example matches NumPy, builds warning-free, runs clean under
sanitizers, checks its own gradients, and reuses cached builds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph import native
from symgraph.codegen import build_program, render
from symgraph.codegen.c import LIBRARY, compiled_batch
from symgraph.codegen.memory import Buffer, place
from symgraph.gradcheck import random_inputs
from symgraph.ir import is_batch

from test_gradients import assert_close

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.yaml"))
SANITIZE = "-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"


def example(name: str) -> sg.Graph:
    return sg.load(ROOT / "examples" / f"{name}.yaml")


def batch_inputs(model, n: int, rng) -> dict[str, np.ndarray]:
    """Inputs with n examples on the batch axis (the compiled size elsewhere)."""
    out = {}
    for leaf in model.program.inputs:
        shape = [int(d) for d in leaf.shape]
        if shape and is_batch(leaf.shape[0]):
            shape[0] = n
        out[leaf.name] = rng.integers(0, leaf.bound, shape) if leaf.dtype == "int" else rng.standard_normal(shape)
    return out


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_matches_numpy_in_float64(name, rng):
    g = example(name)
    c, numpy = sg.compile(g, target="c", dtype="float64"), sg.compile(g, target="numpy", dtype="float64")
    params = numpy.init_params(1)
    for key, value in c.init_params(1).items():  # the same numbers, bit for bit (normal draws included)
        np.testing.assert_array_equal(value, params[key], err_msg=key)
    compiled = int(c.program.graph.shape(c.program.batch_input)[0]) if c.program.batch_input else 1
    for n in sorted({compiled, max(1, compiled // 2 - 1)}):  # the full batch and a smaller one
        inputs = batch_inputs(c, n, rng)
        loss, grads = c.loss_and_grads(params, inputs, training=True, seed=7)
        expected_loss, expected = numpy.loss_and_grads(params, inputs, training=True, seed=7)
        assert_close(loss, expected_loss, 1e-10)
        for key in expected:
            assert_close(grads[key], expected[key], 1e-10)
        outputs, expected_outputs = c.forward(params, inputs), numpy.forward(params, inputs)
        for key in expected_outputs:
            assert_close(outputs[key], expected_outputs[key], 1e-10)


# The parameters whose gradients sgd_step adds in as it computes them.
FUSED = {"diabetes": set(), "digits_cnn": {"W"}, "digits_mlp": {"W1", "W2"}, "logreg": set(), "mlp": {"W1", "W2"}, "nlm": {"U", "H", "C"}, "slide": set(), "textcnn": {"W", "E"}, "transformer": {"E"}}


@pytest.mark.parametrize("name", EXAMPLES)
def test_sgd_step_is_loss_and_grads_then_an_sgd_update(name, rng):
    """sgd_step adds product and embedding gradients into their parameters as
    it computes them; every parameter must end where params - lr * grads is."""
    g = example(name)
    program = build_program(g, "float64")
    files = render(program, "c")
    assert set(re.findall(rf"-lr, (?:1, )?params\[{g.name}_param_(\w+)\]\);", files["model.c"])) == FUSED[name]
    lib = native.Library(program, native.build({k: files[k] for k in LIBRARY}))
    params = lib.init_params(1)
    inputs = batch_inputs(lib, compiled_batch(program), rng)
    lr = 0.37
    loss, grads = lib.loss_and_grads(params, inputs, training=True, seed=5)
    step_loss, stepped = lib.sgd_step(params, inputs, lr, training=True, seed=5)
    assert step_loss == loss
    for key, value in params.items():
        assert_close(stepped[key], value - lr * grads[key], 1e-12)
        assert not np.array_equal(stepped[key], value) or not grads[key].any(), key


def test_batch_larger_than_compiled_is_refused():
    model = sg.compile(example("mlp"), target="c", dtype="float64")
    inputs = {"x": np.zeros((65, 784)), "y": np.zeros(65, np.int64)}
    with pytest.raises(ValueError, match="1 to 64 examples"):
        model.loss_and_grads(model.init_params(0), inputs)


def test_int_inputs_of_any_width_are_checked_then_accepted(rng):
    model = sg.compile(example("mlp"), target="c", dtype="float64")
    params, x = model.init_params(0), rng.standard_normal((8, 784))
    losses = [model.loss_and_grads(params, {"x": x, "y": np.arange(8, dtype=kind) % 10})[0] for kind in (np.uint8, np.int16, np.int64)]
    assert losses[0] == losses[1] == losses[2]
    with pytest.raises(ValueError, match="ids outside"):
        model.loss_and_grads(params, {"x": x, "y": np.full(8, 10, np.int32)})
    with pytest.raises(ValueError, match="must hold integers"):
        model.loss_and_grads(params, {"x": x, "y": np.zeros(8)})


def c_sources(name: str, out: Path, dtype: str = "float32") -> Path:
    files = render(build_program(example(name), dtype), "c")
    out.mkdir(parents=True)
    for file, text in files.items():
        (out / file).write_text(text)
    return out


def make(folder: Path, cflags: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(folder), f"CFLAGS={cflags}"], capture_output=True, text=True)


COMPILERS = [cc for cc in ("gcc", "clang") if shutil.which(cc)]


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("name", EXAMPLES)
def test_sources_compile_without_warnings(name, cc, tmp_path):
    folder = c_sources(name, tmp_path / name)
    done = subprocess.run(["make", "-s", "-C", str(folder), f"CC={cc}", "CFLAGS=-O2 -Werror"], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr


def write_data(program, folder: Path, count: int, rng) -> Path:
    folder.mkdir(parents=True)
    for leaf in program.inputs:
        shape = [int(d) for d in leaf.shape]
        if shape and is_batch(leaf.shape[0]):
            shape[0] = count
        value = rng.integers(0, leaf.bound, shape).astype(np.int32) if leaf.dtype == "int" else rng.standard_normal(shape).astype(np.float32)
        np.save(folder / f"{leaf.name}.npy", value)
    return folder


@pytest.mark.parametrize("name", EXAMPLES)
def test_trainer_runs_clean_under_sanitizers(name, tmp_path, rng):
    """Train and evaluate a full and a partial batch, checkpoint, then --gradcheck (on a
    small batch, to keep the instrumented run short), under ASan and UBSan."""
    folder = c_sources(name, tmp_path / "src")
    done = make(folder, SANITIZE)
    assert done.returncode == 0, done.stderr
    program = build_program(example(name))
    batch = int(program.graph.shape(program.batch_input)[0]) if program.batch_input else 1
    data = write_data(program, tmp_path / "data", batch + 3, rng)
    args = ["--data", str(data)] if program.inputs else []
    val = ["--val", str(data)] if program.inputs else []
    train = subprocess.run([str(folder / "train"), *args, *val, "--epochs", "1", "--save", str(tmp_path / "ckpt")], capture_output=True, text=True)
    assert train.returncode == 0 and not train.stderr, train.stderr
    resumed = ["--init-from", str(tmp_path / "ckpt"), "--batch-size", "2"]
    check = subprocess.run([str(folder / "train"), *args, "--gradcheck", *resumed], capture_output=True, text=True)
    assert check.returncode == 0 and not check.stderr, check.stdout + check.stderr
    assert check.stdout.count(" ok\n") == len(program.params)


def test_gradcheck_in_the_trainer_catches_a_wrong_gradient(tmp_path):
    folder = c_sources("digits_mlp", tmp_path / "src")
    twin = folder / "model_f64.c"
    text = twin.read_text()
    assert "db2[j] += dlogits" in text
    twin.write_text(text.replace("db2[j] += dlogits", "db2[j] += 1.01*dlogits", 1))
    assert make(folder, "-O2").returncode == 0
    program = build_program(example("digits_mlp"))
    data = write_data(program, tmp_path / "data", 40, np.random.default_rng(0))
    check = subprocess.run([str(folder / "train"), "--data", str(data), "--gradcheck"], capture_output=True, text=True)
    assert check.returncode == 1
    rows = {line.split()[0]: line.split()[-1] for line in check.stdout.splitlines()[2:]}
    assert rows == {"W1": "ok", "b1": "ok", "W2": "ok", "b2": "FAIL"}


def test_second_compile_reuses_the_cached_build(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYMGRAPH_CACHE", str(tmp_path / "cache"))
    g = example("logreg")
    sg.compile(g, target="c", verbose=True)
    assert "no build with key" in capsys.readouterr().err

    def no_compiler(command, **kwargs):
        raise AssertionError(f"the compiler ran again: {command}")

    monkeypatch.setattr(native.subprocess, "run", no_compiler)
    model = sg.compile(g, target="c", verbose=True)
    assert "reusing build" in capsys.readouterr().err
    assert model.loss_and_grads(model.init_params(0), {"x": np.zeros((4, 30)), "y": np.ones(4)})[0] > 0


def test_cache_key_covers_sources_and_flags():
    sources = {"model.c": "int f(void) { return 1; }\n"}
    key = native.build_key(sources, native.compiler(), native.FLAGS)
    assert key == native.build_key(dict(sources), native.compiler(), native.FLAGS)
    assert key != native.build_key({"model.c": "int f(void) { return 2; }\n"}, native.compiler(), native.FLAGS)
    assert key != native.build_key(sources, native.compiler(), native.FLAGS + ("-DSG_BLAS",))


@pytest.mark.parametrize("count", [60, 3000])  # greedy by size, and first fit in order for large graphs
def test_memory_plan_shares_only_between_disjoint_lifetimes(rng, count):
    starts = rng.integers(0, count // 2, count)
    buffers = [Buffer(f"b{i}", int(rng.integers(1, 500)), int(s), int(s + rng.integers(0, 6))) for i, s in enumerate(starts)]
    placed, total = place(buffers)
    assert [b.name for b in placed] == [b.name for b in buffers]
    for a in placed:
        assert a.offset + a.size <= total
    by_start = sorted(placed, key=lambda b: b.first)
    for i, a in enumerate(by_start):
        for b in by_start[i + 1:]:
            if b.first > a.last:
                break
            assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
    assert total < sum(b.size for b in buffers)  # lifetimes are short: memory is shared


def test_views_and_in_place_statements_keep_values():
    """nlm's flatten is a view and its tanh runs in place; C still matches NumPy."""
    source = render(build_program(example("nlm"), "float64"), "c")["model.c"]
    assert "real *x = x_1;  /* [n, 192], a view of x_1 */" in source
    assert "in place of" in source
    g = example("nlm")
    c, numpy = sg.compile(g, target="c", dtype="float64"), sg.compile(g, target="numpy", dtype="float64")
    params, inputs = numpy.init_params(1), random_inputs(numpy, 2)
    loss, grads = c.loss_and_grads(params, inputs)
    expected_loss, expected = numpy.loss_and_grads(params, inputs)
    assert np.isclose(loss, expected_loss, rtol=1e-12)
    for name in expected:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-14)


def test_code_generation_keeps_no_graph_alive():
    """What code generation works out once per graph stays on the graph: a
    dropped program's graphs are freed, and a copy starts without it."""
    import gc
    import weakref

    from symgraph.ir import PER_GRAPH

    program = build_program(example("nlm"), "float32")
    render(program, "c")
    render(program, "numpy")
    graph = program.train_graph
    assert PER_GRAPH in vars(graph) and PER_GRAPH not in vars(graph.copy())
    freed = weakref.ref(graph)
    del program, graph
    gc.collect()
    assert freed() is None


def test_memory_report_names_every_buffer_and_the_peak():
    from symgraph.codegen.c import memory_report

    text = memory_report(build_program(example("mlp")))
    assert "loss_and_grads:" in text and "dh " in text and text.splitlines()[-1].startswith("arena (peak):")


# Rows, inner length and columns on both sides of the kernel's tile edges: the
# rows of a tile (4, 6 or 12), its one- and two-vector widths (4 to 32
# columns), and the depth of one packed panel (256).
PRODUCT_SHAPES = [(1, 1, 1), (5, 3, 7), (13, 20, 16), (12, 9, 17), (25, 300, 33), (50, 64, 100)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m, k, n", PRODUCT_SHAPES)
def test_products_match_numpy_across_tile_edges(m, k, n, dtype, rng):
    """c = a @ b + v (one product that starts from v's rows) and the
    gradients of a and b (products with each operand transposed)."""
    spec = f"""
name: product
params: {{a: {{shape: [{m}, {k}]}}, b: {{shape: [{k}, {n}]}}, v: {{shape: [{n}]}}}}
graph: {{c: a @ b + v, loss: sum(c * c)}}
loss: loss
"""
    g = sg.load(spec)
    assert "sg_matmul_bias(" in render(build_program(g, dtype), "c")["model.c"]
    model = sg.compile(g, target="c", dtype=dtype)
    a, b, v = rng.standard_normal((m, k)), rng.standard_normal((k, n)), rng.standard_normal(n)
    loss, grads = model.loss_and_grads({"a": a, "b": b, "v": v}, {})
    c = a @ b + v
    tolerance = 1e-4 if dtype == "float32" else 1e-12
    assert_close(loss, np.sum(c * c), tolerance)
    assert_close(grads["a"], 2 * c @ b.T, tolerance)
    assert_close(grads["b"], 2 * a.T @ c, tolerance)
    assert_close(grads["v"], 2 * c.sum(axis=0), tolerance)


@pytest.mark.parametrize("target", ["c", "numpy"])
def test_max_gradient_goes_to_the_first_of_tied_maxima(target, rng):
    spec = """
name: ties
params: {x: {shape: [3, 6, 5]}, w: {shape: [3, 5]}}
graph:
  top: max(x, axis=1)
  loss: sum(top * w)
loss: loss
"""
    model = sg.compile(sg.load(spec), target=target, dtype="float64")
    x = rng.integers(0, 3, (3, 6, 5)).astype(np.float64)  # many ties
    w = rng.standard_normal((3, 5))
    _, grads = model.loss_and_grads({"x": x, "w": w}, {})
    expected = np.zeros_like(x)
    first = x.argmax(axis=1)
    for b in range(3):
        for j in range(5):
            expected[b, first[b, j], j] = w[b, j]
    assert np.array_equal(grads["x"], expected)


def test_float32_tanh_and_sigmoid_are_accurate():
    """float32 C has its own tanh (Taylor series near 0, exponentials beyond):
    within 3e-7 of tanh, relative, on both sides of the switch at 0.55, and at
    the extremes; sigmoid, written with it, within 1e-7."""
    edges = [0.0, -0.0, 1e-30, 1e-8, 0.55, np.nextafter(np.float32(0.55), np.float32(0)), 88.0, -88.0, np.inf, -np.inf]
    x = np.concatenate([np.linspace(-12, 12, 100001), edges]).astype(np.float32)
    spec = f"""
name: squash
params: {{x: {{shape: [{x.size}]}}}}
graph:
  t: tanh(x)
  s: sigmoid(x)
  loss: sum(t + s)
loss: loss
outputs: [t, s]
"""
    out = sg.compile(sg.load(spec), target="c", dtype="float32").forward({"x": x}, {})
    exact = np.tanh(x.astype(np.float64))
    assert np.all(np.abs(out["t"] - exact) <= 3e-7 * np.abs(exact))
    with np.errstate(over="ignore"):
        assert np.all(np.abs(out["s"] - 1 / (1 + np.exp(-x.astype(np.float64)))) <= 1e-7)
    assert np.signbit(out["t"][x.size - len(edges) + 1])  # tanh(-0.0) is -0.0


def openmp_threads(count: int) -> bool:
    """Sets libgomp's thread count for this process; False where there is no libgomp."""
    import ctypes.util

    found = ctypes.util.find_library("gomp")
    if not found:
        return False
    ctypes.CDLL(found).omp_set_num_threads(count)
    return True


@pytest.mark.parametrize("name", ["textcnn", "nlm", "mlp"])
def test_openmp_build_gives_the_same_bits(name, rng):
    """Every loop and kernel split over threads (products, the pools and
    maxima, the embedding, the cross-entropy's loss) computes each element as
    the one-thread build does, so loss and gradients agree to the last bit."""
    program = build_program(example(name), "float32")
    files = render(program, "c")
    sources = {k: files[k] for k in LIBRARY}
    try:
        threaded = native.Library(program, native.build(sources, native.FLAGS + ("-fopenmp",)))
        if not openmp_threads(2):
            raise native.BuildError("no libgomp to set the thread count")
    except native.BuildError as exc:
        if os.environ.get("SYMGRAPH_REQUIRE_TOOLS"):  # CI's GCC has OpenMP
            pytest.fail(str(exc))
        pytest.skip(f"no OpenMP here: {exc}")
    serial = native.Library(program, native.build(sources))
    params = serial.init_params(1)
    inputs = batch_inputs(serial, compiled_batch(program), rng)
    loss, grads = serial.loss_and_grads(params, inputs, training=True, seed=3)
    threaded_loss, threaded_grads = threaded.loss_and_grads(params, inputs, training=True, seed=3)
    assert threaded_loss == loss
    for key in grads:
        assert np.array_equal(threaded_grads[key], grads[key]), key
    (loss, stepped), (threaded_loss, threaded_stepped) = (lib.sgd_step(params, inputs, 0.1, training=True, seed=3) for lib in (serial, threaded))
    assert threaded_loss == loss
    for key in stepped:
        assert np.array_equal(threaded_stepped[key], stepped[key]), key


def has_cblas() -> bool:
    probe = subprocess.run(["cc", "-x", "c", "-", "-o", "/dev/null", "-lopenblas"], input="#include <cblas.h>\nint main(void) { return 0; }\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


@pytest.mark.parametrize("flags", ["OPENMP=1", "BLAS=1"])
def test_opt_in_builds_train_like_the_portable_one(flags, tmp_path):
    if flags == "BLAS=1" and not has_cblas():
        pytest.skip("no CBLAS (cblas.h and -lopenblas) on this machine")
    program = build_program(example("digits_mlp"), "float64")
    data = write_data(program, tmp_path / "data", 100, np.random.default_rng(0))
    lines = []
    for variant in ("", flags):
        folder = c_sources("digits_mlp", tmp_path / (variant or "portable"), "float64")
        done = subprocess.run(["make", "-s", "-C", str(folder), "CFLAGS=-O2 -Werror", *([variant] if variant else [])], capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, done.stderr
        run = subprocess.run([str(folder / "train"), "--data", str(data), "--epochs", "2"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        lines.append([line.rsplit("  ", 1)[0] for line in run.stdout.splitlines()])
    assert lines[0] == lines[1] and len(lines[0]) == 2


def hostile_files(valid: bytes, rng) -> list[bytes]:
    """Truncations, wrong magic, other byte orders, Fortran order, mangled headers, random bytes."""
    header_end = valid.index(b"\n") + 1
    cases = [b"", valid[:5], valid[:header_end - 3], valid[: header_end + 7], b"\x93NUMPX" + valid[6:]]
    cases.append(valid.replace(b"'<f4'", b"'>f4'"))
    cases.append(valid.replace(b"False", b"True "))
    cases.append(valid.replace(b"'<f4'", b"'<c8'"))
    cases.append(valid[:8] + b"\xff\xff" + valid[10:])
    cases.append(valid.replace(b"(50, 64)", b"(50, 99999999999)"))
    cases.append(valid.replace(b"(50, 64)", b"(-5, 64)"))
    for _ in range(40):  # random byte flips in the header and random garbage
        mutated = bytearray(valid)
        for i in rng.integers(0, header_end, 3):
            mutated[i] = int(rng.integers(0, 256))
        cases.append(bytes(mutated))
        cases.append(rng.bytes(int(rng.integers(0, 200))))
    return cases


@pytest.mark.parametrize("target", ["c", "numpy"])
def test_npy_readers_survive_hostile_files(target, tmp_path):
    """Every hostile x.npy ends in exit 2 with one error line, or (when the damage
    happens to leave a valid file) trains normally; never a crash, a traceback or,
    for C built with ASan and UBSan, a sanitizer report."""
    program = build_program(example("digits_mlp"))
    data = write_data(program, tmp_path / "data", 50, np.random.default_rng(0))
    if target == "c":
        folder = c_sources("digits_mlp", tmp_path / "src")
        assert make(folder, SANITIZE).returncode == 0
        train = [str(folder / "train")]
    else:
        (tmp_path / "src").mkdir()
        for name, text in render(program, "numpy").items():
            (tmp_path / "src" / name).write_text(text)
        train = [sys.executable, str(tmp_path / "src" / "train.py")]
    valid = (data / "x.npy").read_bytes()
    cases = hostile_files(valid, np.random.default_rng(1))
    for i, content in enumerate(cases if target == "c" else cases[:25]):  # the interpreter starts slowly
        (data / "x.npy").write_bytes(content)
        done = subprocess.run([*train, "--data", str(data), "--epochs", "1"], capture_output=True, timeout=60)
        stderr = done.stderr.decode("utf-8", "replace")
        assert done.returncode in (0, 2), (i, content[:80], stderr[-2000:])
        if done.returncode == 2:
            assert stderr.startswith("error: ") and stderr.count("\n") == 1, (i, stderr[-2000:])
            assert target == "numpy" or stderr.isascii()  # C messages never echo raw bytes
        else:
            assert not stderr, (i, stderr[-2000:])


def test_interface_names_cover_every_symbol_the_templates_declare():
    """A node named like a symbol of the C interface is emitted under another
    name: the list must hold every NAME_<suffix> and NAME_<MACRO> the templates write."""
    from symgraph.names import INTERFACE_MACROS, INTERFACE_SUFFIXES

    text = "".join(p.read_text() for p in (ROOT / "templates" / "c").glob("*.j2"))
    per_leaf = {"param_", "input_", "output_", "param_NAME", "input_NAME", "output_NAME"}
    suffixes = set(re.findall(r"\{\{ api \}\}_(\w+)", text)) - per_leaf
    macros = set(re.findall(r"\{\{ API \}\}_(\w+)", text))
    assert suffixes <= set(INTERFACE_SUFFIXES), suffixes - set(INTERFACE_SUFFIXES)
    assert macros <= set(INTERFACE_MACROS), macros - set(INTERFACE_MACROS)


@pytest.mark.needs_cc
@pytest.mark.parametrize("node", ["h_forward", "h_param_W", "h_param_info", "H_BATCH", "h_f64_loss_and_grads", "h_params"])
def test_a_node_named_like_an_interface_symbol_gets_another_variable(node):
    """Such a node (or a param 'info', once NAME_param_info) compiles, under a
    mangled variable, and computes what NumPy computes."""
    g = sg.load(f"name: h\ndims: {{batch: 2}}\ninputs: {{x: {{shape: [batch]}}}}\nparams: {{W: {{shape: []}}, info: {{shape: [], init: ones}}}}\n"
                f"graph: {{{node}: x * W * info, loss: 'sum({node} * {node})'}}\nloss: loss\noutputs: [{node}]\n")
    text = render(build_program(g, "float64"), "c")["model.c"]
    assert f"real *{node} =" not in text and f"the spec's {node}" in text
    c, numpy = sg.compile(g, target="c", dtype="float64"), sg.compile(g, target="numpy", dtype="float64")
    params = {"W": np.array(0.5), "info": np.array(1.5)}
    inputs = {"x": np.array([1.0, -2.0])}
    loss_c, grads_c = c.loss_and_grads(params, inputs)
    loss_n, grads_n = numpy.loss_and_grads(params, inputs)
    assert loss_c == pytest.approx(loss_n) == pytest.approx(5 * 0.75**2)
    for name in params:
        assert grads_c[name] == pytest.approx(grads_n[name])
    assert c.forward(params, inputs)[node] == pytest.approx([0.75, -1.5])


@pytest.mark.parametrize("rows, cols", [(8, 5), (16, 3), (17, 9)])
def test_softmax_gradient_written_in_place_is_right_at_o3(rows, cols):
    """GCC 12 at -O3 with AVX-512 vectorised softmax's gradient loop wrongly
    when it was written in place over the softmax with a row-broadcast
    operand (two wrong rows at [8, 5]); no element-wise statement that reads
    a broadcast array is computed in place any more."""
    g = sg.load(f"name: m\nparams: {{P0: {{shape: [{rows}, {cols}]}}, P1: {{shape: [{cols}, {cols}]}}, W: {{shape: [{rows}, {cols}]}}}}\n"
                "graph: {loss: 'sum(softmax(P0 @ P1 + P0, axis=1) * W)'}\nloss: loss\n")
    c, numpy = sg.compile(g, target="c", dtype="float64"), sg.compile(g, target="numpy", dtype="float64")
    rng = np.random.default_rng(1)
    params = {name: rng.standard_normal(shape) for name, shape in c.params.items()}
    _, grads = c.loss_and_grads(params, {})
    _, expected = numpy.loss_and_grads(params, {})
    for name in expected:
        assert_close(grads[name], expected[name], 1e-12)


@pytest.mark.parametrize("target", ["c", "numpy"])
def test_a_model_is_safe_from_threads_and_two_models_share_nothing(target):
    """Four threads call one model, and two models compiled apart from one spec
    run at once: every result equals the one computed alone."""
    import threading

    g = sg.load(ROOT / "examples" / "digits_mlp.yaml")
    models = [sg.compile(g, target=target, dtype="float64") for _ in range(2)]
    rng = np.random.default_rng(0)
    params = models[0].init_params(1)
    batches = [{"x": rng.standard_normal((n, 64)), "y": rng.integers(0, 10, n)} for n in (32, 17, 5, 29, 32, 11)]
    expected = [models[0].loss_and_grads(params, b) for b in batches]
    wrong = []

    def work(model, offset):
        for k in range(24):
            index = (k + offset) % len(batches)
            loss, grads = model.loss_and_grads(params, batches[index])
            if loss != expected[index][0] or any(not np.array_equal(grads[p], expected[index][1][p]) for p in grads):
                wrong.append(index)

    threads = [threading.Thread(target=work, args=(models[t % 2] if t >= 2 else models[0], t)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


def test_a_work_area_past_2_gib_builds_standalone(tmp_path):
    """An arena of 7.2 GB (float32 [600, 1000000] buffers): a static array that
    size failed to link ("relocation truncated to fit"); it is allocated at the
    first call instead. Built only: running it would need the memory."""
    spec = tmp_path / "big.yaml"
    spec.write_text("name: big\ndims: {batch: 600}\ninputs: {x: {shape: [batch, 1]}}\nparams: {v: {shape: [1, 1000000]}}\n"
                    "graph: {h: x * v, loss: 'sum(tanh(h))'}\nloss: loss\n")
    from symgraph.cli import main

    assert main(["compile", str(spec), "--target", "c", "-o", str(tmp_path / "c"), "--max-memory", "100G"]) == 0
    done = subprocess.run(["make", "-s", "-C", str(tmp_path / "c"), "CFLAGS=-O1"], capture_output=True, text=True)
    assert done.returncode == 0 and "relocation" not in done.stderr, done.stderr


FORWARD_ONLY = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

int main(void)
{
    static mlp_real W1[784 * 256], b1[256], W2[256 * 10], b2[10], x[3 * 784], logits[3 * 10];
    mlp_real *params[] = {W1, b1, W2, b2};
    const void *inputs[] = {x, NULL};  /* no labels */
    mlp_real *outputs[] = {logits};
    mlp_init_params(params, 0);
    for (int i = 0; i < 3 * 784; i++)
        x[i] = (mlp_real)(i % 7) / 7;
    if (mlp_forward(params, inputs, 3, outputs) != 0)
        return 1;
    for (int i = 0; i < 3 * 10; i++)
        printf("%.9g\n", (double)logits[i]);
    return 0;
}
"""


@pytest.mark.needs_cc
def test_prediction_needs_no_labels_in_any_target(tmp_path):
    """forward takes only the inputs its outputs read: CompiledModel.forward
    (both targets), the generated NumPy module's forward, and C's mlp_forward
    with a null pointer for the labels (built with the sanitizers)."""
    from symgraph.cli import main as cli

    g = example("mlp")
    x = (np.arange(3 * 784).reshape(3, 784) % 7 / 7).astype(np.float32)
    numpy_model = sg.compile(g, target="numpy")
    params = numpy_model.init_params(0)
    expected = numpy_model.forward(params, {"x": x})["logits"]
    np.testing.assert_allclose(sg.compile(g, target="c").forward(params, {"x": x})["logits"], expected, rtol=1e-5, atol=1e-6)

    assert cli(["compile", str(ROOT / "examples" / "mlp.yaml"), "--target", "numpy", "-o", str(tmp_path / "py")]) == 0
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([sys.executable, "-c", "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import model; "
                          "x = np.load(sys.argv[2]); print(model.forward(model.init_params(0), {'x': x})['logits'].shape)",
                          str(tmp_path / "py"), str(tmp_path / "x.npy")], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "(3, 10)", run.stderr

    assert cli(["compile", str(ROOT / "examples" / "mlp.yaml"), "--target", "c", "-o", str(tmp_path / "c")]) == 0
    assert "labels among them, may be NULL" in (tmp_path / "c" / "model.h").read_text()
    (tmp_path / "c" / "main.c").write_text(FORWARD_ONLY)
    flags = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    build = subprocess.run(["cc", *flags, "-o", str(tmp_path / "predict"), str(tmp_path / "c" / "main.c"), str(tmp_path / "c" / "model.c"), "-lm"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    done = subprocess.run([str(tmp_path / "predict")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.array(done.stdout.split(), float).reshape(3, 10), expected, rtol=1e-5, atol=1e-6)


POOL_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

int main(void)
{
    /* one example: outputs sized for n = 1 exactly, so the sanitizer sees any write past them */
    double *x = calloc(2, sizeof *x), *q = malloc(2 * sizeof *q);
    double *params[] = {NULL};
    const void *inputs[] = {x};
    double *outputs[] = {q};
    x[0] = 1, x[1] = 3;
    if (pool_forward(params, inputs, 1, outputs) != 0)
        return 1;
    printf("%g %g\n", q[0], q[1]);
    free(x);
    free(q);
    return 0;
}
"""


@pytest.mark.needs_cc
def test_a_pool_whose_channel_axis_is_the_batch_writes_n_columns(tmp_path):
    """avg_pool1d over [2, 1, batch] (the batch moved last by a transpose) was
    written with the compiled batch size as its channel count: at n = 1 it
    wrote past its output (the fuzzer's worker processes died of heap corruption)."""
    from symgraph.cli import main as cli

    spec = tmp_path / "pool.yaml"
    spec.write_text("name: pool\ndims: {batch: 2}\ninputs: {x: {shape: [batch, 2]}}\n"
                    "graph: {q: 'avg_pool1d(transpose(reshape(x, [batch, 1, 2])), 1, stride=2)', loss: sum(q)}\nloss: loss\noutputs: [q]\n")
    assert cli(["compile", str(spec), "--target", "c", "--dtype", "float64", "-o", str(tmp_path / "c")]) == 0
    (tmp_path / "c" / "main.c").write_text(POOL_DRIVER)
    flags = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    subprocess.run(["cc", *flags, "-o", str(tmp_path / "run"), str(tmp_path / "c" / "main.c"), str(tmp_path / "c" / "model.c"), "-lm"],
                   check=True, capture_output=True)
    done = subprocess.run([str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["1", "3"], done.stderr[-2000:]
