"""Close batches a crashed or cut-off run left open, before anything new happens.

A batch whose records were written as intents but never marked committed or
rolled back is settled from proof of whether its transaction committed: its
commit marker in the target (:meth:`Adapter.committed`, which also fences a
batch that did not commit so that it never can). Committed -> every intent
happened (they are exactly the rows the transaction changed); not committed ->
none did. Whether a row with a recorded key exists now proves nothing: the
application may have written the same key again, or deleted a row itself.

Batches left open by a version without markers (their ids lack the ``mark-``
prefix) are still checked record by record, as that version did, and logged
with ``proof="rows"``: a deleted row is gone; an anonymized row holds its
anonymized form.

The open batch is marked ``batch_rolled_back`` and the records that did happen
are appended again in a new, committed batch of the reconciling run, each once
(compact ``records`` entries as compact entries, per-row ``record`` entries of
earlier versions as such); then the markers of the closed batches are pruned. Only the holder of the
rule's lease reconciles, so a live runner's batch in flight is never touched.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import Any

import structlog
from sqlalchemy import select

from retention.adapters import anonymize
from retention.adapters.protocol import Adapter
from retention.audit import records
from retention.audit.schema import log as log_table
from retention.audit.schema import runs
from retention.audit.store import AuditStore, now_text
from retention.policy.rules import Policy

log = structlog.get_logger("retention.run.reconcile")

_COPIED = ("source", "table_name", "record_key", "action", "event_at", "due_at", "rule")
MARKED = "mark-"  # prefix of the ids of batches that write a commit marker in the target


def new_batch_id(marked: bool) -> str:
    """A new batch id; ``marked`` when the batch writes a commit marker in the target."""
    return (MARKED if marked else "") + uuid.uuid4().hex


def is_marked(batch_id: str) -> bool:
    """Whether the batch wrote a commit marker, so that its commit can be proven."""
    return batch_id.startswith(MARKED)


def reconcile(store: AuditStore, policy: Policy, adapter: Adapter, run_id: str, rule: str,
              batch_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Resolve the open batches of ``rule``; return the records confirmed as done.

    Raises what the adapter or the store raise when the proof cannot be read (the
    batches then stay open for the next run).
    """
    found = _open_batches(store, policy.name, rule, batch_ids)
    source = policy.rule(rule).source
    unprovable = [b for b, entries in found.items()
                  if is_marked(b) and entries[0]["source"] != source]
    for batch_id in unprovable:  # its marker is in another source's database
        log.warning("batch_left_open", batch_id=batch_id, rule=rule,
                    reason=f"written for source {found.pop(batch_id)[0]['source']!r}, "
                           f"the rule's source is now {source!r}")
    marked = [b for b in found if is_marked(b)]
    proven = adapter.committed(marked) if marked else set()
    confirmed: list[dict[str, Any]] = []
    closed: list[str] = []
    readers = records.Readers()
    try:
        for batch_id, entries in found.items():
            intended = _records(entries, readers)
            if is_marked(batch_id):
                done, proof = (intended if batch_id in proven else []), "marker"
            else:
                done, proof = _done(policy, adapter, rule, intended), "rows"
            appended = [store.mark(entries[0]["run_id"], rule, batch_id, "batch_rolled_back")]
            if done:
                new_id = new_batch_id(marked=False)  # committed in one append: no marker
                appended += _again(entries, done, run_id, new_id, batch_id)
                appended.append(store.mark(run_id, rule, new_id, "batch_committed"))
            store.append(appended)
            confirmed += done
            closed += [batch_id] if is_marked(batch_id) else []
            log.warning("batch_reconciled", batch_id=batch_id, rule=rule, proof=proof,
                        confirmed=len(done), rolled_back=len(intended) - len(done))
    finally:
        forget_marks(adapter, closed, log.bind(rule=rule))
    return confirmed


def _records(entries: list[dict[str, Any]], readers: records.Readers
             ) -> list[dict[str, Any]]:
    """The intended records of a batch's entries, each knowing its entry and place."""
    found = []
    for entry in entries:
        for index, rec in enumerate(records.expand(entry, readers)):
            rec["entry_seq"], rec["entry_index"] = entry["seq"], index
            found.append(rec)
    return found


def _again(entries: list[dict[str, Any]], done: list[dict[str, Any]], run_id: str,
           new_id: str, batch_id: str) -> list[dict[str, Any]]:
    """The entries recording ``done`` again in batch ``new_id`` of the reconciling run."""
    chosen: dict[int, list[int]] = defaultdict(list)
    for rec in done:
        chosen[rec["entry_seq"]].append(rec["entry_index"])
    again: list[dict[str, Any]] = []
    at = now_text()
    for entry in entries:
        indexes = chosen.get(entry["seq"])
        if not indexes:
            continue
        if entry["kind"] == records.KIND:
            compact = records.Compact.parse(entry["detail"])
            again.append(records.entry(
                run_id, entry["rule"], entry["source"], new_id,
                compact.subset(indexes, entry["table_name"], entry["action"]),
                compact.reading, at, {**compact.extra, "recovered_from": batch_id}))
        else:
            again.append({"kind": records.LEGACY_KIND, "run_id": run_id, "batch_id": new_id,
                          "detail": json.dumps({"recovered_from": batch_id}),
                          **{f: entry[f] for f in _COPIED}})
    return again


def forget_marks(adapter: Adapter, batch_ids: list[str], logger: Any) -> None:
    """Prune the commit markers of batches closed in the audit store, and empty the list.

    Never raises: a marker that cannot be pruned now is a harmless leftover of a
    closed batch (no reconciliation asks for it again).
    """
    if not batch_ids:
        return
    try:
        adapter.forget(batch_ids)
    except Exception as exc:
        logger.warning("marks_left", batches=len(batch_ids), error=type(exc).__name__)
    batch_ids.clear()


def _open_batches(store: AuditStore, policy: str, rule: str, batch_ids: list[str] | None
                  ) -> dict[str, list[dict[str, Any]]]:
    closed = select(log_table.c.batch_id).where(
        log_table.c.kind.in_(("batch_committed", "batch_rolled_back")))
    of_policy = select(runs.c.run_id).where(runs.c.policy == policy)
    stmt = select(log_table).where(
        log_table.c.kind.in_(records.KINDS), log_table.c.rule == rule,
        log_table.c.run_id.in_(of_policy), log_table.c.batch_id.not_in(closed))
    if batch_ids is not None:
        stmt = stmt.where(log_table.c.batch_id.in_(batch_ids))
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with store.engine.connect() as conn:
        for row in conn.execute(stmt.order_by(log_table.c.seq)):
            found[row.batch_id].append(dict(row._mapping))
    return found


def _done(policy: Policy, adapter: Adapter, rule: str, intended: list[dict[str, Any]]
          ) -> list[dict[str, Any]]:
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in intended:
        by_table[(rec["table_name"], rec["action"])].append(rec)
    done: list[dict[str, Any]] = []
    for (table, action), recs in by_table.items():
        keys = [json.loads(r["record_key"]) for r in recs]
        if action == "delete":
            present = {_k(k) for k in adapter.exists(table, keys)}
            done += [r for r, k in zip(recs, keys, strict=True) if _k(k) not in present]
            continue
        columns = policy.rule(rule).action.columns
        rows = {_k({c: row[c] for c in keys[0]}): row
                for row in adapter.read(table, keys, [a.column for a in columns])}
        for rec, key in zip(recs, keys, strict=True):
            row = rows.get(_k(key))
            if row is not None and all(
                    anonymize.same(row[a.column], anonymize.apply(a, row[a.column]))
                    for a in columns):
                done.append(rec)
    return done


def _k(key: dict[str, Any]) -> str:
    return json.dumps({k: str(v) for k, v in key.items()}, sort_keys=True)
