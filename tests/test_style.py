"""The layer modules compute through the backend namespace of their inputs, never numpy directly.

A call like `np.zeros(...)` inside a layer would silently produce a host array (or fail) when the
inputs live on the GPU. So the source of every layer module is parsed and every call of a
`numpy` attribute is checked against a short allow-list of host-only uses: dtypes (no arrays
made) and the host random generator (drawn on the host on purpose so seeds agree across backends).
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "overfeat_np"
LAYER_MODULES = ["im2col.py", "functional.py", "layers.py", "losses.py"]
ALLOWED = {"dtype", "float32", "float64", "int32", "int64", "random.default_rng"}


def numpy_calls(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every call `np.<name>(...)` / `numpy.<name>(...)` not allowed."""
    tree = ast.parse(source)
    aliases = {"numpy"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "numpy"}
        if isinstance(node, ast.ImportFrom) and node.module == "numpy":
            return [(node.lineno, "from numpy import ...")]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts, f = [], node.func
        while isinstance(f, ast.Attribute):
            parts.append(f.attr)
            f = f.value
        if isinstance(f, ast.Name) and f.id in aliases and parts:
            name = ".".join(reversed(parts))
            if name not in ALLOWED:
                found.append((node.lineno, name))
    return found


@pytest.mark.parametrize("module", LAYER_MODULES)
def test_layer_modules_do_not_call_numpy_for_array_maths(module):
    bad = numpy_calls((PACKAGE / module).read_text())
    assert not bad, (f"{module} calls numpy directly at {bad}: use xp = get_array_module(x) "
                     "(overfeat_np.backend) so the code also runs on CuPy")


@pytest.mark.parametrize("snippet,expected", [
    ("import numpy as np\ndef f(x):\n    return np.zeros_like(x)\n", [(3, "zeros_like")]),
    ("import numpy\ny = numpy.linalg.norm(x)\n", [(2, "linalg.norm")]),
    ("import numpy as onp\ny = onp.maximum(a, 0, out=a)\n", [(2, "maximum")]),
    ("from numpy import zeros\n", [(1, "from numpy import ...")]),
    ("import numpy as np\nr = np.random.default_rng(0)\nt = np.dtype('float32')\n", []),
    ("import numpy as np\nxp = get_array_module(x)\ny = xp.zeros(3)\nz = np.float32\n", []),
])
def test_the_checker_flags_offending_snippets(snippet, expected):
    assert numpy_calls(snippet) == expected
