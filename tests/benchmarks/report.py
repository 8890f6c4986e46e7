"""Result rows, the printed table and the JSON written to ``bench-results/``."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One measured (or not measured) figure set: a subject under given parameters."""

    bench: str
    subject: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def not_measured(cls, bench: str, subject: str, why: str, **params: Any) -> Row:
        return cls(bench, subject, params, {}, f"not measured: {why}")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[Row]) -> str:
    """Markdown tables, one per benchmark, columns = parameters then metrics."""
    out: list[str] = []
    for bench in dict.fromkeys(r.bench for r in rows):
        group = [r for r in rows if r.bench == bench]
        params = list(dict.fromkeys(k for r in group for k in r.params))
        metrics = list(dict.fromkeys(k for r in group for k in r.metrics))
        header = ["subject", *params, *metrics, "note"]
        out.append(f"\n### {bench}\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for r in group:
            cells = [
                r.subject,
                *(_fmt(r.params.get(k)) for k in params),
                *(_fmt(r.metrics.get(k)) for k in metrics),
                r.note,
            ]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write(
    rows: list[Row], checks: list[dict[str, Any]], out_dir: Path, args: dict[str, Any]
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = out_dir / f"bench-{stamp}.json"
    doc = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "args": args,
        "rows": [asdict(r) for r in rows],
        "targets": checks,
    }
    path.write_text(json.dumps(doc, indent=2, default=str))
    (out_dir / "latest.json").write_text(json.dumps(doc, indent=2, default=str))
    return path
