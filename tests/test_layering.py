"""Which part may import which: ``analytics`` is a library plus its CLI, under the API and
the pages, so it imports neither of them nor any web framework."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("part", "forbidden"),
    [
        ("analytics", ("api", "views", "starlette", "sse_starlette", "uvicorn")),
    ],
)
def test_part_does_not_import(part: str, forbidden: tuple[str, ...]) -> None:
    found = sorted(
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / part).rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in forbidden
    )
    assert found == []
