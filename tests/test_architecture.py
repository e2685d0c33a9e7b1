"""The package's layout rules, read from its source: the dependency direction of
docs/architecture.md, no import cycles, no private names across modules, and
function-level imports only where a comment says why."""

import ast
import pathlib

import pytest
from locations import ROOT as ROOT_PATH

ROOT = ROOT_PATH
PACKAGE = ROOT / "keras_reuse"

# Subpackage -> the subpackages it may import (docs/architecture.md).
ALLOWED = {
    "utils": set(),
    "startup": set(),
    "layers": {"utils"},
    "reuse": {"layers", "utils"},
    "applications": {"layers", "reuse", "startup", "utils"},
    "data": {"utils"},
    "export": {"applications", "layers", "reuse", "utils"},
    "training": {"applications", "data", "export", "layers", "reuse", "utils"},
    "experiments": {"applications", "data", "reuse", "training", "utils"},
    "cli": {
        "applications",
        "layers",
        "data",
        "experiments",
        "export",
        "reuse",
        "training",
        "utils",
    },
}
# The package root may load any of them (lazily), and `__main__` the CLI.
ROOT_MODULES = {"keras_reuse", "keras_reuse.__main__"}
LAZY_OR_OPTIONAL = ("# Lazy:", "# Optional:")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, imported: str | None = None) -> str | None:
    """The package module an import names: `from a.b import c` is module a.b.c if it exists."""
    if imported is not None and f"{name}.{imported}" in MODULES:
        return f"{name}.{imported}"
    return name if name in MODULES else None


def imports(module: str):
    """(line, imported module, names, inside a function) of every package import."""
    source = MODULES[module].read_text()
    tree = ast.parse(source)
    functions = [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    inner = {id(s) for f in functions for s in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "keras_reuse":
                yield node.lineno, None, [a.name for a in node.names], id(node) in inner
                continue
            for alias in node.names:
                target = resolve(node.module, alias.name)
                names = [] if target != node.module else [alias.name]
                yield node.lineno, target, names, id(node) in inner
        elif isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name) if alias.name.startswith("keras_reuse") else None
                yield node.lineno, target, [], id(node) in inner


def subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_dependencies_follow_the_architecture():
    wrong = []
    for module in MODULES:
        if module in ROOT_MODULES:
            continue
        own = subpackage(module)
        for line, target, _, _ in imports(module):
            if target is None or target in ROOT_MODULES:
                if target in ROOT_MODULES:
                    wrong.append(f"{module}:{line} imports the package root")
                continue
            other = subpackage(target)
            if other != own and other not in ALLOWED[own]:
                wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_another_modules_private_names():
    wrong = [
        f"{module}:{line} imports {name} from {target}"
        for module in MODULES
        for line, target, names, _ in imports(module)
        if target is not None and target != module
        for name in names
        if name.startswith("_")
    ]
    assert not wrong, "\n".join(wrong)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    # Module-level and function-level imports alike; the package root, which
    # loads everything on demand, is not part of the graph.
    graph = {
        module: {t for _, t, _, _ in imports(module) if t and t != module and t not in ROOT_MODULES}
        for module in MODULES
        if module not in ROOT_MODULES
    }
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_function_level_imports_say_why():
    wrong = []
    for module, path in MODULES.items():
        lines = path.read_text().split("\n")
        for line, _, _, inside in imports(module):
            if not inside:
                continue
            # The comment stands above the block of imports the line is in.
            first = line - 1
            while first > 0 and lines[first - 1].strip().startswith(("import ", "from ", ")")):
                first -= 1
            while first > 0 and not lines[first - 1].strip():
                first -= 1
            while first > 0 and lines[first - 1].strip().startswith(("import ", "from ")):
                first -= 1
            context = lines[max(0, first - 2) : line]
            if not any(marker in text for text in context for marker in LAZY_OR_OPTIONAL):
                wrong.append(f"{module}:{line}: {lines[line - 1].strip()}")
    assert not wrong, "add `# Lazy: why` or `# Optional: which dependency`:\n" + "\n".join(wrong)


def test_the_package_has_few_top_level_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 6, top
    assert len(list((ROOT / "benchmarks").glob("*.py"))) <= 8


@pytest.mark.parametrize("subpackage_name", sorted(ALLOWED))
def test_every_subpackage_is_in_the_architecture_note(subpackage_name):
    note = (ROOT / "docs" / "architecture.md").read_text()
    assert f"`{subpackage_name}" in note
