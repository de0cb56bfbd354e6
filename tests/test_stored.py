"""retention.stored: the instant each stored form stands for, and exact bounds.

The properties write a known instant in a random form with their own renderer
and check the reading against it (and against ``datetime.fromisoformat`` where
that can read the form), at nanosecond resolution.
"""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retention import calendar, stored

UTC = dt.UTC
AMS = calendar.zone("Europe/Amsterdam")
_NS = 10**9
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def key_of(*args: int, nanos: int = 0) -> str:
    """The key of a UTC instant given like ``datetime(...)``, plus nanoseconds."""
    moment = dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]
    return stored.key(moment)[:-3] + f"{moment.microsecond * 1000 % 1000 + nanos:03d}"


def read(value: object, fmt: str | None = None, local: bool = False) -> str | None:
    return stored.read(value, fmt, AMS if local else None, AMS)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-01 11:00:00-05:00", key_of(2026, 1, 1, 16)),
    ("2026-01-01T11:00:00", key_of(2026, 1, 1, 11)),
    ("2026-01-01t11:00:00", key_of(2026, 1, 1, 11)),
    ("2026-01-01 13:00:00+02:00", key_of(2026, 1, 1, 11)),
    ("2026-01-01T13:00:00+0200", key_of(2026, 1, 1, 11)),
    ("2026-01-01T13:00:00+02", key_of(2026, 1, 1, 11)),
    ("2026-01-01T13:00+02", key_of(2026, 1, 1, 11)),
    ("2026-01-01T11:00", key_of(2026, 1, 1, 11)),
    ("2026-01-01T11:00:00Z", key_of(2026, 1, 1, 11)),
    ("2026-01-01T11:00:00z", key_of(2026, 1, 1, 11)),
    ("2026-01-01 11:00:00 +00:00", key_of(2026, 1, 1, 11)),
    ("2026-01-01T05:30:00-05:30", key_of(2026, 1, 1, 11)),
    ("2026-01-01T11:00:00.5", key_of(2026, 1, 1, 11, 0, 0, 500000)),
    ("2026-01-01T11:00:00,5", key_of(2026, 1, 1, 11, 0, 0, 500000)),
    ("2026-01-01T11:00:00.123456789Z", key_of(2026, 1, 1, 11, 0, 0, 123456, nanos=789)),
    ("2026-01-01T11:00:00.000000001", key_of(2026, 1, 1, 11, nanos=1)),
    ("2026-01-01T11:00:00.0000000001", key_of(2026, 1, 1, 11) + "+"),
    ("2026-01-01T11:00:00.0000000000", key_of(2026, 1, 1, 11)),
    ("2026-01-01T23:30:00-01:00", key_of(2026, 1, 2, 0, 30)),
    ("2026-01-01", key_of(2025, 12, 31, 23)),  # the local date: midnight in Amsterdam
])
def test_iso_text_in_every_form_reads_as_its_instant(text: str, expected: str) -> None:
    """Space, T or t; minutes, seconds, 1-10 fraction digits after . or ,; no offset, Z or
    an offset in three spellings; a date alone is the start of the local day."""
    assert read(text) == expected


def test_naive_text_is_utc_or_local_wall_time() -> None:
    """Naive text follows naive_timestamps; text with an offset does not."""
    assert read("2026-07-01 12:00:00") == key_of(2026, 7, 1, 12)
    assert read("2026-07-01 12:00:00", local=True) == key_of(2026, 7, 1, 10)
    assert read("2026-07-01 12:00:00Z", local=True) == key_of(2026, 7, 1, 12)
    # the repeated hour of 2025-10-26 reads as its first (summer time) occurrence
    assert read("2025-10-26 02:30:00", local=True) == key_of(2025, 10, 26, 0, 30)


@pytest.mark.parametrize("value", [
    "0000-00-00 00:00:00", "0000-00-00", "2020-00-00 10:00:00", "2020-05-00",
    "2026-02-30 10:00:00", "2026-02-29", "2026-13-01", "2026-01-01 24:00:00",
    "2026-01-01 23:60:00", "2026-01-01 23:59:60", "2026-01-01T10:00:00+24:00",
    "2026-01-01T10:00:00+01:60", "2026-01-01 10:00:00.", "2026-01-01 10", "26-01-01",
    " 2026-01-01 10:00:00", "2026-01-01 10:00:00 ", "2026-01-01 10:00:00 UTC",
    "2026-01-01\x0010:00:00", "\u0662\u0660\u0662\u0666-01-01", "20260101", "soon", "",
    "0001-01-01 10:00:00",
    "0001-01-01T23:00:00+02:00", "9999-12-31T23:00:00-02:00",
    b"2026-01-01 10:00:00", None, 1767268800, 1767268800.0, True,
])
def test_values_that_are_no_instant_are_unreadable(value: object) -> None:
    """Zero dates, days and times the calendar lacks, other text, numbers without a format,
    instants outside 0001-01-02..9999: None (never due)."""
    assert read(value) is None


@pytest.mark.parametrize(("value", "fmt", "expected"), [
    (1767268800, stored.UNIX_SECONDS, key_of(2026, 1, 1, 12)),
    (1767268800123, stored.UNIX_MILLIS, key_of(2026, 1, 1, 12, 0, 0, 123000)),
    (-1, stored.UNIX_SECONDS, key_of(1969, 12, 31, 23, 59, 59)),
    (1767268800.5, stored.UNIX_SECONDS, key_of(2026, 1, 1, 12, 0, 0, 500000)),
    ("1767268800", stored.UNIX_SECONDS, key_of(2026, 1, 1, 12)),
    ("+1767268800.000000001", stored.UNIX_SECONDS, key_of(2026, 1, 1, 12, nanos=1)),
    ("1767268800.0000000001", stored.UNIX_SECONDS, key_of(2026, 1, 1, 12) + "+"),
    ("2026-01-01T12:00:00Z", stored.UNIX_SECONDS, key_of(2026, 1, 1, 12)),
    ("12 o'clock", stored.UNIX_SECONDS, None),
    (float("nan"), stored.UNIX_SECONDS, None),
    (float("inf"), stored.UNIX_MILLIS, None),
    (-62135596800, stored.UNIX_SECONDS, None),  # 0001-01-01: outside the readable instants
    (253402300800, stored.UNIX_SECONDS, None),  # 10000-01-01
    (b"1767268800", stored.UNIX_SECONDS, None),
])
def test_epoch_numbers_read_exactly_with_event_format(value: object, fmt: str,
                                                      expected: str | None) -> None:
    """Integers, reals and decimal text in the format's unit, exactly; ISO text still reads."""
    assert read(value, fmt) == expected


def test_epoch_range_is_the_readable_instants() -> None:
    low, high = stored.epoch_range(stored.UNIX_SECONDS)
    assert read(low, stored.UNIX_SECONDS) == key_of(1, 1, 2)
    assert read(low - 1, stored.UNIX_SECONDS) is None
    assert read(high, stored.UNIX_SECONDS) == key_of(9999, 12, 31, 23, 59, 59)
    assert read(high + 1, stored.UNIX_SECONDS) is None
    low_ms, high_ms = stored.epoch_range(stored.UNIX_MILLIS)
    assert (low_ms, high_ms) == (low * 1000, high * 1000 + 999)


# -- properties -----------------------------------------------------------------------

_FIRST = (dt.datetime(1, 1, 3, tzinfo=UTC) - _EPOCH) // dt.timedelta(microseconds=1) * 1000
_LAST = (dt.datetime(9999, 12, 30, tzinfo=UTC) - _EPOCH) // dt.timedelta(microseconds=1) * 1000
instants_ns = st.integers(_FIRST, _LAST)  # nanoseconds since 1970


def _utc(ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def _ymd(moment: dt.datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"  # strftime drops zeros


def _key(ns: int) -> str:
    return stored.key(_utc(ns))[:-3] + f"{ns % 1000:03d}"


@st.composite
def written(draw: st.DrawFn) -> tuple[str, int]:
    """ISO-8601 text of a random instant in a random form, and the instant it says."""
    ns = draw(instants_ns)
    offset = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    digits = draw(st.integers(0, 9))
    seconds = draw(st.booleans())
    wall = ns + offset * 60 * _NS
    wall -= wall % (10 ** (9 - digits) if seconds else 60 * _NS)
    moment = _utc(wall)
    text = f"{_ymd(moment)}{draw(st.sampled_from(['T', ' ']))}{moment:%H:%M}"
    if seconds:
        text += f":{moment:%S}"
        if digits:
            text += draw(st.sampled_from([".", ","])) + f"{wall % _NS:09d}"[:digits]
    sign, (hh, mm) = ("-" if offset < 0 else "+"), divmod(abs(offset), 60)
    zone = draw(st.sampled_from(
        [f"{sign}{hh:02d}:{mm:02d}", f"{sign}{hh:02d}{mm:02d}"]
        + ([f"{sign}{hh:02d}"] if mm == 0 else []) + (["Z"] if offset == 0 else [])))
    return text + zone, wall - offset * 60 * _NS


@given(written())
def test_any_written_form_reads_as_the_instant_it_says(case: tuple[str, int]) -> None:
    text, truth = case
    assert read(text) == _key(truth)


@given(written())
def test_the_reading_agrees_with_fromisoformat_to_the_microsecond(
        case: tuple[str, int]) -> None:
    """An independent parser: Python's own, which reads these forms truncated to microseconds."""
    text, _ = case
    found = read(text)
    assert found is not None
    assert stored.instant(found) == dt.datetime.fromisoformat(text).astimezone(UTC)


@given(written(), written())
def test_keys_sort_as_their_instants(a: tuple[str, int], b: tuple[str, int]) -> None:
    key_a, key_b = read(a[0]), read(b[0])
    assert key_a is not None and key_b is not None
    assert (key_a < key_b) == (a[1] < b[1])
    assert (key_a == key_b) == (a[1] == b[1])


@given(instants_ns)
def test_a_key_reads_back_as_its_instant_to_the_microsecond(ns: int) -> None:
    assert stored.instant(_key(ns)) == _utc(ns)


@st.composite
def near_a_cutoff(draw: st.DrawFn) -> tuple[dt.datetime, int]:
    """A cutoff (microseconds) and an instant (nanoseconds) within a second of it."""
    cut = _utc(draw(instants_ns) // 1000 * 1000)
    delta = draw(st.one_of(st.integers(-2000, 2000), st.integers(-_NS, _NS)))
    cut_ns = (cut - _EPOCH) // dt.timedelta(microseconds=1) * 1000
    return cut, cut_ns + delta


def _due(cut: dt.datetime, event_ns: Fraction | int, whole: bool) -> bool:
    """Calendar spans: every instant of the cutoff's microsecond is due; else at or before."""
    cut_ns = (cut - _EPOCH) // dt.timedelta(microseconds=1) * 1000
    return event_ns < cut_ns + 1000 if whole else event_ns <= cut_ns


@given(near_a_cutoff(), st.booleans())
def test_a_key_is_at_most_the_cutoff_key_exactly_when_due(case: tuple[dt.datetime, int],
                                                          whole: bool) -> None:
    cut, ns = case
    assert (_key(ns) <= stored.cutoff_key(cut, whole)) == _due(cut, ns, whole)


@given(near_a_cutoff(), st.booleans(), st.integers(1, 10**6))
def test_a_key_inside_a_nanosecond_is_at_most_the_cutoff_key_exactly_when_due(
        case: tuple[dt.datetime, int], whole: bool, part: int) -> None:
    """Ten or more fraction digits: the instant lies strictly between two nanoseconds."""
    cut, ns = case
    text = f"{_ymd(_utc(ns))}T{_utc(ns):%H:%M:%S}.{ns % _NS:09d}{part:07d}Z"
    found = read(text)
    assert found is not None and found.endswith("+")
    exact = Fraction(ns) + Fraction(part, 10**7)
    assert (found <= stored.cutoff_key(cut, whole)) == _due(cut, exact, whole)


@given(near_a_cutoff(), st.booleans(), st.integers(-1500, 1500))
def test_canonical_text_compares_as_text_exactly_like_its_instant(
        case: tuple[dt.datetime, int], whole: bool, digits_seed: int) -> None:
    """The range predicate's premise: canonical text <= the cutoff key as plain text iff due,
    for 0 to 9 fraction digits (shorter text is a prefix, and a prefix sorts first)."""
    cut, ns = case
    digits = abs(digits_seed) % 10
    ns -= ns % 10 ** (9 - digits)
    text = f"{_ymd(_utc(ns))} {_utc(ns):%H:%M:%S}" + (
        f".{ns % _NS:09d}"[:digits + 1] if digits else "")
    assert stored.is_canonical(text)
    assert (text <= stored.cutoff_key(cut, whole)) == _due(cut, ns, whole)
    assert read(text) == _key(ns)


@settings(max_examples=300)
@given(near_a_cutoff(), st.sampled_from(stored.EVENT_FORMATS), st.booleans(),
       st.integers(-3, 3))
def test_epoch_bounds_are_exact_for_integers_and_reals(
        case: tuple[dt.datetime, int], fmt: str, whole: bool, ulps: int) -> None:
    cut, ns = case
    unit = _NS if fmt == stored.UNIX_SECONDS else 10**6
    integer = ns // unit + ulps
    assert (integer <= stored.epoch_bound(cut, fmt, whole)) == _due(cut, integer * unit, whole)
    real = float(Fraction(ns, unit))
    for _ in range(abs(ulps)):
        real = math.nextafter(real, math.copysign(math.inf, ulps))
    exact = Fraction(real) * unit
    assert (real <= stored.epoch_bound(cut, fmt, whole, real=True)) == _due(cut, exact, whole)
    assert (read(real, fmt) is not None) and (
        read(real, fmt) <= stored.cutoff_key(cut, whole)) == _due(cut, exact, whole)  # type: ignore[operator]


def test_is_canonical_accepts_only_the_one_form_whose_text_order_is_time_order() -> None:
    good = ["2026-01-01 10:00:00", "2026-01-01 10:00:00.5", "2026-01-01 10:00:00.123456789",
            "0001-01-02 00:00:00"]
    bad = ["2026-01-01T10:00:00", "2026-01-01 10:00", "2026-01-01 10:00:00Z",
           "2026-01-01 10:00:00+00:00", "2026-01-01 10:00:00.1234567891",
           "2026-01-01 10:00:00.", "2026-02-30 10:00:00", "2026-01-01 24:00:00",
           "0001-01-01 10:00:00", "2026-01-01", "2026-01-01 10:00:00,5"]
    assert [t for t in good if stored.is_canonical(t)] == good
    assert [t for t in bad if stored.is_canonical(t)] == []
    assert stored.is_canonical("2026-01-01", date=True)
    assert not stored.is_canonical("0001-01-02", date=True)  # its first instant may be earlier
    assert not stored.is_canonical("2026-02-29", date=True)
    assert not stored.is_canonical("2026-01-01 00:00:00", date=True)
