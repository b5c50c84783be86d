"""Regenerate lessons/NN_*.ipynb (no outputs) from their jupytext percent sources lessons/NN_*.py.

    python lessons/sync.py

Cell ids are numbered, not random, so regenerating an unchanged lesson changes no file.
"""

import pathlib

import jupytext
import nbformat

here = pathlib.Path(__file__).resolve().parent
for src in sorted(here.glob("[0-9][0-9]_*.py")):
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
    dest = src.with_suffix(".ipynb")
    text = nbformat.writes(nb)
    if not dest.exists() or dest.read_text() != text:
        dest.write_text(text)
        print("wrote", dest.name)
