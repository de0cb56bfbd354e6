"""retention.plan: which predicate a plan chooses for what an event column holds, and why."""

from __future__ import annotations

import pytest

from retention.plan import ColumnInfo, EventType, Predicate, choose_predicate
from retention.stored import StoredForms

DATETIME = ColumnInfo("at", "DATETIME", "naive")
DATE = ColumnInfo("at", "DATE", "date")
BIGINT = ColumnInfo("at", "BIGINT", None, python_type=int)


@pytest.mark.parametrize(("column", "kind", "forms", "fmt", "expected"), [
    # native types (PostgreSQL, MariaDB): the database compares
    (DATETIME, EventType.NAIVE_UTC, None, None, Predicate.RANGE),
    (BIGINT, EventType.NAIVE_UTC, None, "unix_millis", Predicate.EPOCH),
    # SQLite: canonical text only (or nothing yet), in UTC: text order is time order
    (DATETIME, EventType.NAIVE_UTC, StoredForms(values=3, canonical=2), None, Predicate.RANGE),
    (DATETIME, EventType.NAIVE_UTC, StoredForms(), None, Predicate.RANGE),
    (DATE, EventType.DATE, StoredForms(values=1, canonical=1), None, Predicate.RANGE),
    # any other ISO-8601 form: read every value
    (DATETIME, EventType.NAIVE_UTC, StoredForms(values=3, canonical=2, other_texts=1), None,
     Predicate.PARSED),
    # local wall-clock text never sorts as instants do, even in canonical form or not yet
    (DATETIME, EventType.NAIVE_LOCAL, StoredForms(values=1, canonical=1), None,
     Predicate.PARSED),
    (DATETIME, EventType.NAIVE_LOCAL, StoredForms(), None, Predicate.PARSED),
    (DATE, EventType.DATE, StoredForms(values=1, canonical=1), None, Predicate.RANGE),
    # epoch numbers, with text among them or not
    (DATETIME, EventType.NAIVE_UTC, StoredForms(values=2, integers=2), "unix_millis",
     Predicate.EPOCH),
    (DATETIME, EventType.NAIVE_UTC, StoredForms(values=3, integers=2, number_texts=1),
     "unix_millis", Predicate.PARSED),
])
def test_the_predicate_follows_what_the_column_holds(
        column: ColumnInfo, kind: EventType, forms: StoredForms | None, fmt: str | None,
        expected: Predicate) -> None:
    predicate, reason = choose_predicate(column, kind, forms, fmt)
    assert predicate is expected
    assert reason and "\n" not in reason
