"""Render results for people (rich tables) and machines (JSON, CSV); the report's own
formats live in ``document.py``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
          width: int = 160) -> str:
    """A table as text; plain box characters when the output is not a terminal."""
    from rich.console import Console  # only tables need rich
    from rich.table import Table

    out = Table(title=title, show_lines=False)
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(out)
    return buffer.getvalue()


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue()


def counts(per_table: dict[str, int]) -> str:
    """``{"admin_log": 2}`` as ``admin_log: 2`` (children, blocked)."""
    return ", ".join(f"{t}: {n}" for t, n in per_table.items())


def report(report_data: dict[str, Any], fmt: str) -> str:
    """The dry-run report as JSON, or a human format (``document.py``)."""
    if fmt == "json":
        return to_json(report_data)
    from retention.report import document  # Jinja2 only when a page is made

    return document.render(report_data, fmt)
