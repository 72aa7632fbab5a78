"""The ``symgraph`` command line: compile, grad, check, draw, report, plot."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .errors import BuildError, SpecError


def build_parser() -> argparse.ArgumentParser:
    """Every command and flag (the CLI reference is written from it)."""
    parser = argparse.ArgumentParser(prog="symgraph", description="Compile computation graphs into standalone trainers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="write a standalone trainer")
    p.add_argument("spec", help="the model's YAML spec")
    p.add_argument("--target", choices=("numpy", "c"), default="numpy", help="the generated language")
    p.add_argument("-o", "--out", help="output folder (default generated/<name>/<target>/)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="the precision of every array")
    p.add_argument("--report", action="store_true", help="print the C target's memory plan")
    p.add_argument("--max-memory", metavar="SIZE", help="refuse a model planned to need more (e.g. 2G; default: the memory available now)")

    p = sub.add_parser("grad", help="print each derived gradient, simplified")
    p.add_argument("spec", help="the model's YAML spec")
    p.add_argument("--wrt", action="append", help="a param (repeatable; default: all)")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of text")

    p = sub.add_parser("check", help="finite-difference check of the generated code")
    p.add_argument("spec", help="the model's YAML spec")
    p.add_argument("--target", choices=("numpy", "c", "all"), default="numpy", help="which generated code to check")
    p.add_argument("--verbose", action="store_true", help="say whether the C build was reused, and why")

    p = sub.add_parser("draw", help="draw the graph (and its gradient graph with --grad)")
    p.add_argument("spec", help="the model's YAML spec")
    p.add_argument("-o", "--out", help="FILE.svg, FILE.png or FILE.dot (default <name>.dot)")
    p.add_argument("--grad", action="store_true", help="draw the gradient graph too")

    p = sub.add_parser("report", help="write one self-contained HTML page: drawing, spec, gradients, code, memory plan, gradient check")
    p.add_argument("spec", help="the model's YAML spec")
    p.add_argument("-o", "--out", help="FILE.html (default <name>.html)")

    p = sub.add_parser("plot", help="draw loss and metric per epoch from a trainer's --log CSV")
    p.add_argument("log", help="a trainer's --log CSV file")
    p.add_argument("-o", "--out", help="FILE.png, .svg or .pdf (default: the log's name with .png)")

    p = sub.add_parser("export", help="a trained model as a forward-only C library (or an ONNX model)")
    p.add_argument("spec", help="the model's YAML spec")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder a trainer saved")
    p.add_argument("-o", "--out", required=True, help="the library's folder (c), or FILE.onnx (onnx)")
    p.add_argument("--format", choices=("c", "onnx"), default="c", help="what to write")
    p.add_argument("--embed-weights", action="store_true", help="c: compile the weights in, so the library opens no file")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="c: the precision of every array")

    p = sub.add_parser("convert", help="a checkpoint to safetensors, or safetensors to a checkpoint")
    p.add_argument("source", help="a checkpoint folder, or a .safetensors file")
    p.add_argument("-o", "--out", required=True, help="FILE.safetensors, or the checkpoint folder to write")

    p = sub.add_parser("ops", help="every op a spec may call, with its signature; or one op's meaning")
    p.add_argument("name", nargs="?", help="an op's name: print its reference page")

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BuildError as exc:  # the C compiler or the build cache
        lines = str(exc).splitlines()
        detail = next((line for line in lines[1:] if "error" in line), "")
        print(f"error: {one_line(lines[0] + ' ' + detail)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # symgraph ... | head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 0


def one_line(text: str) -> str:
    return " ".join(text.split())


def load(spec: str):
    from .spec import load as load_spec

    return load_spec(Path(spec))


def cmd_compile(args) -> int:
    from .codegen import build_program, check_output, render, write_atomically
    from .codegen.c import check_memory
    from .codegen.memory import parse_size

    g = load(args.spec)
    out = Path(args.out) if args.out else Path("generated") / g.name / args.target
    check_output(out)  # before any work
    try:
        limit = parse_size(args.max_memory) if args.max_memory else None
    except ValueError as exc:
        raise SpecError(str(exc), node="--max-memory", source=args.spec) from None
    program = build_program(g, args.dtype)
    check_memory(program, limit)
    files = render(program, args.target)
    write_atomically(files, out)
    print(f"wrote {', '.join(sorted(files))} to {out}")
    if args.report:
        from .codegen.c import memory_report

        print(memory_report(program))
    return 0


def cmd_grad(args) -> int:
    from .explain import explain

    result = explain(load(args.spec), args.wrt)
    print(result.latex() if args.latex else result.text())
    return 0


def cmd_check(args) -> int:
    from .gradcheck import gradcheck

    g = load(args.spec)
    targets = ("numpy", "c") if args.target == "all" else (args.target,)
    ok = True
    for target in targets:
        with tempfile.TemporaryDirectory() as tmp:
            from .compiler import compile as compile_graph

            model = compile_graph(g, target=target, out_dir=Path(tmp) / target, dtype="float64", verbose=args.verbose)
            report = gradcheck(g, target=target, model=model)
        print(report)
        ok &= report.ok
    return 0 if ok else 1


def cmd_draw(args) -> int:
    from .draw import INSTALL_HINT, drawing, have_dot, render

    g = load(args.spec)
    out = Path(args.out or f"{g.name}.dot")
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("dot", "svg", "png"):
        raise SpecError(f"unknown drawing format {out.suffix!r} (use .svg, .png or .dot)", node="draw", source=args.spec)
    check_file_output(out)
    text = drawing(g, grad=args.grad)
    if fmt != "dot" and not have_dot():
        out = check_file_output(out.with_suffix(".dot"))
        print(f"Graphviz 'dot' is not installed, so this writes {out} instead; {INSTALL_HINT}", file=sys.stderr)
        fmt = "dot"
    write_file(out, text.encode() if fmt == "dot" else render(text, fmt))
    print(f"wrote {out}")
    return 0


# How the files these commands write begin: an existing file at -o is replaced
# only when it begins so (a spec, a log or data are never overwritten).
SIGNATURES = {
    ".dot": (b"digraph ",), ".svg": (b"<?xml", b"<svg"), ".png": (b"\x89PNG",), ".pdf": (b"%PDF",),
    ".html": (b"<!DOCTYPE html>",),
}


def check_file_output(out: Path, option: str = "-o") -> Path:
    """Refuse, before any work, an output path that is not a file of the kind
    this command writes: a folder, a link, or a file that begins otherwise."""
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise SpecError("is not a regular file; choose another output", node=option, source=str(out))
    if out.exists():
        try:
            with open(out, "rb") as handle:
                start = handle.read(64)
        except OSError as exc:
            raise SpecError(f"cannot be read: {exc.strerror}", node=option, source=str(out)) from None
        if not start.startswith(SIGNATURES.get(out.suffix.lower(), ())):
            raise SpecError(f"exists and is not a {out.suffix or 'file'} that symgraph wrote; choose another output", node=option, source=str(out))
    return out


def write_file(out: Path, data: bytes) -> None:
    """Write ``out`` whole or not at all: a temporary file, then a rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        from .codegen import umask

        os.chmod(tmp, 0o666 & ~umask())  # mkstemp's file is private; the result is an ordinary file
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def cmd_report(args) -> int:
    from .report import report

    g = load(args.spec)
    out = check_file_output(Path(args.out or f"{g.name}.html"))
    text = report(g, Path(args.spec).read_text(encoding="utf-8"))
    write_file(out, text.encode())
    print(f"wrote {out}")
    return 0


def cmd_plot(args) -> int:
    from .plot import plot

    out = check_file_output(Path(args.out) if args.out else Path(args.log).with_suffix(".png"))
    write_file(out, plot(Path(args.log), out.suffix.lstrip(".").lower()))
    print(f"wrote {out}")
    return 0


def cmd_ops(args) -> int:
    from .ops.registry import REGISTRY, signature, unknown_op

    public = sorted(n for n, op in REGISTRY.items() if op.public)
    if args.name is None:
        width = max(len(signature(REGISTRY[n])) for n in public)
        for name in public:
            print(f"{signature(REGISTRY[name]):<{width}}  {REGISTRY[name].doc}")
        return 0
    if args.name not in public:
        raise SpecError(unknown_op(args.name), node="ops")
    from .reference import op_section

    print(op_section(REGISTRY[args.name], markdown=False))
    return 0


def cmd_export(args) -> int:
    g = load(args.spec)
    if args.format == "onnx":
        from .interchange import export_onnx_file

        export_onnx_file(g, args.checkpoint, args.out)
    else:
        from .export import export_library

        export_library(g, args.checkpoint, args.out, args.embed_weights, args.dtype)
    print(f"wrote {args.out}")
    return 0


def cmd_convert(args) -> int:
    from .interchange import convert

    convert(args.source, args.out)
    print(f"wrote {args.out}")
    return 0


COMMANDS = {"ops": cmd_ops, "export": cmd_export, "convert": cmd_convert, "compile": cmd_compile, "grad": cmd_grad, "check": cmd_check, "draw": cmd_draw, "report": cmd_report, "plot": cmd_plot}

if __name__ == "__main__":
    sys.exit(main())
