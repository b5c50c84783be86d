"""The package's imports run one way: from the command line down to the arrays, never in a circle.

FLOORS is the README's ARCHITECTURE section as data. A module may import modules on its own floor
or below, never above; a new module must be given a floor here (and in the README) to pass.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "overfeat_np"

FLOORS = {
    # 1 arrays: where numbers live and how they move
    "backend": 1, "memory": 1, "blas": 1, "cupy_double": 1,
    # 2 maths: layers with hand-written backward, losses, SGD, gradient checks, boxes, metrics
    "im2col": 2, "functional": 2, "layers": 2, "losses": 2, "optim": 2, "gradcheck": 2,
    "boxes": 2, "merge": 2, "metrics": 2, "distributed": 2, "exercises": 2,
    # 3 data: images, data sets, transforms, the loader
    "data": 3,
    # 4 networks: architecture, where a dense pass looks, counting, files
    "models": 4, "grid": 4, "accounting": 4, "serialization": 4, "checkpoint": 4, "weights": 4,
    # 5 the sliding-window engine: images to inputs, scales, dense passes
    "preprocess": 5, "scales": 5, "dense": 5,
    # 6 tasks: classification, localization, detection, training
    "multiscale": 6, "regressor": 6, "localize": 6, "detect": 6, "detect_train": 6, "train": 6,
    # 7 pictures and the demo
    "viz": 7, "viz_dense": 7, "showcase": 7, "demo": 7,
    # 8 the command line
    "cli": 8, "__main__": 8,
}


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _imports(path: pathlib.Path) -> set:
    """Package-internal modules imported by the file at `path`, as dotted names under overfeat_np."""
    here = _module_name(path).split(".") if _module_name(path) else []
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "overfeat_np":
                target = node.module.split(".")[1:]
            else:
                continue
            if node.module is None:  # `from . import x`: each name is a module
                out.update(".".join(target + [a.name]) for a in node.names)
            else:
                out.add(".".join(target))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "overfeat_np":
                    out.add(".".join(a.name.split(".")[1:]))
    return {m for m in out if m}


GRAPH = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py")) if _module_name(p)}


def _floor(module: str) -> int:
    return FLOORS[module.split(".")[0]]


def test_every_module_has_a_floor():
    missing = sorted({m.split(".")[0] for m in GRAPH} - set(FLOORS))
    assert not missing, f"give these modules a floor in FLOORS and the README's ARCHITECTURE: {missing}"
    assert not set(FLOORS) - {m.split(".")[0] for m in GRAPH}, "FLOORS names a module that does not exist"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_from_a_higher_floor(module):
    up = sorted(t for t in GRAPH[module] if _floor(t) > _floor(module))
    assert not up, f"{module} (floor {_floor(module)}) imports higher floors: " + \
        ", ".join(f"{t} ({_floor(t)})" for t in up)


def _cycle(graph):
    """One import circle of `graph` (list of modules), or None."""
    state = {}

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            t = t if t in graph else next((g for g in graph if g == t or t.startswith(g + ".")), t)
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t in graph and not state.get(t):
                found = visit(t, path + [t])
                if found:
                    return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if not state.get(m):
            found = visit(m, [m])
            if found:
                return found
    return None


def test_no_import_circle():
    assert _cycle(GRAPH) is None, f"import circle: {' -> '.join(_cycle(GRAPH))}"


def test_the_checks_can_fail():
    # the same checks on graphs with a circle and an upward import must complain
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _floor("dense") < _floor("cli") and _floor("data.folders") == _floor("data")
