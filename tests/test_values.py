"""Which policy values fit which columns (``retention.values``), and what reflection says
about each column's values on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from retention.adapters.sql import SqlAdapter
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine

from retention import values
from retention.plan import ColumnInfo, ColumnKind
from retention.policy.rules import Source

INT32 = (-(2**31), 2**31 - 1)
BOOLEAN = ColumnInfo("flag", "BOOLEAN", None, kind=ColumnKind.BOOLEAN)
TINYINT1 = ColumnInfo("flag", "TINYINT(1)", None, kind=ColumnKind.BOOLEAN, low=-128, high=127)
INTEGER = ColumnInfo("n", "INTEGER", None, kind=ColumnKind.INTEGER, low=INT32[0], high=INT32[1])
FLOAT = ColumnInfo("x", "FLOAT", None, kind=ColumnKind.FLOAT)
NUMERIC = ColumnInfo("amount", "NUMERIC(5, 2)", None, kind=ColumnKind.NUMERIC,
                     low=-999.99, high=999.99)
TEXT = ColumnInfo("code", "VARCHAR(4)", None, kind=ColumnKind.TEXT, length=4)
ENUM = ColumnInfo("tier", "ENUM('gold','silver')", None, kind=ColumnKind.ENUM,
                  enums=("gold", "silver"))
DATE = ColumnInfo("born", "DATE", "date", kind=ColumnKind.DATE)
TIMESTAMP = ColumnInfo("seen", "TIMESTAMP", "naive", kind=ColumnKind.TIMESTAMP)
OTHER = ColumnInfo("data", "JSON", None)

FITS = [
    (BOOLEAN, True), (BOOLEAN, False), (TINYINT1, True), (TINYINT1, 1), (TINYINT1, -128),
    (INTEGER, 0), (INTEGER, INT32[0]), (INTEGER, INT32[1]), (FLOAT, 0.5), (FLOAT, -3),
    (FLOAT, 1e308), (NUMERIC, 999.99), (NUMERIC, -12), (TEXT, ""), (TEXT, "abcd"),
    (ENUM, "gold"), (DATE, dt.date(2020, 1, 31)), (TIMESTAMP, dt.datetime(2020, 1, 31, 12)),
    (TIMESTAMP, dt.datetime(2020, 1, 31, tzinfo=dt.UTC)), (OTHER, "anything"), (OTHER, 1.5),
]
DOES_NOT_FIT = [
    (BOOLEAN, "no", "'no' is not true or false (column 'flag' is BOOLEAN)"),
    (BOOLEAN, 1, "1 is not true or false (column 'flag' is BOOLEAN)"),
    (BOOLEAN, None, "None is not true or false (column 'flag' is BOOLEAN)"),
    (TINYINT1, 128, "128 is out of range (column 'flag' is TINYINT(1): -128 to 127)"),
    (TINYINT1, "yes", "'yes' is not true or false (column 'flag' is TINYINT(1))"),
    (INTEGER, "5", "'5' is not a whole number (column 'n' is INTEGER): write the number "
     "without quotes"),
    (INTEGER, "five", "'five' is not a whole number (column 'n' is INTEGER)"),
    (INTEGER, True, "true is not a whole number (column 'n' is INTEGER)"),
    (INTEGER, 5.0, "5.0 is not a whole number (column 'n' is INTEGER)"),
    (INTEGER, 2**31, "2147483648 is out of range (column 'n' is INTEGER: -2147483648 to "
     "2147483647)"),
    (FLOAT, math.nan, ".nan is not a finite number (column 'x' is FLOAT)"),
    (FLOAT, -math.inf, "-.inf is not a finite number (column 'x' is FLOAT)"),
    (FLOAT, 2**63, "9223372036854775808 is out of range (column 'x' is FLOAT)"),
    (FLOAT, "0.5", "'0.5' is not a number (column 'x' is FLOAT): write the number without "
     "quotes"),
    (NUMERIC, 1000, "1000 is out of range (column 'amount' is NUMERIC(5, 2): -999.99 to "
     "999.99)"),
    (NUMERIC, False, "false is not a number (column 'amount' is NUMERIC(5, 2))"),
    (TEXT, 12345, "12345 is not text (column 'code' is VARCHAR(4)): quote it, as in '12345'"),
    (TEXT, "abcde", "'abcde' has 5 characters, more than the 4 that column 'code' is "
     "VARCHAR(4) holds"),
    (TEXT, dt.date(2020, 1, 1), "2020-01-01 is not text (column 'code' is VARCHAR(4)): "
     "quote it, as in '2020-01-01'"),
    (ENUM, "platinum", "'platinum' is not one of gold, silver (column 'tier' is "
     "ENUM('gold','silver'))"),
    (ENUM, "Gold", "'Gold' is not one of gold, silver (column 'tier' is ENUM('gold','silver'))"),
    (DATE, "2020-01-31", "'2020-01-31' is not a date (column 'born' is DATE): write it "
     "unquoted, as in 2020-01-31"),
    (DATE, dt.datetime(2020, 1, 31), "2020-01-31T00:00:00 is not a date (column 'born' is "
     "DATE): write it unquoted, as in 2020-01-31"),
    (TIMESTAMP, dt.date(2020, 1, 31), "2020-01-31 is not a timestamp (column 'seen' is "
     "TIMESTAMP): write it unquoted, as in 2020-01-31 12:00:00"),
    (TIMESTAMP, 17, "17 is not a timestamp (column 'seen' is TIMESTAMP): write it unquoted, "
     "as in 2020-01-31 12:00:00"),
]


@pytest.mark.parametrize(("column", "value"), FITS)
def test_a_value_of_the_columns_kind_fits(column: ColumnInfo, value: Any) -> None:
    assert values.problem(value, column) is None


@pytest.mark.parametrize(("column", "value", "reason"), DOES_NOT_FIT)
def test_a_value_that_does_not_fit_says_why_naming_the_column(
        column: ColumnInfo, value: Any, reason: str) -> None:
    assert values.problem(value, column) == reason


def test_a_long_value_is_shown_cut_short() -> None:
    """A hostile 10,000-character value does not make a 10,000-character line."""
    reason = values.problem("x" * 10_000, TEXT)
    assert reason is not None and len(reason) < 150


@given(low=st.integers(-(2**70), 2**70), width=st.integers(0, 2**70), value=st.integers())
def test_an_integer_fits_an_integer_column_exactly_when_it_is_in_range(
        low: int, width: int, value: int) -> None:
    column = ColumnInfo("n", "INTEGER", None, kind=ColumnKind.INTEGER, low=low, high=low + width)
    assert (values.problem(value, column) is None) == (low <= value <= low + width)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_fits_a_float_column_exactly_when_it_is_finite(value: float) -> None:
    assert (values.problem(value, FLOAT) is None) == math.isfinite(value)


@given(st.one_of(st.integers(), st.floats(), st.text(), st.dates(), st.datetimes()))
def test_nothing_but_true_and_false_fits_a_boolean_column(value: Any) -> None:
    assert values.problem(value, BOOLEAN) is not None


# -- what reflection says (every database) ----------------------------------------------


def test_reflection_gives_each_column_its_kind_and_bounds(db_url: str, db_kind: str,
                                                          make_engine: Any) -> None:
    """Booleans (TINYINT(1) on MariaDB), integer widths (all 64-bit on SQLite, which stores
    every integer in up to 8 bytes), numeric precision, text length and enum members."""
    meta = sa.MetaData()
    sa.Table("kinds", meta, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("flag", sa.Boolean), sa.Column("small", sa.SmallInteger),
             sa.Column("big", sa.BigInteger), sa.Column("x", sa.Float),
             sa.Column("amount", sa.Numeric(5, 2)), sa.Column("code", sa.String(4)),
             sa.Column("tier", sa.Enum("gold", "silver", name="tier")),
             sa.Column("born", sa.Date), sa.Column("seen", sa.DateTime),
             sa.Column("data", sa.LargeBinary))
    engine: Engine = make_engine(db_url)
    meta.create_all(engine)
    adapter = SqlAdapter(Source("db", "sql", {"url": db_url}))
    try:
        info = adapter.reflect("kinds")
    finally:
        adapter.close()
    assert info is not None
    c = info.columns
    int64 = (-(2**63), 2**63 - 1)
    assert (c["flag"].kind, c["small"].kind, c["big"].kind) == (
        ColumnKind.BOOLEAN, ColumnKind.INTEGER, ColumnKind.INTEGER)
    assert (c["small"].low, c["small"].high) == (int64 if db_kind == "sqlite"
                                                 else (-(2**15), 2**15 - 1))
    assert (c["id"].low, c["id"].high) == (int64 if db_kind == "sqlite" else INT32)
    assert (c["big"].low, c["big"].high) == int64
    assert (c["flag"].low, c["flag"].high) == ((-128, 127) if db_kind == "mariadb"
                                               else (None, None))
    assert c["x"].kind is ColumnKind.FLOAT
    assert (c["amount"].kind, c["amount"].high) == (ColumnKind.NUMERIC, 999.99)
    assert (c["code"].kind, c["code"].length) == (ColumnKind.TEXT, 4)
    if db_kind == "sqlite":  # an enum is VARCHAR of its longest member there
        assert (c["tier"].kind, c["tier"].length) == (ColumnKind.TEXT, 6)
    else:
        assert (c["tier"].kind, c["tier"].enums) == (ColumnKind.ENUM, ("gold", "silver"))
    assert (c["born"].kind, c["seen"].kind) == (ColumnKind.DATE, ColumnKind.TIMESTAMP)
    assert c["data"].kind is ColumnKind.OTHER


@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
def test_unsigned_and_medium_integers_on_mariadb_have_their_own_ranges(
        db_url: str, make_engine: Any) -> None:
    meta = sa.MetaData()
    sa.Table("widths", meta, sa.Column("id", mysql.INTEGER(unsigned=True), primary_key=True),
             sa.Column("tiny", mysql.TINYINT(unsigned=True)), sa.Column("medium", mysql.MEDIUMINT))
    engine: Engine = make_engine(db_url)
    meta.create_all(engine)
    adapter = SqlAdapter(Source("db", "sql", {"url": db_url}))
    try:
        info = adapter.reflect("widths")
    finally:
        adapter.close()
    assert info is not None
    assert [(c.low, c.high) for c in info.columns.values()] == [
        (0, 2**32 - 1), (0, 255), (-(2**23), 2**23 - 1)]
