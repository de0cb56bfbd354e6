"""Close batches a crashed run left open, before a run does anything new.

A batch whose records were written as intents but never marked committed or
rolled back is checked against its target: the records whose rows are gone
were deleted and are confirmed; the others are marked rolled back.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select

from retention.audit.schema import log as log_table

if TYPE_CHECKING:
    from retention.audit.store import AuditStore
    from retention.engine import Session

log = structlog.get_logger("retention.reconcile")


def reconcile(store: AuditStore, session: Session, run_id: str) -> int:
    """Resolve every open batch; return how many were resolved."""
    resolved = 0
    for batch in store.open_batches():
        records = _records(store, batch["batch_id"])
        if not records:
            continue
        source = records[0]["source"]
        if source not in session.policy.sources:
            continue
        adapter = session.adapter(source)
        gone: list[dict[str, Any]] = []
        by_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for rec in records:
            by_table[rec["table_name"]].append(rec)
        for table, recs in by_table.items():
            keys = [json.loads(r["record_key"]) for r in recs]
            if recs[0]["action"] != "delete":
                continue  # anonymize intents: the rows exist either way; left for review
            present = {json.dumps(k, sort_keys=True, default=str)
                       for k in adapter.exists(table, keys)}
            gone.extend(r for r, k in zip(recs, keys, strict=True)
                        if json.dumps(k, sort_keys=True, default=str) not in present)
        rule = batch["rule"]
        entries = [store.mark(batch["run_id"], rule, batch["batch_id"], "batch_rolled_back")]
        if gone:
            new_id = uuid.uuid4().hex
            fields = ("source", "table_name", "record_key", "action", "event_at", "due_at",
                      "rule")
            entries += [{"kind": "record", "run_id": run_id, "batch_id": new_id,
                         "detail": json.dumps({"recovered_from": batch["batch_id"]}),
                         **{f: r[f] for f in fields}} for r in gone]
            entries.append(store.mark(run_id, rule, new_id, "batch_committed"))
        store.append(entries)
        log.warning("batch_reconciled", batch_id=batch["batch_id"], rule=rule,
                    confirmed=len(gone), rolled_back=len(records) - len(gone))
        resolved += 1
    return resolved


def _records(store: AuditStore, batch_id: str) -> list[dict[str, Any]]:
    stmt = select(log_table).where(log_table.c.batch_id == batch_id,
                                   log_table.c.kind == "record").order_by(log_table.c.seq)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]
