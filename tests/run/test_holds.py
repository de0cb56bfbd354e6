"""Legal holds: held records are never touched, are counted, and are recorded."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from retention.audit.store import AuditStore
from retention.errors import UsageError
from retention.policy.rules import Policy
from retention.run import engine, holds
from tests.support import audited, keys, orders_with_lines

AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def _setup(url: str, tmp_path: Path) -> Policy:
    return orders_with_lines(url, tmp_path, [dt.datetime(2015, 1, i) for i in range(1, 7)], 2)


def test_held_records_and_their_children_are_kept_and_counted(db_url: str,
                                                              tmp_path: Path) -> None:
    """A run deletes every due order but the held one, whose lines stay too."""
    policy = _setup(db_url, tmp_path)
    store = AuditStore(policy.audit_url)
    holds.add(store, "orders", "orders", {"id": 3}, "litigation", by="dpo")
    store.close()

    outcome = engine.run(policy, AS_OF)

    assert outcome.rules[0].held == 1
    assert outcome.rules[0].deleted == 5
    assert keys(db_url, "orders") == {3}
    assert keys(db_url, "lines") == {5, 6}
    assert 3 not in {r["key"]["id"] for r in audited(policy.audit_url, "orders")}


def test_a_released_hold_lets_the_next_run_delete(sqlite_url: str, tmp_path: Path) -> None:
    """After release the record follows its rule again; both events are chained entries."""
    policy = _setup(sqlite_url, tmp_path)
    store = AuditStore(policy.audit_url)
    placed = holds.add(store, "orders", "orders", {"id": 2}, "audit", by="dpo")
    engine.run(policy, AS_OF)
    assert keys(sqlite_url, "orders") == {2}
    holds.release(store, "orders", placed.hold_id, by="dpo")

    engine.run(policy, AS_OF)

    assert keys(sqlite_url, "orders") == set()
    with store.engine.connect() as conn:
        kinds = [r[0] for r in conn.execute(sa.text(
            "SELECT kind FROM retention_log WHERE kind LIKE 'hold_%' ORDER BY seq"))]
    assert kinds == ["hold_added", "hold_released"]
    assert store.verify().ok
    store.close()


def test_a_hold_ends_after_its_last_day(sqlite_url: str, tmp_path: Path) -> None:
    """A hold with an end date protects the record through that date only."""
    policy = _setup(sqlite_url, tmp_path)
    store = AuditStore(policy.audit_url)
    holds.add(store, "orders", "orders", {"id": 1}, "audit", by="dpo",
              until=dt.date(2026, 2, 28))
    store.close()
    engine.run(policy, AS_OF)
    assert keys(sqlite_url, "orders") == set()


def test_keys_are_read_plain_or_as_column_pairs() -> None:
    """4711 names a one-column key; col=value pairs name any key, in key order."""
    assert holds.parse_key("4711", ("id",)) == {"id": "4711"}
    assert holds.parse_key("seq=2, account=7", ("account", "seq")) == {"account": "7",
                                                                        "seq": "2"}
    for bad, pk in (("7", ("a", "b")), ("a=1", ("a", "b")), ("a=", ("a",)), ("", ("a",)),
                    ("a=1,a=2", ("a",))):
        with pytest.raises(UsageError):
            holds.parse_key(bad, pk)


def test_hold_commands_place_list_and_release(sqlite_url: str, tmp_path: Path) -> None:
    """hold add/list/release through the command line, with bad input exiting 2."""
    import subprocess
    import sys

    _setup(sqlite_url, tmp_path)
    exe = str(Path(sys.executable).with_name("retention"))
    env = {**os.environ, "RETENTION_POLICY": str(tmp_path / "policy.yaml")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], capture_output=True, text=True, env=env,
                              check=False)

    added = cli("hold", "add", str(tmp_path / "policy.yaml"), "orders", "4",
                "--reason", "tax audit", "--by", "dpo")
    assert added.returncode == 0, added.stderr
    listed = cli("hold", "list", str(tmp_path / "policy.yaml"), "--format", "json")
    hold = json.loads(listed.stdout)[0]
    assert hold["key"] == {"id": 4} and hold["placed_by"] == "dpo"
    assert cli("hold", "add", str(tmp_path / "policy.yaml"), "orders", "x",
               "--reason", "r").returncode == 2
    assert cli("hold", "add", str(tmp_path / "policy.yaml"), "nope", "1",
               "--reason", "r").returncode == 2
    assert cli("hold", "add", str(tmp_path / "policy.yaml"), "orders", "1", "--reason", "r",
               "--until", "2001-01-01").returncode == 2
    assert cli("hold", "release", str(tmp_path / "policy.yaml"), "nope").returncode == 2
    missing = cli("hold", "add", str(tmp_path / "policy.yaml"), "orders", "999",
                  "--reason", "may come back from a restore")
    assert missing.returncode == 0 and "hold_key_not_found" in missing.stderr
    assert cli("hold", "release", str(tmp_path / "policy.yaml"),
               hold["hold_id"]).returncode == 0
    assert json.loads(cli("hold", "list", str(tmp_path / "policy.yaml"), "--format",
                          "json").stdout)[0]["key"] == {"id": 999}
