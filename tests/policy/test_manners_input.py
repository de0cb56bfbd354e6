"""Bad values of the run manners (pause, max_runtime, max_replica_lag, replicas) are bad input.

Each case runs the real ``retention`` command (the helpers of ``test_bad_input``): exit
code 2, one stderr line per problem naming file, line and rule, nothing changed, no
audit store created.
"""

from __future__ import annotations

import pytest

from tests.policy.test_bad_input import (
    DIGITS_30,
    HEADER,
    ORDERS,
    Problem,
    Target,
    cli,
    sqlite_target,  # noqa: F401  # a fixture, used by name
)
from tests.support import write_policy

MARIA = "mysql://app:S3cretPw@127.0.0.1:1/shop"  # never reached: load-time checks only
MARIA_HEADER = HEADER.replace("audit:\n", f"  maria:\n    adapter: sql\n    url: {MARIA}\n"
                              "MARIA_OPTIONS\naudit:\n")
MARIA_RULE = "  maria-orders:\n    source: maria\n    table: orders\n" \
             "    retain: 1 day after completed_at\n"


@pytest.mark.parametrize(("line", "key"), [
    ("pause_between_batches: .nan", "pause_between_batches"),
    ("pause_between_batches: -1", "pause_between_batches"),
    ("pause_between_batches: 86400", "pause_between_batches"),  # past MAX_PAUSE
    ("max_runtime: .inf", "max_runtime"),
    ("max_runtime: 0", "max_runtime"),
    ("max_runtime: 8 days", "max_runtime"),  # no such unit
    ("max_runtime: 200 hours", "max_runtime"),  # more than a week
    (f"max_runtime: {DIGITS_30} minutes", "max_runtime"),
    ("max_replica_lag: .nan", "max_replica_lag"),
    ("max_replica_lag: 0", "max_replica_lag"),
], ids=lambda v: v[:40])
def test_a_bad_manner_in_a_rule_is_reported_on_its_line(
        sqlite_target: Target, line: str, key: str) -> None:  # noqa: F811
    """NaN, infinities, negative, zero, past their bound or not a duration: one line naming
    the rule and the key; nothing changes."""
    text = sqlite_target.policy(ORDERS + f"    {line}\n")
    sqlite_target.assert_rejected(text, [Problem(line[:40], "orders", (key,))])


@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_manners_from_defaults_and_variables_are_reported_per_rule(
        sqlite_target: Target, command: str) -> None:  # noqa: F811
    """A NaN pause in `defaults:` is reported on the defaults line naming the rule; an
    infinite max_runtime from `${RUNTIME}` on the rule's line."""
    header = HEADER.replace("  max_fraction: 1.0\n",
                            "  max_fraction: 1.0\n  pause_between_batches: .nan\n")
    text = sqlite_target.policy(ORDERS + "    max_runtime: ${RUNTIME}\n", header)
    sqlite_target.assert_rejected(text, [
        Problem("pause_between_batches: .nan", "orders", ("pause_between_batches", "nan")),
        Problem("${RUNTIME}", "orders", ("max_runtime", "inf")),
    ], command, env={"BAD_INPUT_URL": sqlite_target.url, "RUNTIME": ".inf"})


def test_max_replica_lag_on_a_sqlite_source_is_bad_input(
        sqlite_target: Target) -> None:  # noqa: F811
    """SQLite has no replicas: a lag limit there would watch nothing, so it is refused."""
    text = sqlite_target.policy(ORDERS + "    max_replica_lag: 5\n")
    sqlite_target.assert_rejected(text, [Problem("max_replica_lag: 5", "orders",
                                                 ("SQLite", "no replicas"))])


def test_a_bad_source_lag_is_reported_on_the_source_line(
        sqlite_target: Target) -> None:  # noqa: F811
    """`max_replica_lag: .nan` under a source is one line naming the source, not the rule."""
    header = HEADER.replace("    url: ${BAD_INPUT_URL}\n",
                            "    url: ${BAD_INPUT_URL}\n    max_replica_lag: .nan\n")
    text = sqlite_target.policy(header=header)
    sqlite_target.assert_rejected(text, [Problem("max_replica_lag: .nan", None,
                                                 ("source 'db'", "max_replica_lag", "nan"))])


def test_a_mariadb_source_with_a_lag_limit_must_list_its_replicas(
        sqlite_target: Target) -> None:  # noqa: F811
    """MariaDB replicas report lag only on their own connections: without `replicas` the
    limit would watch nothing."""
    header = MARIA_HEADER.replace("MARIA_OPTIONS\n", "")
    text = sqlite_target.policy(ORDERS + MARIA_RULE + "    max_replica_lag: 5\n", header)
    sqlite_target.assert_rejected(text, [Problem("max_replica_lag: 5", "maria-orders",
                                                 ("replicas",))])


def test_a_source_lag_limit_is_reported_on_the_source_line_for_each_rule(
        sqlite_target: Target) -> None:  # noqa: F811
    """A lag limit set on a MariaDB source without replicas names the rule that uses it, on
    the source's line."""
    header = MARIA_HEADER.replace("MARIA_OPTIONS\n", "    max_replica_lag: 7\n")
    text = sqlite_target.policy(ORDERS + MARIA_RULE, header)
    sqlite_target.assert_rejected(text, [Problem("max_replica_lag: 7", "maria-orders",
                                                 ("replicas",))])


@pytest.mark.parametrize(("replicas", "at", "names"), [
    ('["postgresql://app:S3cretPw@replica/shop"]', "replicas:", ("replicas[0]", "MariaDB")),
    ('["mysql://app:S3cret@Pw@replica/shop"]', "replicas:", ("replicas[0]", "%40")),
    ('["not a url"]', "replicas:", ("replicas[0]", "not a database URL")),
    ("[5]", "replicas:", ("replicas[0]",)),
    ("mysql://app@replica/shop", "replicas:", ("list",)),
    ("[]", "replicas:", ("list",)),
], ids=["postgres-url", "unencoded-at", "not-a-url", "a-number", "not-a-list", "empty"])
def test_a_bad_replica_url_is_one_line_that_never_shows_the_password(
        sqlite_target: Target, replicas: str, at: str, names: tuple[str, ...]) -> None:  # noqa: F811
    """Replica URLs are checked like source URLs: parseable, MariaDB/MySQL, '@' encoded;
    the message names the entry, never its text."""
    header = MARIA_HEADER.replace("MARIA_OPTIONS\n", f"    replicas: {replicas}\n")
    text = sqlite_target.policy(header=header)
    sqlite_target.assert_rejected(text, [Problem(at, None, ("source 'maria'", *names))])
    if "S3cret" not in replicas:
        return
    proc = cli("validate", str(write_policy(sqlite_target.dir, text)),
               env={"BAD_INPUT_URL": sqlite_target.url}, cwd=sqlite_target.dir)
    assert "S3cret" not in proc.stderr + proc.stdout and "Pw@replica" not in proc.stderr


def test_replicas_on_a_sqlite_source_are_bad_input(sqlite_target: Target) -> None:  # noqa: F811
    """Only MariaDB/MySQL sources list replicas (PostgreSQL reports them on the primary)."""
    header = HEADER.replace("    url: ${BAD_INPUT_URL}\n", "    url: ${BAD_INPUT_URL}\n"
                            "    replicas: ['mysql://app@replica/shop']\n")
    text = sqlite_target.policy(header=header)
    sqlite_target.assert_rejected(text, [Problem("replicas:", None, ("MariaDB/MySQL",))])


@pytest.mark.parametrize("value", ["nan", "-5", "8 days", "1000 hours", DIGITS_30])
def test_a_bad_max_runtime_on_the_command_line_is_one_line(
        sqlite_target: Target, value: str) -> None:  # noqa: F811
    """`run --max-runtime` takes seconds or a duration within the policy key's bounds."""
    sqlite_target.assert_refused("run", "POLICY", "--max-runtime", value,
                                 names=("--max-runtime",))
