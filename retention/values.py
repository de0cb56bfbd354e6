"""Does a value from a policy fit a column? Checked before any statement binds it.

A value that does not fit its column would fail only when a run binds it (a
text on a PostgreSQL boolean, a NaN, an integer past 64 bits on SQLite), or
match nothing without a word (a text longer than the column, an enum value
that is no member). :func:`problem` says why, or returns None.

What fits, per :class:`~retention.plan.ColumnKind`:

* boolean: ``true`` / ``false``. Not 0 or 1 (PostgreSQL cannot compare a
  boolean with an integer), except on MySQL/MariaDB's TINYINT(1), which is an
  integer column: there any integer in its range fits too.
* integer: a whole number (not a boolean, not ``5.0``, not the text ``"5"``)
  within the range the database stores.
* float: a finite number. numeric: a finite number within the declared
  precision. Integers on either stay within 64 bits.
* text: text (``12345`` on a text column must be quoted), at most the declared
  length. enum: one of the members, exactly.
* date: a YAML date (``2020-01-01``). timestamp: a YAML timestamp
  (``2020-01-01 12:00:00``, with an offset or without).
* other column types (time, interval, JSON, UUID, ...) are compared as written.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from retention.plan import ColumnInfo, ColumnKind

INT64 = (-(2**63), 2**63 - 1)  # the widest integer any of the databases binds


def problem(value: Any, column: ColumnInfo) -> str | None:
    """Why ``value`` cannot be compared with ``column``, or None when it can."""
    kind = column.kind
    column_is = f"column {column.name!r} is {column.type_name}"
    shown = show(value)
    if kind is ColumnKind.BOOLEAN:
        if isinstance(value, bool):
            return None
        if column.low is not None and _is_int(value):
            return _range(value, column, column_is)
        return f"{shown} is not true or false ({column_is})"
    if kind is ColumnKind.INTEGER:
        if not _is_int(value):
            return f"{shown} is not a whole number ({column_is}){_unquote(value)}"
        return _range(value, column, column_is)
    if kind in (ColumnKind.FLOAT, ColumnKind.NUMERIC):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"{shown} is not a number ({column_is}){_unquote(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{shown} is not a finite number ({column_is})"
        if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
            return f"{shown} is out of range ({column_is})"
        return _range(value, column, column_is)
    if kind in (ColumnKind.TEXT, ColumnKind.ENUM):
        if not isinstance(value, str):
            return f"{shown} is not text ({column_is}): quote it, as in '{shown}'"
        if kind is ColumnKind.ENUM and value not in column.enums:
            return f"{shown} is not one of {', '.join(column.enums)} ({column_is})"
        if column.length is not None and len(value) > column.length:
            return (f"{shown} has {len(value)} characters, more than the "
                    f"{column.length} that {column_is} holds")
        return None
    if kind is ColumnKind.DATE:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return None
        return f"{shown} is not a date ({column_is}): write it unquoted, as in 2020-01-31"
    if kind is ColumnKind.TIMESTAMP:
        if isinstance(value, dt.datetime):
            return None
        return (f"{shown} is not a timestamp ({column_is}): write it unquoted, as in "
                "2020-01-31 12:00:00")
    return None


def show(value: Any, limit: int = 40) -> str:
    """``value`` as a policy would write it, cut short if long."""
    text = repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        text = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[repr(value)]
    elif isinstance(value, dt.date):
        text = value.isoformat()
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range(value: float, column: ColumnInfo, column_is: str) -> str | None:
    low, high = column.low, column.high
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{show(value)} is out of range ({column_is}: {_num(low)} to {_num(high)})"
    return None


def _num(bound: float | None) -> str:
    if isinstance(bound, float) and bound.is_integer():
        return str(int(bound))
    return str(bound)


def _unquote(value: Any) -> str:
    """A hint when the value is a number written in quotes."""
    try:
        float(value) if isinstance(value, str) else None
    except ValueError:
        return ""
    return ": write the number without quotes" if isinstance(value, str) else ""
