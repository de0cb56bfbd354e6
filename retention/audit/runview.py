"""One run as ``audit show`` presents it: the run, its rules, batches, recovered records,
errors and records, read from the store."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import sqlalchemy as sa

from retention.audit import export
from retention.audit.schema import log
from retention.audit.store import AuditStore

MARKS = ("batch_committed", "batch_rolled_back")


def run_view(store: AuditStore, run_id: str) -> dict[str, Any] | None:
    """The run's record with ``summary`` (its rules as the run reported them),
    ``batches`` (committed and rolled back, with their records per table), ``errors``
    (rules that failed, with why) and ``records`` (SPEC's export shape); None when the
    store holds no such run."""
    found = store.run(run_id)
    if found is None:
        return None
    found["summary"] = json.loads(found["summary"] or "[]")
    records: list[dict[str, Any]] = []
    tables: dict[str, Counter[str]] = {}
    for row in store.records(run_id=run_id):
        records.append(export.record_json(row))
        tables.setdefault(row["batch_id"], Counter())[row["table_name"]] += 1
    batches: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        marks = conn.execute(sa.select(log.c.batch_id, log.c.kind, log.c.rule, log.c.at)
                             .where(log.c.run_id == run_id, log.c.kind.in_(MARKS))
                             .order_by(log.c.seq)).all()
    for mark in marks:
        batches[mark.batch_id] = {"batch_id": mark.batch_id, "rule": mark.rule,
                                  "status": "committed" if mark.kind == MARKS[0]
                                  else "rolled back", "at": mark.at, "records": {}}
    for batch_id, counts in tables.items():
        if batch_id in batches:
            batches[batch_id]["records"] = dict(sorted(counts.items()))
    found["batches"] = list(batches.values())
    found["errors"] = [{"rule": r["rule"], "status": r.get("status"), "error": r["error"]}
                       for r in found["summary"] if r.get("error")]
    found["records"] = records
    return found
