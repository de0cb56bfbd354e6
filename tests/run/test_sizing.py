"""Batches sized by time: each next batch aims at ``batch_seconds`` within firm bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from retention.run import sizing

ceilings = st.integers(1, 1_000_000)
targets = st.floats(0.001, 10.0)
times = st.lists(st.floats(0.0, 100.0), min_size=1, max_size=30)


@given(ceiling=ceilings, target=targets, took=times)
def test_a_batch_stays_within_its_bounds_and_changes_by_a_bounded_factor(
        ceiling: int, target: float, took: list[float]) -> None:
    """Never above batch_size nor below the floor; at most twice, at least a quarter of
    the batch before (where the bounds allow)."""
    sizer = sizing.Sizer(ceiling, target)
    floor = min(ceiling, sizing.MIN_BATCH_SIZE)
    assert sizer.size == min(ceiling, sizing.FIRST_BATCH_SIZE)
    for seconds in took:
        before = sizer.size
        after = sizer.measured(seconds)
        assert after == sizer.size
        assert floor <= after <= ceiling
        assert after <= max(floor, before * sizing.GROWTH)
        assert after >= min(ceiling, max(floor, int(before * sizing.SHRINK)))


@given(ceiling=st.integers(10_000, 1_000_000), per_row=st.floats(1e-6, 1e-3),
       target=st.floats(0.05, 1.0))
def test_at_a_steady_rate_the_batches_settle_at_the_target_time(
        ceiling: int, per_row: float, target: float) -> None:
    """A database that takes the same time per row gets batches of about target seconds
    (or batch_size, or the floor, where those bind)."""
    sizer = sizing.Sizer(ceiling, target)
    for _ in range(40):
        sizer.measured(sizer.size * per_row)
    wanted = min(ceiling, max(sizing.MIN_BATCH_SIZE, target / per_row))
    assert abs(sizer.size - wanted) <= max(2.0, 0.01 * wanted)


def test_one_slow_batch_shrinks_the_next_at_once() -> None:
    """A lock wait or a busy server: the next batch is cut to the target at that rate."""
    sizer = sizing.Sizer(50_000, 0.2)
    for _ in range(10):
        sizer.measured(sizer.size * 1e-5)  # fast: grows
    grown = sizer.size
    assert grown > 10_000
    sizer.measured(2.0)  # ten times the target
    assert sizer.size == max(sizing.MIN_BATCH_SIZE, int(grown * sizing.SHRINK))


@settings(deadline=None)
@given(due=st.integers(0, 20_000), batch_size=st.integers(1, 100_000),
       rate=st.floats(1, 1e6), seconds=st.floats(0.01, 5))
def test_with_a_rate_batches_are_the_sizers_own(due: int, batch_size: int, rate: float,
                                               seconds: float) -> None:
    """At a steady rate the count is what running the sizer batch by batch gives."""
    found = sizing.batches(due, batch_size, seconds, rate)

    sizer, left, count = sizing.Sizer(batch_size, seconds), due, 0
    while left > 0:
        count += 1
        left -= sizer.size
        sizer.measured(sizer.size / rate)
    assert abs(found - count) <= max(1, count // 1000)  # the shortcut once sizes settle
