"""workflow/local's modules import one another in one direction: no cycle, not even one hidden in a function."""
from __future__ import annotations

import ast
from pathlib import Path

LOCAL = Path(__file__).resolve().parents[3] / "workflow" / "local"


def local_imports(path: Path) -> set[str]:
    """Every workflow.local module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("workflow.local."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[2] for alias in node.names if alias.name.startswith("workflow.local.")}
    return found


def test_the_local_modules_import_each_other_without_a_cycle() -> None:
    graph = {path.stem: local_imports(path) for path in LOCAL.glob("*.py")}
    assert graph["runtime"] == set(), "runtime.py is the router's client side and must not import the rest"
    done: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, " -> ".join((*stack, module))
        if module in done:
            return
        for imported in graph.get(module, set()):
            visit(imported, (*stack, module))
        done.add(module)

    for module in graph:
        visit(module, ())
