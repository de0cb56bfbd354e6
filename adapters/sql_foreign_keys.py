"""Foreign keys into a source's tables, from wherever the referencing table lives.

SQLAlchemy's inspector reflects the keys *of* one schema's tables; retention needs
the keys *into* the source's tables, and from every schema:

* PostgreSQL: ``pg_constraint`` by ``confrelid``, so a table of another schema
  (``billing.invoices`` referencing ``public.orders``) is seen; keys that
  partitions inherit from their parent are counted once, on the parent.
* MariaDB/MySQL: ``information_schema`` by ``REFERENCED_TABLE_SCHEMA``, so the other
  databases of the same server are seen (as far as the user may see them).
* SQLite: ``pragma_foreign_key_list``, which also gives ``ON DELETE`` written on the
  column (SQLAlchemy only parses it from table constraints). SQLite resolves a
  referenced table's name without regard to letter case, so ``REFERENCES orders``
  is returned as a key into the stored table ``Orders``.
* Any other dialect: the inspector, the source's own schema only.

A key whose referencing table lives in another schema carries that schema in
``ForeignKeyInfo.schema``. Raises the driver's errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from retention.plan import ForeignKeyInfo

# PostgreSQL's pg_constraint.confdeltype -> the ON DELETE action
_PG_ACTIONS = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT", "r": "RESTRICT"}

_PG_KEYS = sa.text("""
SELECT n.nspname, c.relname, r.relname, con.confdeltype,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
             ORDER BY k.pos),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(num, pos)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
             ORDER BY k.pos)
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class r ON r.oid = con.confrelid
  JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE con.contype = 'f' AND con.conparentid = 0 AND rn.nspname = :schema
 ORDER BY n.nspname, c.relname, con.conname
""")

_MYSQL_KEYS = sa.text("""
SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME,
       k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, rc.DELETE_RULE
  FROM information_schema.KEY_COLUMN_USAGE k
  JOIN information_schema.REFERENTIAL_CONSTRAINTS rc
    ON rc.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA
   AND rc.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND rc.TABLE_NAME = k.TABLE_NAME
 WHERE k.REFERENCED_TABLE_SCHEMA = :schema
 ORDER BY k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION
""")


def folds_names(engine: sa.Engine) -> bool:
    """Whether the database compares table names without regard to letter case."""
    if engine.dialect.name == "sqlite":
        return True
    if engine.dialect.name in ("mysql", "mariadb"):
        with engine.connect() as conn:
            return bool(conn.exec_driver_sql("SELECT @@lower_case_table_names").scalar())
    return False


def into(conn: Connection, dialect: str, schema: str | None) -> list[ForeignKeyInfo]:
    """Every declared foreign key into a table of ``schema`` (None: the default one)."""
    if dialect == "postgresql":
        own = schema or conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        return [_key(ns, table, referred, cols, refcols, _PG_ACTIONS.get(action), own)
                for ns, table, referred, action, cols, refcols
                in conn.execute(_PG_KEYS, {"schema": own})]
    if dialect in ("mysql", "mariadb"):
        own = schema or conn.execute(sa.text("SELECT DATABASE()")).scalar_one()
        return _mysql(conn.execute(_MYSQL_KEYS, {"schema": own}), own)
    if dialect == "sqlite":
        return _sqlite(conn, schema)
    return _inspected(conn, schema)


def _key(schema: str, table: str, referred: str, columns: Iterable[str],
         referred_columns: Iterable[str], ondelete: str | None, own: str) -> ForeignKeyInfo:
    return ForeignKeyInfo(table, tuple(columns), referred, tuple(referred_columns),
                          ondelete, None if schema == own else schema)


def _mysql(rows: Iterable[Any], own: str) -> list[ForeignKeyInfo]:
    grouped: dict[tuple[str, str, str], list[Any]] = {}
    for row in rows:
        grouped.setdefault((row[0], row[1], row[2]), []).append(row)
    found = []
    for (schema, table, _name), parts in grouped.items():
        found.append(_key(schema, table, parts[0][4], (p[3] for p in parts),
                          (p[5] for p in parts), _action(parts[0][6]), own))
    return found


def _action(reflected: Any) -> str | None:
    """An ON DELETE action as reflected; None for NO ACTION (or none said)."""
    action = str(reflected or "").upper()
    return None if action in ("", "NO ACTION", "NONE") else action


def _sqlite(conn: Connection, schema: str | None) -> list[ForeignKeyInfo]:
    where = schema or "main"
    names = sa.inspect(conn).get_table_names(schema=schema)
    stored = {n.casefold(): n for n in names}
    found = []
    for name in names:
        keys: dict[int, list[Any]] = {}
        for row in conn.execute(sa.text(
                'SELECT id, "table", "from", "to", on_delete FROM pragma_foreign_key_list(:t, :s)'
                " ORDER BY id, seq"), {"t": name, "s": where}):
            keys.setdefault(row[0], []).append(row)
        for parts in keys.values():
            referred = stored.get(str(parts[0][1]).casefold(), parts[0][1])
            targets = [p[3] for p in parts]
            if any(t is None for t in targets):  # REFERENCES orders: its primary key
                targets = list(conn.execute(sa.text(
                    "SELECT name FROM pragma_table_info(:t, :s) WHERE pk > 0 ORDER BY pk"),
                    {"t": referred, "s": where}).scalars())
            found.append(ForeignKeyInfo(name, tuple(p[2] for p in parts), referred,
                                        tuple(targets), _action(parts[0][4])))
    return found


def _inspected(conn: Connection, schema: str | None) -> list[ForeignKeyInfo]:
    found = sa.inspect(conn).get_multi_foreign_keys(schema=schema)
    return [
        ForeignKeyInfo(name, tuple(fk["constrained_columns"]), fk["referred_table"],
                       tuple(fk["referred_columns"]),
                       str((fk.get("options") or {}).get("ondelete") or "").upper() or None)
        for (_schema, name), fks in sorted(found.items(), key=lambda item: item[0][1])
        for fk in fks if fk.get("referred_schema") in (None, schema)]
