"""How far a source's replicas are behind (``max_replica_lag``), per dialect.

* **PostgreSQL** reports its standbys on the primary, so the source's own connection
  reads ``pg_stat_replication``: one row per connected standby, ``replay_lag`` in
  seconds. A standby that has replayed everything the primary wrote is 0 behind
  (PostgreSQL keeps showing the last measured lag for a while after it caught up, then
  NULL). A standby behind without a measured lag yet, or a row whose figures are hidden
  from this user (grant ``pg_monitor``), is unknown. A standby that is not connected has
  no row: PostgreSQL cannot say how far it is behind, and it receives nothing while
  disconnected, so it does not slow the run.
* **MariaDB/MySQL** replicas know their own lag, so each URL of the source's
  ``replicas`` is asked: MariaDB ``SHOW ALL SLAVES STATUS`` (every replication
  connection, named ones too), MySQL ``SHOW REPLICA STATUS`` (8.0.22 and later) or
  ``SHOW SLAVE STATUS``. ``Seconds_Behind_Master`` (MySQL: ``Seconds_Behind_Source``)
  is the lag; NULL means replication is stopped, and no row at all means the server
  is no replica (a wrong URL, or replication was reset): both are unknown, never 0.
* **SQLite** has no replicas.

A replica that cannot be read is reported (``seconds`` None, with a note), not raised:
:mod:`retention.run.throttle` decides what an unknown lag means.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from retention.adapters.protocol import ReplicaLag
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from retention import secrets
from retention.db import create_engine, safe_url

REPLICA_CONNECT_TIMEOUT = 5  # seconds to reach a replica before its lag counts as unknown
REPLICA_READ_TIMEOUT = 10  # seconds a replica may take to answer its status query
_LAG_COLUMNS = ("Seconds_Behind_Master", "Seconds_Behind_Source")
HIDDEN = "pg_stat_replication hides this standby's figures from this user (grant it pg_monitor)"

_POSTGRES_LAG = text("""
SELECT pid, application_name, client_addr::text AS client_addr, state,
       replay_lsn IS NOT NULL AND replay_lsn >= pg_current_wal_lsn() AS caught_up,
       EXTRACT(EPOCH FROM replay_lag)::float8 AS lag
  FROM pg_stat_replication
 ORDER BY pid
""")


class Replicas:
    """The replicas of one source: ``engine`` is the source's, ``urls`` its ``replicas``."""

    def __init__(self, engine: Engine, urls: Sequence[str]) -> None:
        self.engine = engine
        self.urls = [str(u) for u in urls]
        self._engines: dict[str, Engine] = {}  # opened on the first reading, not before

    def lag(self) -> list[ReplicaLag]:
        """One reading per replica (see the module). Raises only when a PostgreSQL
        primary cannot be asked."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            return _postgres(self.engine)
        return [reading for url in self.urls for reading in self._replica(url)]

    def _replica(self, url: str) -> list[ReplicaLag]:
        name = safe_url(url)
        try:
            if url not in self._engines:
                self._engines[url] = _replica_engine(url)
            with self._engines[url].connect() as conn:
                statement, rows = _status_rows(conn)
        except Exception as exc:  # unreachable, wrong password, no privilege: unknown
            return [ReplicaLag(name, None, f"cannot read its status: {_reason(exc)}")]
        if not rows:
            return [ReplicaLag(name, None, f"{statement} returned no row: the server is no "
                               "replica (or its replication was reset)")]
        return [replica_reading(name, row) for row in rows]

    def close(self) -> None:
        for engine in self._engines.values():
            with contextlib.suppress(Exception):
                engine.dispose()
        self._engines.clear()


def _postgres(engine: Engine) -> list[ReplicaLag]:
    with engine.connect() as conn:
        return [standby_reading(dict(row)) for row in conn.execute(_POSTGRES_LAG).mappings()]


def standby_reading(row: dict[str, Any]) -> ReplicaLag:
    """One row of ``pg_stat_replication`` (as :data:`_POSTGRES_LAG` selects it) as a reading."""
    name = "standby " + ("@".join(str(v) for v in (row["application_name"],
                                                   row["client_addr"]) if v)
                         or f"pid {row['pid']}")  # the pid is all an unprivileged user sees
    if row["state"] is None:
        return ReplicaLag(name, None, HIDDEN)
    if row["caught_up"]:
        return ReplicaLag(name, 0.0, "caught up")
    if row["lag"] is None:
        return ReplicaLag(name, None, f"behind, with no measured lag yet (state {row['state']})")
    return ReplicaLag(name, float(row["lag"]), str(row["state"]))


def _replica_engine(url: str) -> Engine:
    """An engine for one replica, with short timeouts unless the URL sets its own."""
    parsed = make_url(url)
    timeouts = {"connect_timeout": str(REPLICA_CONNECT_TIMEOUT),
                "read_timeout": str(REPLICA_READ_TIMEOUT)}
    extra = {k: v for k, v in timeouts.items() if k not in parsed.query}
    return create_engine(parsed.update_query_dict(extra).render_as_string(hide_password=False),
                         pool_size=1, max_overflow=0)


def _status_rows(conn: Any) -> tuple[str, list[dict[str, Any]]]:
    """The statement asked and its rows: one per replication connection."""
    statements = (["SHOW ALL SLAVES STATUS"] if getattr(conn.dialect, "is_mariadb", False)
                  else ["SHOW REPLICA STATUS", "SHOW SLAVE STATUS"])  # MySQL < 8.0.22: the 2nd
    for statement in statements[:-1]:
        try:
            return statement, [dict(r) for r in conn.exec_driver_sql(statement).mappings()]
        except Exception:
            conn.rollback()
    return statements[-1], [dict(r) for r in conn.exec_driver_sql(statements[-1]).mappings()]


def replica_reading(name: str, row: dict[str, Any]) -> ReplicaLag:
    """One row of ``SHOW ... SLAVE/REPLICA STATUS`` of replica ``name`` as a reading."""
    connection = row.get("Connection_name")
    shown = f"{name} ({connection})" if connection else name
    lag = next((row[c] for c in _LAG_COLUMNS if c in row), None)
    if lag is not None:
        return ReplicaLag(shown, float(lag), "")
    running = {k: row.get(k) for k in ("Slave_IO_Running", "Slave_SQL_Running",
                                        "Replica_IO_Running", "Replica_SQL_Running") if k in row}
    error = row.get("Last_IO_Error") or row.get("Last_SQL_Error") or ""
    states = ", ".join(f"{k} {v}" for k, v in running.items())
    return ReplicaLag(shown, None, secrets.scrub(
        f"replication is stopped (lag NULL; {states})" + (f": {error}" if error else "")))


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return secrets.scrub(f"{type(orig).__name__}: {first}" if first else type(orig).__name__)
