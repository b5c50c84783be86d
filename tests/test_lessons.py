"""Every lesson notebook runs top to bottom, and matches its paired jupytext source."""

import pathlib

import nbformat
import pytest

LESSONS = pathlib.Path(__file__).resolve().parent.parent / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))


def test_every_lesson_has_a_notebook():
    sources = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.py"))
    assert sources, "no lessons found"
    assert sources == [p.stem for p in NOTEBOOKS], "run `python lessons/sync.py` to regenerate notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_in_sync_with_source(path):
    import jupytext

    src = jupytext.read(path.with_suffix(".py"))
    nb = nbformat.read(path, as_version=4)
    assert [c.source for c in src.cells] == [c.source for c in nb.cells], (
        f"{path.name} is out of date with {path.with_suffix('.py').name}: run `python lessons/sync.py`"
    )
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} has committed outputs: run `python lessons/sync.py`"
    )


@pytest.mark.lesson
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lesson_runs(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    # Lessons write their pictures and checkpoints into the working directory.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
