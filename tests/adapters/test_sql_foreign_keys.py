"""Every foreign key into a rule's table is found, however its names are spelled or wherever
its table lives.

* SQLite compares table names without regard to letter case, so ``REFERENCES orders``
  points at ``Orders``; the reference must keep the rows all the same.
* SQLite's ``ON DELETE CASCADE`` / ``SET NULL`` written on the column (not as a table
  constraint) is as much a cascade as anywhere else: undeclared, it is bad input.
* PostgreSQL schemas and the other databases of a MariaDB server may hold tables that
  reference the rule's table; their references keep rows too (counted as blocked under
  ``schema.table``), and their cascades are bad input.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from retention.errors import PolicyError
from retention.policy.load import load_policy
from retention.run import engine
from retention.run.outcome import Status
from retention.testing import Server
from tests.support import keys, snapshot, utc, write_policy

RETENTION = Path(sys.executable).with_name("retention")
AS_OF = utc(2026, 3, 1, 12)


def _execute(url: str, statements: list[str]) -> None:
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        eng.dispose()


def _write(tmp_path: Path, url: str, table: str, extra: str = "") -> Path:
    return write_policy(tmp_path, (
        "policy: fk\nsources:\n  db: {adapter: sql, url: '${FK_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n{extra}"
        f"rules:\n  orders:\n    source: db\n    table: {table}\n"
        "    retain: 1 day after done_at\n    max_fraction: 1.0\n"))


def _cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FK_TEST_URL": url}
    return subprocess.run([str(RETENTION), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)


# -- F1: SQLite table names are case-insensitive ------------------------------------------

CASES = {
    # table as created, as the foreign key names it, as the rule names it
    "rule-and-table-Orders-key-orders": ("Orders", "orders", "Orders"),
    "table-orders-key-quoted-ORDERS": ("orders", '"ORDERS"', "orders"),
}


@pytest.mark.parametrize("created, named, ruled", CASES.values(), ids=list(CASES))
def test_a_reference_naming_the_table_in_another_letter_case_keeps_the_row_on_sqlite(
        sqlite_url: str, tmp_path: Path, created: str, named: str, ruled: str) -> None:
    """validate warns, run keeps order 1 (blocked by invoice) and deletes order 2."""
    _execute(sqlite_url, [
        f"CREATE TABLE {created}(id integer primary key, done_at timestamp)",
        "CREATE TABLE invoice(id integer primary key, "
        f"order_id integer not null REFERENCES {named}(id))",
        f"INSERT INTO {created} VALUES (1,'2025-01-01 00:00:00'),(2,'2025-01-01 00:00:00')",
        "INSERT INTO invoice VALUES (1,1)",
    ])
    path = str(_write(tmp_path, sqlite_url, ruled, "ignore: [db.invoice]\n"))
    checked = _cli(tmp_path, sqlite_url, "validate", path)
    assert checked.returncode == 0, checked.stderr
    assert "warning:" in checked.stderr and "'invoice' references" in checked.stderr
    ran = _cli(tmp_path, sqlite_url, "run", path, "--as-of", AS_OF.isoformat(),
               "--format", "json")
    assert ran.returncode == 0, ran.stderr
    rule = json.loads(ran.stdout)["rules"][0]
    assert (rule["deleted"], rule["blocked"]) == (1, {"invoice": 1})
    assert keys(sqlite_url, created) == {1}
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_self_reference_in_another_letter_case_keeps_the_parent_on_sqlite(
        sqlite_url: str, tmp_path: Path) -> None:
    """The NOT EXISTS aliases the referencing copy even when its name differs only in case."""
    _execute(sqlite_url, [
        "CREATE TABLE Comments(id integer primary key, parent_id integer "
        "REFERENCES COMMENTS(id), done_at timestamp)",
        "INSERT INTO Comments VALUES (1, NULL, '2025-01-01'), (2, 1, '2025-01-01'), "
        "(3, NULL, '2025-01-01')",
    ])
    os.environ["FK_TEST_URL"] = sqlite_url
    policy = load_policy(_write(tmp_path, sqlite_url, "Comments"))
    result = engine.run(policy, AS_OF).rules[0]
    assert (result.status, result.deleted) == (Status.OK, 2)
    assert keys(sqlite_url, "Comments") == {1}
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_a_rule_naming_a_table_in_another_letter_case_is_told_the_stored_name_on_sqlite(
        sqlite_url: str, tmp_path: Path) -> None:
    """Names are compared as stored (as foreign keys and reports name them): exit 2, a hint."""
    _execute(sqlite_url, [
        "CREATE TABLE Orders(id integer primary key, done_at timestamp)",
        "CREATE TABLE invoice(id integer primary key, order_id integer REFERENCES Orders(id))",
        "INSERT INTO Orders VALUES (1,'2025-01-01 00:00:00'),(2,'2025-01-01 00:00:00')",
        "INSERT INTO invoice VALUES (1,1)",
    ])
    path = str(_write(tmp_path, sqlite_url, "orders"))
    before = snapshot(sqlite_url)
    for command in (["validate", path], ["run", path, "--as-of", AS_OF.isoformat()]):
        result = _cli(tmp_path, sqlite_url, *command)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1] == (
            f"{path}:8: rule 'orders': table 'orders' does not exist in source 'db' (it has "
            "'Orders': write the name as the database stores it)")
    assert snapshot(sqlite_url) == before
    assert not (tmp_path / "audit.db").exists()


# -- F3: column-level ON DELETE CASCADE / SET NULL ---------------------------------------

def test_an_undeclared_column_level_cascade_or_set_null_is_bad_input_everywhere(
        db_url: str, tmp_path: Path) -> None:
    """The foreign key written on the column, as Django and hand-written schemas do: exit 2."""
    ts = "datetime" if db_url.startswith("mysql") else "timestamp"
    _execute(db_url, [
        f"create table orders(id integer primary key, done_at {ts} null)",
        "create table casc(id integer primary key, "
        "order_id integer references orders(id) on delete cascade)",
        "create table setn(id integer primary key, "
        "order_id integer references orders(id) on delete set null)",
        "insert into orders values (1, '2025-01-01 00:00:00')",
        "insert into casc values (1, 1)", "insert into setn values (1, 1)",
    ])
    path = str(_write(tmp_path, db_url, "orders"))
    before = snapshot(db_url)
    checked = _cli(tmp_path, db_url, "validate", path)
    assert checked.returncode == 2, checked.stderr
    lines = checked.stderr.splitlines()
    assert any(f"{path}:" in line and "table 'casc' references 'orders' with ON DELETE CASCADE"
               in line for line in lines), checked.stderr
    assert any("table 'setn' references 'orders' with ON DELETE CASCADE or SET NULL" in line
               for line in lines), checked.stderr
    ran = _cli(tmp_path, db_url, "run", path, "--as-of", AS_OF.isoformat())
    assert ran.returncode == 2, ran.stderr
    assert snapshot(db_url) == before
    assert not (tmp_path / "audit.db").exists()


# -- F4: references from other schemas / databases ---------------------------------------


@pytest.fixture
def other_mariadb(mariadb_server: Server) -> Iterator[str]:
    name = f"other_{uuid.uuid4().hex[:12]}"
    mariadb_server.create_database(name)
    try:
        yield name
    finally:
        mariadb_server.drop_database(name)


def _orders(url: str, ts: str) -> None:
    _execute(url, [
        f"create table orders(id int primary key, done_at {ts} null)",
        "insert into orders values (1, '2025-01-01'), (2, '2025-01-01'), (3, '2025-01-01'), "
        "(4, '2025-01-01')",
    ])


def _other_schema_case(db_kind: str, url: str, other: str | None, ondelete: str = ""
                       ) -> str:
    """orders 1-4 due; ``<schema>.inv`` references order 1; returns ``<schema>``."""
    if db_kind == "postgresql":
        _orders(url, "timestamp")
        _execute(url, ["create schema billing",
                       "create table billing.inv(id int primary key, order_id int "
                       f"references public.orders(id){ondelete})",
                       "insert into billing.inv values (1, 1)"])
        return "billing"
    assert other is not None
    _orders(url, "datetime")
    own = sa.make_url(url).database
    _execute(url, [f"create table {other}.inv(id int primary key, order_id int, "
                   f"foreign key (order_id) references {own}.orders(id){ondelete})",
                   f"insert into {other}.inv values (1, 1)"])
    return other


@pytest.fixture
def other_schema(request: pytest.FixtureRequest, db_url: str, db_kind: str
                 ) -> str | None:
    """A second database on the MariaDB server (PostgreSQL uses a schema of its own)."""
    if db_kind != "mariadb":
        return None
    name: str = request.getfixturevalue("other_mariadb")
    return name


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
def test_a_reference_from_another_schema_keeps_the_row_and_the_others_go(
        db_url: str, db_kind: str, other_schema: str | None, tmp_path: Path) -> None:
    """validate warns, order 1 is blocked under schema.inv, orders 2-4 are deleted."""
    schema = _other_schema_case(db_kind, db_url, other_schema)
    path = str(_write(tmp_path, db_url, "orders"))
    checked = _cli(tmp_path, db_url, "validate", path)
    assert checked.returncode == 0, checked.stderr
    assert f"table '{schema}.inv' references 'orders' (order_id)" in checked.stderr
    shown = _cli(tmp_path, db_url, "plan", path, "--as-of", AS_OF.isoformat())
    assert f"not referenced by {schema}.inv (order_id)" in shown.stdout, shown.stderr
    reported = _cli(tmp_path, db_url, "report", path, "--as-of", AS_OF.isoformat(),
                    "--format", "json")
    assert reported.returncode == 0, reported.stderr
    assert json.loads(reported.stdout)["rules"][0]["blocked"] == {f"{schema}.inv": 1}
    ran = _cli(tmp_path, db_url, "run", path, "--as-of", AS_OF.isoformat(), "--format", "json")
    assert ran.returncode == 0, ran.stderr
    rule = json.loads(ran.stdout)["rules"][0]
    assert (rule["status"], rule["deleted"], rule["blocked"]) == ("ok", 3, {f"{schema}.inv": 1})
    assert keys(db_url, "orders") == {1}


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
@pytest.mark.parametrize("ondelete", [" on delete cascade", " on delete set null"])
def test_a_cascade_from_another_schema_is_bad_input(
        db_url: str, db_kind: str, other_schema: str | None, tmp_path: Path,
        ondelete: str) -> None:
    """It cannot be a child (children live in the source's schema), so: exit 2, untouched."""
    schema = _other_schema_case(db_kind, db_url, other_schema, ondelete)
    path = str(_write(tmp_path, db_url, "orders"))
    os.environ["FK_TEST_URL"] = db_url
    before = snapshot(db_url)
    with pytest.raises(PolicyError) as caught:
        engine.run(load_policy(path), AS_OF)
    assert (f"table '{schema}.inv' (another schema) references 'orders' with ON DELETE "
            "CASCADE or SET NULL") in str(caught.value)
    assert snapshot(db_url) == before
    assert not (tmp_path / "audit.db").exists()
