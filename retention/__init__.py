"""retention: make the retention promises of a privacy statement true.

The public API, for programs that embed retention instead of calling the CLI::

    from retention import load_policy, run
    outcome = run(load_policy("policies/webshop.yaml"), as_of)

Each name is imported when it is first used (PEP 562), so ``import retention.cli``
or a command's ``--help`` does not load the engine, SQLAlchemy and the drivers.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retention.audit import AuditStore, RunInfo, Verdict
    from retention.errors import (
        AdapterError,
        AuditError,
        PolicyError,
        RetentionError,
        UsageError,
    )
    from retention.policy.load import load_policy, load_policy_text
    from retention.policy.rules import Policy, Rule
    from retention.report.build import build as build_report
    from retention.run.engine import run
    from retention.run.outcome import RuleOutcome, RunOutcome, Status

# public name -> (module, name there)
_PUBLIC = {
    "AdapterError": ("retention.errors", "AdapterError"),
    "AuditError": ("retention.errors", "AuditError"),
    "AuditStore": ("retention.audit", "AuditStore"),
    "Policy": ("retention.policy.rules", "Policy"),
    "PolicyError": ("retention.errors", "PolicyError"),
    "RetentionError": ("retention.errors", "RetentionError"),
    "Rule": ("retention.policy.rules", "Rule"),
    "RuleOutcome": ("retention.run.outcome", "RuleOutcome"),
    "RunInfo": ("retention.audit", "RunInfo"),
    "RunOutcome": ("retention.run.outcome", "RunOutcome"),
    "Status": ("retention.run.outcome", "Status"),
    "UsageError": ("retention.errors", "UsageError"),
    "Verdict": ("retention.audit", "Verdict"),
    "build_report": ("retention.report.build", "build"),
    "load_policy": ("retention.policy.load", "load_policy"),
    "load_policy_text": ("retention.policy.load", "load_policy_text"),
    "run": ("retention.run.engine", "run"),
}

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


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'retention' has no attribute {name!r}")
    module, attribute = _PUBLIC[name]
    found = getattr(importlib.import_module(module), attribute)
    globals()[name] = found  # imported once
    return found


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


class _Package(types.ModuleType):
    """``retention.run`` is the public function, not the subpackage of the same name:
    importing ``retention.run.engine`` makes the import system bind the subpackage
    here, which this property ignores (import run modules with ``from retention.run
    import engine``)."""

    @property
    def run(self) -> Any:
        return __getattr__("run") if "run" not in globals() else globals()["run"]

    @run.setter
    def run(self, value: Any) -> None:
        if not isinstance(value, types.ModuleType):
            globals()["run"] = value


sys.modules[__name__].__class__ = _Package
