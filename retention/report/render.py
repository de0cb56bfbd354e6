"""Render results for people (rich tables, Markdown, HTML) and machines (JSON, CSV)."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Sequence
from typing import Any

REPORT_COLUMNS = ("rule", "action", "due", "held", "due_next_30d", "cutoff", "oldest_due_event",
                  "blocked", "would_stop", "unreadable_events")


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


def markdown(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v).replace("|", "\\|") for v in row)
              + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_page(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>" for row in rows)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title></head><body><h1>{html.escape(title)}</h1><table><thead><tr>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></body></html>\n")


def counts(per_table: dict[str, int]) -> str:
    """``{"admin_log": 2}`` as ``admin_log: 2`` (children, blocked)."""
    return ", ".join(f"{t}: {n}" for t, n in per_table.items())


def _cell(value: Any) -> Any:
    return counts(value) if isinstance(value, dict) else value


def report_rows(report: dict[str, Any]) -> list[list[Any]]:
    return [[_cell(r.get(c, r.get("error") if c == "due" else None)) for c in REPORT_COLUMNS]
            for r in report["rules"]]


def report(report_data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return to_json(report_data)
    title = f"Retention report: {report_data['policy']} as of {report_data['as_of']}"
    rows = report_rows(report_data)
    if fmt == "csv":
        return csv_text(REPORT_COLUMNS, rows)
    if fmt == "md":
        return markdown(title, REPORT_COLUMNS, rows)
    if fmt == "html":
        return html_page(title, REPORT_COLUMNS, rows)
    stops = {r["rule"]: r["would_stop"] for r in report_data["rules"] if r.get("would_stop")}
    at = REPORT_COLUMNS.index("would_stop")
    for row in rows:  # a terminal table folds long reasons; they follow the table in full
        row[at] = "yes (below)" if row[0] in stops else ""
    text = table(title, REPORT_COLUMNS, rows, width=220)
    text += "".join(f"would_stop: rule {name!r}: {why}\n" for name, why in stops.items())
    if report_data.get("uncovered"):
        text += "Tables no rule covers: " + ", ".join(
            f"{u['source']}.{u['table']}" for u in report_data["uncovered"]) + "\n"
    return text
