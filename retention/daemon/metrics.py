"""Prometheus metrics: served by the daemon (--metrics-port) or written for
node_exporter's textfile collector by a one-shot run (--metrics-file)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client import write_to_textfile as _write

from retention.run.outcome import RunOutcome, Status


class Metrics:
    """One registry per process; :meth:`observe` each run outcome."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["policy", "rule"]
        self.deleted = Counter("retention_rows_deleted", "Rows deleted", labels,
                               registry=self.registry)
        self.anonymized = Counter("retention_rows_anonymized", "Rows anonymized", labels,
                                  registry=self.registry)
        self.held = Gauge("retention_rows_held", "Due rows under a legal hold", labels,
                          registry=self.registry)
        self.backlog = Gauge("retention_backlog_rows", "Rows due when the run started",
                             labels, registry=self.registry)
        self.duration = Gauge("retention_run_duration_seconds", "Duration of the last run",
                              labels, registry=self.registry)
        self.success = Gauge("retention_last_success_timestamp_seconds",
                             "Unix time of the last successful run", labels,
                             registry=self.registry)
        self.failures = Counter("retention_rule_failures", "Runs that ended failed or stopped",
                                labels, registry=self.registry)

    def observe(self, outcome: RunOutcome, seconds: float) -> None:
        for rule in outcome.rules:
            labels = (outcome.policy, rule.rule)
            self.deleted.labels(*labels).inc(rule.deleted)
            self.anonymized.labels(*labels).inc(rule.anonymized)
            self.held.labels(*labels).set(rule.held)
            self.backlog.labels(*labels).set(rule.due)
            self.duration.labels(*labels).set(seconds)
            if rule.status is Status.OK:
                self.success.labels(*labels).set(time.time())
            elif rule.status in (Status.FAILED, Status.STOPPED):
                self.failures.labels(*labels).inc()

    def serve(self, port: int, addr: str) -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def write(self, path: str) -> None:
        _write(path, self.registry)
