"""Execute every lesson and write a rendered copy with its pictures: docs/lessons/NN_topic.html.

    pip install -e ".[lessons]"     # nbconvert comes with JupyterLab
    python lessons/render.py        # a few minutes on one core

The notebooks in git stay without outputs (a test keeps them in step with their .py sources);
these HTML copies are what to publish for reading in a browser. Exercise cells are left open, as
a learner finds them; their checks then print "not done yet".
"""

import pathlib
import tempfile

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

here = pathlib.Path(__file__).resolve().parent
out = here.parent / "docs" / "lessons"
out.mkdir(parents=True, exist_ok=True)
for path in sorted(here.glob("[0-9][0-9]_*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as run_dir:  # the lessons' runs and pictures land here
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": run_dir}}).execute()
    html, _ = HTMLExporter().from_notebook_node(nb)
    dest = out / (path.stem + ".html")
    dest.write_text(html, encoding="utf-8")
    print("wrote", dest.relative_to(here.parent))
