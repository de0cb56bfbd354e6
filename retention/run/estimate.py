"""A dry run's forecast per rule: how many batches, and how long, from a measured rate.

``batches`` is the number of batches that change rows: batches are sized to take
``batch_seconds`` each (:mod:`retention.run.sizing`), starting small and growing
to at most ``batch_size``, so the count follows the sizer at the measured rate
(below); with no rate yet, the fewest batches the sizer could take (each growing
as fast as it may). The time can only come from experience: every run
records per rule the rows it changed and the seconds its batches took
(``batch_seconds``, pauses and replica waits left out); the most recent run of the
rule that changed rows, among the last ``LOOKBACK`` runs in the audit store, gives
``rows_per_second`` and ``rate_from`` (its run id), if its ``retention_runs`` row agrees
with its chained entries (an edited row gives no rate: unknown). Then

    expected_seconds = due / rows_per_second + pause_between_batches * (batches - 1)

Replica waits cannot be foreseen and are not included. With no such run (a new
rule, a new audit store) the rate and the time are null: unknown, never guessed.
With ``max_runtime``, ``runs_needed`` says how many runs the backlog takes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from retention.audit import covered
from retention.audit.store import AuditStore
from retention.plan import Plan
from retention.run import sizing

LOOKBACK = 200  # recent runs searched for a rule's measured rate


@dataclass(frozen=True, slots=True)
class Rate:
    rows_per_second: float
    run_id: str


def measured_rates(store: AuditStore | None, policy: str, rules: Iterable[str]
                   ) -> dict[str, Rate]:
    """Per rule, the rate of its most recent run that changed rows (see the module)."""
    wanted = set(rules)
    found: dict[str, Rate] = {}
    if store is None:
        return found
    for run in store.runs(LOOKBACK):
        if run["policy"] != policy or run["mode"] != "run" or not run.get("summary"):
            continue
        for rule in json.loads(run["summary"]):
            name = rule.get("rule")
            rows = (rule.get("deleted") or 0) + (rule.get("anonymized") or 0)
            seconds = rule.get("batch_seconds") or 0
            if name in wanted and name not in found and rows > 0 and seconds > 0:
                found[name] = Rate(rows / seconds, str(run["run_id"]))
        if wanted <= set(found):
            break
    vouched = {run_id: covered.run_problem(store, run_id) is None
               for run_id in {rate.run_id for rate in found.values()}}
    return {name: rate for name, rate in found.items() if vouched[rate.run_id]}


def forecast(plan: Plan, due: int, rate: Rate | None, max_runtime: float | None
             ) -> dict[str, Any]:
    """The fields a dry run adds to a rule's result."""
    batches = sizing.batches(due, plan.batch_size, plan.batch_seconds,
                             rate.rows_per_second if rate else None)
    out: dict[str, Any] = {"batches": batches, "expected_seconds": None,
                           "rows_per_second": None, "rate_from": None}
    if rate is None:
        return out
    expected = due / rate.rows_per_second + plan.pause_between_batches * max(0, batches - 1)
    out.update(expected_seconds=round(expected, 1),
               rows_per_second=round(rate.rows_per_second, 3), rate_from=rate.run_id)
    if max_runtime is not None and batches:
        out["runs_needed"] = max(1, math.ceil(expected / max_runtime))
    return out


def shown(estimate: dict[str, Any] | None) -> str:
    """The estimate for a table cell: ``~12 s (240 rows/s)``, or why it is unknown."""
    if not estimate:
        return ""
    if not estimate["batches"]:
        return "nothing to do"
    if estimate["expected_seconds"] is None:
        return "unknown (no earlier run measured a rate)"
    rate = estimate["rows_per_second"]
    text = f"~{_duration(estimate['expected_seconds'])} ({rate:,.0f} rows/s)" if rate >= 10 \
        else f"~{_duration(estimate['expected_seconds'])} ({rate:.2g} rows/s)"
    if estimate.get("runs_needed", 1) > 1:
        text += f", {estimate['runs_needed']} runs at max_runtime"
    return text


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
