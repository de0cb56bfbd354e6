"""``retention replay``: delete (or anonymize) again what a restore from backup brought back.

A restored backup resurrects records retention already deleted. ``replay``
reads the audit log's deletions since an instant and finds those records
present again. A restored row is deleted again only when it is the record
whose deletion was recorded (same key and same event instant) and the rule
still selects it (``where``, cutoff, legal holds), checked and deleted in one
transaction by the adapter (:meth:`Adapter.replay`); a new row that reuses a
key is left alone. Children go with a parent deleted again; a recorded child
whose parent is gone goes too, one whose parent stays (a new parent reusing
the key, a held one, ...) stays. What is left alone is counted with its reason
(``reused_key``, ``not_selected``, ``held``, ``parent_kept``).

Without ``--apply`` the same checks run and nothing changes. With it, each
rule is replayed under its lease and every row deleted again becomes a new
audit entry that names the run it repeats. Anonymize rules are replayed the same
way: a restored row whose anonymization was recorded (same key, same event instant)
and that the rule still selects is anonymized again.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter, defaultdict
from typing import Any

import structlog

from retention.adapters.protocol import Adapter, Batch, Recorded, Replayed
from retention.audit import checkpoints, records
from retention.audit.store import AuditStore, RunInfo, key_text, now_text
from retention.plan import Plan
from retention.policy.rules import Policy, Rule
from retention.run import engine, lease
from retention.run.reconcile import forget_marks, new_batch_id

log = structlog.get_logger("retention.run.replay")
CHUNK = 500  # records checked and deleted per transaction


def replay(policy: Policy, store: AuditStore, since: str, apply: bool,
           as_of: dt.datetime) -> dict[str, Any]:
    """Find (and with ``apply`` delete) restored records deleted since ``since``."""
    rules = {r.name: r for r in policy.rules}
    records = _deleted_since(store, policy, since, set(rules))
    run_id = str(uuid.uuid4())
    out: dict[str, Any] = {"run_id": run_id if apply else None, "policy": policy.name,
                           "since": since, "apply": apply, "rules": []}
    status = "ok"
    proof = checkpoints.Checkpoints.of(policy)
    if proof is not None:  # a store behind or forked from its newest checkpoint: refuse
        if apply:
            proof.ready()
        proof.check_latest(store)
    with engine.Session(policy) as session:
        # Bad input (a schema that no longer fits) stops here, before anything is written.
        plans, failed = engine.compile_plans(session, tuple(rules[n] for n in records), as_of,
                                             engine.held_keys(policy, as_of, store))
        if apply:
            store.start_run(RunInfo(run_id, policy.name, policy.version, policy.sha256,
                                    "replay", as_of))
        for name, tables in records.items():
            entry: dict[str, Any] = {"rule": name, "status": "ok",
                                     "restored": dict.fromkeys(tables, 0),
                                     "deleted": dict.fromkeys(tables, 0),
                                     "anonymized": dict.fromkeys(tables, 0), "left_alone": {}}
            out["rules"].append(entry)
            if name in failed:
                entry["status"], entry["error"] = "failed", failed[name]
                status = "failed"
                continue
            rule, plan = rules[name], plans[name]
            adapter = session.adapter(rule.source)
            taken = lease.acquire(store, policy.name, name) if apply else None
            if apply and taken is None:
                entry["status"] = status = "skipped"
                continue
            try:
                _rule(store, adapter, run_id, rule, plan, tables, entry, apply)
            except Exception as exc:
                entry["status"], entry["error"] = "failed", f"{type(exc).__name__}"
                status = "failed"
                log.error("replay_failed", rule=name, error=type(exc).__name__)
            finally:
                if taken is not None:
                    taken.release()
    if apply:
        store.finish_run(run_id, status, out["rules"])
        if proof is not None:
            proof.append(store, run_id, "replay")
    out["status"] = status
    return out


def _deleted_since(store: AuditStore, policy: Policy, since: str, rules: set[str]
                   ) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Per rule and table, the latest record of each key since ``since`` whose action is
    the rule's (a deletion, or an anonymization)."""
    found: dict[str, dict[str, dict[str, dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict))
    policy_runs = store.run_ids(policy.name)
    action = {r.name: "anonymize" if r.action.columns else "delete" for r in policy.rules}
    for rec in store.records(since=since, exact=True):
        if (rec["rule"] in rules and rec["action"] == action[rec["rule"]]
                and rec["run_id"] in policy_runs):
            found[rec["rule"]][rec["table_name"]][rec["record_key"]] = rec
    return {rule: dict(tables) for rule, tables in found.items()}


def _recorded(rec: dict[str, Any]) -> Recorded:
    return Recorded(rec["table_name"], json.loads(rec["record_key"]),
                    dt.datetime.fromisoformat(rec["event_at"]), rec.get("event_key"))


def _rule(store: AuditStore, adapter: Adapter, run_id: str, rule: Rule, plan: Plan,
          tables: dict[str, dict[str, dict[str, Any]]], entry: dict[str, Any],
          apply: bool) -> None:
    """Parents first (their children go with them), then the recorded children left over."""
    together = store.shares_database_with(getattr(adapter, "raw_url", "") or "")
    closed: list[str] = []
    kept: dict[str, Counter[str]] = defaultdict(Counter)
    gone: set[tuple[str, str]] = set()
    parents = list(tables.get(plan.table, {}).values())
    children = [rec for t, recs in tables.items() if t != plan.table for rec in recs.values()]
    try:
        for stage in (parents, children):
            left = [r for r in stage if (r["table_name"], r["record_key"]) not in gone]
            for start in range(0, len(left), CHUNK):
                chunk = left[start:start + CHUNK]
                done = _chunk(store, adapter, run_id, rule, plan, chunk, together, closed,
                              apply, tables)
                for row in done.rows:
                    gone.add((row.table, key_text(row.key)))
                    entry["restored"][row.table] = entry["restored"].get(row.table, 0) + 1
                    if apply:
                        done_as = "anonymized" if row.action == "anonymize" else "deleted"
                        entry[done_as][row.table] = entry[done_as].get(row.table, 0) + 1
                for rec, why in done.kept:
                    kept[rec.table][why.value] += 1
    finally:
        entry["left_alone"] = {t: dict(sorted(c.items())) for t, c in sorted(kept.items())}
        forget_marks(adapter, closed, log)


def _chunk(store: AuditStore, adapter: Adapter, run_id: str, rule: Rule, plan: Plan,
           chunk: list[dict[str, Any]], together: bool, closed: list[str], apply: bool,
           tables: dict[str, dict[str, dict[str, Any]]]) -> Replayed:
    recorded = [_recorded(r) for r in chunk]
    if not apply:
        return adapter.replay(plan, recorded, None)
    batch_id = new_batch_id(marked=not together)

    def hook(batch: Batch, conn: Any) -> None:
        if not batch.rows:
            return
        # One entry per table and recorded run it repeats (or "with its parent").
        groups: dict[tuple[str, str | None], list[Any]] = defaultdict(list)
        for row in batch.rows:
            origin = tables.get(row.table, {}).get(key_text(row.key))
            groups[(row.table, origin["run_id"] if origin else None)].append(row)
        at, reading = now_text(), records.Reading.of(plan)
        entries = []
        for (_table, origin_run), rows in groups.items():
            extra = {"replay_of": origin_run} if origin_run else {"replay_with_parent": True}
            for removed in records.from_rows(rows):
                entries.append(records.entry(run_id, rule.name, rule.source, batch_id, removed,
                                             reading, at, extra))
        if together:
            entries.append(store.mark(run_id, rule.name, batch_id, "batch_committed"))
        store.append(entries, conn if together else None)

    done = adapter.replay(plan, recorded, hook, None if together else batch_id)
    if done.rows and not together:
        store.append([store.mark(run_id, rule.name, batch_id, "batch_committed")])
        closed.append(batch_id)
    return done
