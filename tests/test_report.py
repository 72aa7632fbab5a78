"""Drawings, notebook display, the HTML report (rendered in headless Chromium) and training plots."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

import symgraph as sg
from symgraph.autodiff import differentiate
from symgraph.cli import main
from symgraph.draw import drawing, have_dot
from symgraph.passes import CODEGEN, optimize

from conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"


def svg_node_titles(svg: bytes | str) -> set[str]:
    root = ET.fromstring(svg)
    return {g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("class") == "node"}


def test_draw_svg_parses_and_holds_every_node(tmp_path):
    require_tool("dot", "graphviz")
    out = tmp_path / "mlp.svg"
    assert main(["draw", str(ROOT / "examples" / "mlp.yaml"), "-o", str(out), "--grad"]) == 0
    gg = optimize(differentiate(sg.load(ROOT / "examples" / "mlp.yaml")), CODEGEN)
    assert svg_node_titles(out.read_bytes()) == set(gg.nx)
    png = tmp_path / "mlp.png"
    assert main(["draw", str(ROOT / "examples" / "mlp.yaml"), "-o", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_drawing_kinds_and_fused_clusters():
    g = sg.load(ROOT / "examples" / "digits_mlp.yaml")
    text = drawing(g, grad=True)
    style = dict(re.findall(r'"(\w+)" \[label="[^"]*", (.*)\];', text))
    assert "fde68a" in style["W1"] and "dbeafe" in style["x"]  # param, input
    assert "doubleoctagon" in style["loss"]
    assert "peripheries=2" in style["dW1"] and "peripheries=2" not in style["dh"]  # gradient vs other backward
    assert "dcfce7" in style["dh"] and "dcfce7" not in style["h_2"]
    # relu's derivative and the products around it run in one C loop: one cluster holds them
    cluster = re.search(r'subgraph "cluster_fused_\d+" \{\n    label="fused: dh_2";.*?\n  \}', text, re.S)
    assert cluster and '\\nstep\\n' in cluster.group(0) and '"dh_2" [label="dh_2\\nmul' in cluster.group(0)
    # the graph the generated code runs, lowered ops included
    assert "softmax_cross_entropy_grad" in text and '"h_2" [label="h_2\\nmatmul_bias' in text


def test_draw_without_graphviz_writes_dot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("symgraph.draw.have_dot", lambda: False)
    assert main(["draw", str(ROOT / "examples" / "slide.yaml"), "-o", str(tmp_path / "slide.svg")]) == 0
    assert "apt install graphviz" in capsys.readouterr().err
    assert not (tmp_path / "slide.svg").exists()
    assert (tmp_path / "slide.dot").read_text().startswith('digraph "slide"')


def test_notebook_display():
    g = sg.load(ROOT / "examples" / "slide.yaml")
    if have_dot() or os.environ.get("SYMGRAPH_REQUIRE_TOOLS"):
        assert svg_node_titles(g._repr_svg_()) == set(g.nx)
    else:
        assert g._repr_svg_() is None
    latex = sg.explain(g)._repr_latex_()
    assert latex.startswith("$$") and r"\frac{\partial L}{\partial c} &= a + 2 b = 5" in latex


def chromium(args: list[str], url: str) -> subprocess.CompletedProcess:
    """Headless Chromium with no network, no first-run work and a fresh profile."""
    browser = require_tool("chromium", "chromium")
    with tempfile.TemporaryDirectory() as profile:
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}",
        ]
        return subprocess.run([browser, *flags, *args, url], capture_output=True, timeout=120, check=True)


def distinct_rows(png: bytes) -> int:
    """How many different scanlines a PNG has (a blank page has one or two)."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, data, width = 8, b"", 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, _, depth, colour = struct.unpack(">IIBB", body[:10])
            channels = {2: 3, 6: 4, 0: 1, 4: 2}[colour]
            stride = 1 + width * channels * depth // 8
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    raw = zlib.decompress(data)
    return len({raw[i:i + stride] for i in range(0, len(raw), stride)})


@pytest.mark.parametrize("example, params", [("slide", ["a", "b", "c"]), ("mlp", ["W1", "b1", "W2", "b2"])])
def test_report_renders_in_chromium(tmp_path, example, params):
    require_tool("dot", "graphviz")
    page = tmp_path / f"{example}.html"
    assert main(["report", str(ROOT / "examples" / f"{example}.yaml"), "-o", str(page)]) == 0
    html = page.read_text()
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched
    dom = chromium(["--dump-dom"], page.as_uri()).stdout.decode()
    assert re.findall(r'<div class="gradient" data-param="(\w+)"><math', dom) == params
    assert "<svg" in dom
    screenshot = tmp_path / "page.png"
    chromium(["--window-size=1000,1600", f"--screenshot={screenshot}"], page.as_uri())
    assert distinct_rows(screenshot.read_bytes()) > 200
    if example == "slide":
        # the lecture: the graph, the three derivatives and their values, the commented backward code
        assert svg_node_titles(html[html.index("<svg"):html.index("</svg>") + 6]) >= {"a", "b", "c", "d", "e", "L", "db"}
        for leaf, value in zip(params, ("-2", "-4", "5")):
            math = re.search(rf'data-param="{leaf}">(.*?)</math>', html, re.S).group(1)
            assert math.endswith(f"<mo>=</mo><mn>{value}</mn></mrow>")
        assert "# dL/db = 2*dL/dd   [d(2*b)/db]" in html
        assert re.search(r"<td>c</td>.*<td class=\"ok\">ok</td>", html)


def test_plot_draws_a_trainer_log(tmp_path):
    pytest.importorskip("matplotlib")
    log = tmp_path / "digits.csv"
    subprocess.run(
        [sys.executable, str(ROOT / "generated" / "slide" / "numpy" / "train.py"), "--epochs", "3", "--log", str(log)],
        check=True, capture_output=True,
    )
    assert main(["plot", str(log), "-o", str(tmp_path / "curve.png")]) == 0
    assert distinct_rows((tmp_path / "curve.png").read_bytes()) > 50
    assert main(["plot", str(log), "-o", str(tmp_path / "curve.svg")]) == 0
    ET.fromstring((tmp_path / "curve.svg").read_bytes())


def test_plot_errors_are_one_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,loss\n1,2\n")
    assert main(["plot", str(bad), "-o", str(tmp_path / "x.png")]) == 2
    assert "not a trainer log" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text("epoch,train_loss,val_loss,val_rmse,lr,grad_norm,examples_per_second\n1,0.5,,,0.1,,100\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main(["plot", str(good), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'symgraph[plot]'" in err
    assert not (tmp_path / "x.png").exists()
