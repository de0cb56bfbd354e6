"""Only what is needed: each command asks the environment only for what it reads.

``schedule`` reads the policy file and nothing else; the ``audit`` commands, ``hold list``
and ``hold release`` read the audit store. A policy whose sources' URLs or hash keys are
not set in the environment still renders and verifies; ``run``, ``report`` and the other
commands that open a source refuse it as before (exit 2, one line per variable). Every
test runs the console script with a clean environment, as cron or an auditor's laptop would.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from retention.policies import examples

from retention.audit.store import AuditStore
from retention.db import create_engine
from retention.policy.load import load_policy
from retention.run import engine, holds

RETENTION = Path(sys.executable).with_name("retention")
AS_OF = dt.datetime(2026, 2, 28, 12, 0, tzinfo=dt.UTC)
UNSET = ("SHOP_DATABASE_URL", "RETENTION_HASH_KEY")

# The web shop's policy as production writes it: no defaults, so nothing opens by accident,
# and one rule that hashes (its key from RETENTION_HASH_KEY).
STRICT = (examples.policy_path("webshop").read_text(encoding="utf-8")
          .replace("${SHOP_DATABASE_URL:-sqlite:///webshop.db}", "${SHOP_DATABASE_URL}")
          .replace("${RETENTION_AUDIT_URL:-sqlite:///retention-audit.db}",
                   "${RETENTION_AUDIT_URL}")
          .replace("{ip: truncate_ip, user_agent: null}", "{ip: truncate_ip, user_agent: hash}"))


def clean_env(**env: str) -> dict[str, str]:
    """Only PATH and what the test sets: none of the policy's variables."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RETENTION), *args], env=clean_env(**env), cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def strict(tmp_path: Path) -> Path:
    path = tmp_path / "webshop.yaml"
    path.write_text(STRICT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str, str]:
    """A real run of the strict policy (every variable set), with a hold placed: the
    policy file, the audit store's URL, the run's id and the hold's id."""
    base = tmp_path_factory.mktemp("audited")
    policy_file = base / "webshop.yaml"
    policy_file.write_text(STRICT, encoding="utf-8")
    shop, audit = f"sqlite:///{base / 'webshop.db'}", f"sqlite:///{base / 'audit.db'}"
    db = create_engine(shop)
    try:
        examples.create_schema(db, "webshop")
        examples.fill_webshop(db, AS_OF)
    finally:
        db.dispose()
    env = {"SHOP_DATABASE_URL": shop, "RETENTION_AUDIT_URL": audit,
           "RETENTION_HASH_KEY": "k" * 32}
    with pytest.MonkeyPatch.context() as patch:  # the anonymizer reads the key from os.environ
        for name, value in env.items():
            patch.setenv(name, value)
        policy = load_policy(policy_file, env=env)
        outcome = engine.run(policy, AS_OF)
    assert outcome.exit_code == 0 and sum(r.deleted for r in outcome.rules) > 0
    store = AuditStore(audit)
    try:
        hold = holds.add(store, policy.name, "orders", {"id": 1}, "tax audit", "auditor", None)
    finally:
        store.close()
    return policy_file, audit, outcome.run_id, hold.hold_id


def test_schedule_needs_no_environment_variable_and_no_database(strict: Path) -> None:
    """Sources' URL, audit URL and hash key all unset: the schedule renders, no file appears."""
    before = sorted(p.name for p in strict.parent.iterdir())
    for fmt in ("md", "html"):
        proc = cli("schedule", str(strict), "--format", fmt, cwd=strict.parent)
        assert proc.returncode == 0, proc.stderr
        assert "Order handling" in proc.stdout and proc.stderr == ""
    assert sorted(p.name for p in strict.parent.iterdir()) == before


def test_schedule_of_the_saas_example_needs_no_hash_key(tmp_path: Path) -> None:
    """saas.yaml hashes with SAAS_HASH_KEY; the schedule does not need the key."""
    proc = cli("schedule", str(examples.policy_path("saas")), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "device_id" in proc.stdout


def test_schedule_never_creates_a_database_engine(strict: Path) -> None:
    """With every way to a database made to fail, `schedule` still succeeds: it opens none."""
    script = (
        "import sys, sqlite3, sqlalchemy.engine.base as base\n"
        "def refuse(*a, **k): raise AssertionError('a database was opened')\n"
        "base.Engine.__init__ = refuse\n"
        "sqlite3.connect = refuse\n"
        "from retention.cli import main\n"
        f"main(['schedule', {str(strict)!r}, '--format', 'html'])\n")
    proc = subprocess.run([sys.executable, "-c", script], env=clean_env(), cwd=strict.parent,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "<table" in proc.stdout


def test_audit_commands_need_only_the_audit_store_url(
        audited: tuple[Path, str, str, str], tmp_path: Path) -> None:
    """list, show, verify and export with the sources' URL and the hash key unset: exit 0."""
    policy_file, audit, run_id, _ = audited
    for args in (["audit", "list"], ["audit", "show"], ["audit", "verify"],
                 ["audit", "export"]):
        argv = [*args, str(policy_file), *([run_id] if args[1] == "show" else [])]
        proc = cli(*argv, cwd=tmp_path, RETENTION_AUDIT_URL=audit)
        assert proc.returncode == 0, (argv, proc.stderr)
    exported = cli("audit", "export", str(policy_file), cwd=tmp_path, RETENTION_AUDIT_URL=audit)
    assert {json.loads(line)["run_id"] for line in exported.stdout.splitlines()} == {run_id}


def test_hold_list_and_release_need_only_the_audit_store_url(
        audited: tuple[Path, str, str, str], tmp_path: Path) -> None:
    """Holds live in the audit store; listing and releasing one opens no source."""
    policy_file, audit, _, hold_id = audited
    listed = cli("hold", "list", str(policy_file), "--format", "json", cwd=tmp_path,
                 RETENTION_AUDIT_URL=audit)
    assert listed.returncode == 0, listed.stderr
    assert [h["hold_id"] for h in json.loads(listed.stdout)] == [hold_id]
    released = cli("hold", "release", str(policy_file), hold_id, cwd=tmp_path,
                   RETENTION_AUDIT_URL=audit)
    assert released.returncode == 0, released.stderr


def test_audit_commands_still_need_the_audit_store_url(strict: Path) -> None:
    """The one thing they read: unset, it is bad input naming the variable and its line."""
    proc = cli("audit", "verify", str(strict), cwd=strict.parent)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{strict}:13: environment variable RETENTION_AUDIT_URL is not set"]


@pytest.mark.parametrize("args", [["run"], ["report"], ["validate"], ["plan"], ["status"],
                                  ["hold", "add", "{policy}", "orders", "1", "--reason", "x"]])
def test_commands_that_open_a_source_still_refuse_unset_variables(
        strict: Path, args: list[str]) -> None:
    """run, report, ... with the sources' URL and the hash key unset: exit 2, a line each."""
    argv = [a.replace("{policy}", str(strict)) for a in args]
    if "{policy}" not in args:
        argv.append(str(strict))
    proc = cli(*argv, cwd=strict.parent, RETENTION_AUDIT_URL=f"sqlite:///{strict.parent}/a.db")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{strict}:10: environment variable SHOP_DATABASE_URL is not set",
        f"{strict}:74: rule 'visit-ip': environment variable RETENTION_HASH_KEY (the hash key) "
        "is not set"]
    assert sorted(p.name for p in strict.parent.iterdir()) == ["webshop.yaml"]


def test_other_policy_problems_are_still_bad_input_for_schedule_and_audit(
        strict: Path) -> None:
    """Only unset settings are let pass: an unknown key still stops every command."""
    strict.write_text(STRICT.replace("  batch_size: 500", "  batch_sise: 500"), encoding="utf-8")
    for args in (["schedule"], ["audit", "verify"]):
        proc = cli(*args, str(strict), cwd=strict.parent, RETENTION_AUDIT_URL="sqlite:///a.db")
        assert proc.returncode == 2
        assert proc.stderr.splitlines() == [
            f"{strict}:17: unknown key 'batch_sise' in 'defaults'"]
