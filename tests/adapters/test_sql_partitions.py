"""Wholly due PostgreSQL partitions are detached and dropped, every row audited; nothing else.

A table partitioned by range on its event column, with partitions that are
wholly due, partly due (the cutoff inside), due by range but holding a row the
rule's ``where`` leaves or a held row, not due, a DEFAULT partition and a
sub-partitioned one (both due, never dropped). A run drops exactly the wholly due
ones, deletes every other due row through batches, exactly at the cutoff, and
the audit export lists every deleted key once. SQLite and MariaDB, and tables
that are not partitioned, go on as before.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from retention.adapters import sql_partitions
from retention.adapters.sql import SqlAdapter
from sqlalchemy.pool import NullPool

from retention.audit.store import AuditStore
from retention.errors import PolicyError
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.run import engine, holds
from retention.run.outcome import Status
from tests.support import audited, snapshot, write_policy

RETENTION = Path(sys.executable).with_name("retention")
# 30 days after at, UTC: due at AS_OF are the events up to 2024-03-15 23:59:59.999999.
AS_OF = dt.datetime(2024, 4, 15, 12, tzinfo=dt.UTC)
CUTOFF = dt.datetime(2024, 3, 15, 23, 59, 59, 999999, tzinfo=dt.UTC)
TICK = dt.timedelta(microseconds=1)

POLICY = """\
policy: parts
version: "1"
timezone: UTC
sources:
  shop:
    adapter: sql
    url: ${PARTS_URL}
audit:
  url: ${PARTS_AUDIT_URL}
rules:
  events:
    source: shop
    table: events
    retain: 30 days after at
    where: {status: done}
    batch_size: 7
    max_fraction: 1.0
"""

PARTITIONS = {  # name: (from, to); a DEFAULT partition and a partitioned one besides
    "events_2023": ("2023-01-01", "2024-01-01"),
    "events_2024_01": ("2024-01-01", "2024-02-01"),
    "events_2024_02": ("2024-02-01", "2024-03-01"),
    "events_2024_03": ("2024-03-01", "2024-04-01"),
    "events_2024_04": ("2024-04-01", "2024-05-01"),
}


def _utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def _rows() -> list[dict[str, Any]]:
    """id, at, status; which rows are due is decided by AS_OF's cutoff and status."""
    rows: list[dict[str, Any]] = []

    def add(first: int, count: int, start: dt.datetime, step: dt.timedelta,
            status: str = "done") -> None:
        rows.extend({"id": first + i, "at": start + i * step, "status": status}
                    for i in range(count))

    add(1, 5, _utc(2021, 6, 1), dt.timedelta(days=3))  # DEFAULT partition: due
    add(10, 10, _utc(2022, 2, 1), dt.timedelta(days=30))  # sub-partitioned: due
    add(100, 40, _utc(2023, 1, 1), dt.timedelta(days=9))  # wholly due
    add(200, 20, _utc(2024, 1, 1), dt.timedelta(hours=37))  # wholly due
    add(300, 15, _utc(2024, 2, 1), dt.timedelta(days=1))  # due by range ...
    add(320, 1, _utc(2024, 2, 10), dt.timedelta(0), status="open")  # ... but one is not
    add(400, 10, _utc(2024, 3, 1), dt.timedelta(days=1))  # partly due: 03-01 .. 03-10
    rows += [{"id": 450, "at": CUTOFF, "status": "done"},  # the last due instant
             {"id": 451, "at": CUTOFF + TICK, "status": "done"},  # one microsecond late
             {"id": 452, "at": CUTOFF - TICK, "status": "done"}]
    add(460, 10, _utc(2024, 3, 20), dt.timedelta(days=1))  # not due
    add(500, 10, _utc(2024, 4, 1), dt.timedelta(days=1))  # not due
    return rows


def _due(row: dict[str, Any]) -> bool:
    return bool(row["status"] == "done" and row["at"] <= CUTOFF)


def _execute(url: str, statements: list[str], params: list[dict[str, Any]] | None = None
             ) -> None:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
            if params:
                conn.execute(sa.text("INSERT INTO events (id, at, status) "
                                     "VALUES (:id, :at, :status)"), params)
    finally:
        eng.dispose()


def _create(url: str, rows: list[dict[str, Any]], kind: str = "timestamptz") -> None:
    statements = [
        f"CREATE TABLE events (id integer NOT NULL, at {kind} NOT NULL, "
        "status varchar(12) NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE TABLE events_old PARTITION OF events DEFAULT",
        "CREATE TABLE events_2022 PARTITION OF events FOR VALUES FROM ('2022-01-01 00:00+00') "
        "TO ('2023-01-01 00:00+00') PARTITION BY RANGE (at)",
        "CREATE TABLE events_2022_h1 PARTITION OF events_2022 FOR VALUES FROM "
        "('2022-01-01 00:00+00') TO ('2022-07-01 00:00+00')",
        "CREATE TABLE events_2022_h2 PARTITION OF events_2022 FOR VALUES FROM "
        "('2022-07-01 00:00+00') TO ('2023-01-01 00:00+00')",
    ] + [f"CREATE TABLE {name} PARTITION OF events FOR VALUES FROM ('{low} 00:00+00') "
         f"TO ('{high} 00:00+00')" for name, (low, high) in PARTITIONS.items()]
    _execute(url, statements, rows)


def _policy(tmp_path: Path, url: str, extra: str = "") -> Policy:
    os.environ["PARTS_URL"] = url
    os.environ["PARTS_AUDIT_URL"] = f"sqlite:///{tmp_path}/audit.db"
    return load_policy(write_policy(tmp_path, POLICY + extra))


def _tables(url: str) -> set[str]:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return set(conn.execute(sa.text(
                "SELECT relname FROM pg_class WHERE relname LIKE 'events%' "
                "AND relkind IN ('r', 'p')")).scalars())
    finally:
        eng.dispose()


def _ids(url: str) -> set[int]:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return set(conn.execute(sa.text("SELECT id FROM events")).scalars())
    finally:
        eng.dispose()


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env.update(PARTS_URL=url, PARTS_AUDIT_URL=f"sqlite:///{tmp_path}/audit.db")
    return env


def _cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RETENTION), *args], env=_env(tmp_path, url), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)


ALL_TABLES = {"events", "events_old", "events_2022", "events_2022_h1", "events_2022_h2",
              *PARTITIONS}


def test_wholly_due_partitions_are_dropped_and_every_deleted_row_is_exported(
        tmp_path: Path, postgres_url: str) -> None:
    """Two partitions go whole; every other due row goes in batches, exactly at the cutoff;
    `audit export` lists every deleted key once, with its event and due instants."""
    rows = _rows()
    _create(postgres_url, rows)
    outcome = engine.run(_policy(tmp_path, postgres_url), AS_OF)

    rule = outcome.rules[0]
    due = {r["id"] for r in rows if _due(r)}
    assert (rule.status, rule.deleted, rule.due) == (Status.OK, len(due), len(due))
    assert rule.partitions_dropped == ["events_2023", "events_2024_01"]
    assert _tables(postgres_url) == ALL_TABLES - {"events_2023", "events_2024_01"}
    assert _ids(postgres_url) == {r["id"] for r in rows} - due
    assert {450, 452} <= due and 451 not in due  # the boundary, in a partly due partition

    export = _cli(tmp_path, postgres_url, "audit", "export", str(tmp_path / "policy.yaml"))
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    counted = collections.Counter(line["key"]["id"] for line in lines)
    assert counted == collections.Counter(due), counted
    at = {r["id"]: r["at"] for r in rows}
    for line in lines:
        event = at[line["key"]["id"]]
        assert (line["table"], line["action"], line["rule"]) == ("events", "delete", "events")
        assert dt.datetime.fromisoformat(line["event_at"]) == event
        assert dt.datetime.fromisoformat(line["due_at"]) == dt.datetime.combine(
            (event + dt.timedelta(days=31)).date(), dt.time(), dt.UTC)
        assert line["key"] == {"id": line["key"]["id"], "at": line["key"]["at"]}

    again = engine.run(_policy(tmp_path, postgres_url), AS_OF)
    assert (again.rules[0].deleted, again.rules[0].partitions_dropped) == (0, [])
    assert len(audited(f"sqlite:///{tmp_path}/audit.db")) == len(due)


def test_a_partition_holding_a_held_row_is_kept_and_its_other_rows_go_in_batches(
        tmp_path: Path, postgres_url: str) -> None:
    rows = _rows()
    _create(postgres_url, rows)
    policy = _policy(tmp_path, postgres_url)
    held = next(r for r in rows if r["id"] == 205)
    store = AuditStore(policy.audit_url)
    try:
        holds.add(store, "parts", "events", {"id": 205, "at": held["at"].isoformat()},
                  "litigation", by="test")
    finally:
        store.close()

    rule = engine.run(policy, AS_OF).rules[0]

    due = {r["id"] for r in rows if _due(r)} - {205}
    assert rule.partitions_dropped == ["events_2023"]
    assert "events_2024_01" in _tables(postgres_url)
    assert _ids(postgres_url) == {r["id"] for r in rows} - due
    assert collections.Counter(r["key"]["id"] for r in audited(policy.audit_url)) == \
        collections.Counter(due)


def test_a_partition_holding_a_referenced_row_is_kept_and_the_row_blocked(
        tmp_path: Path, postgres_url: str) -> None:
    """A foreign key the rule does not declare references one row of a wholly due
    partition: the partition stays, the row stays (blocked), the other rows go in batches."""
    rows = _rows()
    _create(postgres_url, rows)
    kept = next(r for r in rows if r["id"] == 120)
    _execute(postgres_url, [
        "CREATE TABLE notes (id integer PRIMARY KEY, event_id integer NOT NULL, "
        "event_at timestamptz NOT NULL, FOREIGN KEY (event_id, event_at) "
        "REFERENCES events (id, at))",
        f"INSERT INTO notes VALUES (1, 120, '{kept['at'].isoformat()}')",
    ])
    rule = engine.run(_policy(tmp_path, postgres_url), AS_OF).rules[0]
    due = {r["id"] for r in rows if _due(r)} - {120}
    assert (rule.status, rule.deleted, rule.blocked) == (Status.OK, len(due), {"notes": 1})
    assert rule.partitions_dropped == ["events_2024_01"]
    assert _ids(postgres_url) == {r["id"] for r in rows} - due
    assert collections.Counter(r["key"]["id"] for r in audited(
        f"sqlite:///{tmp_path}/audit.db")) == collections.Counter(due)


@pytest.mark.parametrize("kind", ["timestamptz", "timestamp", "date"])
def test_the_range_decides_exactly_at_the_cutoff(tmp_path: Path, postgres_url: str,
                                                 kind: str) -> None:
    """A partition ending one microsecond (a date column: one day) after the cutoff goes
    whole; one day earlier its range ends after the cutoff, and its rows (all due then
    too) go in batches."""
    rows = [{"id": i, "at": _utc(2024, 2, 1 + i), "status": "done"} for i in range(10)]
    if kind == "timestamp":
        rows = [{**r, "at": r["at"].replace(tzinfo=None)} for r in rows]
    elif kind == "date":
        rows = [{**r, "at": r["at"].date()} for r in rows]
    _create(postgres_url, rows, kind)
    # cutoff 2024-02-28 23:59:59.999999: the partition [02-01, 03-01) ends after it
    early = engine.run(_policy(tmp_path, postgres_url), _utc(2024, 3, 30, 12)).rules[0]
    assert (early.deleted, early.partitions_dropped) == (10, [])
    assert "events_2024_02" in _tables(postgres_url)

    _execute(postgres_url, [], rows)
    # cutoff 2024-02-29 23:59:59.999999: it ends at 03-01, one microsecond after
    late = engine.run(_policy(tmp_path, postgres_url), _utc(2024, 3, 31, 12)).rules[0]
    assert (late.deleted, late.partitions_dropped) == (10, ["events_2024_02"])
    assert "events_2024_02" not in _tables(postgres_url)
    assert len(audited(f"sqlite:///{tmp_path}/audit.db")) == 20


def test_drop_partitions_false_deletes_row_by_row(tmp_path: Path, postgres_url: str) -> None:
    rows = _rows()
    _create(postgres_url, rows)
    policy = _policy(tmp_path, postgres_url, "    drop_partitions: false\n")
    rule = engine.run(policy, AS_OF).rules[0]
    due = {r["id"] for r in rows if _due(r)}
    assert (rule.deleted, rule.partitions_dropped) == (len(due), [])
    assert _tables(postgres_url) == ALL_TABLES


def test_plan_says_which_partitions_go_whole_and_why_the_others_stay(
        tmp_path: Path, postgres_url: str) -> None:
    _create(postgres_url, _rows())
    _policy(tmp_path, postgres_url)
    before = snapshot(postgres_url)
    shown = _cli(tmp_path, postgres_url, "plan", str(tmp_path / "policy.yaml"),
                 "--as-of", AS_OF.isoformat())
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "-- partitions of events (range on at): 2 of 7 dropped whole" in text
    expected = {
        "drop events_2023": "at or before the cutoff, and all 40 rows are due",
        "drop events_2024_01": "and all 20 rows are due",
        "keep events_2024_02": "1 of its 16 rows is not due (0 held",
        "keep events_2024_03": "its range ends at 2024-04-01 00:00:00+00, after the cutoff",
        "keep events_2024_04": "after the cutoff",
        "keep events_old": "the default partition is never dropped",
        "keep events_2022": "partitioned itself: never dropped",
    }
    for what, why in expected.items():
        line = next((ln for ln in text.splitlines() if ln.startswith(f"--   {what}:")), "")
        assert why in line, (what, text)
    assert 'ALTER TABLE public.events DETACH PARTITION public.events_2023;' in text
    assert 'DROP TABLE public.events_2024_01;' in text
    assert "DROP TABLE public.events_2024_02" not in text
    assert snapshot(postgres_url) == before

    off = _policy(tmp_path, postgres_url, "    drop_partitions: false\n")
    assert off.rules[0].drop_partitions is False
    shown = _cli(tmp_path, postgres_url, "plan", str(tmp_path / "policy.yaml"),
                 "--as-of", AS_OF.isoformat())
    assert "-- partitions of events (range on at): none dropped: drop_partitions: false" \
        in shown.stdout, shown.stdout
    assert "DROP TABLE" not in shown.stdout


def test_a_table_with_a_delete_trigger_keeps_its_partitions(
        tmp_path: Path, postgres_url: str) -> None:
    """A drop fires no DELETE trigger: such a table's rows all go through batches."""
    rows = _rows()
    _create(postgres_url, rows)
    _execute(postgres_url, [
        "CREATE TABLE gone (id integer)",
        "CREATE FUNCTION note_gone() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO gone VALUES (OLD.id); RETURN OLD; END $$",
        "CREATE TRIGGER events_gone AFTER DELETE ON events FOR EACH ROW "
        "EXECUTE FUNCTION note_gone()",
    ])
    rule = engine.run(_policy(tmp_path, postgres_url), AS_OF).rules[0]
    due = {r["id"] for r in rows if _due(r)}
    assert (rule.deleted, rule.partitions_dropped) == (len(due), [])
    eng = sa.create_engine(postgres_url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            assert set(conn.execute(sa.text("SELECT id FROM gone")).scalars()) == due
    finally:
        eng.dispose()


def test_a_partition_published_for_replication_is_kept(
        tmp_path: Path, postgres_url: str) -> None:
    """A drop reaches no logical-replication subscriber: a published partition stays, and
    its rows go in batches (which the publication replicates as deletes)."""
    rows = _rows()
    _create(postgres_url, rows)
    _execute(postgres_url, ["CREATE PUBLICATION events_out FOR TABLE events_2023"])
    policy = _policy(tmp_path, postgres_url)
    shown = _cli(tmp_path, postgres_url, "plan", str(tmp_path / "policy.yaml"),
                 "--as-of", AS_OF.isoformat())
    assert "--   keep events_2023: it is published for logical replication" in shown.stdout, \
        shown.stdout
    rule = engine.run(policy, AS_OF).rules[0]
    due = {r["id"] for r in rows if _due(r)}
    assert (rule.deleted, rule.partitions_dropped) == (len(due), ["events_2024_01"])
    assert "events_2023" in _tables(postgres_url)


def test_a_partition_a_view_depends_on_is_left_to_the_batches(
        tmp_path: Path, postgres_url: str) -> None:
    """DROP TABLE without CASCADE fails on a dependent view: the drop rolls back whole,
    nothing of it is recorded, and the batches delete its rows."""
    rows = _rows()
    _create(postgres_url, rows)
    _execute(postgres_url, ["CREATE VIEW old_events AS SELECT id FROM events_2023"])
    rule = engine.run(_policy(tmp_path, postgres_url), AS_OF).rules[0]
    due = {r["id"] for r in rows if _due(r)}
    assert (rule.status, rule.deleted) == (Status.OK, len(due))
    assert rule.partitions_dropped == ["events_2024_01"]
    assert "events_2023" in _tables(postgres_url)
    assert collections.Counter(r["key"]["id"] for r in audited(
        f"sqlite:///{tmp_path}/audit.db")) == collections.Counter(due)


def test_the_audit_store_in_the_target_records_the_drop_in_its_own_transaction(
        tmp_path: Path, postgres_url: str) -> None:
    rows = _rows()
    _create(postgres_url, rows)
    os.environ["PARTS_URL"] = postgres_url
    os.environ["PARTS_AUDIT_URL"] = postgres_url
    policy = load_policy(write_policy(tmp_path, POLICY))
    rule = engine.run(policy, AS_OF).rules[0]
    due = {r["id"] for r in rows if _due(r)}
    assert rule.partitions_dropped == ["events_2023", "events_2024_01"]
    assert collections.Counter(r["key"]["id"] for r in audited(postgres_url)) == \
        collections.Counter(due)


@pytest.mark.parametrize("db_url", ["sqlite", "mariadb", "postgresql"], indirect=True)
def test_tables_that_are_not_partitioned_are_unchanged(
        tmp_path: Path, db_url: str, db_kind: str) -> None:
    """No partitions anywhere: the adapter says so, `plan` prints no partition line, and a
    run deletes row by row as before."""
    kind = "DATETIME(6)" if db_kind == "mariadb" else "TIMESTAMP"
    _execute(db_url, [f"CREATE TABLE events (id integer PRIMARY KEY, at {kind} NOT NULL, "
                      "status varchar(12) NOT NULL)"],
             [{"id": r["id"], "at": r["at"].replace(tzinfo=None), "status": r["status"]}
              for r in _rows()])
    policy = _policy(tmp_path, db_url)
    with engine.Session(policy) as session:
        plans, _failed = engine.compile_plans(session, policy.rules, AS_OF)
        adapter = session.adapter("shop")
        assert isinstance(adapter, SqlAdapter)
        assert adapter.partitions(plans["events"]) is None
    shown = _cli(tmp_path, db_url, "plan", str(tmp_path / "policy.yaml"),
                 "--as-of", AS_OF.isoformat())
    assert shown.returncode == 0 and "partition" not in shown.stdout.lower(), shown.stdout
    rule = engine.run(policy, AS_OF).rules[0]
    due = {r["id"] for r in _rows() if _due(r)}
    assert (rule.deleted, rule.partitions_dropped) == (len(due), [])


@pytest.mark.parametrize("value", ["'no'", "1", "null"])
def test_drop_partitions_must_be_true_or_false(tmp_path: Path, value: str) -> None:
    os.environ["PARTS_URL"] = f"sqlite:///{tmp_path}/t.db"
    os.environ["PARTS_AUDIT_URL"] = f"sqlite:///{tmp_path}/a.db"
    path = write_policy(tmp_path, POLICY + f"    drop_partitions: {value}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "policy.yaml:18: rule 'events': 'drop_partitions' must be true or false" \
        in str(caught.value)


@pytest.mark.parametrize("audit", ["sqlite", "target"])
def test_a_drop_that_times_out_on_a_lock_leaves_the_partition_whole_and_unrecorded(
        tmp_path: Path, postgres_url: str, audit: str) -> None:
    """The application reads the table in an open transaction: DETACH cannot take the
    parent's lock within lock_timeout, the drop rolls back whole (nothing recorded of
    it, its marker proves it), and the batches delete the partition's due rows."""
    rows = _rows()
    _create(postgres_url, rows)
    os.environ["PARTS_URL"] = postgres_url
    os.environ["PARTS_AUDIT_URL"] = (postgres_url if audit == "target"
                                     else f"sqlite:///{tmp_path}/audit.db")
    policy = load_policy(write_policy(tmp_path, POLICY + "    lock_timeout: 0.3\n"))
    reader = sa.create_engine(postgres_url, poolclass=NullPool)
    try:
        with reader.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
            rule = engine.run(policy, AS_OF).rules[0]
    finally:
        reader.dispose()
    due = {r["id"] for r in rows if _due(r)}
    assert (rule.status, rule.deleted, rule.partitions_dropped) == (Status.OK, len(due), [])
    assert _tables(postgres_url) == ALL_TABLES
    assert _ids(postgres_url) == {r["id"] for r in rows} - due
    assert collections.Counter(r["key"]["id"] for r in audited(policy.audit_url)) == \
        collections.Counter(due)
    store = AuditStore(policy.audit_url)
    try:
        assert store.open_batches() == [] and store.verify().ok
    finally:
        store.close()


@given(st.text(min_size=1, max_size=30))
def test_a_quoted_range_bound_reads_back_as_written(value: str) -> None:
    """pg_get_expr quotes a bound as a SQL literal ('' for a quote); MINVALUE and
    MAXVALUE, and anything not one quoted literal, are no value."""
    assert sql_partitions._literal("'" + value.replace("'", "''") + "'") == value
    assert sql_partitions._literal(value) is None or value.strip().startswith("'")
    for word in ("MINVALUE", "MAXVALUE", "'a', 'b'", "'a''"):
        assert sql_partitions._literal(word) is None


@pytest.mark.parametrize("kind", ["timestamptz", "timestamp", "date"])
def test_a_dropped_partition_is_exported_as_batches_export_the_same_rows(
        tmp_path: Path, postgres_url: str, kind: str) -> None:
    """The same rows, once dropped with their partitions and once deleted row by row
    (``drop_partitions: false``), under a calendar span in a zone with DST: `audit
    export` gives every key the same event and due instants both ways."""
    rows = _rows()
    if kind == "timestamp":
        rows = [{**r, "at": r["at"].replace(tzinfo=None)} for r in rows]
    elif kind == "date":
        rows = [{**r, "at": r["at"].date(), "id": r["id"]} for r in rows]
    extra = {"whole": "", "batches": "    drop_partitions: false\n"}
    exported: dict[str, dict[int, tuple[str, str]]] = {}
    for way, option in extra.items():
        _execute(postgres_url, ["DROP TABLE IF EXISTS events CASCADE"])
        _create(postgres_url, rows, kind)
        work = tmp_path / way
        work.mkdir()
        text = POLICY.replace("timezone: UTC", "timezone: Europe/Amsterdam").replace(
            "retain: 30 days after at", "retain: 1 month after at plus 2 years")
        os.environ["PARTS_URL"] = postgres_url
        os.environ["PARTS_AUDIT_URL"] = f"sqlite:///{work}/audit.db"
        policy = load_policy(write_policy(work, text + option))
        rule = engine.run(policy, _utc(2026, 4, 15, 12)).rules[0]
        assert rule.status is Status.OK and rule.deleted > 0
        assert bool(rule.partitions_dropped) == (way == "whole")
        env = {**_env(work, postgres_url), "PARTS_AUDIT_URL": f"sqlite:///{work}/audit.db"}
        export = subprocess.run([str(RETENTION), "audit", "export", str(work / "policy.yaml")],
                                env=env, cwd=work, capture_output=True, text=True,
                                timeout=120, check=False)
        assert export.returncode == 0, export.stderr
        lines = [json.loads(line) for line in export.stdout.splitlines()]
        exported[way] = {line["key"]["id"]: (line["event_at"], line["due_at"])
                         for line in lines}
        assert len(exported[way]) == len(lines) == rule.deleted
    assert exported["whole"] == exported["batches"]
