"""Regenerate the committed trainers: ``python -m symgraph.regenerate [ROOT]``.

Every ``examples/*.yaml`` is compiled for every target into
``generated/<name>/<target>/``; a test checks the committed files match.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .codegen import build_program, render, with_manifest, write_atomically
from .spec import load

TARGETS = ("numpy", "c")


def expected_files(root: Path) -> dict[Path, str]:
    """Relative path under ``generated/`` -> text, for every example and target."""
    files = {}
    for spec in sorted((root / "examples").glob("*.yaml")):
        g = load(spec)
        g.source = f"examples/{spec.name}"
        for target in TARGETS:
            for name, text in with_manifest(render(build_program(g), target)).items():
                files[Path(g.name) / target / name] = text
    return files


def main(root: Path) -> int:
    by_folder: dict[Path, dict[str, str]] = {}
    for path, text in expected_files(root).items():
        by_folder.setdefault(path.parent, {})[path.name] = text
    for folder, files in by_folder.items():
        write_atomically(files, root / "generated" / folder)
        print(f"wrote generated/{folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()))
