"""Array code computes through the backend namespace of its inputs, never numpy directly.

A call like `np.zeros(...)` inside array code would silently produce a host array (or fail) when
the inputs live on the GPU. So the source of every module of the package is parsed and every call
of a `numpy` attribute is checked against a short allow-list of host-only uses: dtypes (no arrays
made) and the host random generator (seeds that agree across backends). Two further lists say
where NumPy is the point: HOST_MODULES (whole modules that work on host data by design) and
HOST_FUNCTIONS (functions of array modules that compute on the host on purpose: geometry of
windows and boxes, files, pictures). A new module or function that calls numpy must be put in
one of them, with its reason, or use `xp = get_array_module(x)`.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "overfeat_np"
ALLOWED = {"dtype", "float32", "float64", "int32", "int64", "random.default_rng"}

HOST_MODULES = {
    "backend": "where host and device meet (to_numpy)",
    "cupy_double": "the CPU double of CuPy is NumPy underneath",
    "memory": "the allocator, no arrays",
    "data": "images, boxes and batches on the host, before they cross",
    "boxes": "box geometry on host arrays (inputs are moved to the host first)",
    "merge": "greedy merge and NMS on host boxes",
    "metrics": "scores of results on the host",
    "grid": "where windows lie: integer geometry",
    "scales": "which sizes to run: arithmetic on sizes and statistics of boxes",
    "detect": "merges and reports host boxes after one copy of each scale's maps",
    "accounting": "shape arithmetic",
    "gradcheck": "float64 finite differences on the host by design",
    "serialization": "files",
    "checkpoint": "files",
    "weights": "files of the original release",
    "viz": "pictures", "viz_dense": "pictures", "showcase": "pictures", "demo": "pictures and summaries",
    "cli": "command-line input and output",
    "exercises": "the lessons' exercises: NumPy reference answers for a learner to compare with",
}

HOST_FUNCTIONS = {  # module -> functions of array modules that compute on host data on purpose
    "optim": {"state_dict"},  # velocities saved to a file
    "preprocess": {"resize", "resize_boxes", "to_input"},  # images before they cross
    "regressor": {"window_overlap", "regression_targets", "location_boxes", "save_regressor"},
    "localize": {"subset", "_scaled_sample", "_windows_of_batch", "window_samples", "predict_boxes",
                 "ground_truth", "centre_box_error", "box_iou", "_buffer_set"},  # host ids of windows
    "detect_train": {"assign_targets", "detection_targets", "_to_device", "train_detector"},
    "multiscale": {"classify_multiscale", "ten_views", "top_k"},  # votes on host maps
    "distributed": {"sum_values", "allreduce_mean"},  # logged numbers over MPI; bucket sizes
}


def numpy_calls(source: str, host_functions=frozenset()) -> list[tuple[int, str]]:
    """(line, dotted name) of every call `np.<name>(...)` / `numpy.<name>(...)` not allowed,
    outside the (top-level or method) functions named in `host_functions`."""
    tree = ast.parse(source)
    aliases = {"numpy"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "numpy"}
        if isinstance(node, ast.ImportFrom) and node.module == "numpy":
            return [(node.lineno, "from numpy import ...")]
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in host_functions:
            skip |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in skip:
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


def _modules():
    """(dotted name, path) of every module of the package outside HOST_MODULES."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        if name.split(".")[0] not in HOST_MODULES:
            out.append((name, path))
    return out


ARRAY_MODULES = _modules()


def test_the_lists_name_real_modules_and_cover_the_array_code():
    names = {n.split(".")[0] for n, _ in ARRAY_MODULES} | set(HOST_MODULES)
    top = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert set(HOST_MODULES) <= top and set(HOST_FUNCTIONS) <= top
    assert {"im2col", "functional", "layers", "losses", "optim", "models", "dense", "train", "regressor",
            "localize", "detect_train", "multiscale", "preprocess"} <= {n for n, _ in ARRAY_MODULES}
    assert names >= top - {"__init__", "__main__"}


@pytest.mark.parametrize("module,path", ARRAY_MODULES, ids=[n for n, _ in ARRAY_MODULES])
def test_array_modules_do_not_call_numpy_for_array_maths(module, path):
    host = HOST_FUNCTIONS.get(module, set())
    bad = numpy_calls(path.read_text(), host)
    assert not bad, (f"{module} calls numpy directly at {bad}: use xp = get_array_module(x) "
                     "(overfeat_np.backend) so the code also runs on CuPy, or list the function in "
                     "HOST_FUNCTIONS with its reason")


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


def test_host_functions_are_exempt_and_only_they():
    src = "import numpy as np\ndef host(x):\n    return np.stack(x)\ndef dev(x):\n    return np.stack(x)\n"
    assert numpy_calls(src, {"host"}) == [(5, "stack")]
