"""The dependency rule, read from the source: every module's imports (anywhere in it, also
inside functions), found by walking its AST.

- ``schemas`` (the contract) imports nothing of ours beyond itself;
- ``analytics`` (a library plus its CLI, under the API and the pages) imports neither ``api``
  nor ``views``, nor any web framework (the API serves analytics, not the other way round);
- the ground, ``dispatchwire`` (settings, errors, logs), imports nothing of ours beyond
  itself: not the roof (``cli``), not any part. Its ``__main__`` is the one exception: it is
  ``python -m dispatchwire``, the roof's door, and nothing imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("analytics", "api", "cli", "dispatchwire", "infra", "schemas", "streams", "views")
GROUND = "dispatchwire"
ROOF = "cli"
GROUND_ENTRY_POINT = "dispatchwire.__main__"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """The absolute names of every module ``path`` imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imported_by(path.read_text(), package, str(path))


def imported_by(source: str, package: str, filename: str = "<source>") -> set[str]:
    """The absolute names ``source``, a module of ``package``, imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def our_packages(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names if n.split(".")[0] in OURS}


MODULES = {module_name(p): p for pkg in OURS for p in sorted((ROOT / pkg).rglob("*.py"))}
IMPORTS = {name: our_packages(imported(path)) for name, path in MODULES.items()}


def of(package: str) -> dict[str, set[str]]:
    return {n: deps for n, deps in IMPORTS.items() if n.split(".")[0] == package}


def test_every_package_has_modules() -> None:
    for package in OURS:
        assert of(package), f"no modules found in {package}/"


def test_schemas_imports_nothing_of_ours() -> None:
    wrong = {n: deps - {"schemas"} for n, deps in of("schemas").items() if deps - {"schemas"}}
    assert not wrong, wrong


WEB_FRAMEWORKS = ("starlette", "sse_starlette", "uvicorn")


def test_analytics_imports_neither_api_nor_views_nor_the_web() -> None:
    wrong = sorted(n for n, deps in of("analytics").items() if deps & {"api", "views"})
    assert not wrong, wrong
    web = sorted(
        f"{name} imports {dep}"
        for name in of("analytics")
        for dep in imported(MODULES[name])
        if dep.split(".")[0] in WEB_FRAMEWORKS
    )
    assert not web, web


def test_the_ground_imports_nothing_of_ours() -> None:
    wrong = {
        n: deps - {GROUND}
        for n, deps in of(GROUND).items()
        if n != GROUND_ENTRY_POINT and deps - {GROUND}
    }
    assert not wrong, wrong


def test_the_roof_imports_every_part_plainly() -> None:
    """The roof knows the parts by ``import``, which this walk sees (no ``importlib``)."""
    known = set().union(*of(ROOF).values())
    assert {"infra", "streams", "analytics", "api", "schemas"} <= known
    for name in of(ROOF):
        assert "importlib" not in imported(MODULES[name]), name


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import api.app\n", {"api"}),
        ("def f():\n    from infra.kafka import LocalBroker\n", {"infra"}),
        ("from . import logs\n", {"dispatchwire"}),
        ("import json\nfrom pydantic import Field\n", set()),
    ],
)
def test_the_walk_finds_imports_anywhere(source: str, expected: set[str]) -> None:
    assert our_packages(imported_by(source, "dispatchwire")) == expected
