"""The pages' ES modules export only what another module imports or a browser test loads:
an export nobody uses is dead code (issue 13 item 6 named ``forgetToken``). Read as text,
without a browser."""

from __future__ import annotations

import re
from pathlib import Path

JS = Path(__file__).resolve().parents[2] / "views" / "static" / "js"

EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function|const|class|let)\s+(\w+)", re.MULTILINE)
IMPORT = re.compile(r"import\s*\{([^}]*)\}\s*from\s*\"\./(\w+)\.js\"")
TESTS = Path(__file__).resolve().parent

KEPT: set[tuple[str, str]] = set()  # (module, export) a test must not call dead


def test_every_export_is_imported_by_another_module() -> None:
    imported: set[tuple[str, str]] = set()
    for path in JS.glob("*.js"):
        for names, module in IMPORT.findall(path.read_text(encoding="utf-8")):
            imported |= {
                (module, name.split(" as ")[0].strip()) for name in names.split(",") if name.strip()
            }
    tests = "".join(p.read_text(encoding="utf-8") for p in TESTS.glob("test_*.py"))
    dead = [
        f"{path.name}: {name}"
        for path in sorted(JS.glob("*.js"))
        for name in EXPORT.findall(path.read_text(encoding="utf-8"))
        if (path.stem, name) not in imported | KEPT and not re.search(rf"\b{name}\(", tests)
    ]
    assert dead == []
