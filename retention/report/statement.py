"""``retention schedule``: the policy as the retention schedule a privacy statement shows.

Per rule: what data, which records (its ``where``), how long they are kept, what
happens then, the legal basis, where they are stored and how often they are checked.
The words are Jinja2 templates beside this module, in ``templates/schedule/``: a layout
per format (``schedule.md.j2``, ``schedule.html.j2``) and per language a phrase table
(``LANG/words.j2``) with a glossary of event and table words (``LANG/glossary.j2``).
``templates`` (``--templates DIR``) is searched first, so a company's own copy of any
of these files wins. This module only turns the policy into plain data for them
(:func:`context`); it reads no environment variable and opens no database.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from retention.errors import UsageError
from retention.policy import schedule as schedules
from retention.policy.rules import Policy, Rule

TEMPLATES = Path(__file__).parent / "templates" / "schedule"  # layouts; LANG/ the words
LANGUAGES = ("en", "nl")  # shipped: templates/schedule/en/, templates/schedule/nl/
FORMATS = ("md", "html")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # cron day names, Monday first


def render_schedule(policy: Policy, fmt: str, lang: str = "en",
                    templates: str | Path | None = None) -> str:
    """The schedule as ``fmt`` (md or html) in ``lang``; ``templates`` overrides any file.

    Raises :class:`UsageError` for an unknown language or format, a missing template
    directory and a template that cannot be read or rendered (naming its file and line).
    """
    if lang not in LANGUAGES:
        raise UsageError(f"--lang {lang!r}: the shipped languages are {', '.join(LANGUAGES)} "
                         "(for another, put your own words.j2 in --templates DIR)")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use {' or '.join(FORMATS)}")
    search = [TEMPLATES / lang, TEMPLATES]
    if templates is not None:
        if not Path(templates).is_dir():
            raise UsageError(f"--templates {str(templates)!r}: no such directory")
        search.insert(0, Path(templates))
    env, data = _environment(search, fmt), context(policy)
    try:
        return env.get_template(f"schedule.{fmt}.j2").render(
            {key: _names(value) for key, value in data.items()})
    except jinja2.TemplateSyntaxError as exc:
        raise UsageError(f"{exc.filename or exc.name}:{exc.lineno}: template error: "
                         f"{exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        places = ", ".join(str(p) for p in search)
        raise UsageError(f"template {exc.name!r} not found (searched {places})") from None
    except Exception as exc:  # a company's template failing as it renders: where, and why
        raise UsageError(f"{_template_line(exc)}template error: "
                         f"{type(exc).__name__}: {exc}".splitlines()[0]) from None


def context(policy: Policy) -> dict[str, Any]:
    """What the templates see: ``policy`` (name, version, timezone) and ``rules``.

    Each rule: ``name``, ``data`` (its description, else its name), ``description``,
    ``legal_basis``, ``source``, ``table``, ``stored_in``, ``retain`` (``kind``:
    calendar, hours or until; ``event``, ``column``, ``words``: readable words for the
    event; ``spans``: ``amount`` and ``unit``), ``where`` (``column``, ``op``: eq, in,
    not_eq, not_in, is_null, not_null; ``values`` as text), ``action`` (delete or
    anonymize), ``children`` (table names), ``columns`` (``column``, ``strategy``,
    ``value``), ``schedule`` (as written) and ``checked`` (see :func:`checked`).
    """
    return {"policy": {"name": policy.name, "version": policy.version,
                       "timezone": policy.timezone},
            "rules": [_rule(rule) for rule in policy.rules]}


def checked(text: str) -> dict[str, Any]:
    """A ``schedule`` phrase as parts to put in words.

    ``kind`` is ``hourly``, ``daily`` (``time``), ``weekly`` (``weekday``: 0 is Monday,
    ``time``), ``monthly`` (``day``, ``time``), ``interval`` (``amount``, ``unit``:
    second, minute or hour) or ``cron`` (``text``, for every other cron expression).
    """
    parsed = schedules.parse(text)
    found: dict[str, Any] = {"kind": "cron", "text": parsed.text, "time": None,
                             "weekday": None, "day": None, "amount": None, "unit": None}
    if parsed.interval_seconds is not None:
        seconds = parsed.interval_seconds
        size, unit = next((s, u) for s, u in ((3600, "hour"), (60, "minute"), (1, "second"))
                          if seconds % s == 0)
        return {**found, "kind": "interval", "amount": seconds // size, "unit": unit}
    if parsed.month != "*":
        return found
    if (parsed.minute, parsed.hour, parsed.day, parsed.day_of_week) == ("0", "*", "*", "*"):
        return {**found, "kind": "hourly"}
    if not (parsed.minute.isdigit() and parsed.hour.isdigit()):
        return found
    time = f"{int(parsed.hour):02d}:{int(parsed.minute):02d}"
    if parsed.day == "*" and parsed.day_of_week == "*":
        return {**found, "kind": "daily", "time": time}
    if parsed.day == "*" and parsed.day_of_week.lower() in WEEKDAYS:
        return {**found, "kind": "weekly", "time": time,
                "weekday": WEEKDAYS.index(parsed.day_of_week.lower())}
    if parsed.day_of_week == "*" and parsed.day.isdigit():
        return {**found, "kind": "monthly", "time": time, "day": int(parsed.day)}
    return found


def _rule(rule: Rule) -> dict[str, Any]:
    retain = rule.retain
    return {
        "name": rule.name, "data": rule.description or rule.name,
        "description": rule.description, "legal_basis": rule.legal_basis,
        "source": rule.source, "table": rule.table,
        "stored_in": f"{rule.source}.{rule.table}" if rule.table else rule.source,
        "retain": {"kind": retain.kind.value, "event": retain.event, "column": rule.event_column,
                   "words": _words(retain.event, retain.event == rule.event_column),
                   "spans": [{"amount": s.amount, "unit": s.unit.value} for s in retain.spans]},
        "where": [{"column": f.column, "op": f.op.value, "values": [_text(v) for v in f.values]}
                  for f in rule.filters],
        "action": rule.action.name,
        "children": [child.table for child in rule.children],
        "columns": [{"column": c.column, "strategy": c.strategy.value,
                     "value": _text(c.value) if c.strategy == "fixed" else None}
                    for c in rule.action.columns],
        "schedule": rule.schedule, "checked": checked(rule.schedule),
    }


def _names(value: Any) -> Any:
    """Mappings as attribute namespaces, so that ``where.values`` is the values, not
    the ``dict.values`` method Jinja would find first."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _names(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_names(v) for v in value]
    return value


def _words(event: str, is_column: bool) -> str:
    """``completion`` as is; a column named directly (``visited_at``) without ``_at``."""
    return (event.removesuffix("_at") if is_column else event).replace("_", " ")


def _text(value: Any) -> str:
    """A value from the policy as written in YAML: true/false/null, else its text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _environment(search: list[Path], fmt: str) -> SandboxedEnvironment:
    """Templates in a sandbox (a company's own may be edited by anyone who writes words),
    autoescaped for html, failing on any undefined name rather than printing nothing."""
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        autoescape=fmt == "html", undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["squash"] = _squash
    env.filters["cell"] = _cell
    return env


def _squash(value: Any) -> Any:
    """Runs of whitespace as one space, trimmed; escaped html stays escaped."""
    text = " ".join(str(value).split())
    return Markup(text) if isinstance(value, Markup) else text


def _cell(value: Any) -> str:
    """Text for one Markdown table cell: one line, ``|`` escaped, no raw html tag."""
    return " ".join(str(value).split()).replace("|", "\\|").replace("<", "&lt;")


def _template_line(exc: BaseException) -> str:
    """``FILE:LINE: `` of the innermost template frame of ``exc``, or nothing."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""
