"""The committed generated trainers are what the compiler produces now."""

from __future__ import annotations

from pathlib import Path

from symgraph.regenerate import expected_files

ROOT = Path(__file__).resolve().parents[1]


def test_generated_folder_is_up_to_date():
    expected = expected_files(ROOT)
    committed = {
        p.relative_to(ROOT / "generated"): p.read_text()
        for p in (ROOT / "generated").rglob("*")
        if p.is_file() and p.name != "train"  # a C trainer built in place with make
    }
    assert sorted(committed) == sorted(expected), "run `make generated`"
    stale = [str(p) for p, text in expected.items() if committed[p] != text]
    assert not stale, f"stale generated files (run `make generated`): {stale}"
