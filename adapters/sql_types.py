"""What a reflected column holds, as the rest of retention needs to know it: its Python
type, the values it compares with (integer range by declared width, numeric range by
precision, text length, enum members), whether it holds instants (aware, naive) or
dates, and the declared name of a type SQLAlchemy does not know (MariaDB's INET6, an
extension's type), so that messages name it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from retention.plan import ColumnKind


def python_type(kind: Any) -> type | None:
    """The Python type of the column's values, where SQLAlchemy knows one."""
    try:
        found = kind.python_type
    except NotImplementedError:
        return None
    return found if isinstance(found, type) else None


_MYSQL_INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INTEGER": 32, "INT": 32,
                   "BIGINT": 64}


def _int_bits(kind: Any, dialect: str) -> int:
    """How many bits an integer column stores on this database."""
    if dialect == "sqlite":
        return 64  # SQLite stores every integer in up to 8 bytes, whatever the declared type
    if dialect in ("mysql", "mariadb"):
        return _MYSQL_INT_BITS.get(type(kind).__name__, 64)
    if isinstance(kind, sa.SmallInteger):
        return 16
    return 64 if isinstance(kind, sa.BigInteger) else 32


def domain(kind: Any, dialect: str) -> dict[str, Any]:
    """The ``ColumnInfo`` fields that say which values the column compares with."""
    if isinstance(kind, sa.Boolean):
        return {"kind": ColumnKind.BOOLEAN}
    if isinstance(kind, sa.Integer):
        bits = _int_bits(kind, dialect)
        low, high = (0, 2**bits - 1) if getattr(kind, "unsigned", False) else (
            -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if dialect in ("mysql", "mariadb") and getattr(kind, "display_width", None) == 1 \
                and type(kind).__name__ == "TINYINT":  # how MySQL spells BOOLEAN
            return {"kind": ColumnKind.BOOLEAN, "low": low, "high": high}
        return {"kind": ColumnKind.INTEGER, "low": low, "high": high}
    if isinstance(kind, sa.Float):
        return {"kind": ColumnKind.FLOAT}
    if isinstance(kind, sa.Numeric):
        precision, scale = kind.precision, kind.scale or 0
        if precision is None:
            return {"kind": ColumnKind.NUMERIC}
        largest = float(10 ** (precision - scale)) - 10.0**-scale
        return {"kind": ColumnKind.NUMERIC, "low": -largest, "high": largest}
    if isinstance(kind, sa.Enum):
        return {"kind": ColumnKind.ENUM, "enums": tuple(str(e) for e in kind.enums)}
    if isinstance(kind, sa.String) and type(kind).__name__ != "SET":
        return {"kind": ColumnKind.TEXT, "length": kind.length}
    if isinstance(kind, sa.DateTime):
        return {"kind": ColumnKind.TIMESTAMP}
    if isinstance(kind, sa.Date):
        return {"kind": ColumnKind.DATE}
    return {}


def temporal(kind: Any, dialect: str) -> str | None:
    """``aware``, ``naive`` or ``date`` for a column of instants or dates, else None."""
    if isinstance(kind, sa.DateTime):
        if dialect == "postgresql":
            return "aware" if kind.timezone else "naive"
        if dialect in ("mysql", "mariadb") and type(kind).__name__ == "TIMESTAMP":
            return "aware"  # stored in UTC; the session time zone is UTC
        return "naive"
    if isinstance(kind, sa.Date):
        return "date"
    return None


def declared_types(conn: Connection, dialect: str, table: str, schema: str | None
                   ) -> dict[str, str]:
    """Column -> type name as the database declares it, for the types SQLAlchemy does not
    know (MariaDB's INET6, an extension's type): messages name them, not 'NULL'."""
    if dialect == "postgresql":
        stmt = sa.text("SELECT a.attname, format_type(a.atttypid, a.atttypmod) "
                       "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = :t "
                       "AND n.nspname = COALESCE(:s, current_schema()) AND a.attnum > 0")
    elif dialect in ("mysql", "mariadb"):
        stmt = sa.text("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                       "WHERE TABLE_SCHEMA = COALESCE(:s, DATABASE()) AND TABLE_NAME = :t")
    elif dialect == "sqlite":
        stmt = sa.text("SELECT name, type FROM pragma_table_info(:t, COALESCE(:s, 'main'))")
    else:
        return {}
    return {str(name): str(kind).upper()
            for name, kind in conn.execute(stmt, {"t": table, "s": schema})}
