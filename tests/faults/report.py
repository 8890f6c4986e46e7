"""One row per fault case, printed as the case ends and as a table at the session's end
(``pytest_terminal_summary`` in ``tests/faults/conftest.py``), so a CI log shows the counts."""

from __future__ import annotations

from dataclasses import dataclass

from tests.faults.auditor import ClientStats, Outcomes

COLUMNS = (
    "case",
    "sent",
    "acked",
    "outcomes",
    "lost",
    "dup copies",
    "client gaps",
    "client dups",
    "resets behind",
    "recovery s",
    "notes",
)


@dataclass
class CaseRow:
    case: str
    outcomes: Outcomes
    clients: ClientStats | None = None
    recovery_s: float | None = None
    notes: str = ""

    def cells(self) -> tuple[str, ...]:
        o, c = self.outcomes, self.clients
        return (
            self.case,
            str(o.sent),
            str(o.acknowledged),
            str(o.outcomes),
            str(len(o.lost)),
            str(o.duplicated),
            "-" if c is None else str(c.gaps),
            "-" if c is None else str(c.duplicates),
            "-" if c is None else f"{c.resets_behind}/{c.resets}",
            "-" if self.recovery_s is None else f"{self.recovery_s:.1f}",
            self.notes,
        )


ROWS: list[CaseRow] = []


def table(rows: list[CaseRow]) -> str:
    lines = [COLUMNS, *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    out = []
    for n, line in enumerate(lines):
        out.append(" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)
