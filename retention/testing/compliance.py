"""The adapter compliance suite: what every adapter must do, as pytest tests.

Subclass :class:`AdapterCompliance` in a test module of your adapter's package and
override the ``make_store`` fixture: given records (a text key, an event instant
and a note), it creates a store holding exactly those records and returns a
:class:`Store` saying how a policy reaches them and how to read them back::

    from retention.testing.compliance import AdapterCompliance, Record, Store

    class TestMyAdapter(AdapterCompliance):
        supports_anonymize = True  # if a rule may anonymize the note

        @pytest.fixture
        def make_store(self, tmp_path):
            def make(records: list[Record]) -> Store:
                path = tmp_path / "records.jsonl"
                ...  # write the records
                return Store(source={"adapter": "myadapter", "path": str(path)},
                             rule={"table": "records"}, event="event_at",
                             keys=lambda: ...,  # the keys the store holds now
                             notes=lambda: ...)  # key -> note (anonymize only)
            return make

Every test runs the real engine (``retention.run``, ``build_report``) against the
store, with the audit log in a SQLite file of its own: selection exact at the cutoff
(to the microsecond, for hour and for calendar periods), batches that take every due
record and none more than the batch size, one audit entry per record with its key,
event and due instants, holds respected, anonymization applied once, and a batch cut
off by a crash before or after the store committed reconciled by the next run.
Needs pytest (``pip install retention[test]`` or your own).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from retention.actions import REDACTED
from retention.audit.store import AuditStore
from retention.policy.load import load_policy_text
from retention.policy.rules import Policy
from retention.report.build import build as build_report
from retention.run import engine, holds
from retention.run.outcome import RunOutcome

AS_OF = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)  # the instant every run is "now"
HOURS = 48  # "48 hours after EVENT": cutoff AS_OF - 48 h, to the microsecond
HOURS_CUTOFF = AS_OF - dt.timedelta(hours=HOURS)
# "1 day after EVENT" in UTC: events of June 13 are due from June 15 00:00, June 14's not
DAY_CUTOFF = dt.datetime(2026, 6, 13, 23, 59, 59, 999999, tzinfo=dt.UTC)
US = dt.timedelta(microseconds=1)
NOTE = "personal"  # every record's note before anonymization


@dataclass(frozen=True, slots=True)
class Record:
    """One record of the store: a text key, its event instant (aware) and a note."""

    key: str
    event_at: dt.datetime
    note: str = NOTE


@dataclass
class Store:
    """How a policy reaches the records ``make_store`` wrote, and how to read them back.

    ``source``: the source's entry in the policy (``{"adapter": ..., ...}``).
    ``rule``: rule keys that select the records (``table``, ``events``, ...).
    ``event``: the event the ``retain`` phrase names (a column or an ``events`` word).
    ``keys``: the keys of the records the store holds now.
    ``key_column``: the key's name in audit entries and holds.
    ``notes``: key -> note, for the anonymize test.
    ``anonymize``: the rule's ``action`` that anonymizes the note.
    """

    source: dict[str, Any]
    keys: Callable[[], set[str]]
    rule: dict[str, Any] = field(default_factory=dict)
    event: str = "event_at"
    key_column: str = "id"
    notes: Callable[[], dict[str, Any]] | None = None
    anonymize: dict[str, Any] = field(default_factory=lambda: {"anonymize": {"note": "redact"}})


MakeStore = Callable[[list[Record]], Store]


class _Crash(BaseException):
    """The process dies here (no ``except Exception`` catches it)."""


class AdapterCompliance:
    """Inherit, override ``make_store``; the tests below then run against your adapter."""

    supports_anonymize: ClassVar[bool] = False  # True: rules may anonymize the note

    @pytest.fixture
    def make_store(self) -> MakeStore:
        """Override: a function that creates a store holding exactly the given records."""
        raise NotImplementedError("override the make_store fixture (see the module doc)")

    # -- helpers --------------------------------------------------------------------

    @staticmethod
    def policy(tmp_path: Path, store: Store, retain: str, **rule: Any) -> Policy:
        """A policy with one rule ``records`` on ``store``; the audit log beside it."""
        body = {"source": "store", "retain": retain, "max_fraction": 1.0,
                **store.rule, **rule}
        doc = {"policy": "compliance", "version": "1", "timezone": "UTC",
               "sources": {"store": store.source},
               "audit": {"url": f"sqlite:///{tmp_path / 'compliance-audit.db'}"},
               "rules": {"records": body}}
        return load_policy_text(json.dumps(doc, indent=1, default=str),
                                str(tmp_path / "compliance.yaml"), env={})

    @staticmethod
    def run(policy: Policy, dry_run: bool = False) -> RunOutcome:
        return engine.run(policy, AS_OF, dry_run=dry_run)

    @staticmethod
    def audited(policy: Policy) -> list[dict[str, Any]]:
        """The committed record entries, keys decoded."""
        audit = AuditStore(policy.audit_url)
        try:
            return [{**r, "key": json.loads(r["record_key"])} for r in audit.records()]
        finally:
            audit.close()

    @staticmethod
    def check_chain(policy: Policy) -> None:
        audit = AuditStore(policy.audit_url)
        try:
            verdict = audit.verify()
            assert verdict.ok, verdict
            assert audit.open_batches() == [], "a batch was left open"
        finally:
            audit.close()

    def keys_audited(self, policy: Policy, store: Store) -> Counter[str]:
        return Counter(str(r["key"][store.key_column]) for r in self.audited(policy)
                       if r["rule"] == "records")

    # -- exact selection ----------------------------------------------------------------

    def test_a_record_at_the_cutoff_is_due_and_one_a_microsecond_later_is_not(
            self, make_store: MakeStore, tmp_path: Path) -> None:
        store = make_store([Record("before", HOURS_CUTOFF - US), Record("at", HOURS_CUTOFF),
                            Record("after", HOURS_CUTOFF + US),
                            Record("new", AS_OF - dt.timedelta(hours=1))])
        policy = self.policy(tmp_path, store, f"{HOURS} hours after {store.event}")
        report = build_report(policy, AS_OF, samples=10)
        assert report["rules"][0]["due"] == 2
        assert {str(s[store.key_column]) for s in report["rules"][0]["samples"]} == \
            {"before", "at"}
        outcome = self.run(policy)
        assert outcome.rules[0].status.value == "ok", outcome.rules[0].error
        assert outcome.rules[0].deleted == 2
        assert store.keys() == {"after", "new"}

    def test_a_calendar_period_ends_at_the_end_of_the_local_day(
            self, make_store: MakeStore, tmp_path: Path) -> None:
        store = make_store([Record("last", DAY_CUTOFF), Record("first", DAY_CUTOFF + US),
                            Record("old", DAY_CUTOFF - dt.timedelta(days=40))])
        policy = self.policy(tmp_path, store, f"1 day after {store.event}")
        assert build_report(policy, AS_OF)["rules"][0]["due"] == 2
        self.run(policy)
        assert store.keys() == {"first"}

    def test_a_dry_run_changes_nothing(self, make_store: MakeStore, tmp_path: Path) -> None:
        store = make_store([Record(f"r{i}", HOURS_CUTOFF - dt.timedelta(days=i))
                            for i in range(4)])
        policy = self.policy(tmp_path, store, f"{HOURS} hours after {store.event}")
        outcome = self.run(policy, dry_run=True)
        assert outcome.rules[0].due == 4
        assert store.keys() == {f"r{i}" for i in range(4)}

    # -- batches and audit ----------------------------------------------------------------

    def test_batches_take_every_due_record_and_none_holds_more_than_the_batch_size(
            self, make_store: MakeStore, tmp_path: Path) -> None:
        due = [Record(f"d{i:02d}", HOURS_CUTOFF - dt.timedelta(minutes=i)) for i in range(23)]
        kept = [Record(f"k{i:02d}", HOURS_CUTOFF + dt.timedelta(minutes=i + 1))
                for i in range(7)]
        store = make_store(due + kept)
        policy = self.policy(tmp_path, store, f"{HOURS} hours after {store.event}",
                             batch_size=5)
        outcome = self.run(policy)
        assert outcome.rules[0].deleted == 23
        assert store.keys() == {r.key for r in kept}
        sizes = Counter(r["batch_id"] for r in self.audited(policy))
        assert max(sizes.values()) <= 5 and len(sizes) >= 5, sizes

    def test_every_record_has_one_audit_entry_with_its_key_and_instants(
            self, make_store: MakeStore, tmp_path: Path) -> None:
        records = [Record(f"a{i}", HOURS_CUTOFF - dt.timedelta(hours=i, microseconds=i))
                   for i in range(6)]
        store = make_store([*records, Record("young", AS_OF)])
        policy = self.policy(tmp_path, store, f"{HOURS} hours after {store.event}",
                             batch_size=4)
        self.run(policy)
        entries = [r for r in self.audited(policy) if r["rule"] == "records"]
        assert self.keys_audited(policy, store) == Counter(r.key for r in records)
        by_key = {str(e["key"][store.key_column]): e for e in entries}
        for record in records:
            entry = by_key[record.key]
            assert entry["action"] == "delete" and entry["source"] == "store"
            assert dt.datetime.fromisoformat(entry["event_at"]) == record.event_at
            assert dt.datetime.fromisoformat(entry["due_at"]) == \
                record.event_at + dt.timedelta(hours=HOURS)
        self.check_chain(policy)

    # -- holds ----------------------------------------------------------------------------

    def test_a_held_record_is_kept_until_its_hold_is_released(
            self, make_store: MakeStore, tmp_path: Path) -> None:
        store = make_store([Record("held", HOURS_CUTOFF - US), Record("free", HOURS_CUTOFF)])
        policy = self.policy(tmp_path, store, f"{HOURS} hours after {store.event}")
        audit = AuditStore(policy.audit_url)
        try:
            hold = holds.add(audit, policy.name, "records", {store.key_column: "held"},
                             "litigation")
        finally:
            audit.close()
        assert build_report(policy, AS_OF)["rules"][0]["held"] == 1
        outcome = self.run(policy)
        assert outcome.rules[0].held == 1 and outcome.rules[0].deleted == 1
        assert store.keys() == {"held"}
        assert "held" not in self.keys_audited(policy, store)
        audit = AuditStore(policy.audit_url)
        try:
            holds.release(audit, policy.name, hold.hold_id)
        finally:
            audit.close()
        self.run(policy)
        assert store.keys() == set()
        assert self.keys_audited(policy, store) == Counter({"held": 1, "free": 1})

    # -- anonymize ----------------------------------------------------------------------

    def test_anonymizing_twice_changes_each_record_once(
            self, make_store: MakeStore, tmp_path: Path) -> None:
        if not self.supports_anonymize:
            return  # the adapter only deletes: nothing to check
        store = make_store([Record("old", HOURS_CUTOFF - US), Record("new", AS_OF)])
        assert store.notes is not None, "an anonymizing adapter's Store needs notes"
        policy = self.policy(tmp_path, store, f"{HOURS} hours after {store.event}",
                             action=store.anonymize)
        first, second = self.run(policy), self.run(policy)
        assert (first.rules[0].anonymized, second.rules[0].anonymized) == (1, 0)
        assert build_report(policy, AS_OF)["rules"][0]["due"] == 0
        assert store.notes() == {"old": REDACTED, "new": NOTE}
        assert store.keys() == {"old", "new"}
        assert self.keys_audited(policy, store) == Counter({"old": 1})

    # -- crash recovery -----------------------------------------------------------------

    def _crashing(self, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
        """Die once: after the first batch's intents (``before_commit``), or just before its
        ``batch_committed`` entry (``after_commit``)."""
        append = AuditStore.append
        armed = [True]

        def dying(store: AuditStore, entries: Any, conn: Any = None) -> None:
            kinds = {e["kind"] for e in entries}
            if armed[0] and when == "after_commit" and kinds == {"batch_committed"} \
                    and conn is None:
                armed[0] = False
                raise _Crash
            append(store, entries, conn)
            if armed[0] and when == "before_commit" and kinds == {"records"} and \
                    conn is None:  # the batch's records, appended before the target commits
                armed[0] = False
                raise _Crash

        monkeypatch.setattr(AuditStore, "append", dying)

    @pytest.mark.parametrize("when", ["before_commit", "after_commit"])
    def test_a_batch_cut_off_by_a_crash_is_reconciled_by_the_next_run(
            self, make_store: MakeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            when: str) -> None:
        due = [Record(f"d{i:02d}", HOURS_CUTOFF - dt.timedelta(hours=i)) for i in range(9)]
        store = make_store([*due, Record("young", AS_OF)])
        policy = self.policy(tmp_path, store, f"{HOURS} hours after {store.event}",
                             batch_size=4)
        with monkeypatch.context() as patch:
            self._crashing(patch, when)
            with pytest.raises(_Crash):
                self.run(policy)
        outcome = self.run(policy)
        assert outcome.rules[0].status.value == "ok", outcome.rules[0].error
        assert store.keys() == {"young"}
        if when == "after_commit":
            assert outcome.rules[0].recovered == 4
        assert self.keys_audited(policy, store) == Counter(r.key for r in due)
        self.check_chain(policy)
