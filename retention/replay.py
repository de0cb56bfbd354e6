"""``retention replay``: delete again what a restore from backup brought back.

A restored backup resurrects records retention already deleted. ``replay``
reads the audit log's deletions since an instant, finds those rows present
again, and (with ``--apply``) deletes them once more, children first, under
each rule's lease, recording every row as a new audit entry that names the
run it repeats. Records under an active legal hold, and their children, are
left alone.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from typing import Any

import structlog

from retention import engine, lease
from retention.audit.store import AuditStore, RunInfo, key_text
from retention.rules import Policy, Rule

log = structlog.get_logger("retention.replay")
CHUNK = 500  # keys looked up or deleted per statement


def replay(policy: Policy, store: AuditStore, since: str, apply: bool,
           as_of: dt.datetime) -> dict[str, Any]:
    """Find (and with ``apply`` delete) restored rows deleted since ``since``."""
    rules = {r.name: r for r in policy.rules}
    records = _deleted_since(store, policy, since, set(rules))
    run_id = str(uuid.uuid4())
    out: dict[str, Any] = {"run_id": run_id if apply else None, "policy": policy.name,
                           "since": since, "apply": apply, "rules": []}
    held = engine.held_keys(policy, as_of, store)
    if apply:
        store.start_run(RunInfo(run_id, policy.name, policy.version, policy.sha256, "replay",
                                as_of))
    status = "ok"
    with engine.Session(policy) as session:
        for name, tables in records.items():
            rule = rules[name]
            adapter = session.adapter(rule.source)
            present = {t: _present(adapter, t, recs) for t, recs in tables.items()}
            _drop_held(rule, adapter, present, held)
            deleted: dict[str, int] = dict.fromkeys(present, 0)
            entry: dict[str, Any] = {"rule": name, "status": "ok", "deleted": deleted,
                                     "restored": {t: len(v) for t, v in present.items()}}
            out["rules"].append(entry)
            if not apply or not any(present.values()):
                continue
            taken = lease.acquire(store, policy.name, name)
            if taken is None:
                entry["status"] = status = "skipped"
                continue
            try:
                order = [c.table for c in rule.children] + [rule.table]
                for table in [t for t in order if t in present]:
                    deleted[table] = _delete(store, adapter, run_id, rule, present[table])
            except Exception as exc:
                entry["status"], entry["error"] = "failed", f"{type(exc).__name__}"
                status = "failed"
                log.error("replay_failed", rule=name, error=type(exc).__name__)
            finally:
                taken.release()
    if apply:
        store.finish_run(run_id, status, out["rules"])
    out["status"] = status
    return out


def _deleted_since(store: AuditStore, policy: Policy, since: str, rules: set[str]
                   ) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per rule and table, the latest delete record of each key since ``since``."""
    found: dict[str, dict[str, dict[str, dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict))
    policy_runs = store.run_ids(policy.name)
    for rec in store.records(since=since):
        if rec["action"] == "delete" and rec["rule"] in rules and rec["run_id"] in policy_runs:
            found[rec["rule"]][rec["table_name"]][rec["record_key"]] = rec
    return {rule: {t: list(v.values()) for t, v in tables.items()}
            for rule, tables in found.items()}


def _present(adapter: Any, table: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    here: list[dict[str, Any]] = []
    for start in range(0, len(records), CHUNK):
        chunk = records[start:start + CHUNK]
        keys = [json.loads(r["record_key"]) for r in chunk]
        found = {key_text(k) for k in adapter.exists(table, keys)}
        here += [r for r, k in zip(chunk, keys, strict=True) if key_text(k) in found]
    return here


def _drop_held(rule: Rule, adapter: Any, present: dict[str, list[dict[str, Any]]],
               held: engine.HeldKeys) -> None:
    """Leave held parents, and the children of held parents, where they are."""
    if rule.table not in present or rule.table is None:
        return
    info = adapter.reflect(rule.table)
    held_keys = set(held(rule, info.primary_key)) if info else set()
    if not held_keys:
        return
    pk = info.primary_key
    present[rule.table] = [r for r in present[rule.table]
                           if tuple(json.loads(r["record_key"])[c] for c in pk) not in held_keys]
    held_ids = {k[0] for k in held_keys}
    for child in rule.children:
        recs = present.get(child.table, [])
        keys = [json.loads(r["record_key"]) for r in recs]
        rows = {key_text({c: row[c] for c in keys[0]}): row[child.key]
                for row in adapter.read(child.table, keys, [child.key])} if keys else {}
        present[child.table] = [r for r, k in zip(recs, keys, strict=True)
                                if rows.get(key_text(k)) not in held_ids]


def _delete(store: AuditStore, adapter: Any, run_id: str, rule: Rule,
            records: list[dict[str, Any]]) -> int:
    together = store.shares_database_with(getattr(adapter, "raw_url", "") or "")
    deleted = 0
    for start in range(0, len(records), CHUNK):
        chunk = records[start:start + CHUNK]
        by_key = {key_text(json.loads(r["record_key"])): r for r in chunk}
        batch_id = uuid.uuid4().hex

        def hook(gone: list[dict[str, Any]], conn: Any, batch_id: str = batch_id,
                 by_key: dict[str, dict[str, Any]] = by_key) -> None:
            if not gone:
                return
            entries = [{
                "kind": "record", "run_id": run_id, "batch_id": batch_id, "rule": rule.name,
                "source": by_key[key_text(k)]["source"],
                "table_name": by_key[key_text(k)]["table_name"], "record_key": key_text(k),
                "action": "delete", "event_at": by_key[key_text(k)]["event_at"],
                "due_at": by_key[key_text(k)]["due_at"],
                "detail": json.dumps({"replay_of": by_key[key_text(k)]["run_id"]}),
            } for k in gone]
            if together:
                entries.append(store.mark(run_id, rule.name, batch_id, "batch_committed"))
            store.append(entries, conn if together else None)

        gone = adapter.delete_keys(chunk[0]["table_name"],
                                   [json.loads(r["record_key"]) for r in chunk], hook)
        if gone and not together:
            store.append([store.mark(run_id, rule.name, batch_id, "batch_committed")])
        deleted += len(gone)
    return deleted
