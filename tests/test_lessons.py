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


# Lessons with exercise cells: the suite runs them with the package's reference solution filled in
# (overfeat_np.exercises.solution_<name>), so each check must then say "correct".
EXERCISES = {"01": 1, "02": 1, "06": 1}


def fill_in_exercises(nb) -> int:
    """Replace each `def my_<name>(...)` body between START/END OF YOUR CODE with a call of
    `overfeat_np.exercises.solution_<name>`, and make the check cell assert success."""
    count = 0
    for cell in nb.cells:
        src = cell.source
        if cell.cell_type == "code" and "# START OF YOUR CODE" in src and src.startswith("def my_"):
            head = src.split("\n", 1)[0]  # def my_name(a, b, c=1):
            name, params = head[len("def my_"):].split("(", 1)
            args = ", ".join(p.split("=")[0].strip() for p in params.rsplit(")", 1)[0].split(","))
            before, rest = src.split("    # START OF YOUR CODE", 1)
            after = rest.split("    # END OF YOUR CODE", 1)[1]
            cell.source = (f"{before}    from overfeat_np.exercises import solution_{name}\n"
                           f"    return solution_{name}({args})\n{after}")
            count += 1
        elif cell.cell_type == "code" and src.startswith("print(check_"):
            cell.source = f"_result = {src[len('print('):-1]}\nprint(_result)\nassert _result.startswith('correct')"
    return count


BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@pytest.mark.lesson
@pytest.mark.parametrize("threads", ["pinned", "default"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_lesson_runs(path, threads, tmp_path, monkeypatch):
    """Each lesson passes with one BLAS thread (as the rest of the suite) and with the BLAS's own
    default (all cores, next to the other test worker: a busy machine), so no lesson depends on
    the thread count to pass."""
    from nbclient import NotebookClient

    monkeypatch.setenv("MPLBACKEND", "Agg")
    for var in BLAS_VARS:  # the kernel inherits this environment
        if threads == "pinned":
            monkeypatch.setenv(var, "1")
        else:
            monkeypatch.delenv(var, raising=False)
    nb = nbformat.read(path, as_version=4)
    filled = fill_in_exercises(nb)
    assert filled == EXERCISES.get(path.stem[:2], 0), f"{path.name}: {filled} exercise cells filled in"
    # Lessons write their pictures and checkpoints into the working directory.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
