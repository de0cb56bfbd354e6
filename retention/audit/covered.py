"""What runs read from the store, checked against the chain: legal holds and run records.

``retention_holds`` and ``retention_runs`` are conveniences; the chain is the
evidence. Placing and releasing a hold are chained entries (``hold_added`` with the
whole hold, ``hold_released``), and so are ``run_started`` and ``run_finished``.
Runs read holds through :func:`holds` (built from the chained entries, each entry's
hash and link to its predecessor rechecked, and the table compared with them), so an
edit of ``retention_holds`` makes a run refuse instead of deleting a held record.
:func:`check_runs` and :func:`check_holds` are what ``audit verify`` adds to the chain
walk; :func:`last_runs` gives each rule's last enforced run from checked records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from retention import secrets
from retention.audit import chain
from retention.audit.schema import head, log, runs
from retention.audit.schema import holds as holds_table
from retention.audit.store import AuditStore
from retention.errors import AuditError

NO_RUN = "-"  # the run_id of entries made outside a run (hold changes)
HOLD_KINDS = ("hold_added", "hold_released")
HOLD_FIELDS = ("rule", "record_key", "reason", "placed_by", "placed_at", "until",
               "released_at", "released_by")
LINK_CHUNK = 500  # predecessors looked up per query


def _entries(store: AuditStore, where: Iterable[Any]) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            sa.select(log).where(*where).order_by(log.c.seq))]


def _checked(store: AuditStore, entries: list[dict[str, Any]]) -> str | None:
    """The first entry whose hash, or link to the entries before and after it (or to the
    chain head when it is the last), does not hold, as a problem."""
    wanted = sorted({s for e in entries for s in (e["seq"] - 1, e["seq"] + 1) if s > 0})
    hashes: dict[int, tuple[str, str]] = {}  # seq -> (hash, prev_hash)
    with store.engine.connect() as conn:
        # The head first: an entry appended after this read is not asked for, one before
        # it is found below (entries and the head are written in one transaction).
        end = conn.execute(sa.select(head.c.seq, head.c.hash).where(head.c.id == 1)).first()
        for start in range(0, len(wanted), LINK_CHUNK):
            chunk = wanted[start:start + LINK_CHUNK]
            hashes.update((int(s), (str(h), str(p))) for s, h, p in conn.execute(
                sa.select(log.c.seq, log.c.hash, log.c.prev_hash).where(log.c.seq.in_(chunk))))
    for entry in entries:
        seq, name = entry["seq"], f"audit entry {entry['seq']} ({entry['kind']})"
        if chain.entry_hash(entry) != entry["hash"]:
            return f"{name} is altered"
        before = chain.GENESIS if seq == 1 else hashes.get(seq - 1, ("", ""))[0]
        if entry["prev_hash"] != before:
            return f"{name} is not linked to the entry before it"
        after = hashes.get(seq + 1)
        if end is not None and int(end[0]) == seq:  # the last entry: the head names it
            linked = str(end[1]) == entry["hash"]
        else:
            linked = after is not None and after[1] == entry["hash"]
        if not linked:
            return f"{name} is not linked to the entry after it (or the chain head)"
    return None


# -- legal holds --------------------------------------------------------------------------


def chained_holds(store: AuditStore) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every hold as the chain records it, by id (all policies), and the problems found."""
    entries = _entries(store, (log.c.run_id == NO_RUN, log.c.kind.in_(HOLD_KINDS)))
    problem = _checked(store, entries)
    problems = [problem] if problem else []
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        detail = json.loads(entry["detail"] or "{}")
        if entry["kind"] == "hold_added":
            found[detail["hold_id"]] = {
                "hold_id": detail["hold_id"], "policy": detail["policy"],
                "rule": detail["rule"], "record_key": entry["record_key"],
                "reason": detail["reason"], "placed_by": detail["placed_by"],
                "placed_at": detail["placed_at"], "until": detail.get("until"),
                "released_at": None, "released_by": None}
        elif detail.get("hold_id") in found:
            found[detail["hold_id"]].update(released_at=entry["at"],
                                            released_by=detail.get("released_by"))
        else:
            problems.append(f"audit entry {entry['seq']} releases hold "
                            f"{detail.get('hold_id')!r}, which the chain never placed")
    return found, problems


def _same(table: Mapping[str, Any], chained: Mapping[str, Any]) -> bool:
    def clean(value: Any) -> Any:
        return secrets.scrub(value) if isinstance(value, str) else value

    return all(clean(table[f]) == clean(chained[f]) for f in HOLD_FIELDS)


def check_holds(store: AuditStore, policy: str | None = None
                ) -> tuple[list[dict[str, Any]], list[str]]:
    """The holds (of ``policy``, or all) from the chain, and every way ``retention_holds``
    differs from them: a row edited, added or removed."""
    chained, problems = chained_holds(store)
    stmt = sa.select(holds_table)
    if policy is not None:
        stmt = stmt.where(holds_table.c.policy == policy)
        chained = {k: v for k, v in chained.items() if v["policy"] == policy}
    with store.engine.connect() as conn:
        table = {r.hold_id: dict(r._mapping) for r in conn.execute(stmt)}
    for hold_id, row in table.items():
        if hold_id not in chained:
            problems.append(f"hold {hold_id!r} in retention_holds was never placed in the "
                            "chain")
        elif row["policy"] != chained[hold_id]["policy"] or not _same(row, chained[hold_id]):
            problems.append(f"hold {hold_id!r} in retention_holds differs from its chained "
                            "entries")
    problems += [f"hold {hold_id!r} placed in the chain is missing from retention_holds"
                 for hold_id in chained if hold_id not in table]
    ordered = sorted(chained.values(), key=lambda h: (h["placed_at"], h["hold_id"]))
    return ordered, problems


def holds(store: AuditStore, policy: str) -> list[dict[str, Any]]:
    """The holds of ``policy`` as the chain records them (oldest first), as table rows.

    Raises :class:`AuditError` (exit 1) when ``retention_holds`` or a hold entry does not
    match the chain: a run must not decide what is held from an edited table."""
    found, problems = check_holds(store, policy)
    if problems:
        raise AuditError(f"legal holds do not match the audit chain: {problems[0]} (see "
                         "'retention audit verify'); nothing was changed", exit_code=1)
    return found


# -- run records --------------------------------------------------------------------------


def _run_fields(started: Mapping[str, Any] | None, finished: Mapping[str, Any] | None
                ) -> dict[str, Any]:
    """What ``retention_runs`` must hold for a run, from its chained entries."""
    out: dict[str, Any] = {}
    if started is not None:
        detail = json.loads(started["detail"] or "{}")
        out.update(policy=detail.get("policy"), policy_version=detail.get("version"),
                   policy_sha256=detail.get("policy_sha256"), mode=detail.get("mode"),
                   as_of=detail.get("as_of"), started_at=started["at"])
    if finished is None:
        out.update(finished_at=None, status=None, summary=None)
    else:
        detail = json.loads(finished["detail"] or "{}")
        out.update(finished_at=finished["at"], status=detail.get("status"),
                   summary=detail.get("rules"))
    return out


def _differs(row: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    differs = []
    for name, value in expected.items():
        stored = row[name]
        if name == "summary" and stored is not None:
            stored = json.loads(stored)
        if stored != value:
            differs.append(name)
    return differs


def check_runs(store: AuditStore) -> list[str]:
    """Every way ``retention_runs`` differs from the chained run_started/run_finished."""
    entries = _entries(store, (log.c.kind.in_(("run_started", "run_finished")),))
    started = {e["run_id"]: e for e in entries if e["kind"] == "run_started"}
    finished = {e["run_id"]: e for e in entries if e["kind"] == "run_finished"}
    problems = []
    with store.engine.connect() as conn:
        table = {r.run_id: dict(r._mapping) for r in conn.execute(sa.select(runs))}
    for run_id, row in table.items():
        if run_id not in started:
            problems.append(f"run {run_id} in retention_runs has no run_started entry")
            continue
        differs = _differs(row, _run_fields(started[run_id], finished.get(run_id)))
        if differs:
            problems.append(f"run {run_id} in retention_runs differs from its chained "
                            f"entries in {', '.join(differs)}")
    problems += [f"run {run_id} of the chain (entry {e['seq']}) is missing from retention_runs"
                 for run_id, e in started.items() if run_id not in table]
    return problems


def run_problem(store: AuditStore, run_id: str) -> str | None:
    """How the finished run ``run_id`` in ``retention_runs`` differs from its chained
    entries (or those entries from the chain), or None when they agree."""
    entries = _entries(store, (log.c.run_id == run_id,
                               log.c.kind.in_(("run_started", "run_finished"))))
    problem = _checked(store, entries)
    by_kind = {e["kind"]: e for e in entries}
    row = store.run(run_id)
    if row is None:
        return "not in retention_runs"
    differs = _differs(row, _run_fields(by_kind.get("run_started"), by_kind.get("run_finished")))
    if problem or differs:
        return problem or f"differs in {', '.join(differs)}"
    return None if "run_finished" in by_kind else "no run_finished entry"


def last_runs(store: AuditStore, policy: str, rules: set[str] | None = None
              ) -> dict[str, dict[str, Any]]:
    """Per rule, its last enforced (non-dry) run: ``{"run_id", "at", "status", "deleted",
    "anonymized"}`` (SPEC's ``last_run``), ``at`` being when the run finished.

    Read from ``retention_runs`` and checked against the run's chained ``run_finished``
    entry. Raises :class:`AuditError` (exit 1) when the two disagree."""
    found = store.last_rule_runs(policy, rules)
    for problem in unvouched(store, found).values():
        raise AuditError(problem, exit_code=1)
    return {rule: {"run_id": part["run_id"], "at": part.get("finished_at"),
                   "status": part.get("status"), "deleted": part.get("deleted", 0),
                   "anonymized": part.get("anonymized", 0)}
            for rule, part in found.items()}


def unvouched(store: AuditStore, found: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Per rule of ``found`` (:meth:`AuditStore.last_rule_runs`) whose run row differs from
    its chained entries, why (each run checked once)."""
    problems: dict[str, str | None] = {}
    out: dict[str, str] = {}
    for rule, part in found.items():
        run_id = str(part["run_id"])
        if run_id not in problems:
            problems[run_id] = run_problem(store, run_id)
        if problems[run_id]:
            out[rule] = (f"run {run_id} in retention_runs does not match the audit chain: "
                         f"{problems[run_id]} (see 'retention audit verify')")
    return out
