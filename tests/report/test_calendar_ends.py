"""``report`` and ``plan`` at the ends of the calendar: the range ``report`` advertises is the
range it accepts, and a cutoff before year 1 means that nothing is due yet (SPEC §3:
report and plan accept any instant)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention import calendar
from retention.policy.load import load_policy
from retention.policy.phrase import parse
from retention.report import build as report
from tests.support import write_policy

RETENTION = Path(sys.executable).with_name("retention")
REPORT_LATEST = "9999-09-30T23:59:59.999999+00:00"  # 90 days before the calendar's last


def _shop(tmp_path: Path, retain: str = "1 year after done_at", tz: str = "UTC",
          events: tuple[str, ...] = ("0001-01-02 00:00:00", "0001-03-01 10:00:00",
                                     "0002-01-01 00:00:00")) -> Path:
    url = f"sqlite:///{tmp_path}/shop.db"
    eng = sa.create_engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, done_at TIMESTAMP)")
        for i, at in enumerate(events, start=1):
            conn.exec_driver_sql("INSERT INTO orders VALUES (?, ?)", (i, at))
    eng.dispose()
    return write_policy(tmp_path, (
        f"policy: ends\ntimezone: {tz}\nsources:\n  db: {{adapter: sql, url: '{url}'}}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        f"rules:\n  orders: {{source: db, table: orders, retain: {retain}, "
        "max_fraction: 1.0}\n"))


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    return subprocess.run([str(RETENTION), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("as_of", ["9999-09-30T23:59:59.999999+00:00", "2026-02-28"])
def test_the_report_accepts_every_instant_of_the_range_it_advertises(
        tmp_path: Path, as_of: str) -> None:
    path = _shop(tmp_path)
    done = _cli(tmp_path, "report", str(path), "--as-of", as_of, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rules"][0]["due"] == 3


@pytest.mark.parametrize("as_of", ["9999-10-01T00:00:00Z", "9999-11-01", "9999-12-29",
                                   "9999-12-30"])
def test_the_report_refuses_past_its_range_in_the_words_that_advertise_it(
        tmp_path: Path, as_of: str) -> None:
    """It counts what falls due in the next 90 days, so its range ends 90 days earlier than
    the calendar's; the one message says so, whichever check refuses."""
    path = _shop(tmp_path)
    done = _cli(tmp_path, "report", str(path), "--as-of", as_of)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"--as-of {as_of} is outside the calendar the report counts in "
        f"(0001-01-03T00:00:00+00:00 to {REPORT_LATEST}; it counts what falls due in the "
        "next 90 days)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml", "shop.db"]


@pytest.mark.parametrize("command", ["report", "plan"])
def test_a_cutoff_before_year_1_means_nothing_is_due_yet(tmp_path: Path, command: str) -> None:
    """`report --as-of 0001-06-01` of '1 year after': exit 0, nothing due, nothing changed."""
    path = _shop(tmp_path)
    args = ("--format", "json") if command == "report" else ()
    done = _cli(tmp_path, command, str(path), "--as-of", "0001-06-01", *args)
    assert done.returncode == 0, done.stderr
    if command == "report":
        rule = json.loads(done.stdout)["rules"][0]
        assert (rule["due"], rule["due_next_90d"]) == (0, 0)
    else:
        assert "-- cutoff: 0001-01-01T23:59:59.999999+00:00" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml", "shop.db"]


def test_run_still_refuses_a_cutoff_before_year_1(tmp_path: Path) -> None:
    path = _shop(tmp_path)
    done = _cli(tmp_path, "run", str(path), "--as-of", "0001-06-01")
    assert done.returncode == 2
    assert "falls outside the calendar" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml", "shop.db"]


EVENTS = [dt.datetime(1, 1, 2) + dt.timedelta(hours=h) for h in (0, 1, 13, 24, 30, 800, 2000,
                                                                 9000, 20000)]
ZONES = ["UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Europe/Amsterdam"]
RETAINS = ["1 year after done_at", "6 months after done_at", "3 days after done_at",
           "30 hours after done_at", "until done_at", "1 day after done_at plus 1 year"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hours=st.integers(0, 3 * 365 * 24), retain=st.sampled_from(RETAINS),
       tz=st.sampled_from(ZONES))
def test_early_in_the_calendar_the_report_counts_exactly_the_events_due(
        hours: int, retain: str, tz: str) -> None:
    """Against the forward oracle (calendar.due_at): due counts exactly the events whose
    due instant is at or before as_of, also when the cutoff lies before year 1."""
    as_of = dt.datetime(1, 1, 3, tzinfo=dt.UTC) + dt.timedelta(hours=hours)
    with tempfile.TemporaryDirectory() as tmp:
        path = _shop(Path(tmp), retain, tz, tuple(str(e) for e in EVENTS))
        counted = report.build(load_policy(path), as_of)["rules"][0]["due"]
    zone = calendar.zone(tz)
    phrase = parse(retain)
    expected = sum(calendar.due_at(e.replace(tzinfo=dt.UTC), phrase, zone) <= as_of
                   for e in EVENTS)
    assert counted == expected


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "Etc/GMT+12"])
def test_a_cutoff_before_year_1_selects_nothing_on_every_database(
        db_url: str, tmp_path: Path, tz: str) -> None:
    """Timestamp and date columns holding the first days of the calendar: none is due
    '1 year after' as of 0001-06-01, all are as of 0003-01-01."""
    ts = "DATETIME" if db_url.startswith("mysql") else "TIMESTAMP"
    eng = sa.create_engine(db_url)
    with eng.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE t (id INTEGER PRIMARY KEY, at {ts} NULL)")
        conn.exec_driver_sql("CREATE TABLE d (id INTEGER PRIMARY KEY, day DATE NULL)")
        for i, day in enumerate(("0001-01-03", "0001-01-04", "0001-02-01"), start=1):
            conn.exec_driver_sql(f"INSERT INTO t VALUES ({i}, '{day} 00:00:00')")
            conn.exec_driver_sql(f"INSERT INTO d VALUES ({i}, '{day}')")
    eng.dispose()
    os.environ["ENDS_TEST_URL"] = db_url
    policy = load_policy(write_policy(tmp_path, (
        f"policy: ends\ntimezone: {tz}\n"
        "sources:\n  db: {adapter: sql, url: '${ENDS_TEST_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\nrules:\n"
        "  t: {source: db, table: t, retain: 1 year after at, max_fraction: 1.0}\n"
        "  d: {source: db, table: d, retain: 1 year after day, max_fraction: 1.0}\n")))
    early = report.build(policy, dt.datetime(1, 6, 1, tzinfo=dt.UTC))["rules"]
    assert [(r["due"], r["due_next_90d"]) for r in early] == [(0, 0), (0, 0)]
    late = report.build(policy, dt.datetime(3, 1, 1, tzinfo=dt.UTC))["rules"]
    assert [r["due"] for r in late] == [3, 3]
