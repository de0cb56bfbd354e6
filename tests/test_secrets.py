"""Secrets stay secret (SPEC §4.8): a password in a URL never reaches an output.

Every command runs as a real subprocess against a PostgreSQL target whose URL carries
a password (a role made for the test; the throwaway server trusts every password), with
the audit store in a SQLite file, in a PostgreSQL database of its own (also with a
password) or in the target database itself; and once against unreachable servers. The
password must appear in no stdout, no stderr (the logs, at debug level), no file a
command writes (reports, exports, lease files) and no column of any audit table. A
password with URL-special characters is also checked in its percent-encoded form.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from retention import engine
from retention.policy import load_policy
from retention.testing import Server
from tests.support import write_policy

RETENTION = Path(sys.executable).with_name("retention")
PASSWORD = "Sup3r-S3cret-pw"
SPECIAL = "p@ss:w/rd%S3cret#1"  # must be percent-encoded in a URL
AS_OF = "2026-03-01T12:00:00+00:00"
UNREACHABLE = f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:1/x"

POLICY = """\
policy: secrets
version: "1"
timezone: Europe/Amsterdam
sources:
  shop:
    adapter: sql
    url: ${SECRET_TARGET_URL}
audit:
  url: ${SECRET_AUDIT_URL}
rules:
  orders:
    source: shop
    table: orders
    retain: 1 year after completion
    events: {completion: completed_at}
    batch_size: 7
    max_fraction: 1.0
    children:
      - {table: order_lines, key: order_id}
"""

_META = sa.MetaData()
ORDERS = sa.Table("orders", _META,
                  sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                  sa.Column("completed_at", sa.DateTime, nullable=True))
LINES = sa.Table("order_lines", _META,
                 sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                 sa.Column("order_id", sa.Integer, nullable=False))


# -- a role with a password and databases it owns -----------------------------------


@dataclass
class PgRole:
    """A login role with a password on the test server, and the databases made for it."""

    server: Server
    name: str
    password: str
    databases: list[str] = field(default_factory=list)

    def _admin(self, statement: str, database: str | None = None) -> None:
        url = make_url(self.server.url)
        if database:
            url = url.set(database=database)
        eng = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with eng.connect() as conn:
                conn.execute(sa.text(statement))
        finally:
            eng.dispose()

    def create(self) -> None:
        quoted = self.password.replace("'", "''")
        self._admin(f"CREATE ROLE {self.name} LOGIN PASSWORD '{quoted}'")

    def database(self) -> str:
        """A new database the role may use fully; its URL carries the password."""
        name = f"secrets_{uuid.uuid4().hex[:12]}"
        self.server.create_database(name)
        self.databases.append(name)
        self._admin(f"GRANT ALL ON DATABASE {name} TO {self.name}")
        self._admin(f"GRANT ALL ON SCHEMA public TO {self.name}", database=name)
        url = make_url(self.server.url).set(username=self.name, password=self.password,
                                            database=name)
        return url.render_as_string(hide_password=False)

    def drop(self) -> None:
        for name in self.databases:
            self.server.drop_database(name)
        self._admin(f"DROP ROLE IF EXISTS {self.name}")


@pytest.fixture
def pg_role(request: pytest.FixtureRequest, postgres_server: Server) -> Iterator[PgRole]:
    password = getattr(request, "param", PASSWORD)
    role = PgRole(postgres_server, f"app_{uuid.uuid4().hex[:8]}", password)
    role.create()
    try:
        yield role
    finally:
        role.drop()


def _fill(url: str) -> None:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.begin() as conn:
            _META.create_all(conn)
            conn.execute(ORDERS.insert(), [
                {"id": i, "completed_at": dt.datetime(2020 if i % 2 else 2026, 1, 1)}
                for i in range(1, 41)])
            conn.execute(LINES.insert(), [{"id": i, "order_id": 1 + i % 40}
                                          for i in range(1, 81)])
    finally:
        eng.dispose()


# -- running commands and looking everywhere ----------------------------------------


def forms(password: str) -> set[str]:
    """The password as written and as it appears percent-encoded in a URL."""
    return {password, quote(password, safe=""), quote(password)}


@dataclass
class Workspace:
    cwd: Path
    target: str
    audit: str
    password: str
    outputs: list[tuple[str, subprocess.CompletedProcess[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.policy = str(write_policy(self.cwd, POLICY, "secrets.yaml"))

    def run(self, *args: str, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RETENTION_", "SECRET"))}
        env.update(SECRET_TARGET_URL=self.target, SECRET_AUDIT_URL=self.audit)
        argv = [str(RETENTION), "--log-level", "debug", *args]
        done = subprocess.run(argv, env=env, cwd=self.cwd, capture_output=True, text=True,
                              timeout=120, check=False)
        self.outputs.append((" ".join(args), done))
        assert done.returncode in codes, (
            f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def assert_no_password(self, *audit_urls: str) -> int:
        """Nothing any command printed or wrote, and no audit column, holds the password.

        Returns how many places were searched.
        """
        secrets = forms(self.password)
        searched = 0
        for command, done in self.outputs:
            for stream, text in (("stdout", done.stdout), ("stderr", done.stderr)):
                searched += 1
                leaked = [s for s in secrets if s in text]
                assert not leaked, f"`{command}` shows the password on {stream}:\n{text}"
        for path in self.cwd.rglob("*"):
            searched += 1
            leaked = [s for s in secrets if s in str(path.relative_to(self.cwd))]
            assert not leaked, f"a file name holds the password: {path}"
            if path.is_file() and path.name != "secrets.yaml":
                data = path.read_bytes()
                leaked = [s for s in secrets if s.encode() in data]
                assert not leaked, f"{path} holds the password"
        for url in audit_urls:
            searched += _assert_no_password_in_tables(url, secrets)
        return searched


def _assert_no_password_in_tables(url: str, secrets: set[str]) -> int:
    """Every value of every retention_* table at ``url``; returns how many were read."""
    eng = sa.create_engine(url, poolclass=NullPool)
    seen = 0
    try:
        names = [n for n in sa.inspect(eng).get_table_names() if n.startswith("retention_")]
        assert "retention_log" in names, names
        with eng.connect() as conn:
            for name in names:
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                for row in conn.execute(table.select()):
                    for column, value in row._mapping.items():
                        seen += 1
                        leaked = [s for s in secrets if s in str(value)]
                        assert not leaked, f"{name}.{column} holds the password: {value!r}"
    finally:
        eng.dispose()
    assert seen > 0
    return seen


def _every_command(ws: Workspace) -> None:
    """validate, plan, report, hold, run (dry and real), audit list/show/verify/export."""
    ws.run("validate", ws.policy)
    ws.run("plan", ws.policy, "--as-of", AS_OF)
    report = json.loads(ws.run("report", ws.policy, "--as-of", AS_OF, "--format", "json",
                               "--samples", "3").stdout)
    assert report["rules"][0]["due"] == 20, report
    ws.run("report", ws.policy, "--as-of", AS_OF, "--format", "html", "-o", "report.html")
    ws.run("report", ws.policy, "--as-of", AS_OF, "--format", "md", "-o", "report.md")
    ws.run("hold", "add", ws.policy, "orders", "3", "--reason", "litigation")
    holds = json.loads(ws.run("hold", "list", ws.policy, "--format", "json").stdout)
    assert [h["key"] for h in holds] == [{"id": 3}]
    ws.run("hold", "list", ws.policy)
    dry = json.loads(ws.run("run", ws.policy, "--as-of", AS_OF, "--dry-run",
                            "--format", "json").stdout)
    assert (dry["rules"][0]["due"], dry["rules"][0]["held"]) == (19, 1), dry
    done = json.loads(ws.run("run", ws.policy, "--as-of", AS_OF, "--format", "json").stdout)
    assert done["rules"][0]["status"] == "ok" and done["rules"][0]["deleted"] == 19, done
    ws.run("run", ws.policy, "--as-of", AS_OF)
    ws.run("status", ws.policy)
    ws.run("audit", "list", ws.policy)
    runs = json.loads(ws.run("audit", "list", ws.policy, "--format", "json").stdout)
    assert len(runs) == 2, runs  # the two real runs (a dry run records nothing)
    ws.run("audit", "show", ws.policy, done["run_id"], "--format", "json")
    ws.run("audit", "show", ws.policy, done["run_id"])
    assert "intact" in ws.run("audit", "verify", ws.policy).stdout
    exported = ws.run("audit", "export", ws.policy).stdout.splitlines()
    assert len(exported) == 19 + 38, len(exported)  # orders and their lines
    ws.run("audit", "export", ws.policy, "--format", "csv", "-o", "export.csv")
    ws.run("audit", "export", ws.policy, "--format", "jsonl", "-o", "export.jsonl")


# -- the tests ----------------------------------------------------------------------


@pytest.mark.parametrize(("audit", "pg_role"), [
    ("sqlite", PASSWORD), ("postgres", PASSWORD), ("same-database", PASSWORD),
    ("postgres", SPECIAL)], ids=["sqlite", "postgres", "same-database", "postgres-url-special"],
    indirect=["pg_role"])
def test_no_command_shows_the_password_of_a_postgres_target_or_audit_store(
        pg_role: PgRole, tmp_path: Path, audit: str) -> None:
    """Every command with password URLs: nothing printed, written or recorded holds it."""
    target = pg_role.database()
    _fill(target)
    audit_url = {"sqlite": f"sqlite:///{tmp_path}/audit.db", "postgres": pg_role.database(),
                 "same-database": target}[audit]
    ws = Workspace(tmp_path, target, audit_url, pg_role.password)

    _every_command(ws)

    searched = ws.assert_no_password(audit_url)
    assert searched > 100


def test_an_unreachable_target_with_a_password_is_reported_without_it(tmp_path: Path) -> None:
    """Every command against a server that refuses connections: errors, but no password."""
    ws = Workspace(tmp_path, UNREACHABLE, f"sqlite:///{tmp_path}/audit.db", PASSWORD)

    validate = ws.run("validate", ws.policy, codes=(1, 2))
    assert "unreachable" in validate.stderr + validate.stdout
    ws.run("plan", ws.policy, codes=(1,))
    report = json.loads(ws.run("report", ws.policy, "--format", "json", codes=(1,)).stdout)
    assert "error" in report["rules"][0], report
    ws.run("report", ws.policy, "--format", "html", "-o", "report.html", codes=(1,))
    ws.run("run", ws.policy, "--dry-run", "--format", "json", codes=(1,))
    failed = json.loads(ws.run("run", ws.policy, "--format", "json", codes=(1,)).stdout)
    assert failed["rules"][0]["status"] == "failed", failed
    assert "127.0.0.1" in failed["rules"][0]["error"], failed  # the reason is still useful
    ws.run("run", ws.policy, codes=(1,))
    ws.run("hold", "add", ws.policy, "orders", "3", "--reason", "x", codes=(1, 2))
    ws.run("--debug", "hold", "add", ws.policy, "orders", "3", "--reason", "x", codes=(1, 2))
    ws.run("hold", "list", ws.policy)
    ws.run("status", ws.policy, codes=(0, 1))
    ws.run("audit", "list", ws.policy)
    ws.run("audit", "verify", ws.policy)
    ws.run("audit", "export", ws.policy, "-o", "export.jsonl")

    ws.assert_no_password(f"sqlite:///{tmp_path}/audit.db")


def test_an_unreachable_audit_store_with_a_password_is_reported_without_it(
        tmp_path: Path) -> None:
    """A reachable SQLite target and an audit store URL that refuses connections."""
    target = f"sqlite:///{tmp_path}/target.db"
    _fill(target)
    ws = Workspace(tmp_path, target, UNREACHABLE.replace("/x", "/audit"), PASSWORD)

    ws.run("validate", ws.policy)
    # plan, report and dry runs need the legal holds: without the store they fail (exit 1)
    ws.run("plan", ws.policy, "--as-of", AS_OF, codes=(1,))
    ws.run("report", ws.policy, "--as-of", AS_OF, "--format", "json", codes=(1,))
    ws.run("run", ws.policy, "--as-of", AS_OF, "--dry-run", "--format", "json", codes=(1,))
    ws.run("run", ws.policy, "--as-of", AS_OF, "--format", "json", codes=(1, 2))
    ws.run("--debug", "run", ws.policy, "--as-of", AS_OF, codes=(1, 2))
    ws.run("hold", "add", ws.policy, "orders", "3", "--reason", "x", codes=(1, 2))
    ws.run("hold", "list", ws.policy, codes=(0, 1, 2))
    ws.run("status", ws.policy, codes=(0, 1, 2))
    for command in ("list", "verify", "export"):
        ws.run("audit", command, ws.policy, codes=(1, 2))
    assert len(_rows(target, ORDERS)) == 40, "nothing may change without an audit store"

    ws.assert_no_password()


def _rows(url: str, table: sa.Table) -> list[Any]:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return list(conn.execute(table.select()))
    finally:
        eng.dispose()


def test_a_failing_rule_logs_no_password_when_retention_is_used_as_a_library(
        pg_role: PgRole, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    """engine.run in-process, logging left at structlog's defaults; a batch fails.

    Under structlog's default configuration (a program embedding retention that never
    called retention.logs.configure) rule_failed with exc_info=True rendered a rich
    traceback with frame locals: the raw URL (source_url, Source.options, audit_url).
    Fixed in 2bb7588 (plain, scrubbed traceback text; URLs out of the reprs).
    """
    target = pg_role.database()
    _fill(target)
    eng = sa.create_engine(target, poolclass=NullPool)
    try:
        with eng.begin() as conn:  # deletes are refused: the rule fails with a traceback
            conn.execute(sa.text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'deleting is blocked'; END $$"))
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE DELETE ON orders "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    finally:
        eng.dispose()
    monkeypatch.setenv("SECRET_TARGET_URL", target)
    monkeypatch.setenv("SECRET_AUDIT_URL", f"sqlite:///{tmp_path}/audit.db")
    policy = load_policy(write_policy(tmp_path, POLICY, "secrets.yaml"))
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        outcome = engine.run(policy, dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    finally:
        structlog.configure(**saved)

    assert outcome.rules[0].status.value == "failed"
    assert "deleting is blocked" in (outcome.rules[0].error or "")
    out, err = capfd.readouterr()
    assert "rule_failed" in out + err
    leaked = [line for line in (out + err).splitlines() if PASSWORD in line]
    assert not leaked, "the log shows the password:\n" + "\n".join(leaked)
