"""A polite stop: SIGTERM or SIGINT lets the current batch commit, then the run ends."""

from __future__ import annotations

import signal
import threading
from types import FrameType

requested = threading.Event()  # set by a signal; checked between batches and rules


def _handle(signum: int, _frame: FrameType | None) -> None:
    requested.set()


def install() -> None:
    """Route SIGTERM and SIGINT to :data:`requested` (main thread only)."""
    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
