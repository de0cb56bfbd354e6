"""What daemons leave in the audit store: claimed schedule slots and heartbeats."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from retention.audit.schema import heartbeats, slots
from retention.audit.store import AuditStore, now_text
from retention.db import writing

HEARTBEAT_SECONDS = 15  # how often a daemon says it is alive
STALE_AFTER = 3 * HEARTBEAT_SECONDS  # a heartbeat older than this is reported stale


def claim_slot(store: AuditStore, policy: str, rule: str, slot: str, daemon_id: str) -> bool:
    """Claim a schedule slot; False when a replica (or an earlier firing) already has it."""
    try:
        with writing(store.engine) as conn:
            conn.execute(slots.insert().values(policy=policy, rule=rule, slot=slot,
                                               claimed_at=now_text(), daemon_id=daemon_id))
    except IntegrityError:
        return False
    return True


def release_slot(store: AuditStore, policy: str, rule: str, slot: str) -> None:
    """Give a slot back (its run was interrupted), so a restarted daemon runs it again."""
    with writing(store.engine) as conn:
        conn.execute(slots.delete().where(slots.c.policy == policy, slots.c.rule == rule,
                                          slots.c.slot == slot))


def beat(store: AuditStore, daemon_id: str, policy: str, started_at: str,
         stopped: bool = False) -> None:
    """Record that the daemon is alive (or, with ``stopped``, that it ended cleanly)."""
    now = now_text()
    with writing(store.engine) as conn:
        found = conn.execute(heartbeats.update().where(heartbeats.c.daemon_id == daemon_id)
                             .values(beat_at=now, stopped_at=now if stopped else None))
        if found.rowcount == 0:
            conn.execute(heartbeats.insert().values(
                daemon_id=daemon_id, policy=policy, host=socket.gethostname(),
                pid=os.getpid(), started_at=started_at, beat_at=now,
                stopped_at=now if stopped else None))


def daemons(store: AuditStore, policy: str, now: dt.datetime) -> list[dict[str, Any]]:
    """The policy's daemons with ``state``: running, stale or stopped."""
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(heartbeats).where(heartbeats.c.policy == policy)
            .order_by(heartbeats.c.beat_at.desc()))]
    for row in rows:
        age = (now - dt.datetime.fromisoformat(row["beat_at"])).total_seconds()
        row["age_seconds"] = round(age, 1)
        row["state"] = ("stopped" if row["stopped_at"] else
                        "stale" if age > STALE_AFTER else "running")
    return rows
