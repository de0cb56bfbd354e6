"""The report in its human formats: a rich table for the terminal, CSV for a
spreadsheet, and Markdown and HTML from the Jinja2 templates in ``templates/report/``.

All of them are made from :func:`retention.report.view.view`, so they carry the same
facts: per rule its words, figures, samples, last run and SQL; the totals; the tables
no rule covers and the ignored ones.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import jinja2

from retention.report import view as labels
from retention.report.render import table

FORMATS = ("table", "csv", "md", "html")
TEMPLATES = "templates/report"  # package resources beside the schedule's
SECTIONS = ("rule", "total", "uncovered", "ignored", "sql")  # a CSV row's first cell


def render(report: dict[str, Any], fmt: str) -> str:
    """The report as ``fmt`` (table, csv, md or html)."""
    shown = labels.view(report)
    if fmt == "csv":
        return _csv(shown)
    if fmt in ("md", "html"):
        return _environment(fmt).get_template(f"report.{fmt}.j2").render(report=shown)
    return _table(shown)


def _environment(fmt: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("retention.report", TEMPLATES),
        autoescape=fmt == "html", undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["cell"] = _md_cell
    env.filters["slug"] = _slug
    env.filters["extract"] = lambda key, facts: facts.get(key, "")
    env.filters["bold"] = lambda text: f"**{text}**" if text else ""
    return env


def _md_cell(value: Any) -> str:
    """Text for one Markdown table cell: one line, ``|`` escaped, no raw html tag."""
    return " ".join(str(value).split()).replace("|", "\\|").replace("<", "&lt;")


def _slug(name: str) -> str:
    """A rule name as an html id part (rule names are free text in YAML)."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _csv(shown: dict[str, Any]) -> str:
    """One header; the first column says what a row is (``SECTIONS``): a rule, the
    totals, a table no rule covers, an ignored table, or one statement of a rule's plan."""
    facts = [*shown["columns"], *shown["details"], labels.CHANGED, labels.ERROR]
    header = ["Section", *facts, "Table", "Reason", "Statement", "Parameters"]
    rows: list[list[str]] = []
    for rule in shown["rules"]:
        rows.append(["rule", *(rule["facts"].get(f, "") for f in facts[:-2]),
                     "; ".join(rule["changed"]), rule["error"] or "", "", "", "", ""])
    if shown["totals"]:
        rows.append(["total", *(shown["totals"].get(f, "") for f in facts), "", "", "", ""])
    blank = [""] * len(facts)
    rows += [["uncovered", *blank, name, "", "", ""] for name in shown["uncovered"]]
    rows += [["ignored", *blank, i["table"], i["reason"], "", ""] for i in shown["ignored"]]
    for rule in shown["rules"]:
        for statement in (rule["sql"] or {}).get("statements", []):
            rows.append(["sql", rule["name"], *blank[1:], "", "", statement["sql"],
                         statement["parameters"]])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _table(shown: dict[str, Any]) -> str:
    """The summary as a rich table, then each rule's other facts, the coverage and the
    SQL as plain lines (a terminal folds long text in a table)."""
    columns = shown["columns"]
    stop_at = columns.index(labels.WOULD_STOP)
    rows = []
    for rule in shown["rules"]:
        row = [rule["facts"].get(c, "") for c in columns]
        if rule["error"]:
            row[1] = f"failed: {rule['error']}"
        elif row[stop_at] != labels.NO:
            row[stop_at] = "yes (below)"
        rows.append(row)
    if shown["totals"]:
        rows.append([shown["totals"].get(c, "") for c in columns])
    title = f"{shown['title']} as of {shown['as_of']} ({shown['timezone']})"
    text = table(title, columns, rows, width=220)
    for rule in shown["rules"]:
        text += f"\n{rule['name']}\n"
        for label in (*shown["details"], labels.WOULD_STOP):
            if label in rule["facts"] and (label != labels.WOULD_STOP
                                           or rule["facts"][label] != labels.NO):
                text += f"  {label}: {rule['facts'][label]}\n"
        for line in rule["changed"]:
            text += f"  {labels.CHANGED}: {line}\n"
        if rule["error"]:
            text += f"  {labels.ERROR}: {rule['error']}\n"
    text += "\nTables no rule covers: " + (", ".join(shown["uncovered"]) or labels.NONE) + "\n"
    text += "Ignored tables: " + (", ".join(
        i["table"] + (f" ({i['reason']})" if i["reason"] else "") for i in shown["ignored"])
        or labels.NONE) + "\n"
    text += "\nHow this was computed (the statements a run executes now)\n"
    for rule in shown["rules"]:
        sql = rule["sql"]
        if sql is None:
            continue
        text += (f"\n-- rule {rule['name']}: cutoff {sql['cutoff']}\n"
                 f"-- predicate: {sql['predicate']} ({sql['why']})\n-- {sql['plan']}\n")
        for statement in sql["statements"]:
            text += statement["sql"] + "\n"
            if statement["parameters"]:
                text += f"-- parameters: {statement['parameters']}\n"
    return text
