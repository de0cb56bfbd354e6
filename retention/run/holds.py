"""Legal holds: records no run may touch while the hold lasts.

A hold names a rule and a primary key (``4711``, or ``col=value,col=value`` for
composite keys), a reason, who placed it and an optional last date. Holds live
in the audit store; placing and releasing them are chained audit entries. The
engine passes the active holds of a rule into its plan, and the adapter
excludes them inside the deleting statement itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import uuid
from dataclasses import dataclass
from typing import Any

from retention import values
from retention.audit import covered
from retention.audit.schema import holds
from retention.audit.store import AuditStore, key_text, now_text
from retention.db import writing
from retention.errors import UsageError
from retention.plan import ColumnKind, TableInfo


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    policy: str
    rule: str
    key: dict[str, Any]
    reason: str
    placed_by: str
    placed_at: str
    until: dt.date | None
    released_at: str | None = None
    released_by: str | None = None

    def active_on(self, day: dt.date) -> bool:
        return self.released_at is None and (self.until is None or day <= self.until)

    def as_json(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id, "policy": self.policy, "rule": self.rule,
                "key": self.key, "reason": self.reason, "placed_by": self.placed_by,
                "placed_at": self.placed_at,
                "until": None if self.until is None else self.until.isoformat(),
                "released_at": self.released_at, "released_by": self.released_by}


def parse_key(text: str, primary_key: tuple[str, ...]) -> dict[str, str]:
    """``4711`` for a one-column key, ``col=value,col=value`` for any key.

    Raises :class:`UsageError` when the text does not name exactly the key's columns.
    """
    text = text.strip()
    if not text:
        raise UsageError("the key is empty")
    if "=" not in text:
        if len(primary_key) != 1:
            raise UsageError(f"the key has columns {', '.join(primary_key)}: "
                             "give it as col=value,col=value")
        return {primary_key[0]: text}
    parts: dict[str, str] = {}
    for item in text.split(","):
        column, sep, value = item.partition("=")
        column, value = column.strip(), value.strip()
        if not sep or not column or not value:
            raise UsageError(f"cannot read key part {item!r}: expected col=value")
        if column in parts:
            raise UsageError(f"key column {column!r} is given twice")
        parts[column] = value
    if set(parts) != set(primary_key):
        raise UsageError(f"the key of this rule's table is ({', '.join(primary_key)}), "
                         f"not ({', '.join(parts)})")
    return {c: parts[c] for c in primary_key}


def typed(key: dict[str, str], table: TableInfo) -> dict[str, Any]:
    """A key read from the command line, with integer columns as integers.

    Raises :class:`UsageError` when a value does not fit its column.
    """
    out: dict[str, Any] = {}
    for column, value in key.items():
        info = table.columns[column]
        if info.python_type is int:
            try:
                out[column] = int(value)
            except ValueError:
                raise UsageError(f"key column {column!r} is an integer, not {value!r}") from None
        else:
            out[column] = value
        if info.kind in (ColumnKind.INTEGER, ColumnKind.TEXT):  # past its range or length
            why = values.problem(out[column], info)
            if why:
                raise UsageError(f"key column {column!r}: {why}")
    return out


def add(store: AuditStore, policy: str, rule: str, key: dict[str, Any], reason: str,
        by: str | None = None, until: dt.date | None = None) -> Hold:
    """Place a hold and record it in the chain."""
    if not reason.strip():
        raise UsageError("--reason must say why the record is held")
    hold = Hold(uuid.uuid4().hex[:12], policy, rule, key, reason.strip(),
                by or getpass.getuser(), now_text(), until)
    with writing(store.engine) as conn:
        conn.execute(holds.insert().values(
            hold_id=hold.hold_id, policy=policy, rule=rule, record_key=key_text(key),
            reason=hold.reason, placed_by=hold.placed_by, placed_at=hold.placed_at,
            until=None if until is None else until.isoformat()))
        store.append([{"kind": "hold_added", "run_id": "-", "rule": rule,
                       "record_key": key_text(key), "at": hold.placed_at,
                       "detail": json.dumps(hold.as_json(), sort_keys=True)}], conn)
    return hold


def release(store: AuditStore, policy: str, hold_id: str, by: str | None = None) -> Hold:
    """Release a hold and record it. Raises :class:`UsageError` for an unknown or released id."""
    found = [h for h in list_holds(store, policy) if h.hold_id == hold_id]
    if not found:
        raise UsageError(f"no hold {hold_id!r} in policy {policy!r}")
    hold = found[0]
    if hold.released_at is not None:
        raise UsageError(f"hold {hold_id!r} was already released at {hold.released_at}")
    at, who = now_text(), by or getpass.getuser()
    with writing(store.engine) as conn:
        conn.execute(holds.update().where(holds.c.hold_id == hold_id)
                     .values(released_at=at, released_by=who))
        store.append([{"kind": "hold_released", "run_id": "-", "rule": hold.rule,
                       "record_key": key_text(hold.key), "at": at,
                       "detail": json.dumps({"hold_id": hold_id, "released_by": who},
                                            sort_keys=True)}], conn)
    return dataclasses.replace(hold, released_at=at, released_by=who)


def list_holds(store: AuditStore, policy: str) -> list[Hold]:
    """The policy's holds as the chain records them (:func:`retention.audit.covered.holds`).

    Raises :class:`~retention.errors.AuditError` when ``retention_holds`` was edited."""
    return [Hold(
        hold_id=r["hold_id"], policy=r["policy"], rule=r["rule"],
        key=json.loads(r["record_key"]), reason=r["reason"], placed_by=r["placed_by"],
        placed_at=r["placed_at"],
        until=None if r["until"] is None else dt.date.fromisoformat(r["until"]),
        released_at=r["released_at"], released_by=r["released_by"])
        for r in covered.holds(store, policy)]


def active_keys(store: AuditStore, policy: str, rule: str, primary_key: tuple[str, ...],
                day: dt.date) -> tuple[tuple[Any, ...], ...]:
    """The keys of ``rule`` under an active hold on local date ``day``, as tuples."""
    found = []
    for hold in list_holds(store, policy):
        if hold.rule == rule and hold.active_on(day) and set(hold.key) == set(primary_key):
            found.append(tuple(hold.key[c] for c in primary_key))
    return tuple(found)
