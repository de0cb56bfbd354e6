"""``retention daemon``: one scheduled job per rule, with the manners operators expect.

* Jobs coalesce, never overlap themselves, and a slot missed while the daemon
  was down runs once at start-up when it is within the misfire grace time.
* Each firing claims its slot in the audit store first, so replicas (and a
  repeated firing) run each rule once per slot; the rule's lease keeps two
  runs of one rule from overlapping.
* SIGTERM/SIGINT: the current batch commits, the run is recorded as
  ``interrupted``, the daemon exits 0. SIGHUP: the policy is reloaded and
  validated; a bad file is logged and the old policy kept; only changed rules
  are rescheduled.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
import uuid
from types import FrameType
from typing import Any

import structlog

from retention.audit import covered, daemons
from retention.audit.store import AuditStore, now_text
from retention.daemon import scheduler
from retention.daemon.metrics import Metrics
from retention.errors import RetentionError
from retention.instants import utcnow
from retention.policy import schedule as schedules
from retention.policy.load import load_policy
from retention.policy.rules import Policy, Rule
from retention.run import engine, stop
from retention.run.outcome import Status

DEFAULT_MISFIRE_GRACE = 3600  # seconds a missed slot may still run late (APScheduler: 1 s)
log = structlog.get_logger("retention.daemon.daemon")


class Daemon:
    def __init__(self, policy_path: str, misfire_grace: int = DEFAULT_MISFIRE_GRACE,
                 metrics: Metrics | None = None) -> None:
        self.path = policy_path
        self.grace = misfire_grace
        self.metrics = metrics
        self.daemon_id = str(uuid.uuid4())
        self.started_at = now_text()
        self.reload_requested = stop.Flag()  # set by SIGHUP: no lock in a handler
        self.policy = self._load()
        self.store = AuditStore(self.policy.audit_url)
        self.log = log.bind(policy=self.policy.name, daemon_id=self.daemon_id)
        self.sched = scheduler.background_scheduler(self.policy.timezone, misfire_grace)

    def _load(self) -> Policy:
        """Load and validate the policy file against the live schemas."""
        policy = load_policy(self.path)
        with engine.Session(policy) as session:
            engine.compile_plans(session, policy.rules, utcnow())
        return policy

    # -- jobs ---------------------------------------------------------------------

    def _add(self, rule: Rule, catch_up: bool) -> None:
        trig = scheduler.trigger(schedules.parse(rule.schedule), self.policy.timezone)
        extra: dict[str, Any] = {}
        if catch_up and self._missed(rule, trig):
            extra["next_run_time"] = utcnow()
        self.sched.add_job(self._fire, trig, args=[rule.name], id=rule.name, name=rule.name,
                           replace_existing=True, **extra)

    def _missed(self, rule: Rule, trig: Any) -> bool:
        """Whether the latest slot within the grace time passed without a run of ``rule``."""
        now = utcnow()
        slot = scheduler.previous_fire(trig, now, dt.timedelta(seconds=self.grace))
        if slot is None:
            return False
        last = self.store.last_rule_runs(self.policy.name, {rule.name}).get(rule.name)
        if last is None or last.get("status") == Status.INTERRUPTED.value:
            return True
        problem = covered.run_problem(self.store, last["run_id"])
        if problem:  # a run record the chain does not vouch for: do not trust it ran
            self.log.error("run_record_not_in_chain", rule=rule.name, run_id=last["run_id"],
                           problem=problem)
            return True
        return dt.datetime.fromisoformat(last["started_at"]) < slot

    def _fire(self, rule_name: str) -> None:
        policy = self.policy
        rule = policy.rule(rule_name)
        rlog = self.log.bind(rule=rule_name)
        sched = schedules.parse(rule.schedule)
        trig = scheduler.trigger(sched, policy.timezone)
        now = utcnow()
        fired = scheduler.previous_fire(trig, now, dt.timedelta(seconds=self.grace + 60)) or now
        slot = scheduler.slot_key(sched, fired, policy.timezone)
        if not daemons.claim_slot(self.store, policy.name, rule_name, slot, self.daemon_id):
            rlog.info("slot_already_ran", slot=slot, detail="nothing to do")
            return
        started = time.monotonic()
        try:
            outcome = engine.run(policy, now, [rule_name])
        except RetentionError as exc:
            rlog.error("rule_failed", slot=slot, error=str(exc))
            return
        if self.metrics is not None:
            self.metrics.observe(outcome, time.monotonic() - started)
        if outcome.rules[0].status is Status.INTERRUPTED:  # unfinished: run it after restart
            daemons.release_slot(self.store, policy.name, rule_name, slot)
        rlog.info("slot_ran", slot=slot, run_id=outcome.run_id,
                  status=outcome.rules[0].status.value)

    def _beat(self) -> None:
        try:
            daemons.beat(self.store, self.daemon_id, self.policy.name, self.started_at)
        except Exception as exc:  # the store may be away for a moment; the next beat retries
            self.log.warning("heartbeat_failed", error=type(exc).__name__)

    # -- reload ---------------------------------------------------------------------

    def reload(self) -> None:
        """Reload the policy file; keep the old policy if the new one does not validate."""
        try:
            new = self._load()
        except RetentionError as exc:
            self.log.error("policy_reload_failed", error=str(exc), kept="previous policy")
            return
        except Exception as exc:
            self.log.error("policy_reload_failed", error=f"{type(exc).__name__}: {exc}",
                           kept="previous policy")
            return
        old = {r.name: r for r in self.policy.rules}
        moved = new.timezone != self.policy.timezone  # every wall-clock slot moves
        self.policy = new
        changed = []
        for rule in new.rules:
            if moved or old.get(rule.name) != rule:
                self._add(rule, catch_up=False)
                changed.append(rule.name)
        for name in set(old) - {r.name for r in new.rules}:
            self.sched.remove_job(name)
            changed.append(name)
        self.log.info("policy_reloaded", changed=sorted(changed))

    # -- running --------------------------------------------------------------------

    def run(self) -> int:
        """Schedule every rule and serve until SIGTERM/SIGINT; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        for rule in self.policy.rules:
            self._add(rule, catch_up=True)
        self.sched.add_job(self._beat, "interval", seconds=daemons.HEARTBEAT_SECONDS,
                           id="__heartbeat__", next_run_time=utcnow())
        self.sched.start()
        self.log.info("daemon_started", rules=[
            {"rule": j.id, "next_run": str(j.next_run_time)} for j in self.sched.get_jobs()
            if j.id != "__heartbeat__"])
        while not stop.requested.wait(1.0):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
        self.log.info("daemon_stopping")
        self.sched.shutdown(wait=True)  # the running batch commits, its run is 'interrupted'
        daemons.beat(self.store, self.daemon_id, self.policy.name, self.started_at,
                     stopped=True)
        self.store.close()
        self.log.info("daemon_stopped")
        return 0

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        stop.requested.set()

    def _on_hup(self, signum: int, _frame: FrameType | None) -> None:
        self.reload_requested.set()

