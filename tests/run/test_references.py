"""Rows another table still references are kept, counted as blocked, and never fail a batch.

A foreign key into a rule's table (or into one of its declared children) from a
table the rule does not declare keeps the referenced rows: the due predicate
says ``NOT EXISTS`` in the select, in the delete's re-check and in the counts,
and the report and the run count the kept rows per referencing table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from retention.adapters import sql_statements as q
from retention.adapters.sql import SqlAdapter

from retention.plan import ColumnInfo, ForeignKeyInfo, Reference, TableInfo
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.report import build as report_module
from retention.run import engine
from retention.run.compile import blocking_references, make_plan
from retention.run.outcome import Status
from tests.support import audited, keys, snapshot, table_rows, utc, write_policy

AS_OF = utc(2026, 3, 1, 12)
OLD = "2015-01-01 10:00:00"
NEW = "2026-02-27 10:00:00"
RETENTION = Path(sys.executable).with_name("retention")


def _ts(kind: str) -> str:
    return "DATETIME" if kind == "mariadb" else "TIMESTAMP"


def _deferred(kind: str) -> str:
    """Django's foreign keys: deferred to the commit where the database can defer them."""
    return "" if kind == "mariadb" else " DEFERRABLE INITIALLY DEFERRED"


def _execute(url: str, statements: list[str]) -> None:
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        eng.dispose()


def _policy(tmp_path: Path, url: str, rules: str) -> Policy:
    os.environ["REFERENCES_TEST_URL"] = url
    return load_policy(write_policy(tmp_path, (
        "policy: references\nsources:\n  db: {adapter: sql, url: '${REFERENCES_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        f"defaults:\n  source: db\n  max_fraction: 1.0\nrules:\n{rules}")))


USERS_RULE = ("  users:\n    table: users\n    retain: 1 year after closed_at\n"
              "    children:\n      - {table: user_groups, key: user_id}\n")


def _users(url: str, kind: str) -> None:
    """Users 1-4 closed long ago, 5 recently; the admin log references 2, 3 (twice) and 5."""
    _execute(url, [
        f"CREATE TABLE users (id INTEGER PRIMARY KEY, closed_at {_ts(kind)} NULL)",
        "CREATE TABLE user_groups (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
        "FOREIGN KEY (user_id) REFERENCES users (id))",
        "CREATE TABLE admin_log (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
        f"FOREIGN KEY (user_id) REFERENCES users (id){_deferred(kind)})",
        f"INSERT INTO users VALUES (1, '{OLD}'), (2, '{OLD}'), (3, '{OLD}'), (4, '{OLD}'), "
        f"(5, '{NEW}')",
        "INSERT INTO user_groups VALUES (1, 1), (2, 2), (3, 5)",
        "INSERT INTO admin_log VALUES (1, 2), (2, 3), (3, 3), (4, 5)",
    ])


def test_a_row_an_undeclared_table_references_is_kept_and_the_others_are_deleted(
        db_url: str, db_kind: str, tmp_path: Path) -> None:
    """The auth_user / django_admin_log case: the batch no longer fails, 2 rows are blocked."""
    _users(db_url, db_kind)
    policy = _policy(tmp_path, db_url, USERS_RULE)
    outcome = engine.run(policy, AS_OF)
    result = outcome.rules[0]
    assert (result.status, result.error) == (Status.OK, None)
    assert (result.deleted, result.due, result.children) == (2, 2, {"user_groups": 1})
    assert result.blocked == {"admin_log": 2}
    assert result.as_json()["blocked"] == {"admin_log": 2}
    assert keys(db_url, "users") == {2, 3, 5}
    assert keys(db_url, "user_groups") == {2, 3}
    assert keys(db_url, "admin_log") == {1, 2, 3, 4}
    assert sorted(r["key"]["id"] for r in audited(policy.audit_url, "users")) == [1, 4]
    again = engine.run(policy, AS_OF).rules[0]
    assert (again.status, again.deleted, again.blocked) == (Status.OK, 0, {"admin_log": 2})


def test_the_report_and_a_dry_run_count_blocked_rows_per_referencing_table(
        db_url: str, db_kind: str, tmp_path: Path) -> None:
    """Due counts only what can go; blocked says what stays and who holds on to it."""
    _users(db_url, db_kind)
    policy = _policy(tmp_path, db_url, USERS_RULE)
    before = snapshot(db_url)
    rule = report_module.build(policy, AS_OF)["rules"][0]
    assert (rule["due"], rule["blocked"], rule["children"]) == (
        2, {"admin_log": 2}, {"user_groups": 1})
    dry = engine.run(policy, AS_OF, dry_run=True).rules[0]
    assert (dry.due, dry.deleted, dry.blocked) == (2, 0, {"admin_log": 2})
    assert snapshot(db_url) == before


def test_the_delete_rechecks_the_reference_in_the_statement_itself(
        db_url: str, db_kind: str, tmp_path: Path) -> None:
    """Handed a key range holding referenced keys, the delete statement removes only the
    unreferenced one."""
    _users(db_url, db_kind)
    policy = _policy(tmp_path, db_url, USERS_RULE)
    with engine.Session(policy) as session:
        plans, _ = engine.compile_plans(session, policy.rules, AS_OF)
        adapter = session.adapter("db")
        assert isinstance(adapter, SqlAdapter)
        table = adapter.table("users")
        with adapter.engine.begin() as conn:
            gone = conn.execute(q.delete_range(table, plans["users"], adapter.dialect,
                                               (1,), (4,))).rowcount
    assert gone == 1
    assert keys(db_url, "users") == {1, 2, 3, 5}


def test_a_reference_into_a_declared_child_keeps_the_parent_and_its_children(
        db_url: str, db_kind: str, tmp_path: Path) -> None:
    """An invoice line pointing at an order line keeps the order; counted under invoice_lines."""
    _execute(db_url, [
        f"CREATE TABLE orders (id INTEGER PRIMARY KEY, done_at {_ts(db_kind)} NULL)",
        "CREATE TABLE order_lines (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, "
        "FOREIGN KEY (order_id) REFERENCES orders (id))",
        "CREATE TABLE invoice_lines (id INTEGER PRIMARY KEY, line_id INTEGER NULL, "
        "FOREIGN KEY (line_id) REFERENCES order_lines (id))",
        f"INSERT INTO orders VALUES (1, '{OLD}'), (2, '{OLD}'), (3, '{OLD}')",
        "INSERT INTO order_lines VALUES (10, 1), (11, 1), (20, 2), (30, 3)",
        "INSERT INTO invoice_lines VALUES (1, 11), (2, 11), (3, NULL)",
    ])
    policy = _policy(tmp_path, db_url, (
        "  orders:\n    table: orders\n    retain: 1 year after done_at\n"
        "    children:\n      - {table: order_lines, key: order_id}\n"))
    assert report_module.build(policy, AS_OF)["rules"][0]["blocked"] == {"invoice_lines": 1}
    result = engine.run(policy, AS_OF).rules[0]
    assert (result.status, result.error, result.deleted) == (Status.OK, None, 2)
    assert (result.blocked, result.children) == ({"invoice_lines": 1}, {"order_lines": 2})
    assert keys(db_url, "orders") == {1}
    assert keys(db_url, "order_lines") == {10, 11}


def test_a_composite_foreign_key_blocks_exactly_the_rows_it_references(
        db_url: str, db_kind: str, tmp_path: Path) -> None:
    """(tenant, account_id) -> accounts (tenant, id): one column matching is not a reference."""
    _execute(db_url, [
        f"CREATE TABLE accounts (tenant INTEGER NOT NULL, id INTEGER NOT NULL, "
        f"closed_at {_ts(db_kind)} NULL, PRIMARY KEY (tenant, id))",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, tenant INTEGER NOT NULL, "
        "account_id INTEGER NULL, "
        "FOREIGN KEY (tenant, account_id) REFERENCES accounts (tenant, id))",
        f"INSERT INTO accounts VALUES (1, 1, '{OLD}'), (1, 2, '{OLD}'), (2, 1, '{OLD}'), "
        f"(2, 2, '{OLD}')",
        "INSERT INTO notes VALUES (1, 1, 2), (2, 2, 1), (3, 2, NULL)",
    ])
    policy = _policy(tmp_path, db_url, (
        "  accounts:\n    table: accounts\n    retain: 1 year after closed_at\n"))
    result = engine.run(policy, AS_OF).rules[0]
    assert (result.status, result.error, result.deleted) == (Status.OK, None, 2)
    assert result.blocked == {"notes": 2}
    remaining = {(r["tenant"], r["id"]) for r in table_rows(db_url, "accounts")}
    assert remaining == {(1, 2), (2, 1)}


def test_a_row_referenced_by_its_own_table_waits_until_the_reference_is_gone(
        db_url: str, db_kind: str, tmp_path: Path) -> None:
    """Replies point at their parent comment: the reply goes first, the parent next time."""
    _execute(db_url, [
        f"CREATE TABLE comments (id INTEGER PRIMARY KEY, parent_id INTEGER NULL, "
        f"posted_at {_ts(db_kind)} NULL, FOREIGN KEY (parent_id) REFERENCES comments (id))",
        f"INSERT INTO comments VALUES (1, NULL, '{OLD}'), (2, 1, '{OLD}'), (3, NULL, '{OLD}'), "
        f"(4, 3, '{NEW}')",
    ])
    policy = _policy(tmp_path, db_url, (
        "  comments:\n    table: comments\n    retain: 1 year after posted_at\n"))
    first = engine.run(policy, AS_OF).rules[0]
    assert (first.status, first.error, first.deleted) == (Status.OK, None, 1)
    assert first.blocked == {"comments": 2}
    assert keys(db_url, "comments") == {1, 3, 4}
    second = engine.run(policy, AS_OF).rules[0]
    assert (second.status, second.deleted, second.blocked) == (Status.OK, 1, {"comments": 1})
    assert keys(db_url, "comments") == {3, 4}


def test_an_anonymize_rule_changes_referenced_rows_too(sqlite_url: str, tmp_path: Path) -> None:
    """Anonymizing keeps the row, so a reference holds nothing back and is not counted."""
    _users(sqlite_url, "sqlite")
    _execute(sqlite_url, ["ALTER TABLE users ADD COLUMN email TEXT",
                          "UPDATE users SET email = 'someone@example.com'"])
    policy = _policy(tmp_path, sqlite_url, (
        "  users:\n    table: users\n    retain: 1 year after closed_at\n"
        "    action:\n      anonymize: {email: redact}\n"))
    result = engine.run(policy, AS_OF).rules[0]
    assert (result.status, result.anonymized, result.blocked) == (Status.OK, 4, {})


def _cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REFERENCES_TEST_URL": url}
    return subprocess.run([str(RETENTION), *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_command_line_warns_shows_and_counts_the_blocking_reference(
        sqlite_url: str, tmp_path: Path) -> None:
    """validate warns (exit 0), plan shows NOT EXISTS, report and run say blocked."""
    _users(sqlite_url, "sqlite")
    path = str(_policy(tmp_path, sqlite_url, USERS_RULE).path)
    checked = _cli(tmp_path, sqlite_url, "validate", path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.splitlines() == [
        f"warning: {path}:12: rule 'users': table 'admin_log' references 'users' (user_id): "
        "referenced rows are kept and counted as blocked; declare it under 'children' to "
        "delete them together"]
    assert "is valid" in checked.stdout
    shown = _cli(tmp_path, sqlite_url, "plan", path, "--as-of", AS_OF.isoformat())
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("NOT (EXISTS (SELECT 1 \nFROM admin_log \n"
                              "WHERE users.id = admin_log.user_id))") == 3
    # in the select, the children's delete (its due parents) and the delete
    assert "not referenced by admin_log (user_id)" in shown.stdout
    reported = _cli(tmp_path, sqlite_url, "report", path, "--as-of", AS_OF.isoformat(),
                    "--format", "json")
    assert json.loads(reported.stdout)["rules"][0]["blocked"] == {"admin_log": 2}
    table = _cli(tmp_path, sqlite_url, "report", path, "--as-of", AS_OF.isoformat())
    assert "admin_log: 2" in table.stdout
    ran = _cli(tmp_path, sqlite_url, "run", path, "--as-of", AS_OF.isoformat(),
               "--format", "json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["rules"][0]["blocked"] == {"admin_log": 2}
    assert keys(sqlite_url, "users") == {2, 3, 5}


# -- the planner: which foreign keys become references (no database) -----------------


def _fk(table: str, columns: tuple[str, ...], referred: str, referred_columns: tuple[str, ...],
        ondelete: str | None = None) -> ForeignKeyInfo:
    return ForeignKeyInfo(table, columns, referred, referred_columns, ondelete)


def test_only_foreign_keys_the_rule_does_not_declare_become_references(tmp_path: Path) -> None:
    """A declared child's own key is no reference; its other keys into the table are."""
    policy = _policy(tmp_path, "sqlite://", USERS_RULE)
    rule = policy.rules[0]
    found = blocking_references(rule, (
        _fk("user_groups", ("user_id",), "users", ("id",)),
        _fk("user_groups", ("granted_by",), "users", ("id",)),
        _fk("admin_log", ("user_id",), "users", ("id",)),
        _fk("audit_notes", ("group_id",), "user_groups", ("id",)),
        _fk("admin_log", ("content_type_id",), "content_types", ("id",)),
    ))
    assert found == (
        Reference("admin_log", ("user_id",), "users", ("id",)),
        Reference("audit_notes", ("group_id",), "user_groups", ("id",), via_key="user_id"),
        Reference("user_groups", ("granted_by",), "users", ("id",)),
    )


def test_a_plan_carries_its_references_and_shows_them(tmp_path: Path) -> None:
    """make_plan turns the foreign keys it is given into Plan.references; describe says so."""
    policy = _policy(tmp_path, "sqlite://", USERS_RULE)
    columns = {"id": ColumnInfo("id", "INTEGER", None),
               "closed_at": ColumnInfo("closed_at", "TIMESTAMP", "naive")}
    users = TableInfo("users", columns, ("id",))
    groups = TableInfo("user_groups", {"id": columns["id"]}, ("id",))
    plan = make_plan(policy, policy.rules[0], users, {"user_groups": groups}, AS_OF,
                     foreign_keys=(_fk("admin_log", ("user_id",), "users", ("id",)),))
    assert plan.references == (Reference("admin_log", ("user_id",), "users", ("id",)),)
    assert "not referenced by admin_log (user_id)" in plan.describe()


# -- a property: exactly the unreferenced due rows go, blocked counts each table -------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    due=st.lists(st.booleans(), min_size=1, max_size=12),
    refs=st.lists(st.tuples(st.sampled_from(["a_log", "b_log"]), st.integers(1, 12)),
                  max_size=20),
    batch_size=st.integers(1, 5),
)
def test_the_run_deletes_exactly_the_unreferenced_due_rows(
        due: list[bool], refs: list[tuple[str, int]], batch_size: int) -> None:
    n = len(due)
    refs = [(g, k) for g, k in refs if k <= n]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/target.db"
        _execute(url, [
            "CREATE TABLE items (id INTEGER PRIMARY KEY, at TIMESTAMP NULL)",
            *(f"CREATE TABLE {g} (id INTEGER PRIMARY KEY, item_id INTEGER, "
              "FOREIGN KEY (item_id) REFERENCES items (id))" for g in ("a_log", "b_log")),
            *(f"INSERT INTO items VALUES ({i}, '{OLD if d else NEW}')"
              for i, d in enumerate(due, 1)),
            *(f"INSERT INTO {g} VALUES ({i}, {k})" for i, (g, k) in enumerate(refs, 1)),
        ])
        policy = _policy(Path(tmp), url, (
            "  items:\n    table: items\n    retain: 1 year after at\n"
            f"    batch_size: {batch_size}\n"))
        result = engine.run(policy, AS_OF).rules[0]
        referenced = {k for _, k in refs}
        due_keys = {i for i, d in enumerate(due, 1) if d}
        assert result.status is Status.OK, result.error
        assert keys(url, "items") == set(range(1, n + 1)) - (due_keys - referenced)
        assert result.deleted == len(due_keys - referenced)
        assert result.blocked == {g: len(due_keys & {k for h, k in refs if h == g})
                                  for g in ("a_log", "b_log")}
