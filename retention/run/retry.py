"""Transient database errors, and retrying a batch after one with backoff and jitter."""

from __future__ import annotations

import random
import sqlite3
import time

import sqlalchemy as sa

RETRY_ATTEMPTS = 5  # tries of one batch before its rule fails
RETRY_BASE_DELAY = 0.2  # seconds before the first retry; doubles each time
RETRY_MAX_DELAY = 5.0  # longest pause between two tries

# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, lock not
# available, query canceled (statement timeout), admin shutdown, connection failures.
_PG_STATES = {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03",
              "08000", "08003", "08006", "08001", "08004"}
# MySQL/MariaDB error codes: lock wait timeout, deadlock, server gone away, lost
# connection, connection killed, query interrupted, can't connect.
_MYSQL_CODES = {1205, 1213, 2006, 2013, 1927, 1317, 3024, 1969, 2003}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a passing condition (retrying the batch may succeed)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if state in _PG_STATES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_CODES:
        return True
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig) or "busy" in str(orig)
    return isinstance(exc, sa.exc.OperationalError) and "connection" in str(orig).lower()


def backoff(attempt: int) -> float:
    """Seconds to wait before try ``attempt + 1`` (full jitter, capped)."""
    return random.uniform(0, min(RETRY_MAX_DELAY, RETRY_BASE_DELAY * 2 ** attempt))


def pause(attempt: int) -> None:
    time.sleep(backoff(attempt))
