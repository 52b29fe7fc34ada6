"""The package's shape: no import circle among ganrev's modules, counting imports inside functions too; and the
wheel's package list and data (pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ganrev

PACKAGE = Path(ganrev.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """ganrev module -> the ganrev modules it imports anywhere in its file (``from x import y`` counts x, and
    x.y when that is a module; a package's own ``__init__`` is not counted as imported by its submodules)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_find_cycle_finds_a_planted_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_among_ganrev_modules() -> None:
    graph = import_graph()
    assert "ganrev.codecs.gan" in graph and "ganrev.codecs.specs" in graph["ganrev.codecs.gan"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_wheel_lists_every_package_and_carries_the_default_generator_and_lpips() -> None:
    """pyproject.toml lists the packages (pretrained/ is mapped to ganrev._shipped, which packages.find cannot
    see): a new sub-package left off the list would be missing from an installed wheel. Its package data must
    match the files compress, decompress, metrics and table read offline."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from ganrev.pretrained import DEFAULT_GENERATOR

    setuptools = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {_module_name(init) for init in PACKAGE.rglob("__init__.py")}
    assert set(setuptools["packages"]) == on_disk | {"ganrev._shipped"}
    shipped = PACKAGE.parent / setuptools["package-dir"]["ganrev._shipped"]
    carried = {path.relative_to(shipped).as_posix() for pattern in setuptools["package-data"]["ganrev._shipped"]
               for path in shipped.glob(pattern) if path.is_file()}
    assert {f"{DEFAULT_GENERATOR}/{name}" for name in ("config.json", "generator.safetensors", "MODEL_CARD.md")} \
        <= carried
    assert len([name for name in carried if name.startswith(f"{DEFAULT_GENERATOR}/heldout/")]) == 64
    assert {"lpips/alexnet-lpips-v0.1.safetensors", "lpips/alexnet-lpips-v0.1.json"} <= carried
    assert not any(name.startswith(("baselines/", "emoji64-")) for name in carried)  # the lean wheel
