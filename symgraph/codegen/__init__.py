"""Code generation: graphs -> standalone NumPy and C sources, through Jinja2 templates."""

from __future__ import annotations

import contextlib
import fcntl
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


MANIFEST = ".symgraph"  # in every folder compile writes: what it wrote, so that a later compile may replace it
BUILT_IN_PLACE = frozenset({"train", "example", "__pycache__"})  # what make and Python add to a generated folder
BUILT_SUFFIXES = (".o", ".a", ".so")  # and what make builds from an exported library


def with_manifest(files: dict[str, str]) -> dict[str, str]:
    """The files of a generated folder, with the manifest that lists them."""
    listed = "".join(f"{name}\n" for name in sorted(files) if name != MANIFEST)
    header = "# Written by symgraph compile, which replaces this folder when it finds these files and no others.\n"
    return {**files, MANIFEST: header + listed}


def check_output(out_dir: str | Path) -> Path:
    """``out_dir`` as an absolute path, if a compile may write it: a folder that
    does not exist, an empty one, or one that holds only what a compile wrote
    there (its manifest says what) and what was built from it. Anything else
    is a SpecError naming the folder, before any work is done. The check holds
    the lock that writers take (see ``write_atomically``): a compile replacing
    the folder meanwhile could pair one result's files with another's manifest."""
    parent = Path(os.path.abspath(out_dir)).parent
    if not parent.is_dir():
        return checked_output(out_dir)
    with locked(parent):
        return checked_output(out_dir)


def checked_output(out_dir: str | Path) -> Path:
    """``check_output`` for a caller that holds the lock on the parent folder."""
    out = Path(os.path.abspath(out_dir))
    where = str(out_dir)

    def refuse(why: str):
        raise SpecError(f"{why}; choose another -o folder (compile replaces only a folder it wrote)", node="-o", source=where)

    if out.is_symlink():
        refuse("is a symbolic link")
    if not out.exists():
        return out
    if not out.is_dir():
        refuse("is a file, not a folder")
    here = Path(os.path.abspath(os.getcwd()))
    if out == here or out in here.parents:
        refuse("is the current folder or holds it")
    entries = sorted(entry.name for entry in out.iterdir())
    listed: set[str] = set()  # without a manifest, every file is someone else's
    if MANIFEST in entries:
        try:
            text = (out / MANIFEST).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            refuse(f"has a manifest that cannot be read ({exc.__class__.__name__})")
        listed = {line for line in text.splitlines() if line and not line.startswith("#")} | BUILT_IN_PLACE
    foreign = [name for name in entries if name != MANIFEST and name not in listed and not (listed and name.endswith(BUILT_SUFFIXES))]
    if foreign:
        refuse(f"holds files symgraph did not write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})")
    return out


@contextlib.contextmanager
def locked(folder: Path):
    """An exclusive lock on ``folder`` (flock on the folder itself: no lock file is left behind)."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(files: dict[str, str], out_dir: str | Path) -> Path:
    """Write all files, with their manifest, into ``out_dir`` at once: a
    temporary folder, then a rename.

    ``out_dir`` must be one that ``check_output`` accepts (checked again here,
    under a lock on its parent folder, so that concurrent compiles to one
    folder each find a complete result and leave nothing else behind). An
    existing folder is replaced only after every file was written, so an
    interrupted compile never leaves a half-written trainer. The folder
    honours the umask.
    """
    out = check_output(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.parent):
        out = checked_output(out_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            for name, text in with_manifest(files).items():
                (staging / name).write_text(text, encoding="utf-8")
            os.chmod(staging, 0o777 & ~umask())
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


__all__ = ["MANIFEST", "Program", "build_program", "check_output", "render", "umask", "with_manifest", "write_atomically"]
