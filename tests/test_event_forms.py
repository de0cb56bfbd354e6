"""SPEC §2 "Stored forms": event values are read as the programs that wrote them meant them.

SQLite has no time type: a column holds text in any ISO-8601 form, epoch numbers or
anything else, whatever its declared type. MariaDB has zero dates and PostgreSQL has
infinities. Every run selects exactly the rows whose event instant is due — never
early, never missed — and counts the values that are no instant as unreadable.
The reproductions run the real ``retention`` command; the property test runs the
engine against an oracle that knows the instant each text stands for.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retention import calendar, stored
from retention.audit.store import AuditStore
from retention.period import Kind
from retention.policy.load import load_policy
from retention.policy.phrase import parse
from retention.run import engine
from tests.support import write_policy

RETENTION = Path(sys.executable).with_name("retention")
AS_OF = "2026-01-01T12:00:00+00:00"
NOON = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
NOON_MS = 1767268800000  # 2026-01-01T12:00:00Z in Unix milliseconds
_OUR_VARS = ("FORMS_URL", "RETENTION_POLICY", "RETENTION_AUDIT_URL")


def cli(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
    env["FORMS_URL"] = url
    return subprocess.run([str(RETENTION), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def policy_text(tmp_path: Path, rule: str, naive: str = "utc",
                tz: str = "Europe/Amsterdam") -> str:
    return (f"policy: forms\ntimezone: {tz}\nsources:\n  db:\n    adapter: sql\n"
            f"    url: ${{FORMS_URL}}\n    naive_timestamps: {naive}\n"
            f"audit:\n  url: sqlite:///{tmp_path}/audit.db\n"
            "defaults:\n  source: db\n  max_fraction: 1.0\n  batch_size: 2\n"
            f"rules:\n{rule}")


UNTIL = "  events:\n    table: events\n    retain: until happened\n" \
        "    events: {happened: at}\n"


def sqlite_table(url: str, declared: str, values: dict[int, Any]) -> None:
    """``events(id, at <declared>)`` with ``values`` stored as given (text, int, ...)."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        conn.execute(f"CREATE TABLE events (id INTEGER PRIMARY KEY, at {declared})")
        conn.executemany("INSERT INTO events VALUES (?, ?)", list(values.items()))
        conn.commit()
    finally:
        conn.close()


def raw_rows(url: str, table: str = "events", key: str = "id") -> dict[Any, Any]:
    """``key -> stored value`` of every row, untouched by any type's conversions."""
    eng = sa.create_engine(url)
    try:
        with eng.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1")).all()
    finally:
        eng.dispose()
    return {r[0]: tuple(r[1:]) for r in rows}


def ids(url: str, table: str = "events", key: str = "id") -> list[Any]:
    """The keys left in ``table``, in order."""
    return sorted(raw_rows(url, f"(SELECT {key} FROM {table}) AS t"))


def audited(tmp_path: Path) -> dict[Any, dict[str, Any]]:
    store = AuditStore(f"sqlite:///{tmp_path}/audit.db")
    try:
        return {json.loads(r["record_key"])["id"]: r for r in store.records()}
    finally:
        store.close()


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def run_json(tmp_path: Path, url: str, rule: str, **kw: str) -> dict[str, Any]:
    path = write_policy(tmp_path, policy_text(tmp_path, rule, **kw))
    proc = cli("run", str(path), "--as-of", AS_OF, "--format", "json", url=url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def report_rule(tmp_path: Path, url: str, rule: str, **kw: str) -> dict[str, Any]:
    path = write_policy(tmp_path, policy_text(tmp_path, rule, **kw), "report.yaml")
    proc = cli("report", str(path), "--as-of", AS_OF, "--format", "json", url=url,
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found: dict[str, Any] = json.loads(proc.stdout)["rules"][0]
    return found


# -- the reproductions on SQLite ----------------------------------------------


def test_an_offset_form_is_due_at_its_instant_not_at_its_wall_clock(sqlite_url: str,
                                                                    tmp_path: Path) -> None:
    """'11:00:00-05:00' is 16:00 UTC: not due at 12:00 UTC, though its text sorts lower."""
    sqlite_table(sqlite_url, "DATETIME", {
        1: "2026-01-01 11:00:00-05:00",   # 16:00Z: not due
        2: "2026-01-01 11:59:59.999999",  # due
        3: "2026-01-01 12:00:00.000001",  # not due
    })

    result = run_json(tmp_path, sqlite_url, UNTIL)

    assert result["rules"][0]["deleted"] == 1
    assert ids(sqlite_url) == [1, 3]


def test_t_and_positive_offset_forms_are_not_missed(sqlite_url: str, tmp_path: Path) -> None:
    """'2026-01-01T11:00:00' and '13:00:00+02:00' (11:00 UTC) are due at 12:00 UTC."""
    sqlite_table(sqlite_url, "DATETIME", {
        1: "2026-01-01T11:00:00",
        2: "2026-01-01 13:00:00+02:00",
        3: "2026-01-01T12:00:00.000000001Z",  # one nanosecond late: not due
        4: "2026-01-01T14:00:00.000000000+02:00",  # exactly the cutoff: due
        5: "2026-01-01T12:00:00+0000",
        6: "2026-01-01 13:00+01",
    })

    result = run_json(tmp_path, sqlite_url, UNTIL)

    assert result["rules"][0]["deleted"] == 5
    assert ids(sqlite_url) == [3]
    records = audited(tmp_path)
    assert at(records[2]["event_at"]) == NOON - dt.timedelta(hours=1)
    assert at(records[4]["event_at"]) == NOON


def test_prisma_milliseconds_in_a_datetime_column_without_event_format_are_bad_input(
        sqlite_url: str, tmp_path: Path) -> None:
    """Integers in a DATETIME column: exit 2 naming file, line, rule and event_format."""
    sqlite_table(sqlite_url, "DATETIME", {1: NOON_MS - 1, 2: NOON_MS + 1})
    path = write_policy(tmp_path, policy_text(tmp_path, UNTIL))
    before = raw_rows(sqlite_url)

    proc = cli("run", str(path), "--as-of", AS_OF, url=sqlite_url, cwd=tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{path}:")
    assert "'events'" in lines[0] and "event_format" in lines[0] and "integer" in lines[0]
    assert raw_rows(sqlite_url) == before
    assert not (tmp_path / "audit.db").exists()


def test_prisma_milliseconds_with_event_format_are_selected_exactly(sqlite_url: str,
                                                                    tmp_path: Path) -> None:
    """`event_format: unix_millis` reads Prisma's DateTime integers to the millisecond."""
    sqlite_table(sqlite_url, "DATETIME", {
        1: NOON_MS - 1, 2: NOON_MS, 3: NOON_MS + 1, 4: None,
        5: "not a time",  # text that is no number: unreadable, never due
    })
    rule = UNTIL + "    event_format: unix_millis\n"

    result = run_json(tmp_path, sqlite_url, rule)

    assert result["rules"][0]["deleted"] == 2
    assert ids(sqlite_url) == [3, 4, 5]
    assert at(audited(tmp_path)[2]["event_at"]) == NOON
    assert report_rule(tmp_path, sqlite_url, rule)["unreadable_events"] == 1


# -- MariaDB zero dates, PostgreSQL infinities -----------------------------------------

WP_COMMENTS = "  comments:\n    table: wp_comments\n" \
              "    retain: 30 days after comment_date_gmt\n"


@pytest.mark.parametrize("kind", ["datetime", "date"])
def test_mariadb_zero_dates_are_never_due_and_are_counted(mariadb_url: str, tmp_path: Path,
                                                          kind: str) -> None:
    """WordPress writes '0000-00-00 00:00:00' for "unknown"; such rows are never deleted,
    nor are dates with a zero or overflowing month or day, or in the year 0."""
    eng = sa.create_engine(mariadb_url)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql("SET SESSION sql_mode = 'ALLOW_INVALID_DATES'")
            conn.exec_driver_sql(
                "CREATE TABLE wp_comments (comment_ID bigint unsigned PRIMARY KEY, "
                f"comment_date_gmt {kind} NOT NULL DEFAULT '0000-00-00 00:00:00', "
                "KEY (comment_date_gmt))")
            conn.exec_driver_sql(
                "INSERT INTO wp_comments VALUES (1, '0000-00-00 00:00:00'), "
                "(2, '2020-00-00 10:00:00'), (3, '2020-05-00 00:00:00'), "
                "(4, '2020-02-31 10:00:00'), (5, '0000-01-01 00:00:00'), "
                "(6, '2020-02-28 10:00:00'), (7, '2025-12-01 22:59:59'), "
                "(8, '2025-12-01 23:00:00')")
    finally:
        eng.dispose()

    report = report_rule(tmp_path, mariadb_url, WP_COMMENTS)
    result = run_json(tmp_path, mariadb_url, WP_COMMENTS)

    # 30 days after 2025-12-01 (Amsterdam) ends 2025-12-31; due from 2026-01-01 00:00 local.
    # 2025-12-01 23:00 UTC is already December 2 in Amsterdam; as a date it is December 1.
    due = 2 if kind == "datetime" else 3
    assert (report["due"], report["unreadable_events"]) == (due, 5)
    assert result["rules"][0]["deleted"] == due
    assert ids(mariadb_url, "wp_comments", "comment_ID") == (
        [1, 2, 3, 4, 5, 8] if kind == "datetime" else [1, 2, 3, 4, 5])


@pytest.mark.parametrize("kind", ["timestamp", "timestamptz", "date"])
def test_postgresql_infinities_and_bc_dates_are_never_due_and_are_counted(
        postgres_url: str, tmp_path: Path, kind: str) -> None:
    """'-infinity', 'infinity' and dates before year 1 are no instant a run can record."""
    eng = sa.create_engine(postgres_url)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE events (id int PRIMARY KEY, at {kind})")
            conn.exec_driver_sql(
                "INSERT INTO events VALUES (1, '-infinity'), (2, 'infinity'), "
                "(3, '0100-06-01 BC'), (4, '2020-01-01'), (5, '2030-01-01'), (6, NULL)")
    finally:
        eng.dispose()

    report = report_rule(tmp_path, postgres_url, UNTIL)
    result = run_json(tmp_path, postgres_url, UNTIL)

    assert (report["due"], report["unreadable_events"]) == (1, 3)
    assert report["oldest_due_event"].startswith("2019-12-31T23:00:00" if kind == "date"
                                                 else "2020-01-01T00:00:00")
    assert result["rules"][0]["deleted"] == 1
    assert ids(postgres_url) == [1, 2, 3, 5, 6]


# -- epoch columns ------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["unix_seconds", "unix_millis"])
def test_epoch_integer_columns_are_selected_exactly_on_every_database(
        db_url: str, tmp_path: Path, unit: str) -> None:
    """A BIGINT column with `event_format` is due at exactly its instant."""
    scale = 1000 if unit == "unix_millis" else 1
    noon = NOON_MS // 1000 * scale
    meta = sa.MetaData()
    table = sa.Table("events", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("at", sa.BigInteger))
    eng = sa.create_engine(db_url)
    try:
        meta.create_all(eng)
        with eng.begin() as conn:
            conn.execute(table.insert(), [
                {"id": 1, "at": noon - 1}, {"id": 2, "at": noon}, {"id": 3, "at": noon + 1},
                {"id": 4, "at": None}, {"id": 5, "at": -10**15 * scale},  # before year 1
                {"id": 6, "at": 0}])
    finally:
        eng.dispose()
    rule = UNTIL + f"    event_format: {unit}\n"

    report = report_rule(tmp_path, db_url, rule)
    result = run_json(tmp_path, db_url, rule)

    assert (report["due"], report["unreadable_events"]) == (3, 1)
    assert at(report["oldest_due_event"]) == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert result["rules"][0]["deleted"] == 3
    assert ids(db_url) == [3, 4, 5]
    assert at(audited(tmp_path)[2]["event_at"]) == NOON


@pytest.mark.parametrize(("db_url", "declared"), [
    ("postgresql", "timestamp"), ("mariadb", "datetime"), ("postgresql", "varchar(30)"),
], indirect=["db_url"])
def test_event_format_on_a_column_that_holds_no_integers_is_bad_input(
        db_url: str, tmp_path: Path, declared: str) -> None:
    """`event_format` reads integers; on a time or text column it is a mistake (exit 2)."""
    eng = sa.create_engine(db_url)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE events (id int PRIMARY KEY, at {declared})")
            conn.exec_driver_sql("INSERT INTO events VALUES (1, '2020-01-01 00:00:00')")
    finally:
        eng.dispose()
    text = policy_text(tmp_path, UNTIL + "    event_format: unix_seconds\n")
    path = write_policy(tmp_path, text)

    proc = cli("run", str(path), "--as-of", AS_OF, url=db_url, cwd=tmp_path)

    assert proc.returncode == 2, proc.stderr
    line = text.splitlines().index("    event_format: unix_seconds") + 1
    assert proc.stderr.splitlines() == [proc.stderr.splitlines()[0]]
    assert proc.stderr.startswith(f"{path}:{line}: rule 'events': ")
    assert "event_format" in proc.stderr
    assert ids(db_url) == [1]
    assert not (tmp_path / "audit.db").exists()


def test_an_unknown_event_format_is_bad_input(sqlite_url: str, tmp_path: Path) -> None:
    """`event_format: unix_nanos` is reported on its line with the forms there are."""
    sqlite_table(sqlite_url, "INTEGER", {1: 5})
    text = policy_text(tmp_path, UNTIL + "    event_format: unix_nanos\n")
    path = write_policy(tmp_path, text)

    proc = cli("validate", str(path), url=sqlite_url, cwd=tmp_path)

    assert proc.returncode == 2
    line = len(text.splitlines())
    assert proc.stderr.startswith(f"{path}:{line}: rule 'events': ")
    assert "unix_seconds" in proc.stderr and "unix_millis" in proc.stderr


# -- property: any mix of forms in one SQLite column, against an oracle ---------------

ZONES = ["Europe/Amsterdam", "America/St_Johns", "Asia/Kolkata"]
AS_OFS = [NOON, dt.datetime(2025, 10, 26, 1, 30, tzinfo=dt.UTC),  # Amsterdam falls back
          dt.datetime(2025, 3, 30, 1, 0, tzinfo=dt.UTC)]  # Amsterdam springs forward
PHRASES = ["until happened", "36 hours after happened", "1 month after happened"]
NEAR_NS = [0, 1, 999, 1000, 1001, 10**6, 10**9, 60 * 10**9, 3600 * 10**9, 86400 * 10**9,
           40 * 86400 * 10**9]
OFFSETS = [-300, -210, -60, 0, 60, 120, 330, 345, 840]  # minutes east of UTC
GARBAGE = ["0000-00-00 00:00:00", "2026-02-30 10:00:00", "2026-01-01 24:00:00", "soon", "",
           "2026-01-01 10:00:00.", "2026-13-01", "2026-01-01T10:00:00+25:00",
           "\u0661\u0669\u0669\u0669-01-01"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FAST_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None  # many small databases: RAM
_NS = 10**9


def _ns(instant: dt.datetime) -> int:
    return (instant - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def _dt(ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def _zone_offset_ns(zone: str, wall_ns: int) -> int:
    """The offset of ``zone`` at a naive wall time (the earlier reading when ambiguous)."""
    wall = _dt(wall_ns).replace(tzinfo=ZoneInfo(zone), fold=0)
    offset = wall.utcoffset()
    assert offset is not None
    return offset // dt.timedelta(microseconds=1) * 1000


def _local_wall_ns(zone: str, ns: int) -> int:
    offset = _dt(ns).astimezone(ZoneInfo(zone)).utcoffset()
    assert offset is not None
    return ns + offset // dt.timedelta(microseconds=1) * 1000


def _render(wall_ns: int, sep: str, seconds: bool, digits: int, comma: bool) -> tuple[str, int]:
    """A wall time as ISO-8601 text, and the wall time the text says (truncated)."""
    wall_ns -= wall_ns % (10 ** (9 - digits) if seconds else 60 * _NS)
    wall = _dt(wall_ns)
    text = f"{wall:%Y-%m-%d}{sep}{wall:%H:%M}"
    if seconds:
        text += f":{wall:%S}"
        if digits:
            text += ("," if comma else ".") + f"{wall_ns % _NS:09d}"[:digits]
    return text, wall_ns


@st.composite
def stored_event(draw: st.DrawFn, cut_ns: int, zone: str, local: bool,
                 canonical_only: bool) -> tuple[str, int | None]:
    """Text an application might have written, and the instant (ns) it stands for."""
    ns = cut_ns + draw(st.sampled_from(NEAR_NS)) * draw(st.sampled_from([-1, 1])) \
        + draw(st.integers(-2, 2))
    form = "canonical" if canonical_only else draw(
        st.sampled_from(["canonical", "naive", "offset", "offset", "date", "garbage"]))
    if form == "garbage":
        return draw(st.sampled_from(GARBAGE)), None
    if form == "date":
        day = _dt(_local_wall_ns(zone, ns)).date()
        midnight = _ns(dt.datetime.combine(day, dt.time(), dt.UTC))
        return day.isoformat(), midnight - _zone_offset_ns(zone, midnight)
    digits = draw(st.integers(0, 9))
    if form == "canonical":
        sep, seconds, comma = " ", True, False
    else:
        sep = draw(st.sampled_from(["T", " ", "t"]))
        seconds, comma = draw(st.booleans()), draw(st.booleans())
    if form == "offset":
        offset = draw(st.sampled_from(OFFSETS))
        text, wall = _render(ns + offset * 60 * _NS, sep, seconds, digits, comma)
        hh, mm = divmod(abs(offset), 60)
        sign = "-" if offset < 0 else "+"
        suffix = draw(st.sampled_from(
            ["Z", "z", "+00:00"] if offset == 0 else
            [f"{sign}{hh:02d}:{mm:02d}", f"{sign}{hh:02d}{mm:02d}"]
            + ([f"{sign}{hh:02d}"] if mm == 0 else [])))
        space = draw(st.sampled_from(["", " "]))
        return text + space + suffix, wall - offset * 60 * _NS
    if not local:
        return _render(ns, sep, seconds, digits, comma)
    text, wall = _render(_local_wall_ns(zone, ns), sep, seconds, digits, comma)
    rest = wall % 1000
    return text, wall - rest - _zone_offset_ns(zone, wall - rest) + rest


def _oracle_due(truth: int | None, phrase: str, zone: str, as_of: dt.datetime) -> bool:
    """Due by the forward definition: the due instant of the event is at or before as_of."""
    if truth is None:
        return False
    retain = parse(phrase)
    if retain.kind in (Kind.UNTIL, Kind.HOURS):
        return truth + retain.total_hours * 3600 * _NS <= _ns(as_of)
    return calendar.due_at(_dt(truth), retain, calendar.zone(zone)) <= as_of


def _engine_policy(directory: Path, url: str, phrase: str, zone: str, local: bool,
                   extra: str = "") -> Any:
    os.environ["FORMS_URL"] = url
    rule = (f"  events:\n    table: events\n    retain: {phrase}\n"
            f"    events: {{happened: at}}\n{extra}")
    text = policy_text(directory, rule, naive="local" if local else "utc", tz=zone)
    return load_policy(write_policy(directory, text))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), declared=st.sampled_from(["DATETIME", "TIMESTAMP", "TEXT", "DATE"]),
       phrase=st.sampled_from(PHRASES), zone=st.sampled_from(ZONES),
       as_of=st.sampled_from(AS_OFS), local=st.booleans(), canonical_only=st.booleans())
def test_a_run_deletes_exactly_the_rows_an_oracle_says_are_due(
        data: st.DataObject, declared: str, phrase: str, zone: str, as_of: dt.datetime,
        local: bool, canonical_only: bool) -> None:
    """Random instants near the cutoff, written in random forms mixed in one column: the
    run deletes exactly those the oracle's reading makes due, and counts the unreadable."""
    cut_ns = _ns(calendar.cutoff(as_of, parse(phrase), calendar.zone(zone)))
    canonical_only = canonical_only and declared != "DATE"
    events = data.draw(st.lists(stored_event(cut_ns, zone, local, canonical_only),
                                min_size=1, max_size=12))
    events.append(("2000-01-01 00:00:00", _ns(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))))
    if local:  # the fixed row is naive: it stands for a local wall time
        wall = _ns(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        events[-1] = ("2000-01-01 00:00:00", wall - _zone_offset_ns(zone, wall))
    with tempfile.TemporaryDirectory(dir=FAST_DIR) as name:
        directory = Path(name)
        url = f"sqlite:///{directory}/target.db"
        sqlite_table(url, declared, {i: text for i, (text, _) in enumerate(events)})
        policy = _engine_policy(directory, url, phrase, zone, local)
        plan = engine_plan(policy, as_of)

        outcome = engine.run(policy, as_of)

        due = {i for i, (_, truth) in enumerate(events) if _oracle_due(truth, phrase, zone,
                                                                       as_of)}
        result = outcome.rules[0]
        assert result.error is None
        assert (result.due, result.deleted) == (len(due), len(due))
        assert ids(url) == sorted(set(range(len(events))) - due)
        if canonical_only and not local:
            assert plan.predicate == "range"
        elif any(truth is not None and text.strip() and not _is_canonical(text)
                 for text, truth in events) and declared != "DATE":
            assert plan.predicate == "parsed"


def _is_canonical(text: str) -> bool:
    return stored.is_canonical(text)


def engine_plan(policy: Any, as_of: dt.datetime) -> Any:
    with engine.Session(policy) as session:
        plans, _ = engine.compile_plans(session, policy.rules, as_of)
    return plans["events"]


# -- plan: which predicate, and why -------------------------------------------------


@pytest.mark.parametrize(("values", "predicate", "why"), [
    ({1: "2026-01-01 10:00:00", 2: "2026-01-01 13:00:00.25", 3: "n/a"}, "range",
     "'YYYY-MM-DD HH:MM:SS[.f]'"),
    ({1: "2026-01-01 10:00:00", 2: "2026-01-01T13:00:00Z"}, "parsed", "1 of 2 values"),
])
def test_plan_names_the_predicate_and_why(sqlite_url: str, tmp_path: Path,
                                          values: dict[int, Any], predicate: str,
                                          why: str) -> None:
    """Canonical text only: the index range, with the canonical test in the statement;
    any other form: every value read by retention_instant()."""
    sqlite_table(sqlite_url, "DATETIME", values)
    path = write_policy(tmp_path, policy_text(tmp_path, UNTIL))

    proc = cli("plan", str(path), "--as-of", AS_OF, url=sqlite_url, cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("-- predicate:"))
    assert line.startswith(f"-- predicate: {predicate} (") and why in line
    select = proc.stdout.split("SELECT", 1)[1].split(";", 1)[0]
    if predicate == "range":
        assert "events.at <= ?" in select and "GLOB" in select
    else:
        assert "retention_instant(events.at" in select
    assert "'2026-01-01 12:00:00.000000000'" in proc.stdout  # the cutoff key, bound


def test_the_text_report_shows_unreadable_events(sqlite_url: str, tmp_path: Path) -> None:
    sqlite_table(sqlite_url, "DATETIME", {1: "2026-01-01 10:00:00", 2: "0000-00-00 00:00:00"})
    path = write_policy(tmp_path, policy_text(tmp_path, UNTIL))

    proc = cli("report", str(path), "--as-of", AS_OF, url=sqlite_url, cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    details = proc.stdout.split("\nevents\n", 1)[1]  # the rule's facts below the table
    assert "\n  Unreadable events: 1\n" in details.split("\n\n", 1)[0]


# -- SQLite: text, date and epoch columns ---------------------------------------------


def test_a_text_column_of_iso_times_is_an_event_column(sqlite_url: str,
                                                       tmp_path: Path) -> None:
    """SQLite has no time type: a TEXT column of ISO-8601 times works like a DATETIME one."""
    sqlite_table(sqlite_url, "TEXT", {1: "2026-01-01T11:00:00+00:00", 2: "2026-01-01T13:00Z",
                                      3: "unknown"})

    assert run_json(tmp_path, sqlite_url, UNTIL)["rules"][0]["deleted"] == 1
    assert ids(sqlite_url) == [2, 3]


def test_event_format_on_a_column_of_iso_text_only_is_bad_input(sqlite_url: str,
                                                                tmp_path: Path) -> None:
    sqlite_table(sqlite_url, "DATETIME", {1: "2026-01-01 11:00:00"})
    text = policy_text(tmp_path, UNTIL + "    event_format: unix_seconds\n")
    path = write_policy(tmp_path, text)

    proc = cli("run", str(path), "--as-of", AS_OF, url=sqlite_url, cwd=tmp_path)

    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{path}:{len(text.splitlines())}: rule 'events': ")
    assert "ISO-8601" in proc.stderr and "remove 'event_format'" in proc.stderr
    assert raw_rows(sqlite_url) == {1: ("2026-01-01 11:00:00",)}


@pytest.mark.parametrize(("values", "predicate"), [
    ({1: "2025-11-30", 2: "2025-12-01", 3: "0000-00-00"}, "range"),
    ({1: "2025-11-30", 2: "2025-12-01", 3: "2025-11-30 22:30:00+00:00"}, "parsed"),
])
def test_a_date_column_is_due_from_the_start_of_the_local_day_after(
        sqlite_url: str, tmp_path: Path, values: dict[int, Any], predicate: str) -> None:
    """'1 month after' a date: Nov 30 is due from Dec 31 00:00 Amsterdam, Dec 1 not yet."""
    sqlite_table(sqlite_url, "DATE", values)
    rule = "  events:\n    table: events\n    retain: 1 month after at\n"
    policy = _engine_policy(tmp_path, sqlite_url, "1 month after at", "Europe/Amsterdam",
                            False)
    assert engine_plan(policy, NOON).predicate == predicate

    result = run_json(tmp_path, sqlite_url, rule)

    assert result["rules"][0]["deleted"] == (1 if predicate == "range" else 2)
    assert ids(sqlite_url) == [2, 3] if predicate == "range" else [2]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), fmt=st.sampled_from(list(stored.EVENT_FORMATS)),
       phrase=st.sampled_from(PHRASES), declared=st.sampled_from(["DATETIME", "INTEGER",
                                                                   "REAL", "TEXT", "BLOB"]))
def test_epoch_values_of_any_storage_class_are_due_exactly(
        data: st.DataObject, fmt: str, phrase: str, declared: str) -> None:
    """Integers, reals and numeric text near the cutoff, in columns of any declared type."""
    unit = _NS if fmt == stored.UNIX_SECONDS else 10**6
    cut_ns = _ns(calendar.cutoff(NOON, parse(phrase), calendar.zone("UTC")))
    values = data.draw(st.lists(st.one_of(
        st.integers(-3, 3).map(lambda d: (cut_ns // unit + d)),
        st.integers(-3000, 3000).map(lambda d: (cut_ns + d * 1000) / unit),
        st.integers(-3, 3).map(lambda d: str(cut_ns // unit + d)),
        st.sampled_from(["soon", "-", "2026-01-01T10:00:00Z"])), min_size=1, max_size=10))
    values.append(0)  # a number: a column of ISO text alone would be bad input
    with tempfile.TemporaryDirectory(dir=FAST_DIR) as name:
        directory = Path(name)
        url = f"sqlite:///{directory}/target.db"
        sqlite_table(url, declared, dict(enumerate(values)))
        kept = raw_rows(url)
        policy = _engine_policy(directory, url, phrase, "UTC", False,
                                f"    event_format: {fmt}\n")

        outcome = engine.run(policy, NOON)

        due = {i for i, v in enumerate(values) if _epoch_due(kept[i][0], fmt, phrase)}
        assert outcome.rules[0].error is None
        assert outcome.rules[0].deleted == len(due)
        assert ids(url) == sorted(set(range(len(values))) - due)


def _epoch_due(value: Any, fmt: str, phrase: str) -> bool:
    """The oracle: the exact instant of the stored number (as SQLite stored it) is due."""
    if isinstance(value, str):
        try:
            number = Fraction(value)
        except ValueError:
            text = stored.read(value, None, None, dt.UTC)
            return text is not None and _oracle_due(
                _ns(stored.instant(text)), phrase, "UTC", NOON)
    else:
        number = Fraction(value)
    unit = _NS if fmt == stored.UNIX_SECONDS else 10**6
    exact = number * unit
    retain = parse(phrase)
    if retain.kind in (Kind.UNTIL, Kind.HOURS):
        return exact + retain.total_hours * 3600 * _NS <= _ns(NOON)
    return calendar.due_at(_dt(math.floor(exact)), retain, dt.UTC) <= NOON


def test_event_format_may_be_a_default_for_every_rule(tmp_path: Path) -> None:
    """`defaults: {event_format: unix_millis}` reaches each rule; a rule may override it."""
    text = (f"policy: p\nsources:\n  db: {{adapter: sql, url: 'sqlite:///{tmp_path}/x.db'}}\n"
            "defaults:\n  event_format: unix_millis\nrules:\n"
            "  a:\n    table: a\n    retain: until at\n"
            "  b:\n    table: b\n    retain: until at\n    event_format: unix_seconds\n")

    policy = load_policy(write_policy(tmp_path, text))

    assert [r.event_format for r in policy.rules] == ["unix_millis", "unix_seconds"]
