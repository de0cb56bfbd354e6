"""Load a policy file into frozen :mod:`retention.rules` objects.

Every problem in the file is collected in one pass and raised together as a
:class:`~retention.errors.PolicyError`, one line per problem naming the file,
the line and the rule. The live schema is checked later, by
:mod:`retention.validate`, once adapters are open.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retention import calendar, scheduler, yamlfile
from retention import schedule as schedules
from retention.errors import PhraseError, PolicyError, Problem
from retention.phrase import Retain, parse
from retention.rules import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_HASH_KEY_ENV,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_FRACTION,
    DEFAULT_SCHEDULE,
    DEFAULT_STATEMENT_TIMEOUT,
    Action,
    Child,
    ColumnAction,
    Filter,
    Op,
    Policy,
    Rule,
    Source,
    Strategy,
)

DEFAULT_AUDIT_URL = "sqlite:///retention-audit.db"  # the embedded audit store
DEFAULT_TIMEZONE = "UTC"  # calendar of a policy that names none

_TOP_KEYS = {"policy", "version", "timezone", "sources", "audit", "defaults", "rules", "ignore",
             "description"}
_RULE_KEYS = {"source", "table", "retain", "events", "where", "children", "action",
              "legal_basis", "description", "schedule", "batch_size", "max_fraction", "max_rows",
              "lock_timeout", "statement_timeout"}
_SOURCE_KEYS = {"adapter", "url", "path", "naive_timestamps", "schema", "pattern", "description"}


class _Collector:
    def __init__(self, path: str, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env  # where ${VAR} and the hash keys are looked up
        self.problems: list[Problem] = []

    def add(self, line: int | None, rule: str | None, message: str) -> None:
        self.problems.append(Problem(self.path, line, rule, message))


def load_policy(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Policy:
    """Read and check ``path``. Raises :class:`PolicyError` listing every problem found."""
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError.single(shown, None, None,
                                 f"cannot read the file: {exc.strerror}") from exc
    return load_policy_text(raw.decode("utf-8", errors="replace"), shown, env,
                            sha256=hashlib.sha256(raw).hexdigest())


def load_policy_text(
    text: str, path: str, env: Mapping[str, str] | None = None, sha256: str | None = None
) -> Policy:
    """Like :func:`load_policy` for text already read; ``path`` is only used in messages."""
    tree, problems = yamlfile.load(text, path, env)
    out = _Collector(path, os.environ if env is None else env)
    out.problems.extend(_in_rule(p) for p in problems)
    if tree is None:
        raise PolicyError(out.problems)
    if not isinstance(tree, yamlfile.LineDict):
        out.add(1, None, "the file must be a mapping with 'policy', 'sources' and 'rules'")
        raise PolicyError(out.problems)
    policy = _policy(tree, out, sha256 or hashlib.sha256(text.encode()).hexdigest())
    if out.problems or policy is None:
        raise PolicyError(sorted(out.problems, key=lambda p: (p.line or 0)))
    return policy


def _in_rule(problem: Problem) -> Problem:
    """Name the rule a YAML-level problem sits in (``rules -> NAME -> ...``)."""
    keys = problem.keys
    if len(keys) < 2 or keys[0] != "rules":
        return problem
    message = problem.message
    if len(keys) == 2 and message.startswith("duplicate key"):
        message = f"duplicate rule name {keys[1]!r}"
    return Problem(problem.path, problem.line, keys[1], message, keys)


def _policy(tree: yamlfile.LineDict, out: _Collector, sha256: str) -> Policy | None:
    for key in tree:
        if key not in _TOP_KEYS:
            out.add(tree.line_of(key), None, f"unknown key {key!r}")
    name = tree.get("policy")
    if not isinstance(name, str) or not name:
        out.add(tree.line_of("policy"), None, "'policy' (the policy's identifier) is required")
    version = tree.get("version")
    tz_name = tree.get("timezone", DEFAULT_TIMEZONE)
    try:
        calendar.zone(str(tz_name))
    except ValueError as exc:
        out.add(tree.line_of("timezone"), None, str(exc))

    sources = _sources(tree.get("sources"), tree.line_of("sources"), out)
    audit = tree.get("audit")
    audit_url = DEFAULT_AUDIT_URL
    if audit is None:
        pass
    elif isinstance(audit, yamlfile.LineDict):
        for key in audit:
            if key != "url":
                out.add(audit.line_of(key), None, f"unknown key {key!r} in 'audit'")
        audit_url = str(audit.get("url") or DEFAULT_AUDIT_URL)
    else:
        out.add(tree.line_of("audit"), None, "'audit' must be a mapping with 'url'")

    defaults = tree.get("defaults")
    if defaults is None:
        defaults = yamlfile.LineDict()
        defaults.line, defaults.lines = tree.line, {}
    elif not isinstance(defaults, yamlfile.LineDict):
        out.add(tree.line_of("defaults"), None, "'defaults' must be a mapping")
        defaults = yamlfile.LineDict()
        defaults.line, defaults.lines = tree.line, {}
    else:
        for key in defaults:
            if key not in _RULE_KEYS:
                out.add(defaults.line_of(key), None, f"unknown key {key!r} in 'defaults'")

    rules_tree = tree.get("rules")
    rules: list[Rule] = []
    if not isinstance(rules_tree, yamlfile.LineDict) or not rules_tree:
        out.add(tree.line_of("rules"), None, "'rules' must be a mapping of rule names to rules")
    else:
        for rule_name, body in rules_tree.items():
            rule = _rule(str(rule_name), body, rules_tree.line_of(rule_name), defaults,
                         sources, out, str(tz_name))
            if rule is not None:
                rules.append(rule)

    ignore = _ignore(tree.get("ignore"), tree.line_of("ignore"), sources, out)
    if out.problems or not isinstance(name, str):
        return None
    return Policy(
        name=name, version=None if version is None else str(version), timezone=str(tz_name),
        path=out.path, sha256=sha256, sources=sources, audit_url=audit_url,
        rules=tuple(rules), ignore=ignore,
    )


def _sources(tree: Any, line: int, out: _Collector) -> dict[str, Source]:
    sources: dict[str, Source] = {}
    if not isinstance(tree, yamlfile.LineDict) or not tree:
        out.add(line, None, "'sources' must name at least one source")
        return sources
    for name, body in tree.items():
        at = tree.line_of(name)
        if not isinstance(body, yamlfile.LineDict):
            out.add(at, None, f"source {name!r} must be a mapping with 'adapter'")
            continue
        for key in body:
            if key not in _SOURCE_KEYS:
                out.add(body.line_of(key), None, f"unknown key {key!r} in source {name!r}")
        adapter = body.get("adapter")
        if not isinstance(adapter, str):
            out.add(at, None, f"source {name!r} needs 'adapter' (sql, files, ...)")
            continue
        if body.get("naive_timestamps", "utc") not in ("utc", "local"):
            out.add(body.line_of("naive_timestamps"), None,
                    "'naive_timestamps' must be 'utc' or 'local'")
        options = {k: v for k, v in body.items() if k != "adapter"}
        sources[str(name)] = Source(str(name), adapter, options, at)
    return sources


def _rule(
    name: str, body: Any, line: int, defaults: Mapping[str, Any],
    sources: Mapping[str, Source], out: _Collector, tz: str,
) -> Rule | None:
    if not isinstance(body, yamlfile.LineDict):
        out.add(line, name, "a rule must be a mapping with 'source', 'table' and 'retain'")
        return None
    before = len(out.problems)
    for key in body:
        if key not in _RULE_KEYS:
            out.add(body.line_of(key), name, f"unknown key {key!r}")
    merged: dict[str, Any] = {**defaults, **body}
    lines = {k: body.line_of(k) for k in body}

    def at(key: str) -> int:
        if key not in lines and isinstance(defaults, yamlfile.LineDict) and key in defaults:
            return defaults.line_of(key)
        return lines.get(key, line)

    source = merged.get("source")
    if source is None and len(sources) == 1:
        source = next(iter(sources))
    if not isinstance(source, str) or source not in sources:
        out.add(at("source"), name,
                f"unknown source {source!r}" if source else "'source' is required")
    table = merged.get("table")
    adapter = sources[source].adapter if isinstance(source, str) and source in sources else None
    if adapter == "sql" and not isinstance(table, str):
        out.add(line, name, "'table' is required for an sql source")

    retain = None
    phrase = merged.get("retain")
    if phrase is None:
        out.add(line, name, "'retain' is required")
    else:
        try:
            retain = parse(str(phrase))
            _check_period(retain, tz)
        except PhraseError as exc:
            out.add(at("retain"), name, f"retain: {exc.reason} in {exc.phrase!r}")
            retain = None

    events = merged.get("events") or {}
    if not isinstance(events, dict) or not all(isinstance(v, str) for v in events.values()):
        out.add(at("events"), name, "'events' must map event words to column names")
        events = {}
    event_column = events.get(retain.event, retain.event) if retain else ""

    filters = _filters(merged.get("where"), at("where"), name, out)
    children = _children(merged.get("children"), at("children"), name, out)
    action = _action(merged.get("action", "delete"), at("action"), name, out)
    batch_size = _number(merged, "batch_size", DEFAULT_BATCH_SIZE, int, at, name, out, low=1)
    max_fraction = _number(merged, "max_fraction", DEFAULT_MAX_FRACTION, float, at, name, out,
                           low=0.0, high=1.0)
    max_rows = _number(merged, "max_rows", None, int, at, name, out, low=0)
    schedule_text = str(merged.get("schedule", DEFAULT_SCHEDULE))
    try:
        scheduler.trigger(schedules.parse(schedule_text), str(tz))
    except PhraseError as exc:
        out.add(at("schedule"), name, f"schedule: {exc.reason} in {exc.phrase!r}")
    except ValueError:
        pass  # an unknown time zone is reported once, for the policy
    lock_timeout = _number(merged, "lock_timeout", DEFAULT_LOCK_TIMEOUT, float, at, name, out,
                           low=0.001, high=3600)
    statement_timeout = _number(merged, "statement_timeout", DEFAULT_STATEMENT_TIMEOUT, float,
                                at, name, out, low=0.001, high=86400)
    if len(out.problems) > before or retain is None:
        return None
    return Rule(
        name=name, source=str(source), table=table, retain=retain, event_column=event_column,
        filters=filters, children=children, action=action,
        legal_basis=_text(merged.get("legal_basis")), description=_text(merged.get("description")),
        schedule=schedule_text, batch_size=int(batch_size or 1),
        max_fraction=float(max_fraction if max_fraction is not None else DEFAULT_MAX_FRACTION),
        max_rows=None if max_rows is None else int(max_rows),
        lock_timeout=float(lock_timeout), statement_timeout=float(statement_timeout),
        line=line, lines=lines,
    )


def _check_period(retain: Retain, tz: str) -> None:
    """Reject periods that run off the calendar (10000 years) before a run meets them."""
    try:
        zone = calendar.zone(tz)
    except ValueError:
        return
    for year in (1970, 2000, 2100):
        moment = dt.datetime(year, 6, 1, tzinfo=dt.UTC)
        try:
            calendar.due_at(moment, retain, zone)
            calendar.cutoff(moment, retain, zone)
        except (ValueError, OverflowError):
            raise PhraseError(str(retain), "the period runs off the calendar") from None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(
    merged: Mapping[str, Any], key: str, default: float | None, kind: type, at: Any,
    name: str, out: _Collector, low: float | None = None, high: float | None = None,
) -> Any:
    value = merged.get(key, default)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and kind is int:
        ok = isinstance(value, int)
    if ok and low is not None and value < low:
        ok = False
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        bounds = f" between {low} and {high}" if high is not None else (
            f" of at least {low}" if low is not None else "")
        out.add(at(key), name, f"{key!r} must be a {kind.__name__}{bounds}, got {value!r}")
    return value


def _filters(tree: Any, line: int, rule: str, out: _Collector) -> tuple[Filter, ...]:
    if tree is None:
        return ()
    if not isinstance(tree, dict):
        out.add(line, rule, "'where' must map columns to values")
        return ()
    found: list[Filter] = []
    for column, value in tree.items():
        if value is None:
            found.append(Filter(column, Op.IS_NULL))
        elif isinstance(value, dict):
            if set(value) == {"not"} and value["not"] is None:
                found.append(Filter(column, Op.NOT_NULL))
            else:
                out.add(line, rule, f"where {column!r}: only {{not: null}} is understood")
        elif isinstance(value, list):
            if not value or any(isinstance(v, dict | list) or v is None for v in value):
                out.add(line, rule, f"where {column!r}: a list needs plain values")
            else:
                found.append(Filter(column, Op.IN, tuple(value)))
        else:
            found.append(Filter(column, Op.EQ, (value,)))
    return tuple(found)


def _children(tree: Any, line: int, rule: str, out: _Collector) -> tuple[Child, ...]:
    if tree is None:
        return ()
    if not isinstance(tree, list):
        out.add(line, rule, "'children' must be a list of {table, key}")
        return ()
    found: list[Child] = []
    for item in tree:
        if not isinstance(item, dict) or set(item) != {"table", "key"}:
            out.add(line, rule, "each child needs exactly 'table' and 'key'")
            continue
        found.append(Child(str(item["table"]), str(item["key"])))
    return tuple(found)


def _action(tree: Any, line: int, rule: str, out: _Collector) -> Action:
    if tree == "delete":
        return Action()
    if not isinstance(tree, dict) or set(tree) != {"anonymize"} or not isinstance(
        tree["anonymize"], dict
    ) or not tree["anonymize"]:
        out.add(line, rule, "'action' must be 'delete' or {anonymize: {column: strategy}}")
        return Action()
    columns: list[ColumnAction] = []
    for column, spec in tree["anonymize"].items():
        parsed = _strategy(str(column), spec)
        if isinstance(parsed, str):
            out.add(line, rule, parsed)
            continue
        if parsed.key_env is not None and not out.env.get(parsed.key_env):
            out.add(line, rule, f"environment variable {parsed.key_env} (the hash key) is not set")
        columns.append(parsed)
    return Action(tuple(columns))


def _strategy(column: str, spec: Any) -> ColumnAction | str:
    names = ", ".join(s.value for s in Strategy)
    if spec is None or spec == "null":
        return ColumnAction(column, Strategy.NULL)
    if isinstance(spec, str):
        if spec == "hash":
            return ColumnAction(column, Strategy.HASH, key_env=DEFAULT_HASH_KEY_ENV)
        if spec in (Strategy.REDACT, Strategy.TRUNCATE_IP):
            return ColumnAction(column, Strategy(spec))
        return f"anonymize {column!r}: unknown strategy {spec!r} (use {names})"
    if isinstance(spec, dict) and len(spec) == 1:
        (key, value), = spec.items()
        if key == "fixed":
            return ColumnAction(column, Strategy.FIXED, value=value)
        if key == "hash" and isinstance(value, str):
            return ColumnAction(column, Strategy.HASH, key_env=value)
    return f"anonymize {column!r}: cannot read strategy {spec!r} (use {names})"


def _ignore(
    tree: Any, line: int, sources: Mapping[str, Source], out: _Collector
) -> tuple[tuple[str, str], ...]:
    if tree is None:
        return ()
    if not isinstance(tree, list):
        out.add(line, None, "'ignore' must be a list of {source, table} or 'source.table'")
        return ()
    found: list[tuple[str, str]] = []
    for item in tree:
        if isinstance(item, str) and "." in item:
            src, table = item.split(".", 1)
        elif isinstance(item, dict) and set(item) == {"source", "table"}:
            src, table = str(item["source"]), str(item["table"])
        else:
            out.add(line, None, f"cannot read ignore entry {item!r}")
            continue
        if src not in sources:
            out.add(line, None, f"ignore: unknown source {src!r}")
        found.append((src, table))
    return tuple(found)
