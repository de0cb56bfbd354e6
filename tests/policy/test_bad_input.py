"""SPEC §2 "Bad input": every mistake in a policy is reported before anything changes.

Each case runs the real ``retention`` command and checks: exit code 2, nothing on
stdout, exactly one stderr line per problem, each starting ``FILE:LINE:`` (the exact
line of the mistake) and naming the rule it is in, the target database unchanged and
the audit store neither created nor changed. Mistakes only the live schema can reveal
run on SQLite, PostgreSQL and MariaDB; the others on SQLite.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from retention.audit.store import AuditStore
from tests.support import snapshot, write_policy

RETENTION = Path(sys.executable).with_name("retention")
AS_OF = "2026-02-28T12:00:00+00:00"
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
HANG_GUARD = 30.0  # seconds: only a hang fails this; bad input is refused within about one
_OUR_VARS = ("BAD_INPUT_URL", "ORDER_STATUS", "RETENTION_HASH_KEY", "RETENTION_POLICY",
             "RETENTION_AUDIT_URL", "SHOP_DATABASE_URL", "BATCH")

HEADER = """\
policy: bad-input
timezone: Europe/Amsterdam
sources:
  db:
    adapter: sql
    url: ${BAD_INPUT_URL}
audit:
  url: sqlite:///AUDIT
defaults:
  max_fraction: 1.0
rules:
"""
ORDERS = """\
  orders:
    source: db
    table: orders
    retain: 6 months after completion plus 7 years
    events: {completion: completed_at}
    where: {status: completed}
    children:
      - {table: order_lines, key: order_id}
"""


def cli(*args: str, env: dict[str, str], cwd: Path, max_memory: int | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run `retention ARGS`; ``max_memory`` caps its address space (bytes), so that a
    regression in a test of unbounded input fails instead of swapping the machine."""
    full = {k: v for k, v in os.environ.items() if k not in _OUR_VARS}
    full.update(env)

    def cap() -> None:
        if max_memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))

    return subprocess.run([str(RETENTION), *args], env=full, cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False, preexec_fn=cap)


MEMBER = {"id": 1, "closed_at": dt.datetime(2010, 1, 1), "is_active": False, "visits": 2,
          "small": 3, "tier": "gold", "score": 0.5, "balance": 12.5,
          "born": dt.date(1990, 1, 1), "code": "ab", "seen_at": dt.datetime(2020, 1, 1, 12)}


def make_target(url: str) -> None:
    """orders + order_lines (all due long ago), a table without a primary key, and
    members (two closed long ago) with a column of every type a `where` value is checked
    against."""
    meta = sa.MetaData()
    orders = sa.Table("orders", meta,
                      sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("completed_at", TS), sa.Column("status", sa.String(20)),
                      sa.Column("email", sa.String(100)))
    lines = sa.Table("order_lines", meta,
                     sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                     sa.Column("order_id", sa.Integer))
    logbook = sa.Table("logbook", meta, sa.Column("n", sa.Integer), sa.Column("at", TS))
    members = sa.Table("members", meta,
                       sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                       sa.Column("closed_at", TS), sa.Column("is_active", sa.Boolean),
                       sa.Column("visits", sa.Integer), sa.Column("small", sa.SmallInteger),
                       sa.Column("tier", sa.Enum("gold", "silver", name="tier")),
                       sa.Column("score", sa.Float), sa.Column("balance", sa.Numeric(10, 2)),
                       sa.Column("born", sa.Date), sa.Column("code", sa.String(8)),
                       sa.Column("seen_at", TS))
    engine = sa.create_engine(url)
    try:
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(orders.insert(), [
                {"id": i, "completed_at": dt.datetime(2010, 1, i), "status": "completed",
                 "email": f"u{i}@example.org"} for i in range(1, 5)])
            conn.execute(lines.insert(), [{"id": i, "order_id": 1 + i % 4} for i in range(8)])
            conn.execute(logbook.insert(), [{"n": i, "at": dt.datetime(2010, 1, 1)}
                                            for i in range(3)])
            conn.execute(members.insert(), [MEMBER, {**MEMBER, "id": 2, "code": "other"}])
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Problem:
    at: str  # text found on exactly one line of the policy: the line the problem is on
    rule: str | None  # the rule the line must name, or None outside any rule
    names: tuple[str, ...]  # what else the line must mention


def line_no(text: str, fragment: str) -> int:
    found = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(found) == 1, f"{fragment!r} is on lines {found}"
    return found[0]


@dataclass
class Target:
    url: str
    dir: Path

    @property
    def audit(self) -> Path:
        return self.dir / "audit.db"

    def policy(self, rules: str = ORDERS, header: str = HEADER) -> str:
        return header.replace("AUDIT", str(self.audit)) + rules

    def assert_rejected(self, text: str, problems: list[Problem], command: str = "run",
                        env: dict[str, str] | None = None, audit_exists: bool = False,
                        options: tuple[str, ...] | None = None, raw: bytes | None = None,
                        max_memory: int | None = None) -> None:
        """`retention COMMAND POLICY OPTIONS` (OPTIONS default to `--as-of` for run) exits 2
        with one line per problem and changes nothing; ``raw`` replaces the file's bytes
        (``text`` then only locates the lines)."""
        path = write_policy(self.dir, text)
        if raw is not None:
            path.write_bytes(raw)
        if audit_exists:
            AuditStore(f"sqlite:///{self.audit}").close()
        audit_before = self.audit.read_bytes() if audit_exists else None
        before = snapshot(self.url)
        if options is None:
            options = ("--as-of", AS_OF) if command == "run" else ()
        args = [*command.split(), str(path), *options]

        started = time.monotonic()
        proc = cli(*args, env={"BAD_INPUT_URL": self.url} if env is None else env,
                   cwd=self.dir, max_memory=max_memory)

        assert time.monotonic() - started < HANG_GUARD
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == len(problems), proc.stderr
        for problem in problems:
            prefix = f"{path}:{line_no(text, problem.at)}: "
            hits = [line for line in lines if line.startswith(prefix)
                    and (problem.rule is None or f"'{problem.rule}'" in line)
                    and all(name in line for name in problem.names)]
            assert len(hits) == 1, f"{problem} ({prefix}) not one of:\n{proc.stderr}"
        assert snapshot(self.url) == before
        if audit_exists:
            assert self.audit.read_bytes() == audit_before
        else:
            assert not self.audit.exists()

    def assert_refused(self, *args: str, names: tuple[str, ...]) -> None:
        """`retention ARGS` (POLICY standing for the valid base policy) exits 2 with one
        line naming ``names``, quickly, and changes neither the target nor the audit store."""
        path = write_policy(self.dir, self.policy())
        before = snapshot(self.url)
        started = time.monotonic()

        proc = cli(*(str(path) if a == "POLICY" else a for a in args),
                   env={"BAD_INPUT_URL": self.url}, cwd=self.dir)

        assert time.monotonic() - started < HANG_GUARD
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert all(name in proc.stderr for name in names), proc.stderr
        assert snapshot(self.url) == before
        assert not self.audit.exists()


@pytest.fixture
def sqlite_target(sqlite_url: str, tmp_path: Path) -> Target:
    make_target(sqlite_url)
    return Target(sqlite_url, tmp_path)


@pytest.fixture
def target(db_url: str, tmp_path: Path) -> Target:
    make_target(db_url)
    return Target(db_url, tmp_path)


def test_the_policy_without_mistakes_would_delete_rows(sqlite_target: Target) -> None:
    """The base policy every case spoils is valid and would change the target if run."""
    path = write_policy(sqlite_target.dir, sqlite_target.policy())

    proc = cli("run", str(path), "--as-of", AS_OF, env={"BAD_INPUT_URL": sqlite_target.url},
               cwd=sqlite_target.dir)

    assert proc.returncode == 0, proc.stderr
    assert snapshot(sqlite_target.url)["orders"] == []


# -- mistakes in the file itself --------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_unknown_top_level_key_is_reported_on_its_line(sqlite_target: Target,
                                                          command: str) -> None:
    """`colour:` at the top level is one problem on line 3, outside any rule."""
    header = HEADER.replace("timezone: Europe/Amsterdam\n",
                            "timezone: Europe/Amsterdam\ncolour: blue\n")
    text = sqlite_target.policy(header=header)
    assert line_no(text, "colour: blue") == 3
    sqlite_target.assert_rejected(text, [Problem("colour: blue", None, ("colour",))], command)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_unknown_rule_key_is_reported_on_its_line_with_the_rule(sqlite_target: Target,
                                                                   command: str) -> None:
    """`frobnicate:` inside rule orders is reported on its own line, naming the rule."""
    text = sqlite_target.policy(ORDERS + "    frobnicate: yes\n")
    assert line_no(text, "frobnicate") == 20
    sqlite_target.assert_rejected(text, [Problem("frobnicate", "orders", ("frobnicate",))],
                                  command)


def test_a_duplicate_rule_name_is_reported_on_the_second_definition(
        sqlite_target: Target) -> None:
    """A second rule called orders is reported on the line that repeats the name."""
    text = sqlite_target.policy(ORDERS + "  orders:  # the same name again\n"
                                "    table: orders\n    retain: 1 day after completed_at\n")
    assert line_no(text, "the same name again") == 20
    sqlite_target.assert_rejected(
        text, [Problem("the same name again", "orders", ("duplicate",))])


def test_an_unparseable_retain_is_reported_on_its_line(sqlite_target: Target) -> None:
    """`6 monthz after completion` is reported on the retain line, naming the bad word."""
    text = sqlite_target.policy(ORDERS.replace("6 months after completion plus 7 years",
                                               "6 monthz after completion"))
    assert line_no(text, "monthz") == 15
    sqlite_target.assert_rejected(text, [Problem("retain:", "orders", ("monthz",))])


def test_an_unknown_source_is_reported_on_the_source_line(sqlite_target: Target) -> None:
    """`source: warehouse` names a source the policy does not define."""
    text = sqlite_target.policy(ORDERS.replace("source: db", "source: warehouse"))
    sqlite_target.assert_rejected(text, [Problem("source: warehouse", "orders",
                                                 ("warehouse",))])


def test_an_unset_environment_variable_is_reported_on_its_line(sqlite_target: Target) -> None:
    """The source URL `${BAD_INPUT_URL}` with that variable unset is one problem on line 6."""
    text = sqlite_target.policy()
    assert line_no(text, "${BAD_INPUT_URL}") == 6
    sqlite_target.assert_rejected(text, [Problem("${BAD_INPUT_URL}", None, ("BAD_INPUT_URL",))],
                                  env={})


def test_an_unset_environment_variable_inside_a_rule_names_the_rule(
        sqlite_target: Target) -> None:
    """`where: {status: "${ORDER_STATUS}"}` unset is reported on its line, naming orders."""
    text = sqlite_target.policy(ORDERS.replace("{status: completed}",
                                               '{status: "${ORDER_STATUS}"}'))
    sqlite_target.assert_rejected(text, [Problem("ORDER_STATUS", "orders", ("ORDER_STATUS",))])


def test_an_unset_hash_key_variable_is_reported_on_the_action_line(
        sqlite_target: Target) -> None:
    """An anonymize `hash` strategy with RETENTION_HASH_KEY unset is a problem of its rule."""
    text = sqlite_target.policy(ORDERS + "  emails:\n    table: orders\n"
                                "    retain: 1 day after completed_at\n"
                                "    action: {anonymize: {email: hash}}\n")
    sqlite_target.assert_rejected(text, [Problem("{email: hash}", "emails",
                                                 ("RETENTION_HASH_KEY",))])


def test_malformed_yaml_is_reported_on_the_broken_line(sqlite_target: Target) -> None:
    """A scalar followed by more text is not YAML; the line that breaks it is named."""
    text = sqlite_target.policy(ORDERS + '    legal_basis: "Contract" (7 years)\n')
    assert line_no(text, "legal_basis") == 20
    sqlite_target.assert_rejected(text, [Problem("legal_basis", None, ("YAML",))])


@pytest.mark.parametrize("command", ["run", "validate"])
def test_several_mistakes_in_the_file_are_all_reported_one_per_line(
        sqlite_target: Target, command: str) -> None:
    """Four mistakes in two rules and the top level give four lines; the audit store is kept."""
    header = HEADER.replace("timezone: Europe/Amsterdam\n",
                            "timezone: Europe/Amsterdam\ncolour: blue\n")
    rules = (ORDERS.replace("source: db", "source: warehouse") + "    frobnicate: yes\n"
             "  accounts:\n    table: accounts\n    retain: 3 monthz after closure\n")
    text = sqlite_target.policy(rules, header)
    sqlite_target.assert_rejected(text, [
        Problem("colour: blue", None, ("colour",)),
        Problem("source: warehouse", "orders", ("warehouse",)),
        Problem("frobnicate", "orders", ("frobnicate",)),
        Problem("3 monthz", "accounts", ("monthz",)),
    ], command, audit_exists=True)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_policy_file_that_does_not_exist_exits_2_with_one_line(tmp_path: Path,
                                                                 command: str) -> None:
    """A missing POLICY path is one line on stderr naming the path, and exit code 2."""
    missing = tmp_path / "nope.yaml"

    proc = cli(command, str(missing), env={}, cwd=tmp_path)

    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and str(missing) in proc.stderr
    assert list(tmp_path.iterdir()) == []


# -- mistakes only the live schema shows (every database) -----------------------------


def test_a_table_missing_from_the_schema_is_reported_on_the_table_line(target: Target) -> None:
    """`table: nosuch` is reported on its line, naming the rule and the table."""
    text = target.policy(ORDERS.replace("table: orders", "table: nosuch"))
    target.assert_rejected(text, [Problem("table: nosuch", "orders", ("nosuch",))])


def test_a_missing_event_column_is_reported_on_the_events_line(target: Target) -> None:
    """`events: {completion: shipped_at}` names a column the table does not have."""
    text = target.policy(ORDERS.replace("completion: completed_at", "completion: shipped_at"))
    target.assert_rejected(text, [Problem("shipped_at", "orders", ("shipped_at",))])


def test_a_missing_where_column_is_reported_on_the_where_line(target: Target) -> None:
    """`where: {state: completed}` names a column the table does not have."""
    text = target.policy(ORDERS.replace("{status: completed}", "{state: completed}"))
    target.assert_rejected(text, [Problem("where:", "orders", ("'state'",))])


def test_a_missing_anonymize_column_is_reported_on_the_action_line(target: Target) -> None:
    """`anonymize: {phone: null}` names a column the table does not have."""
    text = target.policy(ORDERS + "  emails:\n    table: orders\n"
                         "    retain: 1 day after completed_at\n"
                         "    action: {anonymize: {phone: null}}\n")
    target.assert_rejected(text, [Problem("{phone: null}", "emails", ("phone",))])


def test_a_table_without_a_primary_key_is_reported_on_the_table_line(target: Target) -> None:
    """A rule on `logbook` (no primary key) cannot be batched and is rejected."""
    text = target.policy(ORDERS + "  logbook:\n    table: logbook\n"
                         "    retain: 1 year after at\n")
    target.assert_rejected(text, [Problem("table: logbook", "logbook", ("primary key",))])


def test_an_event_column_that_is_not_a_timestamp_is_reported(target: Target) -> None:
    """`events: {completion: status}` points at a text column."""
    text = target.policy(ORDERS.replace("completion: completed_at", "completion: status"))
    target.assert_rejected(text, [Problem("events:", "orders", ("status", "date"))])


def test_an_unknown_event_word_is_reported_on_the_retain_line(target: Target) -> None:
    """`after shipment` is neither in `events` nor a column of the table."""
    text = target.policy(ORDERS.replace("after completion", "after shipment"))
    target.assert_rejected(text, [Problem("retain:", "orders", ("shipment",))])


@pytest.mark.parametrize("command", ["run", "validate"])
def test_several_schema_mistakes_are_all_reported_one_per_line(sqlite_target: Target,
                                                               command: str) -> None:
    """A missing table, a missing column and a keyless table in three rules: three lines."""
    rules = (ORDERS.replace("completion: completed_at", "completion: shipped_at")
             + "  accounts:\n    table: accounts\n    retain: 3 months after closed_at\n"
             + "  logbook:\n    table: logbook\n    retain: 1 year after at\n")
    text = sqlite_target.policy(rules)
    sqlite_target.assert_rejected(text, [
        Problem("shipped_at", "orders", ("shipped_at",)),
        Problem("table: accounts", "accounts", ("accounts",)),
        Problem("table: logbook", "logbook", ("primary key",)),
    ], command, audit_exists=True)


# -- where values against the column types (every database) --------------------------

MEMBERS = """\
  members:
    source: db
    table: members
    retain: 1 day after closed_at
    where:
"""
BAD_WHERE = {  # column -> a value that does not fit it (each on its own line)
    "is_active": '"no"',  # text on a boolean
    "visits": '"5"',  # text on an integer
    "small": "99999999999999999999",  # beyond any integer column
    "tier": "platinum",  # not a member of the enum (longer than VARCHAR(6) on SQLite)
    "score": ".nan",  # not a number
    "balance": "123456789.5",  # beyond NUMERIC(10, 2)
    "born": "someday",  # text on a date
    "code": "[ab, waytoolongforit]",  # longer than VARCHAR(8)
    "seen_at": "17",  # a number on a timestamp
}


@pytest.mark.parametrize("command", ["validate", "plan", "report", "run"])
def test_where_values_that_do_not_fit_their_columns_are_reported_per_column(
        target: Target, command: str) -> None:
    """Each bad `where` value is one line on its own line naming the rule and the column,
    for every command, before anything is read or changed (`is_active: "no"` on a boolean
    used to pass validate, fail run and crash report)."""
    where = "".join(f"      {column}: {value}\n" for column, value in BAD_WHERE.items())
    text = target.policy(ORDERS + MEMBERS + where)
    target.assert_rejected(text, [
        Problem(f"      {column}: {value}", "members", (f"'{column}'",))
        for column, value in BAD_WHERE.items()], command)


def test_where_values_that_fit_their_columns_are_bound_as_written(target: Target) -> None:
    """A value of the right type for every kind of column passes and selects exactly the
    matching row: true/false on booleans (TINYINT(1) on MariaDB), enum members, numbers,
    dates and timestamps as YAML writes them."""
    where = ("      is_active: false\n      visits: [2, 7]\n      small: 3\n"
             "      tier: gold\n      score: 0.5\n      balance: 12.5\n"
             "      born: 1990-01-01\n      code: ab\n      seen_at: 2020-01-01 12:00:00\n")
    path = write_policy(target.dir, target.policy(MEMBERS + where))

    proc = cli("run", str(path), "--as-of", AS_OF, env={"BAD_INPUT_URL": target.url},
               cwd=target.dir)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [row["id"] for row in snapshot(target.url)["members"]] == [2]


# -- hostile values (SPEC §2: NaN, infinity, absurd numbers, alias bombs, bad bytes) ---

DIGITS_30 = "123456789012345678901234567890"


@pytest.mark.parametrize(("line", "key"), [
    ("max_fraction: .nan", "max_fraction"),  # would turn the safety limit off
    ("max_fraction: -.inf", "max_fraction"),
    ("lock_timeout: .nan", "lock_timeout"),
    ("statement_timeout: .inf", "statement_timeout"),
    (f"batch_size: {DIGITS_30}", "batch_size"),
    (f"max_rows: {DIGITS_30}", "max_rows"),
    ("batch_size: 1" + "0" * 5000, "batch_size"),  # more digits than Python reads
    ("batch_size: 1000001", "batch_size"),  # past the most rows one batch may take
    ("batch_seconds: .nan", "batch_seconds"),
    ("batch_seconds: 0", "batch_seconds"),  # batches of one row, forever
    ("batch_seconds: 3601", "batch_seconds"),  # a transaction of an hour is no batch
    ("schedule: every 100000000000 hours", "schedule"),
    ("legal_basis: 0000-01-01", "legal_basis"),  # a YAML date before year 1
], ids=lambda v: v if len(v) < 40 else v[:20] + "...")
def test_a_hostile_number_in_a_rule_is_reported_on_its_line(
        sqlite_target: Target, line: str, key: str) -> None:
    """NaN, infinities, numbers past any sane bound and unreadable YAML values are one line
    naming the rule and the key; the run changes nothing."""
    text = sqlite_target.policy(ORDERS + f"    {line}\n")
    sqlite_target.assert_rejected(text, [Problem(line[:40], "orders", (key,))])


def test_an_amount_with_thousands_of_digits_in_retain_is_reported_on_its_line(
        sqlite_target: Target) -> None:
    """`retain: 1000...0 days after ...` (5001 digits) is a problem of the retain line."""
    phrase = "1" + "0" * 5000 + " days after completion"
    text = sqlite_target.policy(ORDERS.replace("6 months after completion plus 7 years",
                                               phrase))
    sqlite_target.assert_rejected(text, [Problem("retain: 1000", "orders", ("retain",))])


@pytest.mark.parametrize("command", ["validate", "plan", "report", "run"])
def test_hostile_numbers_from_defaults_and_variables_are_reported_by_every_command(
        sqlite_target: Target, command: str) -> None:
    """A NaN in `defaults:` (on the defaults line, naming each rule using it), an infinity
    from `${BATCH}` and an absurd number in the rule are all reported, one line each."""
    header = HEADER.replace("  max_fraction: 1.0\n", "  max_fraction: .nan\n")
    text = sqlite_target.policy(ORDERS + "    batch_size: ${BATCH}\n"
                                f"    max_rows: {DIGITS_30}\n", header)
    sqlite_target.assert_rejected(text, [
        Problem("max_fraction: .nan", "orders", ("max_fraction", "nan")),
        Problem("${BATCH}", "orders", ("batch_size", "inf")),
        Problem(f"max_rows: {DIGITS_30}", "orders", ("max_rows",)),
    ], command, env={"BAD_INPUT_URL": sqlite_target.url, "BATCH": ".inf"})


def _alias_bomb() -> str:
    """The 'billion laughs': nine levels of nine aliases, 9**9 values from 0.6 KB."""
    lines = ["description:", '  - &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  - &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", ["validate", "run"])
def test_yaml_aliases_that_expand_without_bound_are_refused_quickly(
        sqlite_target: Target, command: str) -> None:
    """The 0.7 KB alias bomb (it took 60 s and 4 GB) is one line on the anchor line where
    the expansion passes the bound, and the command ends at once."""
    bomb = _alias_bomb()
    text = sqlite_target.policy(header=HEADER.replace("rules:\n", bomb + "rules:\n"))
    assert len(text.encode()) < 1000
    sqlite_target.assert_rejected(text, [Problem("&a5", None, ("*a4", "values"))], command,
                                  max_memory=2**31)


@pytest.mark.parametrize(("value", "names"), [
    ("&loop [a, *loop]", ("*loop",)),  # an alias inside the value it names
    ("[" * 500 + "]" * 500, ("deep",)),  # nesting past any policy's needs
], ids=["recursive-alias", "deep-nesting"])
def test_a_self_referencing_alias_or_deep_nesting_is_reported_on_its_line(
        sqlite_target: Target, value: str, names: tuple[str, ...]) -> None:
    """Neither expands forever nor overflows the stack: one line naming the rule."""
    text = sqlite_target.policy(ORDERS + f"    legal_basis: {value}\n")
    sqlite_target.assert_rejected(text, [Problem("legal_basis:", "orders", names)],
                                  max_memory=2**31)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("where", ["rule", "top"])
def test_bytes_that_are_not_utf8_are_reported_on_their_line(
        sqlite_target: Target, command: str, where: str) -> None:
    """A byte that is not UTF-8 is one line naming its line, its byte offset and, inside a
    rule, the rule (it used to be replaced silently)."""
    if where == "rule":
        text = sqlite_target.policy(ORDERS + "    legal_basis: Contract @@@\n")
        expected = Problem("legal_basis: Contract", "orders", ("UTF-8", "0xff"))
    else:
        text = sqlite_target.policy(header="description: Shop @@@\n" + HEADER)
        expected = Problem("description: Shop", None, ("UTF-8", "0xff"))
    raw = text.encode().replace(b"@@@", b"caf\xff")
    offset = raw.index(b"\xff")
    sqlite_target.assert_rejected(text, [Problem(expected.at, expected.rule,
                                                 (*expected.names, f"offset {offset}"))],
                                  command, raw=raw)


# -- instants outside the calendar -----------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "report", "run"])
@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00"])
def test_an_as_of_outside_the_calendar_is_one_line(sqlite_target: Target, command: str,
                                                    instant: str) -> None:
    """Both ends of the calendar (they crashed with OverflowError, exit 1) exit 2."""
    sqlite_target.assert_refused(command, "POLICY", "--as-of", instant,
                                 names=("--as-of", instant, "calendar"))


def test_a_run_whose_cutoff_leaves_the_calendar_names_the_rule(sqlite_target: Target) -> None:
    """Early in year 1, '6 months ... plus 7 years' before it is no date: the retain line
    of the rule says so (report and plan say that nothing is due yet:
    tests/report/test_calendar_ends.py)."""
    text = sqlite_target.policy()
    sqlite_target.assert_rejected(
        text, [Problem("retain: 6 months", "orders", ("0001-01-05", "calendar"))], "run",
        options=("--as-of", "0001-01-05T00:00:00Z"))


def test_a_report_looking_ahead_past_the_calendar_is_one_line(sqlite_target: Target) -> None:
    """The report counts what falls due within 90 days; from late 9999 that leaves the
    calendar."""
    sqlite_target.assert_refused("report", "POLICY", "--as-of", "9999-11-01T00:00:00Z",
                                 names=("9999-11-01", "90 days", "calendar"))


@pytest.mark.parametrize("command", ["replay", "audit export"])
def test_a_since_outside_the_calendar_is_one_line(sqlite_target: Target, command: str) -> None:
    """`--since 0001-01-01T00:00:00+01:00` is an instant before year 1 in UTC."""
    sqlite_target.assert_refused(*command.split(), "POLICY", "--since",
                                 "0001-01-01T00:00:00+01:00", names=("--since", "calendar"))


# -- absurd numbers on the command line ------------------------------------------------


@pytest.mark.parametrize(("args", "names"), [
    (("run", "POLICY", "--as-of", AS_OF, "--max-rows", DIGITS_30), ("--max-rows",)),
    (("audit", "list", "POLICY", "--limit", DIGITS_30), ("--limit",)),
    (("daemon", "POLICY", "--misfire-grace", DIGITS_30), ("--misfire-grace",)),
    (("report", "POLICY", "--samples", DIGITS_30), ("--samples",)),
    (("hold", "add", "POLICY", "orders", "99999999999999999999", "--reason", "x"),
     ("'id'", "99999999999999999999")),
], ids=["run-max-rows", "audit-limit", "daemon-misfire-grace", "report-samples",
        "hold-key"])
def test_an_absurd_number_on_the_command_line_is_one_line(
        sqlite_target: Target, args: tuple[str, ...], names: tuple[str, ...]) -> None:
    """Option values and hold keys past what any column or clock holds exit 2 at once."""
    sqlite_target.assert_refused(*args, names=names)
