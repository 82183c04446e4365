"""The package's shape: no import circle, no module importing from a layer above it, old import paths alive."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nnkscope"

# lower layers first; a module may import from its own layer or any layer below it
LAYERS = [
    {"errors", "_version", "_validate", "_runtime", "io", "executor"},
    {"engine"},
    {"measures", "similarity"},
    {"nn"},
    {"store"},
    {"studies"},
    {"report"},
    {"cli", "analyze", "__main__"},
]
EXEMPT = {"nnkscope", "nnkscope._compat"}  # the package's front door and the old-path aliases import everything


def _module_name(path: Path) -> str:
    parts = ["nnkscope", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every nnkscope module this file imports, at module level or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("nnkscope"):
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                sub = f"{mod}.{alias.name}"
                out.add(sub if _exists(sub) else mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("nnkscope"))
    out.discard(name)
    return out


def _exists(mod: str) -> bool:
    rel = Path(*mod.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def _layer(mod: str) -> int:
    top = mod.split(".")[1] if "." in mod else ""
    for i, members in enumerate(LAYERS):
        if top in members:
            return i
    raise AssertionError(f"{mod} belongs to no layer; add it to LAYERS in {__file__}")


def test_no_import_circle():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index and v not in EXEMPT:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


def test_no_import_from_a_layer_above():
    climbs = [f"{mod} -> {dep}" for mod, deps in _graph().items() if mod not in EXEMPT
              for dep in deps if dep not in EXEMPT and dep != "nnkscope" and _layer(dep) > _layer(mod)]
    assert not climbs, "imports that climb a layer:\n" + "\n".join(sorted(climbs))


def test_no_top_level_package_import_inside_the_package():
    bad = [mod for mod, deps in _graph().items() if mod not in EXEMPT and "nnkscope" in deps]
    assert not bad, f"modules importing the package itself (a hidden cycle through __init__): {bad}"


@pytest.mark.parametrize("old, names", [
    ("nnkscope.graph", ["NNKGraph", "nnk_graph", "knn_graph", "symmetrize", "RULES"]),
    ("nnkscope.kernels", ["Kernel", "gaussian_kernel", "cosine_kernel", "local_problems"]),
    ("nnkscope.solvers", ["solve_nnk", "solve_candidates", "kkt_violation"]),
    ("nnkscope.neighbors", ["knn", "Neighbors", "ExactSearch", "HNSWSearch", "IVFSearch"]),
    ("nnkscope.gpu", ["TorchSearch"]),
    ("nnkscope.blocked", ["RowSource", "GraphParts", "build_graph", "graph_metrics"]),
    ("nnkscope.interpolation", ["NNKClassifier", "NNKRegressor", "leave_one_out", "nnk_interpolate"]),
    ("nnkscope.labels", ["class_homogeneity", "label_propagation", "label_variation"]),
    ("nnkscope.manifold", ["polytope_diameter", "local_dimension", "curvature", "tangent_spaces"]),
    ("nnkscope.metrics", ["point_metrics", "multiscale_metrics", "column_means"]),
    ("nnkscope.nnk_means", ["NNKMeans"]),
    ("nnkscope.collapse", ["neural_collapse", "separation_fuzziness", "ClassScatter"]),
    ("nnkscope.compare", ["compare_graphs", "linear_cka"]),
    ("nnkscope.io", ["load_embeddings", "atomic_path", "save_graph", "load_graph"]),
    ("nnkscope", ["nnk_graph", "build_graph", "point_metrics", "graph_metrics", "GraphSettings", "Kernel"]),
])
def test_old_import_paths_still_work(old, names):
    module = importlib.import_module(old)
    for name in names:
        assert getattr(module, name) is not None, f"{old}.{name}"


def test_moved_module_is_the_same_object():
    import nnkscope.kernels

    import nnkscope.engine.kernels

    assert nnkscope.kernels is nnkscope.engine.kernels


def test_old_import_path_keeps_the_module_spec():
    """Importing by the old name must not rename the module's spec (its relative imports would warn)."""
    import nnkscope.solvers as old

    import nnkscope.engine.solvers as new

    assert old is new
    assert new.__spec__.name == "nnkscope.engine.solvers"
    assert new.__spec__.parent == new.__package__
