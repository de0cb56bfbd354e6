"""A batch transaction's lock and statement timeouts are in force on the server."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy as sa
from retention.adapters.sql import SqlAdapter

from retention.db import writing
from retention.plan import Plan
from tests.support import orders_with_lines, utc


def _plan(url: str, tmp_path: Path) -> tuple[SqlAdapter, Plan]:
    from retention.run import engine

    policy = orders_with_lines(url, tmp_path, [utc(2015, 1, 1).replace(tzinfo=None)], 10)
    with engine.Session(policy) as session:
        plans, _ = engine.compile_plans(session, policy.rules, utc(2026, 3, 1))
    adapter = SqlAdapter(policy.sources["db"])
    return adapter, dataclasses.replace(plans["orders"], lock_timeout=1.5,
                                        statement_timeout=7.25)


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
def test_the_timeouts_are_set_for_the_batch(db_url: str, db_kind: str,
                                            tmp_path: Path) -> None:
    """PostgreSQL: local to the transaction; MariaDB: the session's, with JSON_ARRAYAGG's
    length limit raised so that a batch's arrays come back whole."""
    adapter, plan = _plan(db_url, tmp_path)
    try:
        with writing(adapter.engine) as conn:
            adapter._timeouts(conn, plan)
            if db_kind == "postgresql":
                found = conn.execute(sa.text(
                    "SELECT current_setting('lock_timeout'), "
                    "current_setting('statement_timeout')")).one()
                assert tuple(found) == ("1500ms", "7250ms")
            else:
                found = conn.execute(sa.text(
                    "SELECT @@innodb_lock_wait_timeout, @@max_statement_time, "
                    "@@group_concat_max_len")).one()
                assert (int(found[0]), float(found[1])) == (2, 7.25)
                assert int(found[2]) >= 1 << 30
        if db_kind == "postgresql":  # SET LOCAL: gone with the transaction
            with adapter.engine.connect() as conn:
                assert conn.execute(sa.text("SHOW lock_timeout")).scalar() != "1500ms"
    finally:
        adapter.close()
