"""Batch sizes adapted to a target transaction time.

A rule's ``batch_size`` is the most rows one batch transaction takes; its
``batch_seconds`` the time a batch transaction should take (default 0.2 s). The
first batch takes ``FIRST_BATCH_SIZE`` rows (or ``batch_size``, if smaller). After
each batch the time per row is estimated -- smoothed over the batches so far, but
never below the last batch's own rate, so one slow batch shrinks the next at once --
and the next batch is sized to take ``batch_seconds`` at that rate: at most
``GROWTH`` times and at least ``SHRINK`` times the size of the one before, never
below ``MIN_BATCH_SIZE`` (or ``batch_size``) nor above ``batch_size``. Short locks on
a busy database, few round trips on a fast one.
"""

from __future__ import annotations

FIRST_BATCH_SIZE = 1000  # rows of a rule's first batch (batch_size if that is smaller)
MIN_BATCH_SIZE = 100  # rows a batch shrinks to at most (batch_size if that is smaller)
GROWTH = 2.0  # a batch is at most this many times the size of the one before
SHRINK = 0.25  # and at least this fraction of it
SMOOTHING = 0.5  # weight of the last batch in the estimated time per row


class Sizer:
    """The size of each next batch of one rule."""

    def __init__(self, ceiling: int, target: float) -> None:
        self.ceiling = max(1, ceiling)
        self.target = target
        self.size = min(self.ceiling, FIRST_BATCH_SIZE)
        self.per_row: float | None = None  # estimated seconds per row

    def measured(self, took: float) -> int:
        """Record that a batch of ``self.size`` rows took ``took`` seconds; returns (and
        keeps) the size of the next batch."""
        rate = max(took, 0.0) / self.size
        smoothed = rate if self.per_row is None else (
            (1 - SMOOTHING) * self.per_row + SMOOTHING * rate)
        self.per_row = max(smoothed, rate) if took > self.target else smoothed
        wanted = self.target / self.per_row if self.per_row > 0 else float("inf")
        bounded = min(max(wanted, self.size * SHRINK), self.size * GROWTH)
        floor = min(self.ceiling, MIN_BATCH_SIZE)
        self.size = int(max(floor, min(self.ceiling, bounded)))
        return self.size



def batches(due: int, ceiling: int, target: float, rows_per_second: float | None) -> int:
    """How many batches a :class:`Sizer` takes for ``due`` rows at a steady
    ``rows_per_second``. None (no rate measured yet) takes every batch to be quick, so
    the batches grow to ``ceiling`` as fast as they may: the fewest there can be."""
    sizer = Sizer(ceiling, target)
    count, left = 0, due
    while left > 0:
        size = sizer.size
        count += 1
        left -= size
        if left <= 0:
            break
        took = size / rows_per_second if rows_per_second else 0.0
        if abs(sizer.measured(took) - size) <= 1:  # steady: the rest go at this size
            return count + -(-left // sizer.size)
    return count
