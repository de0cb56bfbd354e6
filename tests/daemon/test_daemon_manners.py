"""The daemon and ``max_runtime``: an incomplete run keeps its slot; the next slot goes on.

In-process (the daemon's own job function, no scheduler thread), on SQLite, with a fake
clock on which every batch takes 4 s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from retention.adapters.sql import SqlAdapter
from structlog.testing import capture_logs

from retention.daemon import scheduler
from retention.daemon.daemon import Daemon
from retention.policy import schedule as schedules
from retention.run import throttle
from tests.daemon.test_daemon import policy_text, slots_of, sqlite_audit
from tests.support import keys, orders_with_lines, write_policy


@pytest.fixture
def slow_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    now = [0.0]
    real = SqlAdapter.run_batch

    def slow(self: SqlAdapter, *args: Any, **kwargs: Any) -> Any:
        now[0] += 4.0
        return real(self, *args, **kwargs)

    monkeypatch.setattr(throttle, "clock", lambda: now[0])
    monkeypatch.setattr(SqlAdapter, "run_batch", slow)
    yield


def test_an_incomplete_run_keeps_its_slot_and_the_next_slot_goes_on(
        sqlite_url: str, tmp_path: Path, slow_batches: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """max_runtime ends the slot's run `incomplete`: the slot stays claimed (a repeated
    firing does nothing, a restart does not run it again), unlike an interrupted run's; the
    next slot's run deletes the rest."""
    orders_with_lines(sqlite_url, tmp_path, [dt.datetime(2015, 1, i) for i in range(1, 11)], 2)
    audit = sqlite_audit(tmp_path)
    path = write_policy(tmp_path, policy_text(sqlite_url, audit, {"orders": {
        "table": "orders", "retain": "1 year after done_at", "batch_size": 2,
        "schedule": "every 1 hours", "max_runtime": "10 seconds"}}), "daemon.yaml")
    daemon = Daemon(str(path))
    try:
        with capture_logs() as logs:
            daemon._fire("orders")
            daemon._fire("orders")  # the same slot again

        ran = [e for e in logs if e["event"] == "slot_ran"]
        assert [e["status"] for e in ran] == ["incomplete"]
        assert any(e["event"] == "slot_already_ran" for e in logs)
        assert [s["slot"] for s in slots_of(audit)] == [ran[0]["slot"]]
        assert keys(sqlite_url, "orders") == set(range(7, 11))
        rule = daemon.policy.rule("orders")
        trig = scheduler.trigger(schedules.parse(rule.schedule), daemon.policy.timezone)
        assert not daemon._missed(rule, trig)  # a restart would not run the slot again

        monkeypatch.setattr(scheduler, "slot_key", lambda *args: "the next slot")
        with capture_logs() as logs:
            daemon._fire("orders")

        assert [e["status"] for e in logs if e["event"] == "slot_ran"] == ["ok"]
        assert keys(sqlite_url, "orders") == set()
    finally:
        daemon.store.close()
