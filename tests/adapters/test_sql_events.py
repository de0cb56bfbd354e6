"""adapters/sql_events.py on SQLite: the canonical-text test, the census, the guard.

The range predicate on SQLite rests on three things checked here: the SQL
canonical test says exactly what ``stored.is_canonical`` says; SQLite compares
canonical text with a cutoff key exactly as Python compares the strings, whatever
the column's declared type (affinity); and a value written after the census in
another form is never selected early.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from retention.adapters import sql_events

from retention import stored
from retention.plan import Predicate
from retention.policy.load import load_policy
from retention.run import engine
from tests.support import write_policy

UTC = dt.UTC
CANONICAL = ["2026-01-01 10:00:00", "2026-01-01 10:00:00.5", "2026-12-31 23:59:59.123456789",
             "0001-01-02 00:00:00", "9999-12-31 23:59:59.999999999", "2024-02-29 00:00:00"]


@st.composite
def near_canonical(draw: st.DrawFn) -> Any:
    """Canonical text, mutated: characters replaced, cut, added; or any other value."""
    base = draw(st.sampled_from([*CANONICAL, "2026-01-01"]))
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return base
    if choice == 1:
        at = draw(st.integers(0, len(base) - 1))
        return base[:at] + draw(st.sampled_from(list("0123456789 T:-.+Z\x00é9"))) + base[at + 1:]
    if choice == 2:
        return base[:draw(st.integers(0, len(base)))]
    if choice == 3:
        return base + draw(st.sampled_from(["0", "00", "0000", ".", "Z", "+01:00", " ", "9"]))
    if choice == 4:
        return draw(st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                              st.binary(max_size=12)))
    return draw(st.text(alphabet="0123456789-: .T", max_size=30))


def _values(declared: str, values: list[Any], expression: Any) -> list[Any]:
    """``expression(column)`` for each of ``values`` stored in a column of that type."""
    eng = sa.create_engine("sqlite://")
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE t (id INTEGER PRIMARY KEY, v {declared})")
            conn.exec_driver_sql("INSERT INTO t (v) VALUES " + ", ".join("(?)" for _ in values),
                                 tuple(values))
            table = sa.Table("t", sa.MetaData(), autoload_with=conn)
            stored_values = conn.execute(sa.select(sa.type_coerce(table.c.v, sa.types.NullType()),
                                                   expression(table.c.v))
                                         .order_by(table.c.id)).all()
    finally:
        eng.dispose()
    return [(v, bool(e) if e is not None else False) for v, e in stored_values]


EDGES = ["0001-01-01 10:00:00", "0000-01-01 10:00:00", "2026-12-31 23:59:59.12345\x00789",
         "2026-01-01 10:00:00\x00", "2026-01-01 10:00:00.é", "2026-01-01 10:00:00.\u0661",
         "2026-02-30 10:00:00", "2026-00-10 10:00:00", "2026-01-01 24:00:00",
         "2026-01-01 10:00:00.1234567890", "2026-01-01 10:00:00.", "0001-01-02", "0001-01-03",
         "2026-02-29", "2024-02-29", "2026-1-01 10:00:00", "2026-01-01 10:00:00.5 ",
         "2026-01-01 10:60:00", "2026-01-01 10:00:60"]


@pytest.mark.parametrize("declared", ["DATETIME", "TEXT", ""])
@pytest.mark.parametrize("date", [False, True])
def test_the_sql_canonical_test_agrees_on_the_edges(declared: str, date: bool) -> None:
    found = _values(declared, EDGES + CANONICAL, lambda c: sql_events.canonical_text(c, date))
    assert [v for v, canonical in found if canonical] == [
        v for v in EDGES + CANONICAL if stored.is_canonical(v, date)]


@settings(max_examples=60)
@given(st.lists(near_canonical(), min_size=1, max_size=40),
       st.sampled_from(["DATETIME", "TEXT", "INTEGER", "BLOB", ""]), st.booleans())
def test_the_sql_canonical_test_agrees_with_stored_is_canonical(
        values: list[Any], declared: str, date: bool) -> None:
    """For every value as SQLite stored it (affinity may have turned text into a number)."""
    for value, canonical in _values(declared, values,
                                    lambda c: sql_events.canonical_text(c, date)):
        assert canonical == (isinstance(value, str) and stored.is_canonical(value, date)), value


@settings(max_examples=60)
@given(st.lists(st.integers(0, 10**9 * 86400 * 3), min_size=1, max_size=30),
       st.integers(0, 10**9 * 86400 * 3), st.booleans(),
       st.sampled_from(["DATETIME", "TEXT", "INTEGER", "REAL", "NUMERIC", ""]),
       st.integers(0, 9))
def test_sqlite_compares_canonical_text_with_a_cutoff_key_as_python_does(
        offsets: list[int], cut_offset: int, whole: bool, declared: str, digits: int) -> None:
    """Whatever the declared type's affinity, ``column <= :key`` is the strings' order."""
    base = dt.datetime(2025, 12, 30, tzinfo=UTC)
    texts = []
    for ns in offsets:
        moment = base + dt.timedelta(microseconds=ns // 1000)
        fraction = f"{moment.microsecond:06d}{ns % 1000:03d}"[:digits]
        texts.append(f"{moment:%Y-%m-%d %H:%M:%S}" + (f".{fraction}" if digits else ""))
    cut = base + dt.timedelta(microseconds=cut_offset // 1000)
    bound = stored.cutoff_key(cut, whole)
    found = _values(declared, texts,
                    lambda c: c <= sa.bindparam(None, bound, type_=sa.String))
    assert [due for _, due in found] == [t <= bound for t in texts]


def test_the_census_counts_each_form_in_one_query(tmp_path: Path) -> None:
    """Integers, reals, numeric text, canonical text, other ISO text and the rest."""
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, at BLOB)")
    conn.executemany("INSERT INTO t (at) VALUES (?)", [
        (5,), (6,), (1.5,), ("17",), ("-3.25",), ("2026-01-01 10:00:00",),
        ("2026-01-01 10:00:00.1",), ("2026-01-01T10:00:00Z",), ("2026-01-01",), ("soon",),
        (b"\x00",), (None,)])
    conn.commit()
    conn.close()
    eng = sa.create_engine(f"sqlite:///{path}")
    sql_events.register(eng)
    try:
        table = sa.Table("t", sa.MetaData(), autoload_with=eng)
        with eng.connect() as c:
            forms = sql_events.census(c, table, "at", False, "", "UTC")
            dates = sql_events.census(c, table, "at", True, "", "UTC")
    finally:
        eng.dispose()
    assert forms == stored.StoredForms(values=11, integers=2, reals=1, number_texts=2,
                                       canonical=2, other_texts=2)
    assert (dates.canonical, dates.other_texts) == (1, 3)


def _compiled(tmp_path: Path, url: str) -> Any:
    os.environ["SQL_EVENTS_URL"] = url
    policy = load_policy(write_policy(tmp_path, (
        "policy: guard\nsources:\n  db: {adapter: sql, url: '${SQL_EVENTS_URL}'}\n"
        f"audit: {{url: 'sqlite:///{tmp_path}/audit.db'}}\n"
        "rules:\n  events:\n    table: events\n    retain: until at\n"
        "    max_fraction: 1.0\n")))
    return policy


@pytest.mark.parametrize("late", [
    "2026-01-01 11:00:00-05:00", "2026-01-01 11:00:00.5+05:00", "2026-01-01 11:00:00Z",
    "2026-01-01", "2026-01-01 11", 1, 1.5, b"2026-01-01 11:00:00",
    "2026-01-01 11:00:00.0000000000",
])
def test_a_value_written_after_the_census_in_another_form_is_never_selected_early(
        tmp_path: Path, late: Any) -> None:
    """The range plan was chosen for a canonical column; then a row arrives in another form
    whose text sorts before the bound. The statement's own canonical test keeps it out (at
    worst it waits for the next run, which reads it with the parsed predicate)."""
    url = f"sqlite:///{tmp_path}/target.db"
    conn = sqlite3.connect(tmp_path / "target.db")
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, at DATETIME)")
    conn.execute("INSERT INTO events VALUES (1, '2026-01-01 11:00:00')")
    conn.commit()
    policy = _compiled(tmp_path, url)
    as_of = dt.datetime(2026, 1, 1, 12, tzinfo=UTC)
    with engine.Session(policy) as session:
        plans, _ = engine.compile_plans(session, policy.rules, as_of)
        plan = plans["events"]
        assert plan.predicate is Predicate.RANGE
        conn.execute("INSERT INTO events VALUES (2, ?)", (late,))
        conn.commit()
        conn.close()
        adapter = session.adapter("db")
        count = adapter.count(plan)
        batch = adapter.run_batch(plan, None, lambda batch, conn: None)
    assert (count.due, count.unreadable) == (1, 1)
    assert [(r.table, json.loads(r.keys)) for r in batch.removed] == [("events", [1])]
