"""Reading the parts of a rule: ``where``, ``children``, ``action``, and ``ignore``.

Each reader adds problems to the :class:`Collector` instead of raising, so that
every mistake in a file is reported in one pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from retention.actions import Action, ColumnAction, Strategy
from retention.errors import Problem
from retention.filters import Filter, Op
from retention.policy.needs import Need
from retention.policy.rules import DEFAULT_HASH_KEY_ENV, Child, Source


class Collector:
    def __init__(self, path: str, env: Mapping[str, str], need: Need = Need.ALL) -> None:
        self.path = path
        self.env = env  # where ${VAR} and the hash keys are looked up
        self.need = need  # what the command loading the policy needs from the environment
        self.problems: list[Problem] = []
        self.unset: list[Problem] = []  # settings the command does not need, left unset

    def add(self, line: int | None, rule: str | None, message: str) -> None:
        self.problems.append(Problem(self.path, line, rule, message))


WHERE_FORMS = "use a value, [values], null, {not: value}, {not: [values]} or {not: null}"


def filters(tree: Any, line: int, rule: str, out: Collector) -> tuple[Filter, ...]:
    if tree is None:
        return ()
    if not isinstance(tree, dict):
        out.add(line, rule, "'where' must map columns to values")
        return ()
    found: list[Filter] = []
    for column, value in tree.items():
        negated = isinstance(value, dict)
        if negated:
            if set(value) != {"not"} or isinstance(value["not"], dict):
                out.add(line, rule, f"where {column!r}: {WHERE_FORMS}")
                continue
            value = value["not"]
        if value is None:
            found.append(Filter(column, Op.NOT_NULL if negated else Op.IS_NULL))
        elif isinstance(value, list) and not value:
            out.add(line, rule, f"where {column!r}: " + (
                "{not: []} excludes nothing; list the values to exclude or remove the entry"
                if negated else "an empty list matches nothing, so the rule would never "
                "select a row; list the values to match"))
        elif isinstance(value, list):
            if any(isinstance(v, dict | list) or v is None for v in value):
                out.add(line, rule, f"where {column!r}: a list needs plain values")
            else:
                found.append(Filter(column, Op.NOT_IN if negated else Op.IN, tuple(value)))
        else:
            found.append(Filter(column, Op.NOT_EQ if negated else Op.EQ, (value,)))
    return tuple(found)


def children(tree: Any, line: int, rule: str, out: Collector) -> tuple[Child, ...]:
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


def action(tree: Any, line: int, rule: str, out: Collector) -> Action:
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
            missing = Problem(out.path, line, rule,
                              f"environment variable {parsed.key_env} (the hash key) is not set")
            (out.problems if out.need.hash_keys else out.unset).append(missing)
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


def ignore(
    tree: Any, line: int, sources: Mapping[str, Source], out: Collector
) -> tuple[tuple[str, str, str | None], ...]:
    """``ignore:`` entries as ``(source, table, reason)``: ``source.table``, or a mapping
    ``{table: source.table}`` or ``{source, table}``, either with an optional ``reason``."""
    if tree is None:
        return ()
    if not isinstance(tree, list):
        out.add(line, None, "'ignore' must be a list of 'source.table', {table: source.table, "
                "reason} or {source, table, reason}")
        return ()
    found: list[tuple[str, str, str | None]] = []
    for item in tree:
        reason: Any = None
        if isinstance(item, str) and "." in item:
            src, table = item.split(".", 1)
        elif isinstance(item, dict) and set(item) - {"reason"} == {"source", "table"}:
            src, table, reason = str(item["source"]), str(item["table"]), item.get("reason")
        elif (isinstance(item, dict) and set(item) - {"reason"} == {"table"}
              and isinstance(item["table"], str) and "." in item["table"]):
            (src, table), reason = item["table"].split(".", 1), item.get("reason")
        else:
            out.add(line, None, f"cannot read ignore entry {item!r}")
            continue
        if reason is not None and not isinstance(reason, str):
            out.add(line, None, f"ignore {src}.{table}: 'reason' must be text")
            continue
        if src not in sources:
            out.add(line, None, f"ignore: unknown source {src!r}")
        found.append((src, table, reason))
    return tuple(found)


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut short if a hostile file made it long."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
