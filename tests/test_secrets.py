"""Secrets stay secret (SPEC §4.9): a password in a URL never reaches an output.

Every command runs as a real subprocess against a PostgreSQL target whose URL carries
a password (a role made for the test; the throwaway server trusts every password), with
the audit store in a SQLite file, in a PostgreSQL database of its own (also with a
password) or in the target database itself; and once against unreachable servers. The
password must appear in no stdout, no stderr (the logs, at debug level), no file a
command writes (reports, exports, lease files) and no column of any audit table. A
password with URL-special characters is also checked in its percent-encoded form, in
the user part and in the query string (``?password=``) of plain ``postgresql://`` URLs;
MariaDB (which checks passwords) runs plain ``mysql://`` and ``mariadb://`` URLs.

A password with an unencoded '@' is bad input, refused in words that never depend on
the URL's text (SPEC §2)."""

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
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from retention import secrets as secrets_module
from retention import urls
from retention.audit.store import AuditStore, RunInfo
from retention.db import create_engine, safe_url
from retention.errors import PolicyError, RetentionError
from retention.policy.load import load_policy
from retention.run import engine
from retention.secrets import scrub
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


@pytest.fixture(autouse=True)
def _forget_passwords_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a test makes retention remember (hypothesis' random passwords too) is
    forgotten after it, so scrub() does not mask those strings in later tests."""
    monkeypatch.setattr(secrets_module, "_known", set(secrets_module._known))


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


_INSTALLED = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql",
              "mariadb": "mariadb+pymysql"}


def _explicit(url: str) -> str:
    """``url`` with the installed driver named (the tests open it without retention.db)."""
    parsed = make_url(url)
    driver = _INSTALLED.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _fill(url: str) -> None:
    eng = sa.create_engine(_explicit(url), poolclass=NullPool)
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
    eng = sa.create_engine(_explicit(url), poolclass=NullPool)
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


def _plain(url: str, key: str | None = "password", scheme: str | None = None) -> str:
    """``url`` as users write it: no driver name; the password in the query under ``key``."""
    parsed = make_url(url)
    password = parsed.password
    assert isinstance(password, str)
    plain = parsed.set(drivername=scheme or parsed.get_backend_name())
    if key is None:
        return plain.render_as_string(hide_password=False)
    bare = URL.create(plain.drivername, plain.username, None, plain.host, plain.port,
                      plain.database, plain.query)  # URL.set(password=None) changes nothing
    text = bare.render_as_string(hide_password=False)
    assert quote(password, safe="") not in text
    return text + ("&" if "?" in text else "?") + f"{key}={quote(password, safe='')}"


# -- the tests ----------------------------------------------------------------------


@pytest.mark.parametrize(("audit", "pg_role"), [
    ("sqlite", PASSWORD), ("postgres", PASSWORD), ("same-database", PASSWORD),
    ("plain-urls", SPECIAL)], ids=["sqlite", "postgres", "same-database", "plain-urls-special"],
    indirect=["pg_role"])
def test_no_command_shows_the_password_of_a_postgres_target_or_audit_store(
        pg_role: PgRole, tmp_path: Path, audit: str) -> None:
    """Every command with password URLs: nothing printed, written or recorded holds it.

    plain-urls: postgresql://app:PW@... for the target and postgresql://app@...?password=PW
    for the store, with a password that needs percent-encoding.
    """
    target = pg_role.database()
    if audit == "plain-urls":
        target = _plain(target, key=None)
        assert target.startswith("postgresql://app_") and ":p%40ss" in target
    _fill(target)
    audit_url = {"sqlite": f"sqlite:///{tmp_path}/audit.db", "postgres": pg_role.database(),
                 "same-database": target, "plain-urls": _plain(pg_role.database())}[audit]
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
    eng = sa.create_engine(_explicit(url), poolclass=NullPool)
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


# -- URLs: passwords in the query string, unencoded '@' ------------------------------


# Every query key the installed drivers read a password from: libpq (psycopg 3) takes
# any connection keyword (password, sslpassword), PyMySQL its keyword arguments
# (password, passwd, ssl_key_password); a libpq conninfo string can carry one too.
QUERY_PASSWORDS = [
    ("postgresql://app@db.example:5432/shop?password={pw}&sslmode=require", "sslmode=require"),
    ("postgresql+psycopg://app@db.example/shop?sslpassword={pw}", "db.example"),
    ("postgres://app@db.example/shop?application_name=x&password={pw}", "application_name=x"),
    ("mysql://app@db.example/shop?passwd={pw}&charset=utf8mb4", "charset=utf8mb4"),
    ("mariadb://app@db.example/shop?password={pw}", "db.example"),
    ("mysql+pymysql://app@db.example/shop?ssl_key_password={pw}", "db.example"),
    ("postgresql://app@db.example/shop?password={pw}&password={pw}2", "db.example"),
    ("postgresql://db.example/shop?conninfo=user%3Dapp%20password%3D{pw}", "db.example"),
]
QUERY_SECRET = "Qz7-Query-S3cret"


@pytest.mark.parametrize(("template", "kept"), QUERY_PASSWORDS)
def test_safe_url_masks_a_password_in_the_query_string(template: str, kept: str) -> None:
    """Every query key a driver reads a password from is masked; other keys stay readable."""
    shown = safe_url(template.format(pw=QUERY_SECRET))

    assert QUERY_SECRET not in shown, shown
    assert kept in shown, shown
    assert "***" in shown, shown


@given(password=st.text(st.characters(blacklist_categories=("Cs",)), max_size=16),
       place=st.sampled_from(["user", "password", "passwd", "sslpassword"]))
@settings(max_examples=300, deadline=None)
def test_safe_url_never_shows_a_percent_encoded_password(password: str, place: str) -> None:
    """Whatever the password and wherever it sits, safe_url shows none of its forms."""
    password = "PW" + password  # nothing else in the URL contains "PW"
    encoded = quote(password, safe="")
    url = (f"postgresql://app:{encoded}@db.example/shop" if place == "user"
           else f"postgresql://app@db.example/shop?{place}={encoded}")

    shown = safe_url(url)

    assert "PW" not in shown, shown
    assert "db.example" in shown


def test_a_query_string_password_is_masked_in_driver_errors_once_an_engine_is_made() -> None:
    """create_engine remembers a query-string password, so scrub() masks it in any text."""
    create_engine(f"postgresql://app@127.0.0.1:1/x?password={QUERY_SECRET}x").dispose()
    create_engine(f"mysql://app@127.0.0.1:1/x?passwd={quote(QUERY_SECRET + '&y')}").dispose()

    assert scrub(f"FATAL: wrong password {QUERY_SECRET}x") == "FATAL: wrong password ***"
    assert QUERY_SECRET not in scrub(f"rejected {QUERY_SECRET}&y")


# A password 'Kq7@Zx9/Wv4?Yj5=Hb8:Tn2' written into the URL without percent-encoding
# puts its tail into the host, port, database or query: each form must be refused.
AT_URLS = [
    "postgresql://app:Kq7@Zx9@db.example:5432/shop",
    "postgresql+psycopg://app:Kq7@Zx9:Tn2@db.example/shop",
    "postgresql://app:Kq7@Zx9/Wv4@db.example/shop",
    "mysql://app:Kq7@Zx9?Yj5@db.example/shop",
    "mysql+pymysql://app:Kq7@Zx9?Yj5=Hb8@db.example/shop",
    "mariadb://app:Kq7@Zx9/Wv4?Yj5=Hb8:Tn2@db.example/shop",
    "postgresql://app:Kq7@@db.example/shop",
]
TAILS = ("Kq7", "Zx9", "Wv4", "Yj5", "Hb8", "Tn2")

AT_POLICY = """\
policy: at
sources:
  shop:
    adapter: sql
    url: ${SECRET_TARGET_URL}
audit:
  url: ${SECRET_AUDIT_URL}
rules:
  orders:
    table: orders
    retain: 1 year after completed_at
"""


@pytest.mark.parametrize("url", AT_URLS)
@pytest.mark.parametrize("where", ["source", "audit"])
def test_a_password_with_an_unencoded_at_is_bad_input_named_without_echoing_it(
        tmp_path: Path, url: str, where: str) -> None:
    """One problem naming the file, the line and the URL's place; no piece of the password."""
    path = write_policy(tmp_path, AT_POLICY)
    good = f"sqlite:///{tmp_path}/x.db"
    env = {"SECRET_TARGET_URL": url if where == "source" else good,
           "SECRET_AUDIT_URL": url if where == "audit" else good}

    with pytest.raises(PolicyError) as raised:
        load_policy(path, env=env)

    (problem,) = raised.value.problems
    assert problem.line == (5 if where == "source" else 7)
    text = str(problem)
    assert text.startswith(f"{path}:{problem.line}: ")
    assert ("source 'shop'" if where == "source" else "audit") in text
    assert "percent-encode" in text and "%40" in text
    assert not [t for t in TAILS if t in text], text
    assert "db.example" not in text  # nothing of the URL is echoed


@given(password=st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
       at=st.integers(0, 12))
@settings(max_examples=200, deadline=None)
def test_any_password_with_an_unencoded_at_is_refused_with_the_same_words(
        tmp_path_factory: pytest.TempPathFactory, password: str, at: int) -> None:
    """The message never depends on the password: nothing of it can leak."""
    password = password[:at] + "@" + password[at:]
    path = tmp_path_factory.getbasetemp() / "at.yaml"
    path.write_text(AT_POLICY)
    env = {"SECRET_TARGET_URL": f"postgresql://app:{password}@db.example:5432/shop",
           "SECRET_AUDIT_URL": "sqlite:///audit.db"}

    with pytest.raises(PolicyError) as raised:
        load_policy(path, env=env)

    assert [str(p) for p in raised.value.problems] == [
        f"{path}:5: source 'shop': url: the password holds an unencoded '@'; "
        "percent-encode the password (an '@' is %40)"]
    encoded = env["SECRET_TARGET_URL"].replace(f":{password}@", f":{quote(password, safe='')}@")
    assert load_policy(path, env={**env, "SECRET_TARGET_URL": encoded}).name == "at"


def test_an_engine_for_a_url_with_an_unencoded_at_is_refused_without_echoing_it() -> None:
    """db.create_engine (a library user's way in, past the policy) refuses it the same way."""
    for url in AT_URLS:
        with pytest.raises(RetentionError) as raised:
            create_engine(url)
        assert "percent-encode" in str(raised.value)
        assert not [t for t in TAILS if t in str(raised.value)], str(raised.value)


@pytest.mark.parametrize("url", [
    "postgresql://app:Kq7Zx9Wv4@db.example:port/shop",    # the port is no number
    "postgresql//app:Kq7Zx9Wv4@db.example/shop",          # no scheme
    "not a url Kq7Zx9Wv4",
])
def test_a_url_that_does_not_parse_is_bad_input_without_echoing_it(
        tmp_path: Path, url: str) -> None:
    """SQLAlchemy's own message can hold the URL: the problem line says what, not the text."""
    path = write_policy(tmp_path, AT_POLICY)

    with pytest.raises(PolicyError) as raised:
        load_policy(path, env={"SECRET_TARGET_URL": url, "SECRET_AUDIT_URL": url})

    texts = [str(p) for p in raised.value.problems]
    assert len(texts) == 2 and texts[0].startswith(f"{path}:5: source 'shop': url: ")
    assert texts[1].startswith(f"{path}:7: audit: url: ")
    assert not [t for t in texts if "Kq7Zx9Wv4" in t or "db.example" in t], texts


def test_the_cli_refuses_an_unencoded_at_with_one_line_exit_2_and_changes_nothing(
        tmp_path: Path) -> None:
    """validate, report and run: exit 2, one line on stderr, no store made, no row gone."""
    target = f"sqlite:///{tmp_path}/target.db"
    _fill(target)
    before = _rows(target, ORDERS)
    ws = Workspace(tmp_path, target, "mysql://app:Kq7@Zx9@127.0.0.1:1/audit", "Kq7@Zx9")

    for args in (("validate", ws.policy), ("report", ws.policy, "--format", "json"),
                 ("run", ws.policy, "--format", "json")):
        done = ws.run(*args, codes=(2,))
        assert done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert f"{ws.policy}:9: audit: url: the password holds an unencoded '@'" in done.stderr
        assert not [t for t in TAILS if t in done.stderr], done.stderr

    assert _rows(target, ORDERS) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.yaml", "target.db"]


# -- plain postgresql:// and mysql:// URLs, passwords in the query string --------------


@dataclass
class MariaUser:
    """A user with a password on the test MariaDB server (which checks passwords)."""

    server: Server
    name: str
    password: str

    def _admin(self, statement: str) -> None:
        eng = sa.create_engine(self.server.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with eng.connect() as conn:
                conn.execute(sa.text(statement))
        finally:
            eng.dispose()

    def database(self) -> str:
        name = f"secrets_{uuid.uuid4().hex[:12]}"
        self.server.create_database(name)
        self._admin(f"GRANT ALL ON {name}.* TO '{self.name}'@'%'")
        url = make_url(self.server.url).set(username=self.name, password=self.password,
                                            database=name)
        return url.render_as_string(hide_password=False)


@pytest.fixture
def maria_user(mariadb_server: Server) -> Iterator[MariaUser]:
    user = MariaUser(mariadb_server, f"app_{uuid.uuid4().hex[:8]}", SPECIAL)
    quoted = user.password.replace("'", "''")
    user._admin(f"CREATE USER '{user.name}'@'%' IDENTIFIED BY '{quoted}'")
    try:
        yield user
    finally:
        user._admin(f"DROP USER IF EXISTS '{user.name}'@'%'")


@pytest.mark.filterwarnings("ignore:'passwd' is deprecated:DeprecationWarning")
def test_plain_mysql_and_mariadb_urls_work_and_no_command_shows_their_passwords(
        maria_user: MariaUser, tmp_path: Path) -> None:
    """mysql://...?passwd= (target) and mariadb://user:pw@ (store) on PyMySQL, no leak.

    MariaDB checks passwords, so the counts prove the query-string password was used.
    """
    target = _plain(maria_user.database(), key="passwd", scheme="mysql")
    audit_url = _plain(maria_user.database(), key=None, scheme="mariadb")
    assert target.startswith("mysql://") and "passwd=p%40ss" in target
    assert audit_url.startswith("mariadb://") and ":p%40ss" in audit_url
    _fill(target)
    ws = Workspace(tmp_path, target, audit_url, maria_user.password)

    ws.run("validate", ws.policy)
    report = json.loads(ws.run("report", ws.policy, "--as-of", AS_OF, "--format", "json").stdout)
    assert report["rules"][0]["due"] == 20, report
    done = json.loads(ws.run("run", ws.policy, "--as-of", AS_OF, "--format", "json").stdout)
    assert done["rules"][0]["status"] == "ok" and done["rules"][0]["deleted"] == 20, done
    ws.run("audit", "list", ws.policy)
    assert "intact" in ws.run("audit", "verify", ws.policy).stdout
    assert len(ws.run("audit", "export", ws.policy).stdout.splitlines()) == 20 + 40
    (tmp_path / "wrong").mkdir()
    wrong = Workspace(tmp_path / "wrong", target.replace("passwd=p%40ss", "passwd=nope"),
                      audit_url, maria_user.password)
    failed = wrong.run("validate", wrong.policy, codes=(2,))
    assert "Access denied" in failed.stderr, failed.stderr

    assert ws.assert_no_password(audit_url) > 30
    wrong.assert_no_password()


def test_the_audit_store_masks_remembered_passwords_in_run_summaries_and_entry_details(
        tmp_path: Path) -> None:
    """finish_run's summary and every entry's detail go through scrub; the chain holds."""
    secret = "Zq9-Store-S3cret"
    create_engine(f"postgresql+psycopg://app:{secret}@127.0.0.1:1/x").dispose()  # remembered
    url = f"sqlite:///{tmp_path}/audit.db"
    store = AuditStore(url)
    try:
        store.append([{"kind": "hold_placed", "run_id": "h1",
                       "detail": json.dumps({"reason": f"asked by {secret}", "n": 1})},
                      {"kind": "note", "run_id": "h1", "detail": f"plain text {secret}"}])
        store.start_run(RunInfo("r1", "p", "1", "0" * 64, "run",
                                dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
        store.finish_run("r1", "failed", [{"rule": "orders", "status": "failed",
                                           "error": f"OperationalError: {secret} refused"}])
        assert store.verify().ok
        summary = json.loads(store.run("r1")["summary"])  # type: ignore[index]
    finally:
        store.close()

    assert summary[0]["error"] == "OperationalError: *** refused"
    assert _assert_no_password_in_tables(url, {secret}) > 10


# -- an unencoded '@' in a query-string password -------------------------------------

QUERY_AT_TAIL = ("Hunter2", "pwtail")


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
@pytest.mark.parametrize("where", ["source", "audit"])
def test_an_unencoded_at_in_a_query_string_password_is_refused_by_every_command(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str, where: str) -> None:
    """``?password=Hunter2@pwtail.invalid`` would be read as user ``app@127.0.0.1``, password
    ``PORT/db?password=Hunter2`` and host ``pwtail.invalid``: exit 2, one line, nothing of
    it echoed, nothing created, no audit entry."""
    server: Server = request.getfixturevalue(f"{'postgres' if kind == 'postgresql' else kind}"
                                             "_server")
    port = make_url(server.url).port
    scheme = "postgresql" if kind == "postgresql" else "mysql"
    bad = f"{scheme}://app@127.0.0.1:{port}/pg_e?password=Hunter2@pwtail.invalid"
    target = f"sqlite:///{tmp_path}/target.db"
    _fill(target)
    before = _rows(target, ORDERS)
    ws = Workspace(tmp_path, bad if where == "source" else target,
                   bad if where == "audit" else f"sqlite:///{tmp_path}/audit.db", "Hunter2")
    line = 7 if where == "source" else 9
    place = "source 'shop'" if where == "source" else "audit"
    for args in (("validate", ws.policy), ("plan", ws.policy),
                 ("report", ws.policy, "--format", "json"), ("status", ws.policy),
                 ("run", ws.policy, "--as-of", AS_OF, "--format", "json"),
                 ("audit", "list", ws.policy)):
        done = ws.run(*args, codes=(2,))
        assert done.stdout == "", done.stdout
        assert done.stderr.strip().splitlines() == [
            f"{ws.policy}:{line}: {place}: url: the password holds an unencoded '@'; "
            "percent-encode the password (an '@' is %40)"], done.stderr
    for _command, done in ws.outputs:
        assert not [t for t in QUERY_AT_TAIL if t in done.stdout + done.stderr], done.stderr
    assert _rows(target, ORDERS) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.yaml", "target.db"]


AT_AFTER_QUERY = [  # one '@', but after the '?': read as the user part's end
    "postgresql://db.example:5432/shop?password=Kq7@Zx9",
    "postgresql://app@db.example:5432/shop?password=Kq7@Zx9",  # two, one of them fine
    "mysql://db.example:3306/shop?passwd=Kq7@Zx9&charset=utf8mb4",
    "mariadb://db.example/shop?password=Kq7@Zx9",
]


@pytest.mark.parametrize("url", AT_AFTER_QUERY)
def test_an_at_in_the_query_string_is_refused_without_echoing_it(url: str) -> None:
    """SQLAlchemy reads any '@' after 'user:' as the end of the user part; only one before
    the query string is that end."""
    reason = urls.problem(url)
    assert reason is not None and "percent-encode" in reason and "%40" in reason
    assert not [t for t in TAILS if t in reason]
    with pytest.raises(RetentionError):
        create_engine(url)


@pytest.mark.parametrize("url", [
    "postgresql://app:pa/ss@db.example/shop",     # an unencoded '/' is read right
    "postgresql://app:Kq7%40Zx9@db.example/shop",  # the '@' percent-encoded
    "postgresql://app@db.example/shop?password=Kq7%40Zx9",
    "sqlite:////tmp/retention@shop/audit.db",       # no user part to misread
    "postgresql:///shop?host=/run/postgresql&password=Kq7@Zx9",
])
def test_urls_whose_at_is_read_where_it_was_written_are_accepted(url: str) -> None:
    assert urls.problem(url) is None


@given(password=st.text(st.characters(blacklist_categories=("Cs", "Cc", "Z"),
                                      blacklist_characters="&#%+="), max_size=12),
       user=st.sampled_from(["", "app@", "app:pw@"]),
       port=st.sampled_from(["", ":5432"]),
       key=st.sampled_from(["password", "passwd", "sslpassword"]))
@settings(max_examples=300, deadline=None)
def test_a_url_retention_accepts_is_read_with_the_host_and_password_where_written(
        password: str, user: str, port: str, key: str) -> None:
    """No piece of a query-string password can turn into the host, port or user name."""
    url = f"postgresql://{user}db.example{port}/shop?{key}={password}"
    if urls.problem(url) is not None:
        assert "@" in password
        return
    parsed = make_url(url)
    assert (parsed.host, parsed.database) == ("db.example", "shop")
    assert parsed.username in (None, "app")
    assert parsed.query.get(key, "") == password
