"""A polite stop: SIGTERM or SIGINT lets the current batch commit, then the run ends.

The flag a signal handler sets must not take a lock. A handler runs in the main thread
between two bytecodes; ``threading.Event.set`` takes the event's lock, which the main
thread itself holds while it is inside ``Event.wait`` — the process then waits for itself
forever. :class:`Flag` is set with a plain attribute and a byte written to a pipe, and
waited on with ``poll`` on that pipe, so setting it never waits for anything.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import time
import weakref
from types import FrameType


def _pipe() -> tuple[int, int]:
    """A non-blocking pipe, not inherited by programs this one starts (PEP 446)."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    return read, write


class Flag:
    """A set-once-until-cleared flag that a signal handler may set; any thread may wait."""

    def __init__(self) -> None:
        self._set = False
        self._read, self._write = _pipe()
        _flags.add(self)

    def _new_pipe(self) -> None:
        """In a forked child: let go of the parent's pipe and take one of its own."""
        os.close(self._read)
        os.close(self._write)
        self._read, self._write = _pipe()

    def set(self) -> None:
        self._set = True
        with contextlib.suppress(BlockingIOError):  # a full pipe wakes its waiters as well
            os.write(self._write, b"!")  # wakes every poll() waiting on the pipe

    def is_set(self) -> bool:
        return self._set

    def clear(self) -> None:
        """Unset the flag (a set() that races with this one stays set: the flag first)."""
        self._set = False
        self._drain()

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the flag; whether it is set."""
        deadline = time.monotonic() + timeout
        waiting = select.poll()
        waiting.register(self._read, select.POLLIN)
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            waiting.poll(math.ceil(min(left, 86400) * 1000))  # retried after a signal (PEP 475)
            if not self._set:  # a wake-up a clear() undid: wait on for the rest
                self._drain()
        return self._set


_flags: weakref.WeakSet[Flag] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child gets pipes of its own: its wake-ups neither reach nor drain ours."""
    for flag in list(_flags):
        flag._new_pipe()


os.register_at_fork(after_in_child=_after_fork_in_child)
requested = Flag()  # set by a signal; checked between batches and rules


def _handle(signum: int, _frame: FrameType | None) -> None:
    requested.set()


def install() -> None:
    """Route SIGTERM and SIGINT to :data:`requested` (main thread only)."""
    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
