"""Compact ``records`` entries: read back per record exactly as the run meant them.

A batch's records are stored as arrays of keys and stored event values; readers
compute ``event_at`` and ``due_at`` from them. These tests hold that computation to
the plain one (the calendar, per value), the streamed export to the per-record
export, and the chain to every key and value inside an entry.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from retention.adapters.protocol import Removed

from retention import calendar
from retention.audit import export, records
from retention.audit.store import AuditStore, RunInfo, iso
from retention.policy.phrase import parse
from tests.support import utc

ZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"]
PHRASES = ["6 months after completion plus 7 years", "1 day after completion",
           "3 months after completion", "24 hours after completion", "until completion"]
instants = st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2040, 12, 31))


def _fraction(instant: dt.datetime, digits: int) -> str:
    """``digits`` fraction digits: the microseconds, then three more (nanoseconds)."""
    return f"{instant.microsecond:06d}123"[:digits]


def _text(instant: dt.datetime, digits: int, sep: str, suffix: str) -> str:
    fraction = _fraction(instant, digits)
    return instant.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{fraction}" if digits else "") \
        + suffix


@settings(max_examples=300, deadline=None)
@given(instant=instants, digits=st.integers(0, 9), sep=st.sampled_from([" ", "T"]),
       suffix=st.sampled_from(["", "Z", "+00:00"]), zone=st.sampled_from(ZONES),
       phrase=st.sampled_from(PHRASES))
def test_event_and_due_instants_are_those_the_calendar_gives_for_the_stored_value(
        instant: dt.datetime, digits: int, sep: str, suffix: str, zone: str,
        phrase: str) -> None:
    """The cached per-date path agrees with calendar.due_at for every value and zone."""
    value = _text(instant, digits, sep, suffix)
    reading = records.Reading("completed_at", "naive_utc", None, "", zone, phrase)
    reader = records.Reader(reading)
    micros = int(_fraction(instant, digits).ljust(6, "0")[:6])  # read to the microsecond
    exact = instant.replace(microsecond=micros, tzinfo=dt.UTC)
    event_at, due_at = reader.times(value)
    assert event_at == iso(exact)
    assert due_at == iso(calendar.due_at(exact, parse(phrase), calendar.zone(zone)))
    assert reader.times(value) == (event_at, due_at)  # and again, from the cache


def test_a_value_that_is_no_instant_has_neither_instant() -> None:
    reader = records.Reader(records.Reading("at", "naive_utc", None, "", "UTC",
                                            "1 day after at"))
    for value in ("0000-00-00 00:00:00", "not a time", "2020-02-30 10:00:00", None):
        assert reader.times(value) == (None, None), value


def _store(tmp_path: Path) -> AuditStore:
    store = AuditStore(f"sqlite:///{tmp_path}/audit.db")
    store.start_run(RunInfo("run-1", "p", "1", "0" * 64, "run", utc(2026, 3, 1)))
    return store


READING = records.Reading("completed_at", "naive_utc", None, "", "Europe/Amsterdam",
                          "6 months after completion plus 7 years")


def _fill(store: AuditStore) -> None:
    events = ["2018-08-31 21:59:59.999999", "2018-08-31 22:00:00", "2018-02-28T23:30:00Z",
              "2016-02-29 12:00:00.123456789", "bad"]
    orders = Removed.of("orders", "delete", ("id",), [(i,) for i in range(1, 6)], events)
    lines = Removed.of("order_lines", "delete", ("order_id", "n"),
                       [(1, 1), (1, 2), (5, "x\"y")], [events[0], events[0], events[4]])
    store.append(store.batch_entries("run-1", "orders", "shop", "b1", [orders, lines],
                                     READING, committed=True))
    store.append(store.batch_entries("run-1", "orders", "shop", "b2", [orders], READING,
                                     committed=False))  # an intent never confirmed


def test_an_entry_larger_than_a_write_chunk_is_exported_whole(tmp_path: Path) -> None:
    """An entry of more records than export writes at once (``WRITE_LINES``) gives every
    line once, in order, as the per-record export does."""
    store = _store(tmp_path)
    n = export.WRITE_LINES * 2 + 7
    try:
        big = Removed.of("orders", "delete", ("id",), [(i,) for i in range(1, n + 1)],
                         [f"2018-0{1 + i % 9}-0{1 + i % 9} 10:00:00" for i in range(n)])
        store.append(store.batch_entries("run-1", "orders", "shop", "b1", [big], READING,
                                         committed=True))
        for fmt in ("jsonl", "csv"):
            streamed, written = io.StringIO(), io.StringIO()
            assert export.stream(store, fmt, streamed) == n
            assert export.write(store.records(), fmt, written) == n
            assert streamed.getvalue() == written.getvalue()
        ids = [json.loads(line)["key"]["id"] for line in _jsonl(store)]
    finally:
        store.close()
    assert ids == list(range(1, n + 1))


def test_the_streamed_export_is_the_per_record_export_byte_for_byte(tmp_path: Path) -> None:
    """JSON lines and CSV: export.stream over entries == export.write over records()."""
    store = _store(tmp_path)
    try:
        _fill(store)
        for fmt in ("jsonl", "csv"):
            streamed, written = io.StringIO(), io.StringIO()
            assert export.stream(store, fmt, streamed) == 8
            assert export.write(store.records(), fmt, written) == 8
            assert streamed.getvalue() == written.getvalue()
        lines = [json.loads(line) for line in _jsonl(store)]
    finally:
        store.close()
    assert [(r["table"], r["key"]) for r in lines] == [
        ("orders", {"id": 1}), ("orders", {"id": 2}), ("orders", {"id": 3}),
        ("orders", {"id": 4}), ("orders", {"id": 5}), ("order_lines", {"n": 1, "order_id": 1}),
        ("order_lines", {"n": 2, "order_id": 1}), ("order_lines", {"n": "x\"y", "order_id": 5})]
    # the day rule in Amsterdam: 2018-08-31 23:59:59.999999 local is due from 2026-03-01
    assert lines[0]["event_at"] == "2018-08-31T21:59:59.999999+00:00"
    assert lines[0]["due_at"] == "2026-02-28T23:00:00.000000+00:00"
    assert lines[1]["due_at"] == "2026-03-01T23:00:00.000000+00:00"
    assert lines[3]["event_at"] == "2016-02-29T12:00:00.123456+00:00"
    assert (lines[4]["event_at"], lines[4]["due_at"]) == (None, None)


def _jsonl(store: AuditStore) -> list[str]:
    out = io.StringIO()
    export.stream(store, "jsonl", out)
    return out.getvalue().splitlines()


def test_changing_one_key_or_one_event_value_inside_an_entry_breaks_the_chain_there(
        tmp_path: Path) -> None:
    """The entry's hash covers its arrays: one changed key or value names that entry."""
    store = _store(tmp_path)
    try:
        _fill(store)
        assert store.verify().ok
        with store.engine.begin() as conn:
            detail = conn.exec_driver_sql(
                "SELECT detail FROM retention_log WHERE seq = 2").scalar_one()
        for changed in (detail.replace('"keys":[1,2,', '"keys":[1,7,'),
                        detail.replace("2018-08-31 22:00:00", "2018-08-31 22:00:01")):
            assert changed != detail
            with store.engine.begin() as conn:
                conn.exec_driver_sql("UPDATE retention_log SET detail = ? WHERE seq = 2",
                                     (changed,))
            verdict = store.verify()
            assert (verdict.ok, verdict.seq) == (False, 2)
            assert verdict.reason is not None and verdict.reason.startswith("altered")
    finally:
        store.close()
