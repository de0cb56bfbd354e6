"""The audit store: hash-chain verification, export shape, same-database and separate
recording, crash reconciliation, and passwords kept out of the audit log."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from retention.adapters.protocol import Removed
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from retention import cli
from retention.audit import chain, export, records
from retention.audit.schema import log
from retention.audit.store import AuditStore, RunInfo, iso
from retention.instants import parse_instant
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.run import engine
from retention.run.outcome import RunOutcome, Status
from retention.testing import Server
from tests.support import keys, utc, write_policy

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
AS_OF = utc(2026, 3, 1, 12, 0)
OLD = dt.datetime(2010, 1, 1)  # completed long ago: due at AS_OF
NEW = dt.datetime(2026, 2, 1)  # completed a month before AS_OF: not due
PASSWORD = "s3cr3t-pw"

# -- helpers ----------------------------------------------------------------------------


@contextlib.contextmanager
def open_store(url: str) -> Iterator[AuditStore]:
    store = AuditStore(url)
    try:
        yield store
    finally:
        store.close()


READING = records.Reading("completed_at", "naive_utc", None, "", "Europe/Amsterdam",
                           "6 months after completion plus 7 years")


def compact(table: str, ids: list[int], action: str = "delete",
            event: str = "2010-01-01 00:00:00") -> Removed:
    """The records of one table of a batch, as the SQL adapter reports them."""
    return Removed.of(table, action, ("id",), [(i,) for i in ids], [event] * len(ids))


def legacy(run_id: str, batch_id: str, rows: list[tuple[str, int]], at: str | None = None,
           action: str = "delete") -> list[dict[str, Any]]:
    """Per-row ``record`` entries, as versions before compact entries wrote them."""
    return [{"kind": "record", "run_id": run_id, "batch_id": batch_id, "rule": "orders",
             "source": "db", "table_name": table, "record_key": json.dumps({"id": i}),
             "action": action, "event_at": "2010-01-01T00:00:00.000000+00:00",
             "due_at": "2017-07-01T22:00:00.000000+00:00", "at": at or iso(AS_OF)}
            for table, i in rows]


def records_in(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of log rows of either kind, one dict each (``record`` columns)."""
    readers = records.Readers()
    return [rec for row in rows if row["kind"] in records.KINDS
            for rec in records.expand(row, readers)]


def fill(store: AuditStore, run_id: str = "run-1") -> int:
    """Append a realistic run directly: a batch of compact entries, then one of per-row
    entries as an earlier version wrote them; return its entry count."""
    store.start_run(RunInfo(run_id, "test", "1", "0" * 64, "run", AS_OF))
    store.append(store.batch_entries(run_id, "orders", "shop", "b1",
                                     [compact("orders", [1, 2, 3]),
                                      compact("order_lines", [11, 12])],
                                     READING, committed=True))
    store.append([*legacy(run_id, "b2", [("orders", 4), ("order_lines", 41)]),
                  store.mark(run_id, "orders", "b2", "batch_committed")])
    store.finish_run(run_id, "ok", [])
    return 1 + (2 + 1) + (2 + 1) + 1


def execute(store: AuditStore, statement: str, **params: Any) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def log_rows(url: str) -> list[dict[str, Any]]:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(log).order_by(log.c.seq))]
    finally:
        eng.dispose()


def forged_row(seq: int, prev_hash: str, **fields: Any) -> dict[str, Any]:
    """A log row with a hash that is right for its own content and ``prev_hash``."""
    row: dict[str, Any] = {c.name: None for c in log.columns}
    row.update(kind="record", run_id="run-1", batch_id="b1", rule="orders", source="shop",
               table_name="orders", record_key='{"id":99}', action="delete",
               event_at="2010-01-01T00:00:00+00:00", due_at="2017-07-01T00:00:00+00:00",
               at="2026-03-01T12:00:00+00:00")
    row.update(fields, seq=seq, prev_hash=prev_hash)
    row["hash"] = chain.entry_hash(row)
    return row


def insert_forged(store: AuditStore, position: int, **fields: Any) -> dict[str, Any]:
    """Renumber entries ``position``.. one up and put a plausible forged entry there."""
    before = [r for r in log_rows(store.raw_url) if r["seq"] < position]
    prev = before[-1]["hash"] if before else chain.GENESIS
    execute(store, "UPDATE retention_log SET seq = -seq WHERE seq >= :n", n=position)
    execute(store, "UPDATE retention_log SET seq = 1 - seq WHERE seq < 0")
    row = forged_row(position, fields.pop("prev_hash", prev), **fields)
    with store.engine.begin() as conn:
        conn.execute(log.insert(), row)
    return row


def make_shop(url: str, orders: list[tuple[int, dt.datetime]],
              lines: list[tuple[int, int]]) -> None:
    """``orders`` (id, completed_at; status completed) and ``order_lines`` (id, order_id)."""
    meta = sa.MetaData()
    orders_t = sa.Table("orders", meta,
                        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                        sa.Column("completed_at", TS), sa.Column("status", sa.String(20)))
    lines_t = sa.Table("order_lines", meta,
                       sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("order_id", sa.Integer))
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        meta.create_all(eng)
        with eng.begin() as conn:
            if orders:
                conn.execute(orders_t.insert(), [
                    {"id": i, "completed_at": at, "status": "completed"} for i, at in orders])
            if lines:
                conn.execute(lines_t.insert(), [{"id": i, "order_id": o} for i, o in lines])
    finally:
        eng.dispose()


def delete_rows(url: str, table: str, ids: list[int]) -> None:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text(f"DELETE FROM {table} WHERE id IN ({','.join(map(str, ids))})"))
    finally:
        eng.dispose()


def shop_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, audit: str,
                batch_size: int = 10) -> Policy:
    monkeypatch.setenv("TEST_TARGET_URL", target)
    monkeypatch.setenv("TEST_AUDIT_URL", audit)
    text = ("policy: test\nversion: '1'\ntimezone: Europe/Amsterdam\n"
            "sources:\n  db:\n    adapter: sql\n    url: ${TEST_TARGET_URL}\n"
            "audit:\n  url: ${TEST_AUDIT_URL}\n"
            "defaults:\n  source: db\n  max_fraction: 1.0\n"
            "rules:\n  orders:\n    table: orders\n"
            "    retain: 6 months after completion plus 7 years\n"
            "    events: {completion: completed_at}\n    where: {status: completed}\n"
            f"    batch_size: {batch_size}\n"
            "    children:\n      - {table: order_lines, key: order_id}\n")
    return load_policy(write_policy(tmp_path, text))


def sqlite_file(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path}/{name}"


def exported(store: AuditStore, fmt: str = "jsonl", since: str | None = None) -> str:
    out = io.StringIO()
    export.write(store.records(since=since), fmt, out)
    return out.getvalue()


def recorded(audit_url: str) -> list[tuple[str, int]]:
    """(table, id) of every committed record, in chain order."""
    with open_store(audit_url) as store:
        return [(r["table_name"], json.loads(r["record_key"])["id"]) for r in store.records()]


def intent(store: AuditStore, run_id: str, batch_id: str, rows: list[tuple[str, int]]) -> None:
    """Write the entries of a batch with no commit mark, as a crashed run leaves them."""
    tables = sorted({t for t, _ in rows}, key=[t for t, _ in rows].index)
    removed = [compact(t, [i for u, i in rows if u == t]) for t in tables]
    store.append(store.batch_entries(run_id, "orders", "db", batch_id, removed, READING,
                                     committed=False))


# -- 1. verify on every database ---------------------------------------------------------


def test_an_intact_chain_from_a_real_run_verifies_with_every_entry_counted(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's entries in an audit store on each database verify, and all are counted."""
    shop = sqlite_file(tmp_path, "shop.db")
    make_shop(shop, [(1, OLD), (2, OLD), (3, NEW)], [(11, 1), (12, 1), (21, 2), (31, 3)])
    policy = shop_policy(tmp_path, monkeypatch, shop, db_url, batch_size=1)

    engine.run(policy, AS_OF)

    with open_store(db_url) as store:
        verdict = store.verify()
    # run_started, 2 batches of (orders entry + lines entry + batch_committed), run_finished
    assert verdict == chain.Verdict(True, 1 + (1 + 1 + 1) + (1 + 1 + 1) + 1)
    assert verdict.entries == len(log_rows(db_url))


def test_an_empty_store_verifies_with_no_entries(db_url: str) -> None:
    """A freshly created audit store is an intact, empty chain."""
    with open_store(db_url) as store:
        assert store.verify() == chain.Verdict(True, 0)


@pytest.mark.parametrize(("column", "value"), [
    ("record_key", '{"id":999}'), ("action", "anonymize"), ("kind", "batch_rolled_back")])
def test_altering_one_field_of_an_entry_is_reported_as_altered_at_that_entry(
        db_url: str, column: str, value: str) -> None:
    """UPDATE of one column of entry N is named as entry N, altered."""
    with open_store(db_url) as store:
        fill(store)
        execute(store, f"UPDATE retention_log SET {column} = :v WHERE seq = 3", v=value)
        verdict = store.verify()
    assert (verdict.ok, verdict.seq, verdict.entries) == (False, 3, 2)
    assert verdict.reason is not None and verdict.reason.startswith("altered")


def test_altering_an_entry_stays_reported_after_later_appends(db_url: str) -> None:
    """Entries appended after a tampered one do not hide it."""
    with open_store(db_url) as store:
        fill(store)
        execute(store, "UPDATE retention_log SET at = :v WHERE seq = 2",
                v="2020-01-01T00:00:00+00:00")
        fill(store, "run-2")
        verdict = store.verify()
    assert (verdict.ok, verdict.seq) == (False, 2)


def test_deleting_an_entry_in_the_middle_is_reported_as_removed_at_that_entry(
        db_url: str) -> None:
    """DELETE of entry N (not the last) is named as entry N, removed."""
    with open_store(db_url) as store:
        fill(store)
        execute(store, "DELETE FROM retention_log WHERE seq = 5")
        verdict = store.verify()
    assert (verdict.ok, verdict.seq, verdict.entries) == (False, 5, 4)
    assert verdict.reason is not None and verdict.reason.startswith("removed")


def test_deleting_the_last_entries_is_reported_as_removed_at_the_first_missing_one(
        db_url: str) -> None:
    """Cutting off the tail is seen, because the head row still names the old last entry."""
    with open_store(db_url) as store:
        total = fill(store)
        execute(store, "DELETE FROM retention_log WHERE seq > :n", n=total - 2)
        verdict = store.verify()
    assert (verdict.ok, verdict.seq, verdict.entries) == (False, total - 1, total - 2)
    assert verdict.reason is not None and verdict.reason.startswith("removed")


def test_deleting_every_entry_is_reported_as_removed_from_the_first(db_url: str) -> None:
    """An emptied log with a head row that says otherwise is named as removed at entry 1."""
    with open_store(db_url) as store:
        fill(store)
        execute(store, "DELETE FROM retention_log")
        verdict = store.verify()
    assert (verdict.ok, verdict.seq, verdict.entries) == (False, 1, 0)


def test_a_forged_entry_inserted_by_renumbering_breaks_the_chain(db_url: str) -> None:
    """A plausible forged entry slipped in at N (later entries renumbered) fails verify."""
    with open_store(db_url) as store:
        total = fill(store)
        insert_forged(store, 4)
        verdict = store.verify()
    assert not verdict.ok
    assert len(log_rows(store.raw_url)) == total + 1


def test_a_forged_entry_inserted_by_renumbering_is_named_at_its_own_position(
        db_url: str) -> None:
    """verify names the inserted entry itself, N, as the first bad entry."""
    with open_store(db_url) as store:
        fill(store)
        insert_forged(store, 4)
        verdict = store.verify()
    assert (verdict.ok, verdict.seq) == (False, 4)


def test_two_forged_entries_inserted_together_are_named_at_the_first(db_url: str) -> None:
    """A forged pair chained to each other and slipped in at N is named at N."""
    with open_store(db_url) as store:
        fill(store)
        insert_forged(store, 4)
        insert_forged(store, 5, record_key='{"id":98}')
        verdict = store.verify()
    assert (verdict.ok, verdict.seq) == (False, 4)


def test_an_inserted_entry_that_does_not_chain_to_its_predecessor_is_named_at_it(
        db_url: str) -> None:
    """A forged entry whose prev_hash is not the entry before it is reported at its seq."""
    with open_store(db_url) as store:
        fill(store)
        insert_forged(store, 4, prev_hash="f" * 64)
        verdict = store.verify()
    assert (verdict.ok, verdict.seq) == (False, 4)


def test_a_forged_entry_appended_past_the_head_breaks_the_chain(db_url: str) -> None:
    """A plausible entry added after the last one, without moving the head, fails verify."""
    with open_store(db_url) as store:
        total = fill(store)
        insert_forged(store, total + 1)
        verdict = store.verify()
    assert not verdict.ok


def test_a_forged_entry_appended_past_the_head_is_named_at_its_own_position(
        db_url: str) -> None:
    """verify names the appended forged entry (head seq + 1), not the genuine entry before."""
    with open_store(db_url) as store:
        total = fill(store)
        insert_forged(store, total + 1)
        verdict = store.verify()
    assert (verdict.ok, verdict.seq) == (False, total + 1)


@pytest.mark.parametrize(("first", "second"), [(3, 4), (2, 7)])
def test_swapping_two_entries_is_reported_at_the_earlier_position(
        db_url: str, first: int, second: int) -> None:
    """Exchanging the positions of two entries is named at the first of the two."""
    with open_store(db_url) as store:
        fill(store)
        execute(store, "UPDATE retention_log SET seq = 0 WHERE seq = :a", a=first)
        execute(store, "UPDATE retention_log SET seq = :a WHERE seq = :b", a=first, b=second)
        execute(store, "UPDATE retention_log SET seq = :b WHERE seq = 0", b=second)
        verdict = store.verify()
    assert (verdict.ok, verdict.seq) == (False, first)


# -- 2. stateful: random appends and tampering on SQLite -----------------------------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters="\x00"), max_size=10)
_ENTRY = st.fixed_dictionaries(
    {"kind": st.sampled_from(["run_started", "record", "batch_committed",
                              "batch_rolled_back", "run_finished"]),
     "run_id": _TEXT},
    optional={"batch_id": _TEXT, "rule": _TEXT, "source": _TEXT, "table_name": _TEXT,
              "record_key": st.dictionaries(st.sampled_from(["id", "a", "b"]),
                                            st.integers() | _TEXT).map(json.dumps),
              "action": st.sampled_from(["delete", "anonymize"]),
              "event_at": _TEXT, "due_at": _TEXT, "detail": _TEXT,
              "at": st.datetimes(timezones=st.just(dt.UTC)).map(iso)})
_REQUIRED = {"kind", "run_id", "at", "prev_hash", "hash"}
_ALTERABLE = sorted({c.name for c in log.columns} - {"seq"})


class ChainTamperMachine(RuleBasedStateMachine):
    """Model: the first tampered position; verify must be ok iff there is none, else name it."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="audit-chain-")
        self.store = AuditStore(f"sqlite:///{self.directory}/audit.db")
        self.appended = 0  # genuine entries, as the head row counts them
        self.first_bad: int | None = None
        self.originals: dict[int, dict[str, Any]] = {}  # altered entries as first written
        self.sealed = False  # no appends or tampering after a forged insertion

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _rows(self) -> dict[int, dict[str, Any]]:
        with self.store.engine.connect() as conn:
            return {r.seq: dict(r._mapping) for r in conn.execute(sa.select(log))}

    def _tampered(self, seq: int) -> None:
        self.first_bad = seq if self.first_bad is None else min(self.first_bad, seq)

    @precondition(lambda self: not self.sealed)
    @rule(entries=st.lists(_ENTRY, min_size=1, max_size=4))
    def append(self, entries: list[dict[str, Any]]) -> None:
        self.store.append(entries)
        self.appended += len(entries)

    @precondition(lambda self: not self.sealed and self.appended > 0)
    @rule(data=st.data())
    def alter(self, data: st.DataObject) -> None:
        rows = self._rows()
        if not rows:
            return
        seq = data.draw(st.sampled_from(sorted(rows)), label="seq")
        column = data.draw(st.sampled_from(_ALTERABLE), label="column")
        original = self.originals.setdefault(seq, rows[seq])
        values = _TEXT if column in _REQUIRED else st.none() | _TEXT
        value = data.draw(values.filter(  # never back to what was written: that is no tamper
            lambda v: v not in (rows[seq][column], original[column])), label="value")
        execute(self.store, f"UPDATE retention_log SET {column} = :v WHERE seq = :s",
                v=value, s=seq)
        self._tampered(seq)

    @precondition(lambda self: not self.sealed and self.appended > 0)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        rows = self._rows()
        if not rows:
            return
        seq = data.draw(st.sampled_from(sorted(rows)), label="seq")
        execute(self.store, "DELETE FROM retention_log WHERE seq = :s", s=seq)
        self._tampered(seq)

    @rule()
    def verify(self) -> None:
        self.verify_names_the_first_tampered_entry()

    @invariant()
    def verify_names_the_first_tampered_entry(self) -> None:
        verdict = self.store.verify()
        if self.first_bad is None:
            assert verdict.ok, verdict
            assert verdict.entries == self.appended, verdict
        else:
            assert not verdict.ok, verdict
            assert verdict.seq == self.first_bad, (verdict, self.first_bad)


class ChainForgeryMachine(ChainTamperMachine):
    """The same model, and a plausible forged entry may be inserted as the last tampering.

    After the insertion the head no longer fits the table (appends would collide), and
    further tampering around a forged entry can be ambiguous, so the machine then only
    verifies; runs of several forged entries are tested on their own above."""

    @precondition(lambda self: not self.sealed)
    @rule(data=st.data(), fields=_ENTRY)
    def insert(self, data: st.DataObject, fields: dict[str, Any]) -> None:
        seqs = sorted(self._rows())
        # Inserting right at a removed or altered position is ambiguous even in principle.
        positions = [n for n in range(1, (seqs[-1] if seqs else 0) + 2) if n != self.first_bad]
        if not positions:
            return
        position = data.draw(st.sampled_from(positions), label="position")
        fields.setdefault("at", "2026-03-01T12:00:00+00:00")
        insert_forged(self.store, position, **{k: fields.get(k) for k in _ALTERABLE
                                               if k not in ("prev_hash", "hash")})
        if self.first_bad is not None and self.first_bad >= position:
            self.first_bad += 1  # renumbered with the entries after the forged one
        self._tampered(position)
        self.sealed = True


_STATEFUL = settings(max_examples=30, stateful_step_count=15, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow], database=None)


def test_random_appends_alterations_and_deletions_are_verified_exactly() -> None:
    """verify is ok iff nothing was altered or removed, and else names the first such entry."""
    run_state_machine_as_test(ChainTamperMachine, settings=_STATEFUL)


def test_random_tampering_including_forged_insertions_is_named_exactly() -> None:
    """With forged insertions too, verify names the first tampered entry."""
    run_state_machine_as_test(ChainForgeryMachine, settings=_STATEFUL)


# -- 3. export shape -------------------------------------------------------------------------


@pytest.fixture
def exported_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> tuple[str, RunOutcome]:
    """A run that deletes order 17 and its two lines; returns (audit url, outcome)."""
    shop = sqlite_file(tmp_path, "shop.db")
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(shop, [(17, OLD), (18, NEW)], [(171, 17), (172, 17), (181, 18)])
    policy = shop_policy(tmp_path, monkeypatch, shop, audit)
    return audit, engine.run(policy, AS_OF)


def test_jsonl_export_has_one_line_per_record_with_exactly_the_stable_keys(
        exported_run: tuple[str, RunOutcome]) -> None:
    """Each affected record is one JSON line with run_id..at in the documented order."""
    audit, outcome = exported_run
    with open_store(audit) as store:
        lines = exported(store).splitlines()
    assert len(lines) == 3
    for line in lines:
        obj = json.loads(line)
        assert list(obj) == ["run_id", "rule", "source", "table", "key", "action",
                             "event_at", "due_at", "at"]
        assert (obj["run_id"], obj["rule"], obj["source"], obj["action"]) == (
            outcome.run_id, "orders", "db", "delete")


def test_jsonl_export_gives_the_parent_and_each_child_its_own_table_and_key(
        exported_run: tuple[str, RunOutcome]) -> None:
    """The order and both of its lines appear, each with its own table and key object."""
    audit, _ = exported_run
    with open_store(audit) as store:
        objs = [json.loads(line) for line in exported(store).splitlines()]
    assert sorted((o["table"], json.dumps(o["key"])) for o in objs) == [
        ("order_lines", '{"id": 171}'), ("order_lines", '{"id": 172}'),
        ("orders", '{"id": 17}')]


def test_jsonl_export_carries_the_event_and_due_instants_in_utc(
        exported_run: tuple[str, RunOutcome]) -> None:
    """event_at is the order's completion, due_at the start of the next local day (children too)."""
    audit, _ = exported_run
    with open_store(audit) as store:
        objs = [json.loads(line) for line in exported(store).splitlines()]
    # 2010-01-01 + 6 months + 7 years = 2017-07-01 local; due from 2017-07-02 00:00 CEST.
    assert {(o["event_at"], o["due_at"]) for o in objs} == {
        ("2010-01-01T00:00:00.000000+00:00", "2017-07-01T22:00:00.000000+00:00")}
    for o in objs:
        assert dt.datetime.fromisoformat(o["at"]).utcoffset() == dt.timedelta(0)


def test_csv_export_has_the_same_columns_as_header_and_one_row_per_record(
        exported_run: tuple[str, RunOutcome]) -> None:
    """The CSV header is the JSON key list; the key column holds the key as JSON."""
    audit, _ = exported_run
    with open_store(audit) as store:
        rows = list(csv.reader(io.StringIO(exported(store, "csv"))))
    assert rows[0] == ["run_id", "rule", "source", "table", "key", "action", "event_at",
                       "due_at", "at"]
    body = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert sorted((r["table"], json.loads(r["key"])["id"]) for r in body) == [
        ("order_lines", 171), ("order_lines", 172), ("orders", 17)]


def test_records_since_an_instant_leave_out_earlier_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """records(since=T) yields only records written at or after T."""
    shop = sqlite_file(tmp_path, "shop.db")
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(shop, [(17, OLD), (18, dt.datetime(2010, 2, 1))], [(171, 17), (181, 18)])
    policy = shop_policy(tmp_path, monkeypatch, shop, audit)
    engine.run(policy, utc(2017, 7, 15))  # only order 17 is due then
    between = iso(dt.datetime.now(dt.UTC))
    second = engine.run(policy, AS_OF)

    with open_store(audit) as store:
        since = [json.loads(line) for line in exported(store, since=between).splitlines()]
        everything = exported(store).splitlines()
        later = exported(store, since=iso(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)))
    assert sorted((o["table"], o["key"]["id"]) for o in since) == [
        ("order_lines", 181), ("orders", 18)]
    assert {o["run_id"] for o in since} == {second.run_id}
    assert len(everything) == 4
    assert later == ""


def test_records_since_an_instant_include_the_record_written_exactly_then(
        db_url: str) -> None:
    """The --since bound is inclusive: a record whose `at` equals it is exported."""
    with open_store(db_url) as store:
        _committed_records(store, ["2026-03-01T12:00:00.250000+00:00",
                                   "2026-03-01T12:00:00.500000+00:00"])
        ats = [r["at"] for r in store.records(since="2026-03-01T12:00:00.500000+00:00")]
    assert ats == ["2026-03-01T12:00:00.500000+00:00"]


def test_records_since_a_whole_second_include_records_later_in_that_second(
        db_url: str) -> None:
    """--since 13:00:00+01:00 (normalised as the CLI does) keeps a record at 12:00:00.5 UTC
    and drops one at 11:59:59.9, under every database's collation."""
    with open_store(db_url) as store:
        _committed_records(store, [iso(utc(2026, 3, 1, 11, 59, 59, 900000)),
                                   iso(utc(2026, 3, 1, 12, 0, 0, 500000))])
        since = iso(parse_instant("2026-03-01T13:00:00+01:00", "--since"))
        ats = [r["at"] for r in store.records(since=since)]
    assert ats == ["2026-03-01T12:00:00.500000+00:00"]


def test_audit_export_command_filters_by_since_given_in_any_offset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    """`retention audit export --since T` with a +02:00 offset keeps only later records."""
    shop = sqlite_file(tmp_path, "shop.db")
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(shop, [(17, OLD), (18, dt.datetime(2010, 2, 1))], [(171, 17), (181, 18)])
    policy = shop_policy(tmp_path, monkeypatch, shop, audit)
    engine.run(policy, utc(2017, 7, 15))  # only order 17 is due then
    between = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=2)))
    second = engine.run(policy, AS_OF)
    capsys.readouterr()

    with pytest.raises(SystemExit) as exited:
        cli.main(["audit", "export", str(policy.path), "--format", "jsonl",
                  "--since", between.isoformat()])

    assert exited.value.code == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted((o["table"], o["key"]["id"]) for o in objs) == [
        ("order_lines", 181), ("orders", 18)]
    assert {o["run_id"] for o in objs} == {second.run_id}


def _committed_records(store: AuditStore, ats: list[str]) -> None:
    """One committed batch with one record per ``at`` value."""
    entries = [{"kind": "record", "run_id": "run-1", "batch_id": "b1", "rule": "orders",
                "source": "db", "table_name": "orders", "record_key": json.dumps({"id": i}),
                "action": "delete", "event_at": "2010-01-01T00:00:00+00:00",
                "due_at": "2017-07-01T22:00:00+00:00", "at": at}
               for i, at in enumerate(ats, start=1)]
    store.append([*entries, store.mark("run-1", "orders", "b1", "batch_committed")])


# -- 4. audit store in the target's database, or in its own --------------------------------


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_an_audit_store_in_the_target_database_holds_the_run_and_verifies(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With audit url == target url the records land in the target's retention_log."""
    make_shop(db_url, [(17, OLD), (18, OLD), (19, NEW)], [(171, 17), (172, 17), (181, 18)])
    policy = shop_policy(tmp_path, monkeypatch, db_url, db_url, batch_size=1)

    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].status is Status.OK
    rows = log_rows(db_url)
    assert sorted((r["table_name"], json.loads(r["record_key"])["id"])
                  for r in records_in(rows)) == [
        ("order_lines", 171), ("order_lines", 172), ("order_lines", 181), ("orders", 17),
        ("orders", 18)]
    with open_store(db_url) as store:
        assert len(exported(store).splitlines()) == 5
        assert store.verify() == chain.Verdict(True, len(rows))
    assert not (tmp_path / "audit.db").exists()


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_in_the_target_database_every_commit_mark_closes_a_batch_with_records(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch_committed follows records entries of its own batch, as in a separate store."""
    make_shop(db_url, [(17, OLD), (19, NEW)], [(171, 17)])
    policy = shop_policy(tmp_path, monkeypatch, db_url, db_url, batch_size=1)

    engine.run(policy, AS_OF)

    rows = log_rows(db_url)
    batches_with_records = {r["batch_id"] for r in rows if r["kind"] == "records"}
    marks = [r["batch_id"] for r in rows if r["kind"] == "batch_committed"]
    assert marks == [rows[1]["batch_id"]]
    assert set(marks) == batches_with_records


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_in_the_target_database_a_batch_that_fails_leaves_neither_change_nor_entries(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's entries are written in its own transaction: they roll back with it."""
    make_shop(db_url, [(17, OLD)], [(171, 17)])
    policy = shop_policy(tmp_path, monkeypatch, db_url, db_url)
    append = AuditStore.append

    def fail_inside_the_batch(self: AuditStore, entries: Any, conn: Any = None) -> None:
        append(self, entries, conn)
        if conn is not None:
            raise RuntimeError("connection lost before commit")

    monkeypatch.setattr(AuditStore, "append", fail_inside_the_batch)
    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].status is Status.FAILED
    assert keys(db_url, "orders") == {17}
    assert keys(db_url, "order_lines") == {171}
    assert [r["kind"] for r in log_rows(db_url)] == ["run_started", "run_finished"]
    with open_store(db_url) as store:
        assert store.verify().ok


def test_a_separate_audit_store_writes_intents_then_a_commit_mark_per_batch(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In another database each batch is its records entries (one per table) followed by
    batch_committed."""
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(db_url, [(17, OLD), (18, OLD), (19, NEW)], [(171, 17), (172, 17), (181, 18)])
    policy = shop_policy(tmp_path, monkeypatch, db_url, audit, batch_size=1)

    engine.run(policy, AS_OF)

    rows = log_rows(audit)
    assert [(r["kind"], r["table_name"]) for r in rows] == [
        ("run_started", None),
        ("records", "orders"), ("records", "order_lines"),
        ("batch_committed", None),
        ("records", "orders"), ("records", "order_lines"),
        ("batch_committed", None),
        ("run_finished", None)]
    assert [json.loads(r["detail"])["keys"] for r in rows[1:7] if r["kind"] == "records"] == [
        [17], [171, 172], [18], [181]]
    assert rows[1]["batch_id"] == rows[2]["batch_id"] == rows[3]["batch_id"]
    assert rows[4]["batch_id"] == rows[5]["batch_id"] == rows[6]["batch_id"]
    assert rows[3]["batch_id"] != rows[6]["batch_id"]
    target = sa.create_engine(db_url, poolclass=NullPool)
    try:
        assert "retention_log" not in sa.inspect(target).get_table_names()
    finally:
        target.dispose()


def test_a_separate_audit_store_rolls_back_a_batch_that_failed_after_its_intents(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intents written before a failed target commit are marked rolled back, never exported."""
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(sqlite_url, [(17, OLD)], [(171, 17)])
    policy = shop_policy(tmp_path, monkeypatch, sqlite_url, audit)
    append = AuditStore.append

    def fail_after_the_intents(self: AuditStore, entries: Any, conn: Any = None) -> None:
        append(self, entries, conn)
        if any(e["kind"] == "records" for e in entries):
            raise RuntimeError("connection lost before commit")

    monkeypatch.setattr(AuditStore, "append", fail_after_the_intents)
    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].status is Status.FAILED
    assert keys(sqlite_url, "orders") == {17}
    kinds = [(r["kind"], r["table_name"]) for r in log_rows(audit)]
    assert kinds == [("run_started", None), ("records", "orders"), ("records", "order_lines"),
                     ("batch_rolled_back", None), ("run_finished", None)]
    with open_store(audit) as store:
        assert store.open_batches() == []
        assert list(store.records()) == []
        assert store.verify().ok


def test_a_batch_whose_commit_mark_was_lost_is_confirmed_by_the_next_run(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Target committed, batch_committed never written: the next run records the rows once."""
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(db_url, [(17, OLD), (18, NEW)], [(171, 17), (172, 17)])
    policy = shop_policy(tmp_path, monkeypatch, db_url, audit)
    append = AuditStore.append

    def lose_the_commit_mark(self: AuditStore, entries: Any, conn: Any = None) -> None:
        if any(e["kind"] == "batch_committed" for e in entries):
            raise RuntimeError("audit store went away after the target commit")
        append(self, entries, conn)

    with monkeypatch.context() as patched:
        patched.setattr(AuditStore, "append", lose_the_commit_mark)
        first = engine.run(policy, AS_OF)
    assert first.rules[0].status is Status.FAILED
    assert keys(db_url, "orders") == {18}
    assert recorded(audit) == []

    second = engine.run(policy, AS_OF)

    assert second.rules[0].status is Status.OK
    assert sorted(recorded(audit)) == [("order_lines", 171), ("order_lines", 172),
                                       ("orders", 17)]
    with open_store(audit) as store:
        assert store.open_batches() == []
        assert store.verify().ok


# -- 5. reconciliation after a crash ---------------------------------------------------------


@pytest.fixture
def crashed(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> tuple[Policy, str, str]:
    """Orders 1-6 due (with lines), 7-8 not; a crashed batch intended orders 1-4 and 7 and
    actually removed orders 1, 2 and their lines. Returns (policy, audit url, batch id)."""
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(db_url, [(i, OLD) for i in range(1, 7)] + [(7, NEW), (8, NEW)],
              [(11, 1), (12, 1), (21, 2), (31, 3), (41, 4), (51, 5), (71, 7)])
    policy = shop_policy(tmp_path, monkeypatch, db_url, audit, batch_size=2)
    with open_store(audit) as store:
        store.start_run(RunInfo("crashed-run", "test", "1", policy.sha256, "run", AS_OF))
        intent(store, "crashed-run", "crashed-batch",
               [("orders", 1), ("orders", 2), ("orders", 3), ("orders", 4), ("orders", 7),
                ("order_lines", 11), ("order_lines", 12), ("order_lines", 21),
                ("order_lines", 31), ("order_lines", 41), ("order_lines", 71)])
    delete_rows(db_url, "order_lines", [11, 12, 21])
    delete_rows(db_url, "orders", [1, 2])
    return policy, audit, "crashed-batch"


def test_the_next_run_rolls_back_the_open_batch_before_doing_anything_new(
        crashed: tuple[Policy, str, str]) -> None:
    """Right after run_started: batch_rolled_back for the open batch, then the recovered
    records and their batch_committed, and only then the run's own batches."""
    policy, audit, batch_id = crashed

    outcome = engine.run(policy, AS_OF)

    rows = log_rows(audit)
    start = next(i for i, r in enumerate(rows)
                 if r["kind"] == "run_started" and r["run_id"] == outcome.run_id)
    rolled_back = rows[start + 1]
    assert (rolled_back["kind"], rolled_back["batch_id"]) == ("batch_rolled_back", batch_id)
    recovered = rows[start + 2:start + 2 + 2]
    assert [(r["kind"], r["table_name"]) for r in recovered] == [
        ("records", "orders"), ("records", "order_lines")]
    assert {json.loads(r["detail"])["recovered_from"] for r in recovered} == {batch_id}
    assert {r["run_id"] for r in recovered} == {outcome.run_id}
    mark = rows[start + 4]
    assert (mark["kind"], mark["batch_id"]) == ("batch_committed", recovered[0]["batch_id"])


def test_reconciliation_confirms_exactly_the_intended_rows_that_are_gone(
        crashed: tuple[Policy, str, str]) -> None:
    """The recovered batch holds orders 1, 2 and lines 11, 12, 21 and nothing else."""
    policy, audit, batch_id = crashed

    engine.run(policy, AS_OF)

    rows = [r for r in log_rows(audit) if r["kind"] == "records"
            and json.loads(r["detail"]).get("recovered_from") == batch_id]
    recovered = [(r["table_name"], json.loads(r["record_key"])["id"]) for r in records_in(rows)]
    assert sorted(recovered) == [("order_lines", 11), ("order_lines", 12),
                                 ("order_lines", 21), ("orders", 1), ("orders", 2)]


def test_after_reconciliation_every_removed_row_is_recorded_exactly_once(
        crashed: tuple[Policy, str, str], db_url: str) -> None:
    """Crash-removed and newly removed rows each appear once; surviving rows never."""
    policy, audit, _ = crashed

    engine.run(policy, AS_OF)

    assert Counter(recorded(audit)) == Counter(
        [("orders", i) for i in range(1, 7)]
        + [("order_lines", i) for i in (11, 12, 21, 31, 41, 51)])
    assert keys(db_url, "orders") == {7, 8}
    assert keys(db_url, "order_lines") == {71}
    with open_store(audit) as store:
        assert store.open_batches() == []
        assert store.verify().ok


def test_a_second_run_after_reconciliation_records_nothing_new(
        crashed: tuple[Policy, str, str]) -> None:
    """Reconciliation happens once: the next run finds no open batch and nothing due."""
    policy, audit, _ = crashed
    engine.run(policy, AS_OF)
    before = recorded(audit)

    engine.run(policy, AS_OF)

    assert recorded(audit) == before
    assert [r["kind"] for r in log_rows(audit)][-2:] == ["run_started", "run_finished"]


def test_an_open_batch_whose_rows_all_still_exist_exports_nothing(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intents for rows that are still there are rolled back and never exported."""
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(sqlite_url, [(7, NEW), (8, NEW)], [(71, 7)])
    policy = shop_policy(tmp_path, monkeypatch, sqlite_url, audit)
    with open_store(audit) as store:
        store.start_run(RunInfo("crashed-run", "test", "1", policy.sha256, "run", AS_OF))
        intent(store, "crashed-run", "crashed-batch",
               [("orders", 7), ("orders", 8), ("order_lines", 71)])

    engine.run(policy, AS_OF)

    with open_store(audit) as store:
        assert exported(store) == ""
        assert store.open_batches() == []
        assert store.verify().ok
    assert [r["kind"] for r in log_rows(audit)].count("batch_rolled_back") == 1
    assert keys(sqlite_url, "orders") == {7, 8}


def test_an_open_anonymize_batch_is_confirmed_only_for_rows_already_anonymized(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An anonymize intent counts as done iff the row holds the anonymized form; the rest is
    anonymized anew, and each row is recorded once."""
    audit = sqlite_file(tmp_path, "audit.db")
    meta = sa.MetaData()
    visits = sa.Table("visits", meta,
                      sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("visited_at", TS), sa.Column("ip", sa.String(45)))
    eng = sa.create_engine(sqlite_url, poolclass=NullPool)
    meta.create_all(eng)
    with eng.begin() as conn:  # the crashed batch had truncated visit 1 but not visit 2
        conn.execute(visits.insert(), [
            {"id": 1, "visited_at": OLD, "ip": "203.0.113.0"},
            {"id": 2, "visited_at": OLD, "ip": "203.0.113.77"},
            {"id": 3, "visited_at": dt.datetime(2026, 3, 1, 11), "ip": "203.0.113.78"}])
    eng.dispose()
    monkeypatch.setenv("TEST_TARGET_URL", sqlite_url)
    policy = load_policy(write_policy(tmp_path, (
        "policy: test\nsources:\n  db:\n    adapter: sql\n    url: ${TEST_TARGET_URL}\n"
        f"audit:\n  url: {audit}\ndefaults:\n  source: db\n  max_fraction: 1.0\n"
        "rules:\n  v:\n    table: visits\n    retain: 1 day after visited_at\n"
        "    action:\n      anonymize: {ip: truncate_ip}\n")))
    with open_store(audit) as store:
        store.start_run(RunInfo("crashed-run", "test", None, policy.sha256, "run", AS_OF))
        reading = records.Reading("visited_at", "naive_utc", None, "", "UTC",
                                  "1 day after visited_at")
        store.append(store.batch_entries("crashed-run", "v", "db", "crashed-batch",
                                         [compact("visits", [1, 2], "anonymize")], reading,
                                         committed=False))

    engine.run(policy, AS_OF)

    assert sorted(recorded(audit)) == [("visits", 1), ("visits", 2)]
    recovered = [json.loads(r["record_key"])["id"] for r in records_in(
        [r for r in log_rows(audit) if r["kind"] == "records"
         and "recovered_from" in json.loads(r["detail"])])]
    assert recovered == [1]


# -- 6. no password in the audit log ---------------------------------------------------------


@pytest.fixture
def password_url(postgres_server: Server, postgres_url: str) -> Iterator[str]:
    """postgres_url, as a new login role with password PASSWORD that may create tables."""
    role = f"u_{uuid.uuid4().hex[:12]}"
    database = make_url(postgres_url).database
    admin = sa.create_engine(postgres_server.url, isolation_level="AUTOCOMMIT",
                             poolclass=NullPool)
    owner = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'"))
            conn.execute(sa.text(f'GRANT ALL PRIVILEGES ON DATABASE "{database}" TO {role}'))
        with owner.connect() as conn:
            conn.execute(sa.text(f"GRANT ALL ON SCHEMA public TO {role}"))
        yield make_url(postgres_url).set(username=role, password=PASSWORD).render_as_string(
            hide_password=False)
    finally:
        with owner.connect() as conn:
            conn.execute(sa.text(f"REASSIGN OWNED BY {role} TO CURRENT_USER"))
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        owner.dispose()
        admin.dispose()


def _audit_text(url: str) -> str:
    """Every value of every column of every audit table, as one text."""
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        names = [n for n in sa.inspect(eng).get_table_names() if n.startswith("retention_")]
        assert {"retention_log", "retention_chain_head", "retention_runs"} <= set(names)
        with eng.connect() as conn:
            return "\n".join(repr(tuple(row)) for name in names
                             for row in conn.execute(sa.text(f"SELECT * FROM {name}")))
    finally:
        eng.dispose()


def test_a_target_password_never_reaches_a_separate_audit_store(
        password_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running against a password URL leaves no trace of the password in the audit file."""
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(password_url, [(17, OLD), (18, NEW)], [(171, 17)])
    policy = shop_policy(tmp_path, monkeypatch, password_url, audit)

    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].deleted == 1
    text = _audit_text(audit)
    assert '"keys":[17]' in text.replace(" ", "")
    assert PASSWORD not in text
    assert PASSWORD.encode() not in (tmp_path / "audit.db").read_bytes()


def test_a_password_never_reaches_an_audit_store_in_the_target_database(
        password_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the audit store at the same password URL, no audit table holds the password."""
    make_shop(password_url, [(17, OLD), (18, NEW)], [(171, 17)])
    policy = shop_policy(tmp_path, monkeypatch, password_url, password_url)

    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].deleted == 1
    text = _audit_text(password_url)
    assert '"keys":[17]' in text.replace(" ", "")
    assert PASSWORD not in text


def test_a_password_never_reaches_the_audit_store_when_a_rule_fails(
        password_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule failing on the password URL records its error without the password."""
    make_shop(password_url, [(17, OLD)], [(171, 17)])
    audit = sqlite_file(tmp_path, "audit.db")
    policy = shop_policy(tmp_path, monkeypatch, password_url, audit)
    append = AuditStore.append

    def fail_with_the_url(self: AuditStore, entries: Any, conn: Any = None) -> None:
        append(self, entries, conn)
        if any(e["kind"] == "records" for e in entries):
            raise RuntimeError(f"lost {password_url}")

    monkeypatch.setattr(AuditStore, "append", fail_with_the_url)
    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].status is Status.FAILED
    text = _audit_text(audit)
    assert "lost" in text
    assert PASSWORD not in text
