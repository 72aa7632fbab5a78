"""Code generation: graphs -> standalone NumPy and C sources, through Jinja2 templates."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import jinja2

from ..errors import SpecError
from ..ir import collector_paused
from .program import Program, build_program

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
if not TEMPLATES.is_dir():  # running from a source checkout: the top-level folder
    TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


@collector_paused
def render(program: Program, target: str) -> dict[str, str]:
    """File name -> text for one target."""
    if target == "c":
        from .c import render_files
    elif target == "numpy":
        from .numpy import render_files
    else:
        raise SpecError(f"unknown target {target!r} (use numpy or c)", node="target", source=program.graph.source)
    return render_files(program, ENV)


def write_atomically(files: dict[str, str], out_dir: str | Path) -> Path:
    """Write all files into ``out_dir`` at once: a temporary folder, then a rename.

    An existing ``out_dir`` is replaced only after every file was written, so
    an interrupted compile never leaves a half-written trainer.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "previous")
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


__all__ = ["Program", "build_program", "render", "write_atomically"]
