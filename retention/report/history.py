"""What the audit store remembers for the report: each rule's last enforced run, and what
changed in the policy since then.

Read-only: the store is only peeked at (a missing store is no history, never a new
store), and every rule's last run comes from one query over the run records.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from retention.audit.schema import runs

if TYPE_CHECKING:
    from retention.audit.store import AuditStore
    from retention.policy.rules import Policy

# The policy history's reader, when the audit room has one: called as
# ``changes_between(store, old_sha256, policy)`` it returns the readable lines that say
# what changed from the stored version ``old_sha256`` to ``policy`` ("rule 'orders':
# retain '...' -> '...'"), or None when it does not know that version.
HISTORY_MODULE = "retention.audit.policies"
HISTORY_FUNCTION = "changes_between"

Differ = Callable[["AuditStore", str, "Policy"], "list[str] | None"]


def last_runs(store: AuditStore | None, policy: Policy, rules: Iterable[str]
              ) -> dict[str, dict[str, Any]]:
    """Per rule, its part of the latest finished enforcing run (not a dry run) of ``policy``.

    ``{"run_id", "at" (started), "finished_at", "as_of", "status", "deleted", "anonymized",
    "children", "policy_sha256"}``; rules that never ran are missing. One query, read
    newest first until every rule is found.
    """
    wanted = set(rules)
    found: dict[str, dict[str, Any]] = {}
    if store is None or not wanted:
        return found
    stmt = (select(runs.c.run_id, runs.c.started_at, runs.c.finished_at, runs.c.as_of,
                   runs.c.policy_sha256, runs.c.summary)
            .where(runs.c.policy == policy.name, runs.c.mode == "run",
                   runs.c.summary.is_not(None))
            .order_by(runs.c.started_at.desc(), runs.c.run_id))
    with store.engine.connect() as conn:
        for run in conn.execution_options(yield_per=200).execute(stmt):
            for part in json.loads(run.summary or "[]"):
                name = part.get("rule")
                if name in wanted and name not in found:
                    found[name] = {
                        "run_id": run.run_id, "at": run.started_at,
                        "finished_at": run.finished_at, "as_of": run.as_of,
                        "status": part.get("status"), "deleted": part.get("deleted", 0),
                        "anonymized": part.get("anonymized", 0),
                        "children": part.get("children") or {},
                        "policy_sha256": run.policy_sha256}
            if wanted <= set(found):
                break
    return found


def changes_since(store: AuditStore | None, policy: Policy,
                  last: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Per rule, what changed in the policy since its last run (nothing when unchanged).

    The lines come from the policy history (``HISTORY_MODULE``) when the audit room has
    it and knows the old version: those about the rule itself and those about the whole
    policy. Otherwise a changed file is said as such, by its sha256.
    """
    differ = _differ()
    out: dict[str, list[str]] = {}
    diffs: dict[str, list[str] | None] = {}
    for rule, run in last.items():
        old = run.get("policy_sha256")
        if not old or old == policy.sha256 or store is None:
            continue
        if old not in diffs:
            diffs[old] = _diff(differ, store, old, policy)
        lines = diffs[old]
        if lines is None:
            out[rule] = [f"the policy file changed since this run (sha256 {old[:12]} -> "
                         f"{policy.sha256[:12]})"]
        else:
            mine = [line for line in lines if _about(line, rule)]
            if mine:
                out[rule] = mine
    return out


def _about(line: str, rule: str) -> bool:
    """A change line about ``rule`` or about the policy as a whole (no rule named)."""
    return line.startswith(f"rule '{rule}'") or not line.startswith("rule '")


def _differ() -> Differ | None:
    try:
        module = importlib.import_module(HISTORY_MODULE)
    except ImportError:
        return None
    found: Differ | None = getattr(module, HISTORY_FUNCTION, None)
    return found


def _diff(differ: Differ | None, store: AuditStore, old: str, policy: Policy
          ) -> list[str] | None:
    if differ is None:
        return None
    try:
        return differ(store, old, policy)
    except Exception:  # a history that cannot be read is no history; the report goes on
        return None
