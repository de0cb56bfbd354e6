"""Proof of commit: a marker in the target, written in the batch's own transaction.

SPEC §4.2: with the audit store in another database, an open batch is settled
from whether its transaction committed, never from whether a row with its key
exists now. Fault tests with real processes are in test_faults.py (section 4);
these check the adapter's markers and the reconciler's use of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from retention.adapters.protocol import Batch
from retention.adapters.sql import SqlAdapter
from retention.adapters.sql_marks import MARKS_TABLE
from sqlalchemy.pool import NullPool
from structlog.testing import capture_logs

from retention import cli
from retention.audit.store import AuditStore, RunInfo
from retention.plan import Plan
from retention.policy.rules import Policy
from retention.report import build as report
from retention.run import engine, reconcile
from retention.run.outcome import Status
from tests.audit.test_audit import (
    AS_OF,
    NEW,
    OLD,
    intent,
    make_shop,
    open_store,
    recorded,
    shop_policy,
    sqlite_file,
)
from tests.support import keys, snapshot, utc


def _tables(url: str) -> set[str]:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        return set(sa.inspect(eng).get_table_names())
    finally:
        eng.dispose()


def _marks(url: str) -> list[str]:
    if MARKS_TABLE not in _tables(url):
        return []
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return sorted(conn.execute(sa.text(f"SELECT batch_id FROM {MARKS_TABLE}")).scalars())
    finally:
        eng.dispose()


def _plan(policy: Policy) -> Plan:
    with engine.Session(policy) as session:
        plans, failed = engine.compile_plans(session, policy.rules, AS_OF)
    assert not failed
    return plans["orders"]


@pytest.fixture
def shop(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Policy:
    """Orders 1-4 due with a line each, 5 not due; the audit store is a SQLite file."""
    make_shop(db_url, [(i, OLD) for i in range(1, 5)] + [(5, NEW)],
              [(10 * i + 1, i) for i in range(1, 6)])
    return shop_policy(tmp_path, monkeypatch, db_url, sqlite_file(tmp_path, "audit.db"))


# -- the adapter's markers ----------------------------------------------------------


@pytest.mark.parametrize("commits", [True, False], ids=["commits", "rolls-back"])
def test_committed_waits_for_a_batch_in_flight_and_answers_with_its_outcome(
        shop: Policy, commits: bool) -> None:
    """A batch whose transaction is still open is neither committed nor rolled back yet:
    ``committed`` waits for it (a dropped connection may leave the server committing)."""
    plan = _plan(shop)
    running, asking = SqlAdapter(shop.sources["db"]), SqlAdapter(shop.sources["db"])
    inside, go = threading.Event(), threading.Event()
    answer: dict[str, Any] = {}

    def hook(batch: Batch, conn: Any) -> None:
        inside.set()
        go.wait(30)
        if not commits:
            raise RuntimeError("the connection dropped before COMMIT")

    def run() -> None:
        with contextlib.suppress(RuntimeError):
            running.run_batch(plan, None, hook, "mark-in-flight")

    def ask() -> None:
        answer["committed"] = asking.committed(["mark-in-flight", "mark-never-ran"])

    runner = threading.Thread(target=run)
    runner.start()
    assert inside.wait(30)
    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(0.5)
    waited = asker.is_alive()
    go.set()
    runner.join(30)
    asker.join(60)
    running.close()
    asking.close()

    assert waited, "committed() answered while the batch was still in flight"
    assert answer["committed"] == ({"mark-in-flight"} if commits else set())
    assert keys(shop.sources["db"].options["url"], "orders") == ({5} if commits
                                                                  else {1, 2, 3, 4, 5})


def _fail(batch: Batch, conn: Any) -> None:
    raise RuntimeError("the connection dropped before COMMIT")


def test_a_batch_found_not_committed_can_never_commit_afterwards(shop: Policy) -> None:
    """``committed`` fences what it calls rolled back: that batch id cannot commit later.
    Without the marker table nothing can be proven, and it says so."""
    plan = _plan(shop)
    adapter = SqlAdapter(shop.sources["db"])
    try:
        with pytest.raises(LookupError, match="retention_batch_marks"):
            adapter.committed(["mark-late"])
        with pytest.raises(RuntimeError):  # creates the table; the batch rolls back
            adapter.run_batch(plan, None, _fail, "mark-first")
        assert adapter.committed(["mark-late", "mark-first"]) == set()
        with pytest.raises(sa.exc.IntegrityError):
            adapter.run_batch(plan, None, lambda batch, conn: None, "mark-late")
        assert adapter.committed(["mark-late"]) == set()
    finally:
        adapter.close()
    assert keys(shop.sources["db"].options["url"], "orders") == {1, 2, 3, 4, 5}


def test_a_batch_without_an_id_writes_no_marker(shop: Policy) -> None:
    """With the audit store in the target, entries ride in the batch: no marker needed."""
    url = shop.sources["db"].options["url"]
    adapter = SqlAdapter(shop.sources["db"])
    try:
        adapter.run_batch(_plan(shop), None, lambda batch, conn: None)
    finally:
        adapter.close()
    assert keys(url, "orders") == {5}
    assert MARKS_TABLE not in _tables(url)


# -- markers in a run ---------------------------------------------------------------


def _batch_size(policy: Policy, size: int) -> Policy:
    rules = tuple(dataclasses.replace(r, batch_size=size) for r in policy.rules)
    return dataclasses.replace(policy, rules=rules)


def test_a_clean_run_prunes_every_marker_it_wrote(shop: Policy) -> None:
    """Markers of batches closed in the audit store are deleted at the end of the rule."""
    url = shop.sources["db"].options["url"]
    policy = _batch_size(shop, 1)
    outcome = engine.run(policy, AS_OF)
    assert outcome.rules[0].status is Status.OK and outcome.rules[0].deleted == 4
    assert MARKS_TABLE in _tables(url)
    assert _marks(url) == []


def test_the_marker_of_a_batch_left_open_stays_until_it_is_settled(
        shop: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """batch_committed is lost: the marker stays, the next run confirms from it and then
    prunes it."""
    url = shop.sources["db"].options["url"]
    append = AuditStore.append

    def lose_the_commit_mark(self: AuditStore, entries: Any, conn: Any = None) -> None:
        if any(e["kind"] == "batch_committed" for e in entries):
            raise RuntimeError("audit store went away after the target commit")
        append(self, entries, conn)

    with monkeypatch.context() as patched:
        patched.setattr(AuditStore, "append", lose_the_commit_mark)
        first = engine.run(shop, AS_OF)
    assert first.rules[0].status is Status.FAILED
    with open_store(shop.audit_url) as store:
        (left_open,) = store.open_batches()
    assert _marks(url) == [left_open["batch_id"]]

    second = engine.run(shop, AS_OF)

    assert second.rules[0].recovered == 8  # four orders and their lines
    assert sorted(recorded(shop.audit_url)) == sorted(
        [("orders", i) for i in range(1, 5)] + [("order_lines", 10 * i + 1) for i in range(1, 5)])
    assert _marks(url) == []


def test_validate_plan_and_report_create_no_marker_table_and_report_never_lists_it(
        shop: Policy, capsys: pytest.CaptureFixture[str]) -> None:
    """The marker table is created by the first batch that changes rows, and is no
    uncovered table."""
    url = shop.sources["db"].options["url"]
    before = snapshot(url)
    for command in (["validate"], ["plan", "--as-of", AS_OF.isoformat()]):
        with pytest.raises(SystemExit) as exited:
            cli.main([*command, str(shop.path)])
        assert exited.value.code == 0, capsys.readouterr()
    assert report.build(shop, AS_OF)["uncovered"] == []
    engine.run(shop, AS_OF, dry_run=True)
    nothing_due = engine.run(shop, utc(2016, 1, 1))  # a run that changes nothing
    assert nothing_due.rules[0].status is Status.OK and nothing_due.rules[0].deleted == 0
    assert snapshot(url) == before

    engine.run(shop, AS_OF)
    assert MARKS_TABLE in _tables(url)

    assert report.build(shop, AS_OF)["uncovered"] == []
    with pytest.raises(SystemExit) as exited:
        cli.main(["validate", str(shop.path)])
    assert exited.value.code == 0, capsys.readouterr()


# -- batches written before commit markers ---------------------------------------------


def test_an_open_batch_without_a_marked_id_is_settled_by_rows_and_logged_so(
        sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch left open by a version without markers: the old row check, said in the log."""
    audit = sqlite_file(tmp_path, "audit.db")
    make_shop(sqlite_url, [(7, NEW)], [])
    policy = shop_policy(tmp_path, monkeypatch, sqlite_url, audit)
    with open_store(audit) as store:
        store.start_run(RunInfo("old-run", "test", "1", policy.sha256, "run", AS_OF))
        intent(store, "old-run", "0123456789abcdef0123456789abcdef", [("orders", 6),
                                                                     ("orders", 7)])

    with capture_logs() as logs:
        engine.run(policy, AS_OF)

    settled = [e for e in logs if e["event"] == "batch_reconciled"]
    assert [(e["proof"], e["confirmed"], e["rolled_back"]) for e in settled] == [("rows", 1, 1)]
    assert recorded(audit) == [("orders", 6)]


def test_marked_batch_ids_say_so_and_others_do_not() -> None:
    """Only ids made for a marked batch are settled by markers."""
    assert reconcile.is_marked(reconcile.new_batch_id(marked=True))
    assert not reconcile.is_marked(reconcile.new_batch_id(marked=False))
    assert not reconcile.is_marked("crashed-batch")
    assert len(reconcile.new_batch_id(marked=True)) <= 48  # retention_log.batch_id

