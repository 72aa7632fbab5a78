"""symgraph export: a trained model as a forward-only C library, with the
weights read from the checkpoint or compiled in."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import symgraph as sg
from symgraph.cli import main

from test_predict import SPEC, data

pytestmark = pytest.mark.needs_cc

STRICT = "-O1 -g -Wall -Wextra -Werror"
SANITIZE = "-fsanitize=address,undefined -fno-sanitize-recover=all"

# Reads n examples of every input from raw files (the numbers as the library
# takes them) and writes the first output's values, raw, to the last argument.
DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "{stem}.h"

int main(int argc, char **argv)
{{
    long n = atol(argv[1]);
    if ({load})
        return fprintf(stderr, "%s\n", {error}), 2;
    const void *inputs[{api}_num_inputs + 1];
    {api}_real *outputs[{api}_num_outputs + 1];
    for (int k = 0; k < {api}_num_inputs; k++) {{
        size_t width = {api}_inputs[k].is_int ? 8 : sizeof({api}_real), count = (size_t)({api}_inputs[k].batched ? n : 1) * {api}_inputs[k].size;
        void *values = malloc(count * width);
        FILE *f = fopen(argv[3 + k], "rb");
        if (!f || fread(values, width, count, f) != count)
            return 3;
        fclose(f);
        inputs[k] = values;
    }}
    for (int k = 0; k < {api}_num_outputs; k++)
        outputs[k] = malloc((size_t)({api}_outputs[k].batched ? n : 1) * {api}_outputs[k].size * sizeof({api}_real));
    if ({api}_predict(inputs, n, outputs) != 0)
        return 4;
    FILE *f = fopen(argv[argc - 1], "wb");
    fwrite(outputs[0], sizeof({api}_real), (size_t)({api}_outputs[0].batched ? n : 1) * {api}_outputs[0].size, f);
    for (int k = 0; k < {api}_num_inputs; k++)
        free((void *)inputs[k]);
    for (int k = 0; k < {api}_num_outputs; k++)
        free(outputs[k]);
    return fclose(f) != 0;
}}
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    spec = root / "flowers.yaml"
    spec.write_text(SPEC)
    assert main(["compile", str(spec), "--target", "c", "-o", str(root / "trainer")]) == 0
    subprocess.run(["make", "-s", "-C", str(root / "trainer"), "CFLAGS=-O2"], check=True, capture_output=True)
    done = subprocess.run([str(root / "trainer" / "train"), "--data", data(root / "train", 80, 0), "--save", root / "ckpt"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return spec, root / "ckpt"


def build(folder: Path, flags: str) -> None:
    done = subprocess.run(["make", "-s", "-C", str(folder), f"CFLAGS={flags}", f"LDFLAGS={flags}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def predictions(library: Path, work: Path, embedded: bool, ckpt: Path, x: np.ndarray, flags: str) -> np.ndarray:
    """The library's predictions for x, through a driver program of our own built in ``work``."""
    load, error = ("0", '""') if embedded else (f'flowers_load("{ckpt}") != 0', "flowers_error()")
    work.mkdir()
    (work / "driver.c").write_text(DRIVER.format(stem="flowers", api="flowers", load=load, error=error))
    binary = work / "driver"
    subprocess.run(["cc", "-std=c99", *flags.split(), f"-I{library}", "-o", str(binary), str(work / "driver.c"), str(library / "libflowers.a"), "-lm"],
                   check=True, capture_output=True)
    x.astype(np.float32).tofile(work / "x.bin")
    done = subprocess.run([str(binary), str(len(x)), "unused", str(work / "x.bin"), str(work / "out.bin")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.fromfile(work / "out.bin", np.float32).reshape(len(x), -1)


@pytest.mark.parametrize("embedded", [False, True], ids=["load", "embedded"])
def test_the_library_predicts_what_predict_does_and_is_clean(checkpoint, embedded, tmp_path):
    spec, ckpt = checkpoint
    out = tmp_path / "lib"
    args = ["export", str(spec), "--checkpoint", str(ckpt), "-o", str(out)] + (["--embed-weights"] if embedded else [])
    assert main(args) == 0
    reader = [] if embedded else ["sg_npy.h"]  # an embedded library reads no files
    assert sorted(p.name for p in out.iterdir()) == [".symgraph", "Makefile", "example.c", "flowers.c", "flowers.h", "sg_kernels.h", *reader]
    text = (out / "flowers.c").read_text()
    assert "loss_and_grads" not in text and "sgd_step" not in text and ('#include "sg_npy.h"' in text) != embedded
    build(out, f"{STRICT} {SANITIZE}")
    assert {"libflowers.a", "libflowers.so", "example"} <= {p.name for p in out.iterdir()}
    x = np.load(data(tmp_path / "q", 37, 4, labels=False) / "x.npy")  # 37: batches of 16, 16 and 5
    expected = sg.compile(sg.load(spec), target="numpy").predict({"x": x}, checkpoint=ckpt)["logits"]
    got = predictions(out, tmp_path / "driver", embedded, ckpt, x, f"{STRICT} {SANITIZE}")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    example = subprocess.run([str(out / "example")] + ([] if embedded else [str(ckpt)]), capture_output=True, text=True)
    assert example.returncode == 0 and example.stdout.startswith("logits: "), example.stderr
    assert main(args) == 0  # a folder it wrote (and make built in) may be replaced


def test_embedded_weights_open_no_file(checkpoint, tmp_path):
    """Every call of fopen or open is refused by an interposed library: the
    embedded example still predicts, and the loading one fails cleanly."""
    spec, ckpt = checkpoint
    (tmp_path / "deny.c").write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n"
        "FILE *fopen(const char *p, const char *m) { (void)p; (void)m; write(2, \"fopen\\n\", 6); abort(); }\n"
        "int open(const char *p, int f, ...) { (void)p; (void)f; write(2, \"open\\n\", 5); abort(); }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "deny.so"), str(tmp_path / "deny.c")], check=True, capture_output=True)
    env = {"LD_PRELOAD": str(tmp_path / "deny.so"), "PATH": "/usr/bin:/bin"}
    for embedded in (True, False):
        out = tmp_path / ("embedded" if embedded else "loading")
        assert main(["export", str(spec), "--checkpoint", str(ckpt), "-o", str(out)] + (["--embed-weights"] if embedded else [])) == 0
        build(out, "-O1")
        done = subprocess.run([str(out / "example")] + ([] if embedded else [str(ckpt)]), capture_output=True, text=True, env=env)
        if embedded:
            assert done.returncode == 0 and done.stdout.startswith("logits: "), done.stderr
        else:
            assert done.returncode != 0 and "fopen" in done.stderr  # the interposer does see file access


@pytest.mark.parametrize("case", ["another model", "not a checkpoint", "a foreign folder"])
def test_bad_exports_are_one_line_and_write_nothing(checkpoint, case, tmp_path, capsys):
    spec, ckpt = checkpoint
    out = tmp_path / "lib"
    if case == "another model":
        spec = tmp_path / "other.yaml"
        spec.write_text(SPEC.replace("classes: 3", "classes: 5"))
    if case == "not a checkpoint":
        ckpt = tmp_path
    if case == "a foreign folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    assert main(["export", str(spec), "--checkpoint", str(ckpt), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_load_reports_what_is_wrong(checkpoint, tmp_path):
    spec, ckpt = checkpoint
    assert main(["export", str(spec), "--checkpoint", str(ckpt), "-o", str(tmp_path / "lib")]) == 0
    build(tmp_path / "lib", "-O1")
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    np.save(broken / "W.npy", np.zeros((4, 5), np.float32))
    done = subprocess.run([str(tmp_path / "lib" / "example"), str(broken)], capture_output=True, text=True)
    assert done.returncode == 2 and "W.npy: has the wrong shape" in done.stderr, done.stderr


def test_onnx_export_and_safetensors_from_the_command_line(checkpoint, tmp_path, capsys):
    """The checkpoint's model with its normalisation as ONNX, run in onnxruntime
    on raw inputs; the checkpoint to safetensors and back, which a trainer resumes."""
    ort = pytest.importorskip("onnxruntime")
    spec, ckpt = checkpoint
    assert main(["export", str(spec), "--checkpoint", str(ckpt), "--format", "onnx", "-o", str(tmp_path / "flowers.onnx")]) == 0
    x = np.load(data(tmp_path / "q", 37, 6, labels=False) / "x.npy").astype(np.float32)
    (got,) = ort.InferenceSession(str(tmp_path / "flowers.onnx")).run(None, {"x": x})
    expected = sg.compile(sg.load(spec), target="numpy").predict({"x": x}, checkpoint=ckpt)["logits"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert main(["convert", str(ckpt), "-o", str(tmp_path / "flowers.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "flowers.safetensors"), "-o", str(tmp_path / "back")]) == 0
    again = sg.compile(sg.load(spec), target="numpy").predict({"x": x}, checkpoint=tmp_path / "back")["logits"]
    np.testing.assert_array_equal(again, expected)
    capsys.readouterr()
    assert main(["convert", str(spec), "-o", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "neither a checkpoint folder nor a .safetensors file" in err and err.count("\n") == 1


def test_safetensors_load_into_a_pytorch_module(checkpoint, tmp_path):
    """safetensors.torch.load_file gives a PyTorch module of the same
    architecture weights whose forward equals predict (needs PyTorch)."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    spec, ckpt = checkpoint
    assert main(["convert", str(ckpt), "-o", str(tmp_path / "flowers.safetensors")]) == 0
    tensors = load_file(str(tmp_path / "flowers.safetensors"))
    layer = torch.nn.Linear(4, 3)
    layer.load_state_dict({"weight": tensors["W"].T, "bias": tensors["b"]})
    x = np.load(data(tmp_path / "q", 10, 2, labels=False) / "x.npy").astype(np.float32)
    standard = (torch.from_numpy(x) - tensors["normalize.mean.x"]) / tensors["normalize.std.x"]
    with torch.no_grad():
        got = layer(standard.float()).numpy()
    expected = sg.compile(sg.load(spec), target="numpy").predict({"x": x}, checkpoint=ckpt)["logits"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_model_with_only_id_inputs_exports_cleanly(tmp_path):
    """No float input to standardise: the embedded library has no normalisation tables to leave unused."""
    spec = tmp_path / "ids.yaml"
    spec.write_text("name: tagger\ndims: {batch: 4, vocab: 7}\ninputs: {ids: {shape: [batch, 3], dtype: int}, y: {shape: [batch], dtype: int}}\n"
                    "params: {E: {shape: [vocab, 5]}, W: {shape: [5, 2]}}\n"
                    "graph: {h: 'mean(embedding(E, ids), axis=1)', logits: h @ W, loss: 'cross_entropy(logits, y)'}\nloss: loss\noutputs: [logits]\n")
    model = sg.compile(sg.load(spec), target="numpy")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name, value in model.init_params(3).items():
        np.save(ckpt / f"{name}.npy", value)
    (ckpt / "symgraph-checkpoint.txt").write_text("# a checkpoint of tagger\nE.npy\nW.npy\n")
    for embedded in (True, False):
        out = tmp_path / f"lib_{embedded}"
        assert main(["export", str(spec), "--checkpoint", str(ckpt), "-o", str(out)] + (["--embed-weights"] if embedded else [])) == 0
        build(out, f"{STRICT} {SANITIZE}")
        done = subprocess.run([str(out / "example")] + ([] if embedded else [str(ckpt)]), capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.startswith("logits: "), done.stderr
