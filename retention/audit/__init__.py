"""The audit store: runs, records, the hash chain and its export."""

from __future__ import annotations

from retention.audit.chain import Verdict
from retention.audit.store import AuditStore, RunInfo

__all__ = ["AuditStore", "RunInfo", "Verdict"]
