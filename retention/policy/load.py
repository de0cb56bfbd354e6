"""Load a policy file into frozen :mod:`retention.policy.rules` objects.

Every problem in the file is collected in one pass and raised together as a
:class:`~retention.errors.PolicyError`, one line per problem naming the file,
the line and the rule. The live schema is checked later, by
:mod:`retention.run.validate`, once adapters are open.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retention import calendar
from retention.errors import PhraseError, PolicyError, Problem
from retention.period import Retain
from retention.policy import duration, yamlfile
from retention.policy import parts as _parts
from retention.policy import schedule as schedules
from retention.policy import sources as _sources
from retention.policy.needs import Need, Unset, unset_in
from retention.policy.parts import Collector as _Collector
from retention.policy.parts import action as _action
from retention.policy.parts import children as _children
from retention.policy.parts import filters as _filters
from retention.policy.parts import ignore as _ignore
from retention.policy.phrase import parse
from retention.policy.rules import (
    DEFAULT_BATCH_SECONDS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DROP_PARTITIONS,
    DEFAULT_LOCK_TIMEOUT,
    DEFAULT_MAX_FRACTION,
    DEFAULT_PAUSE,
    DEFAULT_SCHEDULE,
    DEFAULT_STATEMENT_TIMEOUT,
    MAX_BATCH_SECONDS,
    MAX_BATCH_SIZE,
    MAX_LOCK_TIMEOUT,
    MAX_PAUSE,
    MAX_REPLICA_LAG,
    MAX_ROWS,
    MAX_RUNTIME,
    MAX_STATEMENT_TIMEOUT,
    MIN_BATCH_SECONDS,
    MIN_REPLICA_LAG,
    MIN_RUNTIME,
    MIN_TIMEOUT,
    Policy,
    Rule,
    Source,
)
from retention.stored import EVENT_FORMATS

DEFAULT_AUDIT_URL = "sqlite:///retention-audit.db"  # the embedded audit store
DEFAULT_TIMEZONE = "UTC"  # calendar of a policy that names none
FILES_TABLE = "files"  # the one table of a files source (adapters/files.py)

_TOP_KEYS = {"policy", "version", "timezone", "sources", "audit", "defaults", "rules", "ignore",
             "description"}
_RULE_KEYS = {"source", "table", "retain", "events", "where", "children", "action",
              "legal_basis", "description", "schedule", "batch_size", "max_fraction", "max_rows",
              "lock_timeout", "statement_timeout", "event_format", "pause_between_batches",
              "max_runtime", "max_replica_lag", "batch_seconds", "drop_partitions"}
_AUDIT_KEYS = {"url", "checkpoints", "public_key"}  # checkpoints: retention.audit.checkpoints





def load_policy(path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
                need: Need = Need.ALL) -> Policy:
    """Read and check ``path``. Raises :class:`PolicyError` listing every problem found.

    ``need``: what the command needs from the environment (:mod:`retention.policy.needs`);
    sources' settings and hash keys it does not need may be unset.
    """
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError.single(shown, None, None,
                                 f"cannot read the file: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError([_not_utf8(raw, exc, shown, env)]) from None
    return load_policy_text(text, shown, env, sha256=hashlib.sha256(raw).hexdigest(),
                            need=need)


def _not_utf8(raw: bytes, exc: UnicodeDecodeError, path: str,
              env: Mapping[str, str] | None) -> Problem:
    """The first byte that is not UTF-8: its line, its offset and the rule it sits in."""
    line = raw.count(b"\n", 0, exc.start) + 1
    message = (f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
               "(save the file as UTF-8)")
    tree, _ = yamlfile.load(raw.decode("utf-8", errors="replace"), path,
                            os.environ if env is None else env)
    return Problem(path, line, _rule_at(tree, line), message)


def _rule_at(tree: Any, line: int) -> str | None:
    """The rule whose lines include ``line`` (a rule runs to the next key at its level or
    above), or None outside the rules."""
    if not isinstance(tree, yamlfile.LineDict):
        return None
    rules = tree.get("rules")
    starts: list[tuple[int, str | None]] = [
        (at, None) for key, at in tree.lines.items() if key != "rules"]
    if isinstance(rules, yamlfile.LineDict):
        starts += [(at, str(name)) for name, at in rules.lines.items()]
    before = [(at, name) for at, name in starts if at <= line]
    return max(before, key=lambda s: s[0])[1] if before else None


def load_policy_text(
    text: str, path: str, env: Mapping[str, str] | None = None, sha256: str | None = None,
    need: Need = Need.ALL,
) -> Policy:
    """Like :func:`load_policy` for text already read; ``path`` is only used in messages."""
    tree, problems = yamlfile.load(text, path, env, need.tolerates)
    out = _Collector(path, os.environ if env is None else env, need)
    out.problems.extend(_in_rule(p) for p in problems)
    if tree is None:
        raise PolicyError(out.problems)
    if not isinstance(tree, yamlfile.LineDict):
        out.add(1, None, "the file must be a mapping with 'policy', 'sources' and 'rules'")
        raise PolicyError(out.problems)
    policy = _policy(tree, out, sha256 or hashlib.sha256(text.encode()).hexdigest())
    if policy is not None:
        policy = dataclasses.replace(policy, text=text)
    if out.problems or policy is None:
        # A value YAML could not give (unreadable, or an unset variable) is one problem,
        # not also every complaint about the text standing in for it on the same line.
        unread = {p.line for p in problems}
        found = out.problems[:len(problems)] + [
            p for p in out.problems[len(problems):] if p.line not in unread]
        raise PolicyError(sorted(found, key=lambda p: (p.line or 0)))
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

    sources = _sources.read(tree.get("sources"), tree.line_of("sources"), out)
    audit = tree.get("audit")
    audit_url: str | Unset = DEFAULT_AUDIT_URL
    proof: dict[str, str | Unset | None] = {}
    if audit is None:
        pass
    elif isinstance(audit, yamlfile.LineDict):
        for key in audit:
            if key not in _AUDIT_KEYS:
                out.add(audit.line_of(key), None, f"unknown key {key!r} in 'audit'")
        proof = _audit_proof(audit, out)
        if isinstance(audit.get("url"), Unset):
            audit_url = audit["url"]
            out.unset.extend(unset_in([audit_url]))
        else:
            audit_url = str(audit.get("url") or DEFAULT_AUDIT_URL)
            _sources.check_url(audit_url, audit.line_of("url"), "audit: url", True, out)
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
        path=out.path, sha256=sha256, sources=sources, audit=audit_url,
        rules=tuple(rules), ignore=tuple((src, table) for src, table, _ in ignore),
        unset=tuple(sorted(out.unset, key=lambda p: p.line or 0)),
        ignore_reasons={(src, table): why for src, table, why in ignore if why},
        checkpoints=proof.get("checkpoints"), public_key=proof.get("public_key"),
    )


def _audit_proof(audit: yamlfile.LineDict, out: _Collector) -> dict[str, str | Unset | None]:
    """``audit: {checkpoints: PATH, public_key: PEM-or-path}``: text, or an :class:`Unset`
    (a command that does not need it), or None when not given."""
    found: dict[str, str | Unset | None] = {}
    for key in ("checkpoints", "public_key"):
        value = audit.get(key)
        if value is None:
            continue
        if isinstance(value, Unset):
            out.unset.extend(unset_in([value]))
            found[key] = value
        elif not isinstance(value, str) or not value.strip():
            out.add(audit.line_of(key), None, f"'audit: {key}' must be a non-empty text")
        else:
            found[key] = value.strip() if key == "checkpoints" else value
    return found


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

    where = merged.get("where")
    if isinstance(where, yamlfile.LineDict):  # each column's own line, for the schema check
        lines.update({f"where.{column}": where.line_of(column) for column in where})

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
    if adapter == "files" and table is None:
        table = FILES_TABLE

    retain = None
    phrase = merged.get("retain")
    if phrase is None:
        out.add(line, name, "'retain' is required")
    else:
        try:
            retain = parse(str(phrase))
            _check_period(retain, tz)
        except PhraseError as exc:
            out.add(at("retain"), name, f"retain: {exc.reason} in {_parts.shown(exc.phrase)}")
            retain = None

    events = merged.get("events") or {}
    if not isinstance(events, dict) or not all(isinstance(v, str) for v in events.values()):
        out.add(at("events"), name, "'events' must map event words to column names")
        events = {}
    event_column = events.get(retain.event, retain.event) if retain else ""

    filters = _filters(merged.get("where"), at("where"), name, out)
    children = _children(merged.get("children"), at("children"), name, out)
    action = _action(merged.get("action", "delete"), at("action"), name, out)
    batch_size = _number(merged, "batch_size", DEFAULT_BATCH_SIZE, int, at, name, out,
                         low=1, high=MAX_BATCH_SIZE)
    batch_seconds = _number(merged, "batch_seconds", DEFAULT_BATCH_SECONDS, float, at, name,
                            out, low=MIN_BATCH_SECONDS, high=MAX_BATCH_SECONDS)
    max_fraction = _number(merged, "max_fraction", DEFAULT_MAX_FRACTION, float, at, name, out,
                           low=0.0, high=1.0)
    max_rows = _number(merged, "max_rows", None, int, at, name, out, low=0, high=MAX_ROWS)
    schedule_text = str(merged.get("schedule", DEFAULT_SCHEDULE))
    try:
        schedules.parse(schedule_text)
    except PhraseError as exc:
        out.add(at("schedule"), name, f"schedule: {exc.reason} in {_parts.shown(exc.phrase)}")
    lock_timeout = _number(merged, "lock_timeout", DEFAULT_LOCK_TIMEOUT, float, at, name, out,
                           low=MIN_TIMEOUT, high=MAX_LOCK_TIMEOUT)
    statement_timeout = _number(merged, "statement_timeout", DEFAULT_STATEMENT_TIMEOUT, float,
                                at, name, out, low=MIN_TIMEOUT, high=MAX_STATEMENT_TIMEOUT)
    event_format = merged.get("event_format")
    if event_format is not None and event_format not in EVENT_FORMATS:
        out.add(at("event_format"), name, f"'event_format' must be one of "
                f"{', '.join(EVENT_FORMATS)}, got {event_format!r}")
    pause = _number(merged, "pause_between_batches", DEFAULT_PAUSE, float, at, name, out,
                    low=0.0, high=MAX_PAUSE)
    max_runtime = _duration(merged, "max_runtime", at, name, out, MIN_RUNTIME, MAX_RUNTIME)
    max_lag = _lag(name, body, merged, at, lines,
                   sources.get(source) if isinstance(source, str) else None, out)
    drop_partitions = merged.get("drop_partitions", DEFAULT_DROP_PARTITIONS)
    if not isinstance(drop_partitions, bool):
        out.add(at("drop_partitions"), name, "'drop_partitions' must be true or false, got "
                f"{_parts.shown(drop_partitions)}")
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
        event_format=None if event_format is None else str(event_format),
        pause_between_batches=float(pause), max_runtime=max_runtime, max_replica_lag=max_lag,
        batch_seconds=float(batch_seconds),
        drop_partitions=bool(drop_partitions),
    )


def _lag(name: str, body: Mapping[str, Any], merged: Mapping[str, Any], at: Any,
         lines: dict[str, int], source: Source | None, out: _Collector) -> float | None:
    """A rule's ``max_replica_lag``: its own, else its source's, else the defaults'."""
    value: Any
    if "max_replica_lag" not in body and source is not None \
            and "max_replica_lag" in source.options:
        value = source.options["max_replica_lag"]  # checked with the source
        lines["max_replica_lag"] = source.lines.get("max_replica_lag", source.line)
        if not _sources.lag_fits(value):
            return None
    else:
        before = len(out.problems)
        value = _number(merged, "max_replica_lag", None, float, at, name, out,
                        low=MIN_REPLICA_LAG, high=MAX_REPLICA_LAG)
        if len(out.problems) > before:
            return None
        if "max_replica_lag" in merged:
            lines.setdefault("max_replica_lag", at("max_replica_lag"))
    if value is None or source is None:
        return None
    why = _sources.lag_unreadable(source)
    if why:
        out.add(lines["max_replica_lag"], name, why)
    return float(value)


def _duration(merged: Mapping[str, Any], key: str, at: Any, name: str, out: _Collector,
              low: float, high: float) -> float | None:
    """Seconds, or a phrase such as ``30 minutes`` (:mod:`retention.policy.duration`)."""
    value = merged.get(key)
    if value is None:
        return None
    try:
        found = duration.seconds(value)
    except PhraseError as exc:
        out.add(at(key), name, f"{key}: {exc.reason} in {_parts.shown(exc.phrase)}")
        return None
    if not low <= found <= high:
        out.add(at(key), name, f"{key!r} must be between {low:g} and {high:g} seconds "
                f"({high / 86400:g} days), got {_parts.shown(value)}")
        return None
    return found


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
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False  # NaN passes every comparison below and would switch the check off
    if ok and low is not None and value < low:
        ok = False
    if ok and high is not None and value > high:
        ok = False
    if not ok:
        bounds = f" between {low} and {high}" if high is not None else (
            f" of at least {low}" if low is not None else "")
        article = "an" if kind is int else "a"
        out.add(at(key), name, f"{key!r} must be {article} {kind.__name__}{bounds}, "
                f"got {_parts.shown(value)}")
    return value


