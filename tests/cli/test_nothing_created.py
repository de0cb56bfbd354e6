"""Commands that read create nothing: no empty SQLite file at a mistyped source path, no
audit store. A source database that does not exist is one line naming the policy file,
the source's line and the source, exit 2, for ``run`` too (an enforcement target that
does not exist is a mistake, never a database to make)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import write_policy

RETENTION = Path(sys.executable).with_name("retention")
POLICY = """\
policy: typo
sources:
  db:
    adapter: sql
    url: "sqlite:///typo.db"
rules:
  orders:
    source: db
    table: orders
    retain: 1 day after done_at
"""
READING = [
    ["validate"], ["plan"], ["report"], ["report", "--format", "json"], ["status"],
    ["run", "--dry-run"], ["run"], ["hold", "list"],
]


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    return subprocess.run([str(RETENTION), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("command", READING, ids=[" ".join(c) for c in READING])
def test_a_missing_sqlite_source_is_one_line_exit_2_and_no_file_is_created(
        tmp_path: Path, command: list[str]) -> None:
    path = write_policy(tmp_path, POLICY)
    if command == ["hold", "list"]:  # reads only the audit store: no store, no holds
        done = _cli(tmp_path, *command, str(path))
        assert done.returncode == 0, done.stderr
    else:
        done = _cli(tmp_path, *command, str(path))
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            f"{path}:3: source 'db': the SQLite database file 'typo.db' does not exist "
            "(retention never creates a source database)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml"]


@pytest.mark.parametrize("command", [
    ["audit", "list"], ["audit", "verify"], ["audit", "export"], ["audit", "show", "x"],
    ["replay", "--since", "2020-01-01"],
])
def test_reading_the_audit_store_never_creates_it(tmp_path: Path, command: list[str]) -> None:
    """No store yet: exit 2 saying so, and still no store (nor source) afterwards."""
    path = write_policy(tmp_path, POLICY)
    done = _cli(tmp_path, *command[:2], str(path), *command[2:]) if command[0] == "audit" \
        else _cli(tmp_path, command[0], str(path), *command[1:])
    assert done.returncode == 2, done.stderr
    assert "no audit store at sqlite:///retention-audit.db" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml"]


def test_schedule_needs_no_database_at_all(tmp_path: Path) -> None:
    path = write_policy(tmp_path, POLICY)
    done = _cli(tmp_path, "schedule", str(path))
    assert done.returncode == 0, done.stderr
    assert "orders" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.yaml"]
