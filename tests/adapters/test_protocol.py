"""``Removed.of`` writes the JSON arrays the audit log has always written, faster.

The keys and event values of a batch are written through the C JSON encoder after
converting what JSON cannot hold; the text must be byte for byte what
``json.dumps(..., default=str)`` (keys) and ``default=stored_value`` (events) give,
since the chain hashes it and readers parse it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from retention.adapters.protocol import Removed, stored_value

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)), st.dates(), st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.tuples(SCALARS, SCALARS),
                   st.lists(st.lists(SCALARS, max_size=2), max_size=2))


def _old(values: list[Any], default: Any) -> str:
    return json.dumps(values, separators=(",", ":"), default=default)


@given(st.lists(st.tuples(VALUES, VALUES), max_size=12), st.lists(SCALARS, max_size=12))
def test_keys_and_events_are_the_text_json_dumps_gives(rows: list[tuple[Any, Any]],
                                                       events: list[Any]) -> None:
    one = Removed.of("t", "delete", ("id",), [(a,) for a, _ in rows], events[:len(rows)])
    assert one.keys == _old([a for a, _ in rows], str)
    assert one.events == _old(events[:len(rows)], stored_value)
    two = Removed.of("t", "delete", ("a", "b"), rows, events)
    assert two.keys == _old([[a, b] for a, b in rows], str)
    assert two.count == len(rows)


def test_a_column_of_one_type_keeps_its_native_json() -> None:
    stamp = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC)
    key = uuid.UUID(int=7)
    removed = Removed.of("t", "delete", ("id", "at"), [(1, stamp), (2, stamp)],
                         [stamp, decimal.Decimal("1.50")])
    assert removed.keys == ('[[1,"2024-02-29 23:59:59.999999+00:00"],'
                            '[2,"2024-02-29 23:59:59.999999+00:00"]]')
    assert removed.events == '["2024-02-29 23:59:59.999999+00:00","1.50"]'
    assert Removed.of("t", "delete", ("id",), [(key,)], [None]).keys == f'["{key}"]'
