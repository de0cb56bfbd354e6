"""The report's md, csv and json output for a fixed policy, SQLite data and instant,
compared with golden files (``tests/report/golden/report.*``).

After a deliberate change of the report, rewrite them with
``RETENTION_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/report/test_report_golden.py``
and review the diff: it is what an auditor will see change.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import pytest

from retention.policy.load import load_policy
from retention.report import build, render

GOLDEN = Path(__file__).with_name("golden")
AS_OF = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC)  # the night the clocks go forward

SCHEMA = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT, closed_at TIMESTAMP);
CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL, completed_at TIMESTAMP);
CREATE TABLE order_lines (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders (id),
                          sku TEXT);
CREATE TABLE invoices (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders (id));
CREATE TABLE visits (id INTEGER PRIMARY KEY, ip TEXT, visited_at TIMESTAMP);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, data TEXT);
CREATE TABLE cache (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE newsletter (email TEXT PRIMARY KEY, since TIMESTAMP);
"""


def _shop(path: Path) -> None:
    """Accounts (some closed long ago: a run would stop at max_fraction), orders with lines
    (one referenced by an invoice, so blocked; one with an unreadable date), visits."""
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO accounts VALUES (?, ?, ?)", [
        (1, "a@example.org", "2020-01-10 09:00:00"), (2, "b@example.org", "2025-12-28 22:59:59"),
        (3, "c@example.org", "2025-12-28 23:00:00"), (4, "d@example.org", None),
        (5, "e@example.org", "2026-02-01 12:00:00")])
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [
        (1, "completed", "2017-05-02 10:00:00"), (2, "refunded", "2018-09-28 21:59:59"),
        (3, "completed", "2018-09-28 22:00:00"), (4, "cancelled", "2010-01-01 00:00:00"),
        (5, "completed", "2018-11-20 12:00:00"), (6, "completed", "2016-03-01 08:00:00"),
        (7, "completed", "not a date"), (8, "completed", "2019-02-10 12:00:00")])
    conn.executemany("INSERT INTO order_lines VALUES (?, ?, ?)", [
        (1, 1, "A-1"), (2, 1, "B-2"), (3, 2, "A-1"), (4, 3, "C-3"), (5, 6, "D-4")])
    conn.execute("INSERT INTO invoices VALUES (1, 6)")
    conn.executemany("INSERT INTO visits VALUES (?, ?, ?)", [
        (1, "192.0.2.17", "2026-03-27 10:00:00"), (2, "192.0.2.0", "2026-03-26 10:00:00"),
        (3, "2001:db8::1", "2026-03-28 01:30:00"), (4, "198.51.100.4", "2026-03-29 01:00:00")])
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def report_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The report of the golden policy as of AS_OF, with two samples per rule."""
    tmp = tmp_path_factory.mktemp("golden")
    _shop(tmp / "shop.db")
    env = {"GOLDEN_SHOP_URL": f"sqlite:///{tmp / 'shop.db'}",
           "GOLDEN_AUDIT_URL": f"sqlite:///{tmp / 'audit.db'}"}
    policy = load_policy(GOLDEN / "report.yaml", env=env)
    data = build.build(policy, AS_OF, samples=2)
    assert not (tmp / "audit.db").exists()  # a report never creates the store
    return data


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_the_report_matches_its_golden_file(report_data: dict[str, object], fmt: str) -> None:
    """Every fact of the report, in each format, as reviewed in the golden file."""
    text = render.report(report_data, fmt)
    golden = GOLDEN / f"report.{fmt}"
    if os.environ.get("RETENTION_UPDATE_GOLDEN"):
        golden.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    assert text.rstrip("\n") == golden.read_text(encoding="utf-8").rstrip("\n")


def test_the_golden_report_shows_what_it_is_meant_to(report_data: dict[str, object]) -> None:
    """What the golden files are for, said once so a regenerated file cannot hide it:
    the exact cutoffs, the blocked order, the unreadable date, the stop, the coverage."""
    rules = {r["rule"]: r for r in report_data["rules"]}  # type: ignore[attr-defined]
    orders, accounts, visits = rules["orders"], rules["accounts"], rules["visits"]
    assert orders["cutoff"] == "2018-09-28T21:59:59.999999+00:00"
    assert orders["cutoff_local"] == "2018-09-28T23:59:59.999999+02:00"
    assert (orders["due"], orders["blocked"], orders["unreadable_events"]) == (
        2, {"invoices": 1}, 1)
    assert orders["samples"] == [{"id": 1}, {"id": 2}]
    assert orders["children"] == {"order_lines": 3}
    assert orders["records"] == "orders with status completed or refunded"
    assert (orders["due_next_7d"], orders["due_next_30d"], orders["due_next_90d"]) == (1, 1, 2)
    assert accounts["cutoff_local"] == "2025-12-28T23:59:59.999999+01:00"
    assert accounts["due"] == 2 and "max_fraction 0.3" in accounts["would_stop"]
    assert visits["cutoff_local"] == "2026-03-28T02:30:00+01:00"  # 24 hours before 03:30 CEST
    assert visits["due"] == 2  # 192.0.2.0 is already truncated
    assert report_data["uncovered"] == [{"source": "shop", "table": "invoices"},
                                        {"source": "shop", "table": "newsletter"}]
    assert report_data["ignored"] == [
        {"source": "shop", "table": "sessions",
         "reason": "framework sessions, removed by the application after 2 hours"},
        {"source": "shop", "table": "cache", "reason": None}]
    totals = report_data["totals"]
    assert (totals["due"], totals["blocked"], totals["rules"]) == (6, {"invoices": 1}, 3)
