"""A rule's progress on a terminal: a rich bar of rows done / due, rows per second, ETA.

Only when stderr is a terminal (:func:`terminal`); otherwise every batch is one
``batch_committed`` log line (:mod:`retention.run.throttle`). The bar is drawn on stderr,
so stdout keeps carrying only the command's result; log events print above it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def terminal() -> Console | None:
    """A console on stderr when stderr is a terminal; None means log lines instead."""
    return Console(stderr=True) if sys.stderr.isatty() else None


class _Rate(ProgressColumn):
    """Rows per second over the last half minute (rich's own speed estimate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- rows/s" if speed is None else f"{speed:,.0f} rows/s")


class Bar:
    """One rule's bar, from its first batch until :meth:`close`."""

    def __init__(self, console: Console, rule: str, due: int,
                 get_time: Callable[[], float]) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _Rate(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, get_time=get_time, redirect_stdout=False, redirect_stderr=True,
        )
        self._task = self._progress.add_task(rule, total=due)
        self._progress.start()

    def update(self, done: int) -> None:
        self._progress.update(self._task, completed=done)

    def close(self) -> None:
        self._progress.stop()
