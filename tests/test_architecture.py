"""The house's shape: docs/architecture.md stays true, no modules import each other in a circle, and a long
module says why it is long."""

import ast
import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
PACKAGE = PROJECT / "qa"


def _modules() -> dict[str, Path]:
    """Every module of qa by its dotted name (a package by its own name, from its __init__.py)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PROJECT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The qa modules `name` imports anywhere in its file, inside functions too: `from qa.x import y` counts as
    an import of qa.x.y when that is a module, else of qa.x."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                imported.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in imported if module in modules and module != name}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    order, low, stack, on_stack, circles = {}, {}, [], set(), []
    for root in graph:
        if root in order:
            continue
        work = [(root, iter(sorted(graph[root])))]
        order[root] = low[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in order:
                    order[target] = low[target] = len(order)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], order[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    circles.append(sorted(group))
    return circles


def test_circles_are_found():
    # a -> b -> c -> a is one circle; d -> a is not part of it.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_modules_import_each_other_in_a_circle():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["qa.search.retrieval"] >= {"qa.search.keyword", "qa.store.base"}  # the reading itself works
    assert _circles(graph) == []


def test_every_path_the_architecture_names_exists():
    text = (PROJECT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"qa/[\w/]*(?:\.py|\.json|/)", text))
    assert len(named) > 30
    missing = sorted(path for path in named if not (PROJECT / path).exists())
    assert missing == []
    # Every file of a stage's table row exists in that stage's folder (`corpus.py` in the documents row).
    rows = re.findall(r"^\| \w[^|]* \| `(qa/\w+/)` \|(.*)\|$", text, re.M)
    assert len(rows) == 7  # documents, embeddings, store, indexing, search, decision, compose
    for folder, files in rows:
        for name in re.findall(r"`([\w/]+(?:\.py|\.json|/))`", files):
            assert (PROJECT / folder / name).exists(), f"{folder}{name}"


def test_a_long_module_says_why():
    long_ones = {}
    for name, path in _modules().items():
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > 400:
            long_ones[name] = "Longer than most modules" in (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "")
    assert long_ones and all(long_ones.values()), long_ones
