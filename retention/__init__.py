"""retention: make the retention promises of a privacy statement true.

The public API, for programs that embed retention instead of calling the CLI::

    from retention import load_policy, run
    outcome = run(load_policy("policies/webshop.yaml"), as_of)
"""

from __future__ import annotations

from retention.audit import AuditStore, RunInfo, Verdict
from retention.errors import AdapterError, AuditError, PolicyError, RetentionError, UsageError
from retention.policy.load import load_policy, load_policy_text
from retention.policy.rules import Policy, Rule
from retention.report.build import build as build_report
from retention.run.engine import run
from retention.run.outcome import RuleOutcome, RunOutcome, Status

__all__ = [
    "AdapterError",
    "AuditError",
    "AuditStore",
    "Policy",
    "PolicyError",
    "RetentionError",
    "Rule",
    "RuleOutcome",
    "RunInfo",
    "RunOutcome",
    "Status",
    "UsageError",
    "Verdict",
    "build_report",
    "load_policy",
    "load_policy_text",
    "run",
]
