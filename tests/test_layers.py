"""The package's layers: every import points downward, and only the CLI imports the CLI.

core <- engine <- distributed <- {experiments, sklearn} <- cli. Each module's
imports (top-level and inside functions) are read with ``ast`` and resolved
to absolute module names, so the rule is checked on the source, not on what
happens to be imported at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "expreg"

#: Rank of each layer: a module may import only from layers of lower or equal rank.
RANK = {"core": 0, "engine": 1, "distributed": 2, "experiments": 3, "sklearn": 3, "cli": 4}
#: Entry points: the only modules outside the CLI allowed to import it (none: ``python -m expreg.distributed``
#: hands its process to ``python -m expreg.cli`` without importing it).
ENTRY_POINTS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    name = _module_name(path)
    return _imports_of(path.read_text(), name, is_package=path.name == "__init__.py")


def _imports_of(source: str, name: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every expreg import in ``source``, the text of module ``name``."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import mod`` imports the submodule pkg.mod when there is one
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else module))
    return [(line, m) for line, m in found if m == "expreg" or m.startswith("expreg.")]


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    """Besides the package's ``__init__`` (the public API), every module sits in one of the layers."""
    outside = [_module_name(p) for p in MODULES if p != PACKAGE / "__init__.py" and _layer(_module_name(p)) is None]
    assert outside == []


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_imports_point_downward(path: Path) -> None:
    name = _module_name(path)
    here = _layer(name)
    if here is None:  # expreg/__init__.py re-exports the public API from every layer
        return
    assert _upward(name, _imports(path)) == [], f"{name} imports upward"


def _upward(name: str, imports: list[tuple[int, str]]) -> list[str]:
    """The imports of module ``name`` that break the layering rule, one line each."""
    here = _layer(name)
    upward: list[str] = []
    if here is None:
        return upward
    for line, module in imports:
        there = _layer(module)
        if module == "expreg":
            upward.append(f"line {line}: imports the top-level package")
        elif there is not None and RANK[there] > RANK[here] and not (there == "cli" and name in ENTRY_POINTS):
            upward.append(f"line {line}: {module} ({there} is above {here})")
        elif there is not None and RANK[there] == RANK[here] and there != here:
            upward.append(f"line {line}: {module} ({there} is a sibling layer of {here})")
    return upward


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_only_entry_points_import_the_cli(path: Path) -> None:
    name = _module_name(path)
    if _layer(name) == "cli" or name in ENTRY_POINTS:
        return
    assert [m for _, m in _imports(path) if m == "expreg.cli" or m.startswith("expreg.cli.")] == []


def test_the_checker_flags_upward_imports() -> None:
    """A made-up core module importing the engine (relatively, inside a function) and a CLI import are caught."""
    source = "from .ops import forward\ndef f():\n    from ..engine import descent\n    from expreg.cli import main\n"
    imports = _imports_of(source, "expreg.core.probe")
    assert imports == [(1, "expreg.core.ops"), (3, "expreg.engine.descent"), (4, "expreg.cli")]
    assert _upward("expreg.core.probe", imports) == [
        "line 3: expreg.engine.descent (engine is above core)",
        "line 4: expreg.cli (cli is above core)",
    ]
    assert _upward("expreg.sklearn.probe", [(1, "expreg.experiments.base")]) == [
        "line 1: expreg.experiments.base (experiments is a sibling layer of sklearn)"
    ]


def test_distributed_never_imports_the_cli() -> None:
    """Not even its ``__main__`` (the one arrow that used to run back up)."""
    found = [
        f"{_module_name(p)} line {line}: {m}"
        for p in sorted((PACKAGE / "distributed").rglob("*.py"))
        for line, m in _imports(p)
        if m == "expreg.cli" or m.startswith("expreg.cli.")
    ]
    assert found == []
