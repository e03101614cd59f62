"""The layout's rules that no single module test sees: no import cycles inside a package (lazy
imports inside functions count), and ``mmcl`` never imports ``datagen`` (SPEC §1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports anywhere in its body."""
    modules = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name and t != package}
        graph[name] = deps
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's components with more than one module: each is an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


@pytest.mark.parametrize("package", ["mmcl", "datagen"])
def test_no_import_cycles(package):
    assert strongly_connected(import_graph(package)) == []


def test_mmcl_never_imports_datagen():
    offenders = []
    for path in (ROOT / "mmcl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "datagen"]
    assert offenders == []


def test_readme_links_and_pictures_point_at_files():
    """Every relative link and image of README.md names a file of the repository (the data-flow
    picture included), so none renders broken."""
    import re

    text = (ROOT / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http", "#", "mailto:"))]
    assert "docs/architecture.png" in targets
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_scripts_benchmarks_experiments_layout():
    """``scripts/`` holds only the demo and the system-dependency installer; every experiment
    folder ``experiments/<question>/`` has a README.md; and no benchmark imports a private
    (underscore) name of ``datagen`` or ``mmcl``, so a benchmark measures only public API."""
    assert sorted(p.name for p in (ROOT / "scripts").iterdir() if p.name != "__pycache__") == [
        "demo.py",
        "install_system_deps.sh",
    ]
    folders = [p for p in (ROOT / "experiments").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert folders and all(list(p.glob("*.py")) for p in folders)
    assert [p.name for p in folders if not (p / "README.md").is_file()] == []
    ours = ("datagen", "mmcl")
    private = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                dotted = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                dotted = [a.name for a in node.names]
            else:
                continue
            for name in dotted:
                top, *rest = name.split(".")
                if top in ours and any(part.startswith("_") for part in rest):
                    private.append(f"{path.relative_to(ROOT)}: {name}")
    assert private == []
