"""A dry run's forecast: batches as the sizer takes them, time only from a measured rate."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from retention.run import estimate, sizing
from retention.run.estimate import Rate
from tests.run.test_throttle import plan


@given(due=st.integers(0, 10**9), batch_size=st.integers(1, 100_000))
def test_without_a_rate_batches_grow_to_the_batch_size_as_fast_as_they_may(
        due: int, batch_size: int) -> None:
    """The first batch takes 1000 rows (or batch_size), each next one twice as many, up
    to batch_size: the fewest batches the sizer could take."""
    found = estimate.forecast(replace(plan(), batch_size=batch_size), due, None, None)

    batches, taken, size = 0, 0, min(batch_size, sizing.FIRST_BATCH_SIZE)
    while taken < due and size < batch_size:
        batches, taken, size = batches + 1, taken + size, min(batch_size, size * 2)
    if taken < due:  # the rest at the full size
        batches += -(-(due - taken) // batch_size)
    assert found["batches"] == batches
    assert found["expected_seconds"] is None and found["rows_per_second"] is None


@given(due=st.integers(1, 10**7), rate=st.floats(0.01, 1e6), pause=st.floats(0, 3600),
       runtime=st.one_of(st.none(), st.floats(1, 7 * 86400)))
def test_the_expected_time_is_the_work_at_the_rate_plus_the_pauses(
        due: int, rate: float, pause: float, runtime: float | None) -> None:
    """`due / rate` seconds of batches and a pause between every two of them; with a
    max_runtime, enough runs to hold it."""
    found = estimate.forecast(plan(pause_between_batches=pause), due, Rate(rate, "r1"), runtime)

    batches = math.ceil(due / 10)
    expected = due / rate + pause * (batches - 1)
    assert found["batches"] == batches
    assert abs(found["expected_seconds"] - expected) <= 0.05 + 1e-9 * expected  # rounded to 0.1
    assert found["rate_from"] == "r1"
    if runtime is None:
        assert "runs_needed" not in found
    else:
        assert found["runs_needed"] == max(1, math.ceil(expected / runtime))


def test_the_table_says_unknown_rather_than_guess() -> None:
    assert estimate.shown(estimate.forecast(plan(), 25, None, None)) == (
        "unknown (no earlier run measured a rate)")
    assert estimate.shown(estimate.forecast(plan(), 0, None, None)) == "nothing to do"
    assert estimate.shown(estimate.forecast(plan(), 6000, Rate(2000.0, "r"), 1.0)) == (
        "~3 s (2,000 rows/s), 3 runs at max_runtime")
