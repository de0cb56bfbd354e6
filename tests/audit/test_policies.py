"""Policy history: each version's text stored once, each change a chained entry with a
readable per-rule diff, `audit policies` listing them, `audit verify` vouching for them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from retention import cli
from retention.audit import policies
from retention.audit.schema import log
from retention.audit.schema import policies as policies_table
from retention.audit.store import AuditStore
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.run import engine
from tests.audit.test_audit import make_shop, sqlite_file
from tests.support import utc, write_policy

AS_OF = utc(2026, 3, 1, 12, 0)
SEVEN = "6 months after completion plus 7 years"
TEN = "6 months after completion plus 10 years"
Make = Callable[[str], Policy]


def policy_text(retain: str = SEVEN, leads: bool = False, batch: int = 10,
                comment: str = "") -> str:
    text = (f"# {comment}\npolicy: test\nversion: '1'\n"
            "sources:\n  db:\n    adapter: sql\n    url: ${TEST_TARGET_URL}\n"
            "audit:\n  url: ${TEST_AUDIT_URL}\n"
            f"defaults:\n  source: db\n  max_fraction: 1.0\n  batch_size: {batch}\n"
            "rules:\n  orders:\n    table: orders\n"
            f"    retain: {retain}\n"
            "    events: {completion: completed_at}\n")
    if leads:
        text += ("  leads:\n    table: order_lines\n    retain: 1 day after id\n")
    return text


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Make:
    shop = sqlite_file(tmp_path, "shop.db")
    make_shop(shop, [(1, utc(2010, 1, 1).replace(tzinfo=None))], [])
    monkeypatch.setenv("TEST_TARGET_URL", shop)
    monkeypatch.setenv("TEST_AUDIT_URL", db_url)

    def policy(text: str) -> Policy:
        return load_policy(write_policy(tmp_path, text))

    return policy


def kinds(url: str) -> list[str]:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return list(conn.execute(sa.select(log.c.kind).order_by(log.c.seq)).scalars())
    finally:
        eng.dispose()


def test_a_version_is_stored_once_and_each_change_is_a_chained_entry_with_a_diff(
        make: Make, db_url: str) -> None:
    first = make(policy_text())
    engine.run(first, AS_OF)
    engine.run(first, AS_OF)
    changed = make(policy_text(retain=TEN, batch=20))
    engine.run(changed, AS_OF)

    assert kinds(db_url).count("policy_changed") == 1  # the change; run_started vouches first
    store = AuditStore(db_url)
    try:
        found = policies.versions(store, "test")
        assert store.verify().ok
    finally:
        store.close()
    assert [v["sha256"] for v in found] == [first.sha256, changed.sha256]
    assert found[0]["changes"] == ["first recorded"]
    assert found[1]["changes"] == [
        "rule 'orders': batch_size 10 -> 20",
        f"rule 'orders': retain '{SEVEN}' -> '{TEN}'"]


def test_rules_added_and_removed_and_top_level_settings_are_named() -> None:
    assert policies.changes(policy_text(), policy_text(leads=True)) == ["rule 'leads' added"]
    assert policies.changes(policy_text(leads=True), policy_text()) == ["rule 'leads' removed"]
    assert policies.changes(policy_text(), policy_text().replace("version: '1'",
                                                                 "version: '2'")) == [
        "version '1' -> '2'"]
    assert policies.changes(policy_text(comment="a"), policy_text(comment="b")) == [
        "comments or layout only"]


def test_the_diff_shows_environment_variables_as_written() -> None:
    before = policy_text()
    after = before.replace("${TEST_TARGET_URL}", "${OTHER_URL}")
    assert policies.changes(before, after) == [
        "source 'db': url '${TEST_TARGET_URL}' -> '${OTHER_URL}'"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_audit_policies_lists_versions_as_json_and_shows_one(
        make: Make, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine.run(make(policy_text()), AS_OF)
    second = make(policy_text(leads=True))
    outcome = engine.run(second, AS_OF)
    capsys.readouterr()

    with pytest.raises(SystemExit) as exited:
        cli.main(["audit", "policies", str(second.path), "--format", "json"])
    assert exited.value.code == 0
    listed = json.loads(capsys.readouterr().out)
    assert [set(v) for v in listed] == [
        {"sha256", "version", "first_run_id", "first_at", "changes"}] * 2
    assert listed[1]["first_run_id"] == outcome.run_id
    assert listed[1]["changes"] == ["rule 'leads' added"]

    with pytest.raises(SystemExit) as exited:
        cli.main(["audit", "policies", str(second.path), "--show", second.sha256[:10]])
    assert exited.value.code == 0
    assert capsys.readouterr().out == policy_text(leads=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_changes_since_a_run_compare_its_version_with_the_current_one(
        make: Make, db_url: str) -> None:
    then = engine.run(make(policy_text()), AS_OF)
    store = AuditStore(db_url)
    try:
        assert policies.changes_since(store, then.run_id) == []
        assert policies.changes_since(store, then.run_id, policy_text(leads=True)) == [
            "rule 'leads' added"]
        engine.run(make(policy_text(retain=TEN)), AS_OF)
        assert policies.changes_since(store, then.run_id) == [
            f"rule 'orders': retain '{SEVEN}' -> '{TEN}'"]
        assert policies.changes_since(store, "no-such-run") is None
    finally:
        store.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_stored_policy_text_edited_afterwards_fails_verify(
        make: Make, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    policy = make(policy_text())
    engine.run(policy, AS_OF)
    eng = sa.create_engine(db_url, poolclass=NullPool)
    with eng.begin() as conn:
        conn.execute(policies_table.update().values(text=policy_text(retain=TEN)))
    eng.dispose()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(["audit", "verify", str(policy.path)])
    assert exited.value.code == 1
    assert f"policy version {policy.sha256[:12]} of 'test'" in capsys.readouterr().out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_password_written_in_the_policy_is_not_stored(
        make: Make, db_url: str, tmp_path: Path) -> None:
    server = "postgresql://app:hunter2secret@localhost:1/x"
    text = policy_text() + f"  # not a url: {server}\n"
    text = text.replace("sources:\n", f"sources:\n  other:\n    adapter: sql\n    url: {server}\n")
    policy = make(text)
    store = AuditStore(db_url)
    try:
        policies.record(store, policy, "run-x")
        stored = policies.text_of(store, "test", policy.sha256)
    finally:
        store.close()
    assert stored is not None
    assert "hunter2secret" not in stored["text"]
    store = AuditStore(db_url)
    try:
        assert [v["changes"] for v in policies.versions(store, "test")] == [["first recorded"]]
        assert policies.check(store) == []
    finally:
        store.close()
