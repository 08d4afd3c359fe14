"""The package's folders follow the pipeline, and imports only ever point down it.

Stages, lowest first (a module may import its own stage and any lower one, never a higher):

    core          errors, config, io_utils, model_io, quantizers, distribute, cli, _keras2
    data          ubnas_tf/data/
    search_space  ubnas_tf/search_space/ (ops, module structures, genotypes and their drawing)
    network       ubnas_tf/network/ (a genotype's network, baselines, costs)
    search        ubnas_tf/search/ (the OPs budget prices the network it will retrain)
    train         ubnas_tf/train/
    export        ubnas_tf/export/
    tune          ubnas_tf/tune/ (search + train per trial)
    pipeline      ubnas_tf/pipeline.py (the whole path, for the demo and the reports)

Lazy imports inside functions count too: they are the way circles hide.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ubnas_tf"
STAGES = ["core", "data", "search_space", "network", "search", "train", "export", "tune",
          "pipeline"]
FOLDER_STAGES = {"data", "search_space", "network", "search", "train", "export", "tune"}


def stage_of(module: str) -> str:
    """`ubnas_tf.a.b` -> its stage name."""
    parts = module.split(".")
    if len(parts) < 2:
        return "core"  # `import ubnas_tf` (registration of saved-model layers) is allowed
    if parts[1] in FOLDER_STAGES:
        return parts[1]
    if parts[1] == "pipeline":
        return "pipeline"
    return "core"


def module_name(path: pathlib.Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: pathlib.Path) -> set:
    """Every ubnas_tf module `path` imports, at top level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ubnas_tf")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("ubnas_tf"):
                found.add(node.module)
                for alias in node.names:  # `from ubnas_tf.x import module`
                    candidate = f"{node.module}.{alias.name}"
                    base = PACKAGE.parent / candidate.replace(".", "/")
                    if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
                        found.add(candidate)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_stage_folders_exist():
    for folder in FOLDER_STAGES:
        assert (PACKAGE / folder / "__init__.py").is_file(), folder


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_pipeline(path):
    own = stage_of(module_name(path))
    if module_name(path) == "ubnas_tf":
        return  # the package itself registers every layer a saved model may hold
    upward = sorted(module for module in imported_modules(path)
                    if STAGES.index(stage_of(module)) > STAGES.index(own))
    assert not upward, f"{path.relative_to(PACKAGE)} ({own}) imports higher stages: {upward}"


def test_no_import_circle_between_modules():
    graph = {module_name(path): {m for m in imported_modules(path) if m != "ubnas_tf"}
             for path in MODULES}
    # A package's __init__ re-exporting its own modules is not a circle of concepts.
    for name in graph:
        graph[name] = {m for m in graph[name]
                       if m != name and not name.startswith(m + ".") and m in graph}
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycle = trail[trail.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
