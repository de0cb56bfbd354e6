"""Replica lag as the SQL adapter reads it: PostgreSQL on the primary, MariaDB per replica.

The servers are real; none of them has a replica, so the readings prove the queries run
and what "no standby", "no replica" and "replication stopped" mean. Rows with a lag are
checked on the row readers directly.
"""

from __future__ import annotations

import sqlalchemy as sa
from retention.adapters.protocol import ReplicaLag
from retention.adapters.sql import SqlAdapter
from retention.adapters.sql_replicas import HIDDEN, replica_reading, standby_reading

from retention.policy.rules import Source
from retention.urls import safe_url

CONNECTION = "retention_test"  # a named replication connection that never starts


def test_postgres_without_standbys_reports_no_lag(postgres_url: str) -> None:
    """`pg_stat_replication` on a primary without standbys has no row: nothing to wait for."""
    adapter = SqlAdapter(Source("db", "sql", {"url": postgres_url}))
    try:
        assert adapter.replica_lag() == []
    finally:
        adapter.close()


def test_a_postgres_standby_row_becomes_its_lag_or_unknown() -> None:
    """Caught up is 0 (whatever stale lag is still shown); behind without a measured lag and
    figures hidden from the user are unknown, never 0."""
    row = {"pid": 4711, "application_name": "walreceiver", "client_addr": "10.0.0.7",
           "state": "streaming", "caught_up": False, "lag": 2.5}

    assert standby_reading(row) == ReplicaLag("standby walreceiver@10.0.0.7", 2.5, "streaming")
    assert standby_reading({**row, "caught_up": True}).seconds == 0.0
    assert standby_reading({**row, "lag": None}).seconds is None
    hidden = standby_reading({**row, "application_name": None, "client_addr": None,
                              "state": None, "caught_up": False, "lag": None})
    assert (hidden.replica, hidden.seconds, hidden.note) == ("standby pid 4711", None, HIDDEN)


def test_a_replica_status_row_gives_seconds_behind_or_says_replication_stopped() -> None:
    """MariaDB's `Seconds_Behind_Master` and MySQL's `Seconds_Behind_Source` are the lag;
    NULL is replication stopped (with the threads' states and the error)."""
    assert replica_reading("r", {"Seconds_Behind_Master": 7}).seconds == 7.0
    assert replica_reading("r", {"Seconds_Behind_Source": 0}).seconds == 0.0
    stopped = replica_reading("r", {"Connection_name": "east", "Seconds_Behind_Master": None,
                                    "Slave_IO_Running": "No", "Slave_SQL_Running": "Yes",
                                    "Last_IO_Error": "error connecting to master"})
    assert stopped.replica == "r (east)"
    assert stopped.seconds is None
    assert "stopped" in stopped.note and "Slave_IO_Running No" in stopped.note
    assert "error connecting to master" in stopped.note


def test_a_mariadb_replica_url_is_asked_for_its_replication_status(mariadb_url: str) -> None:
    """The configured replica is asked on its own connection: a server that is no replica
    is unknown lag (not 0); one whose replication is configured but stopped is unknown and
    says so, naming the replication connection. The password never shows."""
    adapter = SqlAdapter(Source("db", "sql", {"url": mariadb_url, "replicas": [mariadb_url]}))
    engine = sa.create_engine(mariadb_url)
    try:
        [none] = adapter.replica_lag()
        assert none.replica == safe_url(mariadb_url)
        assert none.seconds is None
        assert "no replica" in none.note and "SHOW ALL SLAVES STATUS" in none.note

        with engine.connect() as conn:
            conn.exec_driver_sql(f"CHANGE MASTER '{CONNECTION}' TO MASTER_HOST='127.0.0.1', "
                                 "MASTER_PORT=1, MASTER_USER='nobody'")
        try:
            [stopped] = adapter.replica_lag()
        finally:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"RESET SLAVE '{CONNECTION}' ALL")
        assert stopped.replica == f"{safe_url(mariadb_url)} ({CONNECTION})"
        assert stopped.seconds is None
        assert "replication is stopped" in stopped.note
    finally:
        engine.dispose()
        adapter.close()


def test_an_unreachable_replica_is_unknown_lag_without_its_password() -> None:
    """A replica that refuses the connection is a reading with no lag and the reason, its
    URL masked."""
    replica = "mysql://app:Sup3rSecret@127.0.0.1:1/shop"
    primary = "mysql://app@127.0.0.1:1/shop"  # never connected to: the replicas are asked
    adapter = SqlAdapter(Source("db", "sql", {"url": primary, "replicas": [replica]}))
    try:
        [reading] = adapter.replica_lag()
    finally:
        adapter.close()

    assert reading.seconds is None
    assert "cannot read its status" in reading.note
    assert "Sup3rSecret" not in reading.replica + reading.note
    assert reading.replica == "mysql://app:***@127.0.0.1:1/shop"
