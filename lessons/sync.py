"""Regenerate lessons/NN_*.ipynb (no outputs) from their jupytext percent sources lessons/NN_*.py.

    python lessons/sync.py
"""

import pathlib

import jupytext

here = pathlib.Path(__file__).resolve().parent
for src in sorted(here.glob("[0-9][0-9]_*.py")):
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, src.with_suffix(".ipynb"))
    print("wrote", src.with_suffix(".ipynb").name)
