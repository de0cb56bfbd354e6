"""Proof against insiders: someone who can write the audit store (but not the checkpoint
file) cannot truncate, roll back, rewrite or fork it, nor edit the holds or runs tables,
without `audit verify` failing and runs refusing.

Each test first shows that the chain walk alone still says "intact" (the reproduction of
issue 10), then that the checkpoints or the chain-backed tables catch it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.pool import NullPool

from retention import cli
from retention.audit import chain, covered
from retention.audit.checkpoints import Checkpoints
from retention.audit.schema import head, holds, log, runs
from retention.audit.store import AuditStore
from retention.errors import AuditError
from retention.policy.load import load_policy
from retention.policy.rules import Policy
from retention.run import engine
from retention.run import holds as hold_api
from tests.audit.test_audit import make_shop, sqlite_file
from tests.support import keys, snapshot, utc, write_policy

AS_OF = utc(2026, 3, 1, 12, 0)  # orders 1..3 are due
LATER = utc(2026, 10, 1, 12, 0)  # orders 4..6 too
OLD = dt.datetime(2010, 1, 1)
NEWER = dt.datetime(2019, 3, 1)
TABLES = (log, head, runs, holds)


def pem_pair(tmp_path: Path) -> tuple[str, Path]:
    """A fresh Ed25519 private key (PEM text) and the path of its public key's PEM file."""
    private = Ed25519PrivateKey.generate()
    text = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    public = tmp_path / "retention.pub"
    public.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return text, public


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
          ) -> tuple[Policy, str, str, Path]:
    """A shop (SQLite) with orders 1..3 due at AS_OF and 4..6 at LATER, an audit store
    on each database, signed checkpoints in a file of their own.
    Returns (policy, shop url, audit url, checkpoint file)."""
    shop = sqlite_file(tmp_path, "shop.db")
    make_shop(shop, [(i, OLD if i <= 3 else NEWER) for i in range(1, 7)], [])
    private, public = pem_pair(tmp_path)
    monkeypatch.setenv("RETENTION_SIGNING_KEY", private)
    monkeypatch.setenv("TEST_TARGET_URL", shop)
    monkeypatch.setenv("TEST_AUDIT_URL", db_url)
    points = tmp_path / "worm" / "checkpoints.jsonl"
    points.parent.mkdir()
    text = ("policy: test\nversion: '1'\n"
            "sources:\n  db:\n    adapter: sql\n    url: ${TEST_TARGET_URL}\n"
            f"audit:\n  url: ${{TEST_AUDIT_URL}}\n  checkpoints: {points}\n"
            f"  public_key: {public}\n"
            "defaults:\n  source: db\n  max_fraction: 1.0\n  batch_size: 2\n"
            "rules:\n  orders:\n    table: orders\n"
            "    retain: 6 months after completion plus 7 years\n"
            "    events: {completion: completed_at}\n")
    return load_policy(write_policy(tmp_path, text)), shop, db_url, points


def retention(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main(list(args))
    return int(exited.value.code or 0), capsys.readouterr().out


def engine_of(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool)


def rows_of(url: str) -> dict[str, list[dict[str, Any]]]:
    eng = engine_of(url)
    try:
        with eng.connect() as conn:
            return {t.name: [dict(r._mapping) for r in conn.execute(sa.select(t))]
                    for t in TABLES}
    finally:
        eng.dispose()


def put_back(url: str, copy: dict[str, list[dict[str, Any]]]) -> None:
    """Restore the audit store's tables from an earlier copy (yesterday's backup)."""
    eng = engine_of(url)
    try:
        with eng.begin() as conn:
            for table in TABLES:
                conn.execute(table.delete())
                if copy[table.name]:
                    conn.execute(table.insert(), copy[table.name])
    finally:
        eng.dispose()


def chain_alone_says_intact(url: str) -> None:
    store = AuditStore(url)
    try:
        assert store.verify().ok
    finally:
        store.close()


def execute(url: str, statement: str, **params: Any) -> None:
    eng = engine_of(url)
    try:
        with eng.begin() as conn:
            conn.execute(sa.text(statement), params)
    finally:
        eng.dispose()


def rewrite(url: str, change: dict[int, dict[str, Any]]) -> None:
    """Change entries and recompute every hash after them, and the head: a whole new chain."""
    eng = engine_of(url)
    try:
        with eng.begin() as conn:
            entries = [dict(r._mapping) for r in conn.execute(sa.select(log).order_by(log.c.seq))]
            prev = chain.GENESIS
            for entry in entries:
                entry.update(change.get(entry["seq"], {}), prev_hash=prev)
                entry["hash"] = prev = chain.entry_hash(entry)
                conn.execute(log.update().where(log.c.seq == entry["seq"]).values(**entry))
            conn.execute(head.update().values(seq=entries[-1]["seq"], hash=prev))
    finally:
        eng.dispose()


# -- an honest store ------------------------------------------------------------------------


def test_runs_and_hold_changes_append_signed_checkpoints_that_verify(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Each run and each hold change appends one signed line; verify agrees with all."""
    policy, _, audit, points = setup
    engine.run(policy, AS_OF)
    store = AuditStore(audit)
    try:
        hold_api.add(store, "test", "orders", {"id": 6}, "tax audit")
    finally:
        store.close()
    code, _ = retention(capsys, "audit", "checkpoint", str(policy.path))
    assert code == 0
    engine.run(policy, AS_OF)

    lines = [json.loads(line) for line in points.read_text().splitlines()]
    assert [p["reason"] for p in lines] == ["run", "manual", "run"]
    assert all(p["signature"].startswith("ed25519:") for p in lines)
    assert set(lines[0]) == {"seq", "head", "at", "run_id", "policy", "reason", "signature"}
    code, out = retention(capsys, "audit", "verify", str(policy.path))
    assert code == 0, out
    assert "checkpoints agree: 3" in out


# -- the reproductions of issue 10 --------------------------------------------------------


def test_truncating_the_tail_and_moving_the_head_back_fails_verify_naming_the_checkpoint(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, _, audit, _ = setup
    engine.run(policy, AS_OF)
    end = rows_of(audit)["retention_chain_head"][0]
    engine.run(policy, LATER)
    execute(audit, "DELETE FROM retention_log WHERE seq > :n", n=end["seq"])
    execute(audit, "UPDATE retention_chain_head SET seq = :s, hash = :h",
            s=end["seq"], h=end["hash"])
    chain_alone_says_intact(audit)

    code, out = retention(capsys, "audit", "verify", str(policy.path))

    assert code == 1
    assert "the store is behind the checkpoint at line 2 (entry" in out
    assert f"it ends at entry {end['seq']}" in out


def test_rewriting_the_whole_chain_with_recomputed_hashes_fails_verify_as_forked(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, _, audit, _ = setup
    engine.run(policy, AS_OF)
    entry = next(r for r in rows_of(audit)["retention_log"] if r["kind"] == "records")
    detail = json.loads(entry["detail"])
    detail["keys"][0] = 999 if not isinstance(detail["keys"][0], list) else [999]
    rewrite(audit, {entry["seq"]: {"detail": json.dumps(detail)}})
    chain_alone_says_intact(audit)

    code, out = retention(capsys, "audit", "verify", str(policy.path))

    assert code == 1
    assert "the store differs from the checkpoint at line 1" in out
    assert "forked, or rewritten with recomputed hashes" in out


def test_putting_back_yesterdays_copy_fails_verify_and_the_next_run_refuses(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """A restored older store is behind the newest checkpoint: verify fails and a run
    changes nothing (a hold placed since the copy would otherwise be lost)."""
    policy, shop, audit, _ = setup
    engine.run(policy, AS_OF)  # deletes orders 1..3
    yesterday = rows_of(audit)
    store = AuditStore(audit)
    try:
        hold_api.add(store, "test", "orders", {"id": 4}, "litigation")
    finally:
        store.close()
    code, _ = retention(capsys, "audit", "checkpoint", str(policy.path))
    assert code == 0
    put_back(audit, yesterday)
    chain_alone_says_intact(audit)
    before = snapshot(shop)

    code, out = retention(capsys, "audit", "verify", str(policy.path))
    assert code == 1
    assert "the store is behind the checkpoint at line 2" in out
    with pytest.raises(AuditError) as refused:
        engine.run(policy, LATER)
    assert refused.value.exit_code == 1
    assert "behind the checkpoint at line 2" in str(refused.value)
    assert snapshot(shop) == before
    assert keys(shop, "orders") == {4, 5, 6}


@pytest.mark.parametrize("edit", ["release", "delete", "until"])
def test_editing_retention_holds_makes_the_run_refuse_and_verify_fail(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str],
        edit: str) -> None:
    """Releasing, deleting or shortening a hold in the table alone: the run refuses
    (nothing changed, the held order kept) and verify names the hold."""
    policy, shop, audit, _ = setup
    store = AuditStore(audit)
    try:
        hold = hold_api.add(store, "test", "orders", {"id": 1}, "tax audit")
    finally:
        store.close()
    statement = {
        "release": "UPDATE retention_holds SET released_at = '2026-01-01T00:00:00+00:00', "
                   "released_by = 'mallory'",
        "delete": "DELETE FROM retention_holds",
        "until": "UPDATE retention_holds SET until = '2020-01-01'",
    }[edit]
    execute(audit, statement)
    chain_alone_says_intact(audit)
    before = snapshot(shop)

    with pytest.raises(AuditError) as refused:
        engine.run(policy, AS_OF)
    assert refused.value.exit_code == 1
    assert f"hold {hold.hold_id!r}" in str(refused.value)
    assert snapshot(shop) == before
    code, out = retention(capsys, "audit", "verify", str(policy.path))
    assert code == 1
    assert f"not intact: hold {hold.hold_id!r}" in out


def test_a_hold_added_to_the_table_alone_is_not_a_hold(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """A row inserted into retention_holds without its chained entry is refused too."""
    policy, _, audit, _ = setup
    AuditStore(audit).close()
    execute(audit, "INSERT INTO retention_holds (hold_id, policy, rule, record_key, reason, "
                   "placed_by, placed_at) VALUES ('forged', 'test', 'orders', :key, "
                   "'x', 'mallory', '2026-01-01T00:00:00+00:00')", key='{"id":1}')
    with pytest.raises(AuditError, match="'forged' in retention_holds was never placed"):
        engine.run(policy, AS_OF)
    code, out = retention(capsys, "audit", "verify", str(policy.path))
    assert code == 1
    assert "not intact: hold 'forged'" in out


def test_editing_a_hold_entry_in_the_chain_is_refused_by_the_run(
        setup: tuple[Policy, str, str, Path]) -> None:
    """Changing the chained hold_added entry itself (detail and table together)."""
    policy, _, audit, _ = setup
    store = AuditStore(audit)
    try:
        hold_api.add(store, "test", "orders", {"id": 1}, "tax audit")
    finally:
        store.close()
    execute(audit, "UPDATE retention_log SET detail = REPLACE(detail, 'tax audit', 'none') "
                   "WHERE kind = 'hold_added'")
    execute(audit, "UPDATE retention_holds SET reason = 'none'")
    with pytest.raises(AuditError, match=r"audit entry \d+ \(hold_added\) is altered"):
        engine.run(policy, AS_OF)


def test_editing_a_run_record_fails_verify_and_last_runs(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, _, audit, _ = setup
    outcome = engine.run(policy, AS_OF)
    execute(audit, "UPDATE retention_runs SET summary = REPLACE(summary, '\"deleted\": 3', "
                   "'\"deleted\": 0')")
    chain_alone_says_intact(audit)

    code, out = retention(capsys, "audit", "verify", str(policy.path))
    assert code == 1
    assert f"run {outcome.run_id} in retention_runs differs from its chained entries in " \
           "summary" in out
    store = AuditStore(audit)
    try:
        with pytest.raises(AuditError, match="does not match the audit chain"):
            covered.last_runs(store, "test")
    finally:
        store.close()


def test_status_names_an_edited_run_record_and_a_dry_run_takes_no_rate_from_it(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """``status`` and the dry-run forecast read ``retention_runs``; an edited row is not
    shown as the last run without an error, nor used for the expected time."""
    policy, _, audit, _ = setup
    outcome = engine.run(policy, AS_OF)
    code, out = retention(capsys, "status", str(policy.path), "--format", "json")
    assert code == 0, out
    assert json.loads(out)["rules"][0]["last_run"]["run_id"] == outcome.run_id
    forecast = engine.run(policy, LATER, dry_run=True).rules[0].estimate
    assert forecast is not None and forecast["rate_from"] == outcome.run_id

    execute(audit, "UPDATE retention_runs SET summary = REPLACE(summary, "
                   "'\"batch_seconds\": ', '\"batch_seconds\": 1000')")
    chain_alone_says_intact(audit)
    code, out = retention(capsys, "status", str(policy.path), "--format", "json")
    assert code == 1
    (rule,) = json.loads(out)["rules"]
    assert rule["error"] == (
        f"last run {outcome.run_id} in retention_runs does not match the audit chain: "
        "differs in summary (see 'retention audit verify')")
    forecast = engine.run(policy, LATER, dry_run=True).rules[0].estimate
    assert forecast is not None
    assert (forecast["rate_from"], forecast["expected_seconds"]) == (None, None)


def test_last_runs_gives_each_rules_last_enforced_run(
        setup: tuple[Policy, str, str, Path]) -> None:
    policy, _, audit, _ = setup
    engine.run(policy, AS_OF)
    second = engine.run(policy, LATER)
    store = AuditStore(audit)
    try:
        found = covered.last_runs(store, "test")
    finally:
        store.close()
    assert found["orders"]["run_id"] == second.run_id
    assert found["orders"]["deleted"] == 3
    assert set(found["orders"]) == {"run_id", "at", "status", "deleted", "anonymized"}


# -- the checkpoint file and its signatures ----------------------------------------------


def test_a_checkpoint_whose_signature_fails_is_named(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, _, _, points = setup
    engine.run(policy, AS_OF)
    engine.run(policy, AS_OF)
    lines = points.read_text().splitlines()
    forged = json.loads(lines[0])
    forged["at"] = "2020-01-01T00:00:00.000000+00:00"
    points.write_text("\n".join([json.dumps(forged), lines[1]]) + "\n")

    code, out = retention(capsys, "audit", "verify", str(policy.path))

    assert code == 1
    assert "checkpoint at line 1 (entry" in out and "has a signature that fails" in out
    assert "line 2" not in out


def test_an_unsigned_checkpoint_fails_when_a_public_key_is_configured(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, _, audit, points = setup
    engine.run(policy, AS_OF)
    store = AuditStore(audit)
    try:
        Checkpoints(str(points), "test").append(store, None, "manual")  # no signer
    finally:
        store.close()
    code, out = retention(capsys, "audit", "verify", str(policy.path))
    assert code == 1
    assert "checkpoint at line 2" in out and "is not signed" in out
    assert "line 1" not in out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_public_key_without_a_signing_key_stops_the_run_before_any_change(
        setup: tuple[Policy, str, str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its checkpoints would be unsigned and fail verify: refuse at once (exit 2)."""
    policy, shop, _, points = setup
    monkeypatch.delenv("RETENTION_SIGNING_KEY")
    before = snapshot(shop)
    with pytest.raises(AuditError, match="RETENTION_SIGNING_KEY is not") as refused:
        engine.run(policy, AS_OF)
    assert refused.value.exit_code == 2
    assert snapshot(shop) == before
    assert not points.exists()
    engine.run(policy, AS_OF, dry_run=True)  # a dry run appends nothing: no key needed


def test_rehashing_one_hold_entry_is_refused_by_the_run(
        setup: tuple[Policy, str, str, Path]) -> None:
    """The hold entry and the table changed together, the entry's own hash recomputed:
    the entry after it no longer follows it."""
    policy, shop, audit, _ = setup
    store = AuditStore(audit)
    try:
        hold_api.add(store, "test", "orders", {"id": 1}, "tax audit")
    finally:
        store.close()
    engine.run(policy, AS_OF)  # entries after the hold
    entry = next(r for r in rows_of(audit)["retention_log"] if r["kind"] == "hold_added")
    entry["detail"] = entry["detail"].replace("tax audit", "none")
    entry["hash"] = chain.entry_hash(entry)
    eng = engine_of(audit)
    with eng.begin() as conn:
        conn.execute(log.update().where(log.c.seq == entry["seq"]).values(
            detail=entry["detail"], hash=entry["hash"]))
        conn.execute(holds.update().values(reason="none"))
    eng.dispose()
    before = snapshot(shop)
    with pytest.raises(AuditError, match=r"\(hold_added\) is not linked to the entry after"):
        engine.run(policy, LATER)
    assert snapshot(shop) == before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_signing_key_that_does_not_match_the_public_key_stops_before_any_change(
        setup: tuple[Policy, str, str, Path], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    policy, shop, _, points = setup
    other, _ = pem_pair(tmp_path / "..")
    monkeypatch.setenv("RETENTION_SIGNING_KEY", other)
    before = snapshot(shop)
    with pytest.raises(AuditError) as refused:
        engine.run(policy, AS_OF)
    assert refused.value.exit_code == 2
    assert "does not match audit: public_key" in str(refused.value)
    assert "PRIVATE KEY" not in str(refused.value)
    assert snapshot(shop) == before
    assert not points.exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_signing_key_that_is_no_key_is_bad_input_without_echoing_it(
        setup: tuple[Policy, str, str, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    policy, shop, _, _ = setup
    monkeypatch.setenv("RETENTION_SIGNING_KEY", "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n")
    before = snapshot(shop)
    code, _ = retention(capsys, "run", str(policy.path))
    err = capsys.readouterr().err
    assert code == 2
    assert "c2VjcmV0" not in err
    assert snapshot(shop) == before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_checkpoint_file_that_cannot_be_written_stops_the_run_before_any_change(
        setup: tuple[Policy, str, str, Path], tmp_path: Path) -> None:
    """The WORM mount is not there (its directory is gone): nothing changes."""
    policy, shop, _, points = setup
    points.parent.rename(tmp_path / "unmounted")
    before = snapshot(shop)
    with pytest.raises(AuditError, match="cannot append to the checkpoint file"):
        engine.run(policy, AS_OF)
    assert snapshot(shop) == before


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_audit_checkpoint_refuses_to_bless_a_tampered_store(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, _, audit, points = setup
    engine.run(policy, AS_OF)
    execute(audit, "UPDATE retention_log SET rule = 'x' WHERE seq = 1")
    code, out = retention(capsys, "audit", "checkpoint", str(policy.path))
    assert code == 1
    assert "no checkpoint written" in out
    assert len(points.read_text().splitlines()) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_missing_checkpoint_file_fails_verify_of_a_store_with_entries(
        setup: tuple[Policy, str, str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    policy, _, _, points = setup
    engine.run(policy, AS_OF)
    points.unlink()
    code, out = retention(capsys, "audit", "verify", str(policy.path))
    assert code == 1
    assert "is missing or empty" in out


def test_checkpoints_only_read_the_file_they_are_given(tmp_path: Path) -> None:
    """A line that is no checkpoint is named with its line number."""
    points = tmp_path / "c.jsonl"
    points.write_text('{"seq": 1, "head": "x", "at": "t", "run_id": null}\nnot json\n')
    found, problems = Checkpoints(str(points), "p").read()
    assert [p.seq for p in found] == [1]
    assert problems == [f"checkpoint file {points} line 2: not a checkpoint"]


def test_checkpoint_settings_are_read_and_an_unset_one_matters_only_to_who_needs_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`schedule` (Need.NOTHING) loads a policy whose checkpoint path is unset; the audit
    commands (Need.AUDIT) report it as bad input; an unknown audit key stays bad input."""
    from retention.errors import PolicyError
    from retention.policy.needs import Need

    monkeypatch.delenv("CHECKPOINT_FILE", raising=False)
    body = ("policy: p\nsources:\n  db: {adapter: sql, url: 'sqlite:///x.db'}\n"
            "audit:\n  url: 'sqlite:///a.db'\n  checkpoints: ${CHECKPOINT_FILE}\n"
            "rules:\n  r: {source: db, table: t, retain: 1 day after at}\n")
    path = write_policy(tmp_path, body)
    assert load_policy(path, need=Need.NOTHING).name == "p"
    with pytest.raises(PolicyError, match="CHECKPOINT_FILE"):
        load_policy(path, need=Need.AUDIT)
    monkeypatch.setenv("CHECKPOINT_FILE", "/w/c.jsonl")
    assert load_policy(path, need=Need.AUDIT).checkpoints == "/w/c.jsonl"
    with pytest.raises(PolicyError, match="unknown key 'checkpoint' in 'audit'"):
        load_policy(write_policy(tmp_path, body.replace("checkpoints:", "checkpoint:")),
                    need=Need.AUDIT)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_run_problem_vouches_for_an_honest_run_and_names_an_edited_one(
        setup: tuple[Policy, str, str, Path]) -> None:
    """What the daemon asks before trusting that a slot's run happened."""
    policy, _, audit, _ = setup
    outcome = engine.run(policy, AS_OF)
    store = AuditStore(audit)
    try:
        assert covered.run_problem(store, outcome.run_id) is None
        execute(audit, "UPDATE retention_runs SET started_at = '2099-01-01T00:00:00.000000+00:00'")
        assert covered.run_problem(store, outcome.run_id) == "differs in started_at"
        assert covered.run_problem(store, "no-such-run") == "not in retention_runs"
    finally:
        store.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_replay_refuses_a_store_behind_its_checkpoints(
        setup: tuple[Policy, str, str, Path]) -> None:
    from retention.run.replay import replay

    policy, _, audit, _ = setup
    engine.run(policy, AS_OF)
    yesterday = rows_of(audit)
    engine.run(policy, LATER)
    put_back(audit, yesterday)
    store = AuditStore(audit)
    try:
        with pytest.raises(AuditError, match="behind the checkpoint at line 2"):
            replay(policy, store, "2000-01-01T00:00:00.000000+00:00", True, LATER)
    finally:
        store.close()
