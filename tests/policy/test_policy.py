"""Loading policy files (SPEC §2): merged defaults, interpolation, and every problem on its line."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from retention.actions import ColumnAction, Strategy
from retention.errors import PolicyError, Problem, RetentionError
from retention.filters import Filter, Op
from retention.period import Kind, Span, Unit
from retention.policy.load import load_policy, load_policy_text
from retention.policy.rules import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_HASH_KEY_ENV,
    DEFAULT_MAX_FRACTION,
    DEFAULT_SCHEDULE,
    MAX_BATCH_SIZE,
    MAX_LOCK_TIMEOUT,
    MAX_ROWS,
    MAX_STATEMENT_TIMEOUT,
    MIN_TIMEOUT,
    Child,
)

SHOP = textwrap.dedent("""\
    policy: webshop
    version: "2018-05-25"
    timezone: Europe/Amsterdam
    sources:
      shop:
        adapter: sql
        url: ${SHOP_DATABASE_URL}
    audit:
      url: ${RETENTION_AUDIT_URL:-sqlite:///retention-audit.db}
    defaults:
      schedule: daily at 04:00
      batch_size: 5000
    rules:
      orders:
        source: shop
        table: orders
        retain: 6 months after completion plus 7 years
        events: {completion: completed_at}
        where: {status: completed}
        children:
          - {table: order_lines, key: order_id}
        legal_basis: Statutory bookkeeping obligation (7 years)
      accounts:
        source: shop
        table: accounts
        retain: 3 months after closure
        events: {closure: closed_at}
        batch_size: 100
    """)
SHOP_ENV = {"SHOP_DATABASE_URL": "postgresql://shop@db/shop"}

# Lines 1-7; tests append rule keys from line 8 on.
MINI = textwrap.dedent("""\
    policy: p
    sources:
      shop: {adapter: sql}
    rules:
      r:
        table: t
        retain: 1 day after x
    """)


def problems(text: str, env: dict[str, str] | None = None, path: str = "p.yaml") -> list[str]:
    """The lines of the PolicyError that loading ``text`` raises."""
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, path, {} if env is None else env)
    lines = str(caught.value).splitlines()
    assert lines == [str(p) for p in caught.value.problems]
    return lines


def with_rule_lines(*lines: str) -> str:
    """MINI with ``lines`` added to rule 'r' (the first one is line 8)."""
    return MINI + "".join(f"    {line}\n" for line in lines)


# ---------------------------------------------------------------------------- loading


def test_a_valid_policy_loads_its_header_sources_and_rules() -> None:
    """The SPEC-style example loads into a Policy with both rules in file order."""
    policy = load_policy_text(SHOP, "shop.yaml", SHOP_ENV)
    assert (policy.name, policy.version, policy.timezone) == (
        "webshop",
        "2018-05-25",
        "Europe/Amsterdam",
    )
    assert [r.name for r in policy.rules] == ["orders", "accounts"]
    assert policy.sources["shop"].adapter == "sql"
    assert policy.path == "shop.yaml"


def test_a_rule_holds_its_parsed_retain_event_column_filters_and_children() -> None:
    """The 'orders' rule carries its phrase, resolved event column, where and children."""
    orders = load_policy_text(SHOP, "shop.yaml", SHOP_ENV).rule("orders")
    assert orders.retain.kind is Kind.CALENDAR
    assert orders.retain.spans == (Span(6, Unit.MONTH), Span(7, Unit.YEAR))
    assert orders.event_column == "completed_at"
    assert orders.filters == (Filter("status", Op.EQ, ("completed",)),)
    assert orders.children == (Child("order_lines", "order_id"),)
    assert orders.legal_basis == "Statutory bookkeeping obligation (7 years)"
    assert orders.line == 14
    assert orders.line_of("retain") == 17


def test_an_event_not_in_the_events_map_names_a_column_directly() -> None:
    """'1 day after x' without an events map uses column 'x'."""
    assert load_policy_text(MINI, "p.yaml", {}).rule("r").event_column == "x"


def test_defaults_apply_to_rules_that_do_not_set_the_key() -> None:
    """A key under 'defaults' is used by every rule that lacks it."""
    orders = load_policy_text(SHOP, "shop.yaml", SHOP_ENV).rule("orders")
    assert orders.batch_size == 5000
    assert orders.schedule == "daily at 04:00"


def test_a_rules_own_value_wins_over_the_default() -> None:
    """'accounts' sets batch_size 100, which beats the default 5000."""
    accounts = load_policy_text(SHOP, "shop.yaml", SHOP_ENV).rule("accounts")
    assert accounts.batch_size == 100
    assert accounts.schedule == "daily at 04:00"


def test_without_defaults_a_rule_gets_the_built_in_defaults() -> None:
    """No defaults: batch 1000, max fraction 0.5, daily at 03:00, delete, UTC."""
    policy = load_policy_text(MINI, "p.yaml", {})
    rule = policy.rule("r")
    assert rule.batch_size == DEFAULT_BATCH_SIZE
    assert rule.max_fraction == DEFAULT_MAX_FRACTION
    assert rule.schedule == DEFAULT_SCHEDULE
    assert rule.max_rows is None
    assert rule.action.name == "delete"
    assert policy.timezone == "UTC"
    assert policy.audit_url == "sqlite:///retention-audit.db"


def test_a_single_source_is_the_source_of_every_rule_that_names_none() -> None:
    """With one source, 'source:' may be left out."""
    assert load_policy_text(MINI, "p.yaml", {}).rule("r").source == "shop"


# ---------------------------------------------------------------------- interpolation


def test_a_variable_is_replaced_by_its_value_from_env() -> None:
    """'${SHOP_DATABASE_URL}' becomes the value given in ``env``."""
    policy = load_policy_text(SHOP, "shop.yaml", SHOP_ENV)
    assert policy.sources["shop"].options["url"] == "postgresql://shop@db/shop"


def test_a_variable_inside_a_longer_value_is_replaced_in_place() -> None:
    """'postgresql://${USER}@db/${DB}' is filled in around the literal text."""
    text = MINI.replace("{adapter: sql}", "{adapter: sql, url: 'postgresql://${U}@db/${DB}'}")
    policy = load_policy_text(text, "p.yaml", {"U": "app", "DB": "shop"})
    assert policy.sources["shop"].options["url"] == "postgresql://app@db/shop"


def test_a_default_is_used_when_the_variable_is_not_set() -> None:
    """'${RETENTION_AUDIT_URL:-sqlite:///retention-audit.db}' falls back to its default."""
    policy = load_policy_text(SHOP, "shop.yaml", SHOP_ENV)
    assert policy.audit_url == "sqlite:///retention-audit.db"


def test_a_set_variable_wins_over_its_default() -> None:
    """When RETENTION_AUDIT_URL is set, its value replaces the default."""
    env = {**SHOP_ENV, "RETENTION_AUDIT_URL": "postgresql://audit@db/audit"}
    assert load_policy_text(SHOP, "shop.yaml", env).audit_url == "postgresql://audit@db/audit"


def test_without_env_the_process_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """``env=None`` reads variables from os.environ."""
    monkeypatch.setenv("SHOP_DATABASE_URL", "sqlite:///shop.db")
    monkeypatch.delenv("RETENTION_AUDIT_URL", raising=False)
    policy = load_policy_text(SHOP, "shop.yaml")
    assert policy.sources["shop"].options["url"] == "sqlite:///shop.db"


def test_a_missing_variable_is_an_error_naming_the_variable_and_its_line() -> None:
    """An unset ${VAR} without a default is reported on the line that uses it."""
    assert problems(SHOP, {}, "shop.yaml") == [
        "shop.yaml:7: environment variable SHOP_DATABASE_URL is not set"
    ]


def test_an_empty_variable_counts_as_not_set() -> None:
    """A variable set to the empty string is reported like an unset one."""
    assert problems(SHOP, {"SHOP_DATABASE_URL": ""}, "shop.yaml") == [
        "shop.yaml:7: environment variable SHOP_DATABASE_URL is not set"
    ]


def test_a_missing_variable_in_a_rule_is_reported_on_its_line() -> None:
    """Interpolation works in rule values too, and a missing one names its line."""
    assert problems(with_rule_lines("legal_basis: ${BASIS}")) == [
        "p.yaml:8: rule 'r': environment variable BASIS is not set"
    ]


def test_an_interpolated_number_is_a_number() -> None:
    """'batch_size: ${BATCH:-500}' sets a batch size of 500."""
    policy = load_policy_text(with_rule_lines("batch_size: ${BATCH:-500}"), "p.yaml", {})
    assert policy.rule("r").batch_size == 500


# ------------------------------------------------------------------- problems in files


def test_a_duplicate_rule_name_is_an_error_on_the_second_occurrence() -> None:
    """PyYAML would keep the last 'orders' silently; we report the duplicate's line."""
    text = SHOP + "  orders:\n    table: orders_archive\n    retain: 1 year after completion\n"
    assert problems(text, SHOP_ENV, "shop.yaml") == [
        "shop.yaml:29: rule 'orders': duplicate rule name 'orders'"
    ]


def test_a_duplicate_key_inside_a_rule_is_an_error_on_its_line() -> None:
    """Two 'retain' keys in one rule are reported at the second."""
    assert problems(with_rule_lines("retain: 2 days after x")) == [
        "p.yaml:8: rule 'r': duplicate key 'retain'"
    ]


def test_an_unknown_top_level_key_is_an_error_on_its_line() -> None:
    """A misspelt top-level key ('rulez') is named."""
    assert problems(MINI + "rulez: {}\n") == ["p.yaml:8: unknown key 'rulez'"]


def test_an_unknown_rule_key_is_an_error_naming_the_rule() -> None:
    """A key a rule does not know is reported on its line with the rule."""
    assert problems(with_rule_lines("colour: red")) == ["p.yaml:8: rule 'r': unknown key 'colour'"]


def test_an_unknown_source_key_is_an_error_naming_the_source() -> None:
    """A key a source does not know is reported with the source's name."""
    text = MINI.replace("{adapter: sql}", "\n    adapter: sql\n    colour: red")
    assert problems(text) == ["p.yaml:5: unknown key 'colour' in source 'shop'"]


def test_an_unknown_defaults_key_is_an_error_on_its_line() -> None:
    """'defaults' accepts rule keys only."""
    assert problems(MINI + "defaults:\n  colour: red\n") == [
        "p.yaml:9: unknown key 'colour' in 'defaults'"
    ]


def test_an_unknown_audit_key_is_an_error_on_its_line() -> None:
    """'audit' accepts 'url' only."""
    assert problems(MINI + "audit:\n  uri: x\n") == ["p.yaml:9: unknown key 'uri' in 'audit'"]


def test_an_unparseable_retain_is_an_error_quoting_the_phrase_and_the_reason() -> None:
    """The parser's reason and the phrase appear on the retain line."""
    text = MINI.replace("1 day after x", "3 fortnights after x")
    assert problems(text) == [
        "p.yaml:7: rule 'r': retain: unknown unit 'fortnights' "
        "(use hours, days, weeks, months or years) in '3 fortnights after x'"
    ]


def test_a_rule_without_retain_is_an_error_on_the_rule_line() -> None:
    """'retain' is required."""
    assert problems(MINI.replace("    retain: 1 day after x\n", "")) == [
        "p.yaml:5: rule 'r': 'retain' is required"
    ]


def test_an_unknown_source_is_an_error_naming_it() -> None:
    """'source: nope' names the missing source on its line."""
    assert problems(with_rule_lines("source: nope")) == [
        "p.yaml:8: rule 'r': unknown source 'nope'"
    ]


def test_with_several_sources_a_rule_must_name_one() -> None:
    """Two sources and no 'source:' is an error on the rule line."""
    text = MINI.replace("sources:\n", "sources:\n  logs: {adapter: files}\n")
    assert problems(text) == ["p.yaml:6: rule 'r': 'source' is required"]  # 'r:' moved down


def test_an_sql_rule_without_table_is_an_error() -> None:
    """A rule on an sql source needs 'table'."""
    assert problems(MINI.replace("    table: t\n", "")) == [
        "p.yaml:5: rule 'r': 'table' is required for an sql source"
    ]


def test_a_source_without_adapter_is_an_error() -> None:
    """Every source names its adapter (the rule then has no source to use either)."""
    text = MINI.replace("{adapter: sql}", "{url: x}")
    assert problems(text)[0] == "p.yaml:3: source 'shop' needs 'adapter' (sql, files, ...)"


def test_a_bad_naive_timestamps_value_is_an_error() -> None:
    """'naive_timestamps' is 'utc' or 'local'."""
    text = MINI.replace("{adapter: sql}", "{adapter: sql, naive_timestamps: cet}")
    assert problems(text) == ["p.yaml:3: 'naive_timestamps' must be 'utc' or 'local'"]


def test_an_unknown_time_zone_is_an_error_on_its_line() -> None:
    """'timezone: Mars/Olympus' is not a time zone."""
    text = MINI.replace("policy: p\n", "policy: p\ntimezone: Mars/Olympus\n")
    assert problems(text) == ["p.yaml:2: unknown time zone 'Mars/Olympus'"]


def test_a_policy_without_its_identifier_is_an_error() -> None:
    """'policy:' is required."""
    assert problems(MINI.replace("policy: p\n", "")) == [
        "p.yaml:1: 'policy' (the policy's identifier) is required"
    ]


# ------------------------------------------------------------------------------ where


def test_where_values_become_equality_list_null_and_not_null_filters() -> None:
    """Scalar -> =, list -> IN, null -> IS NULL, {not: null} -> IS NOT NULL,
    {not: value} and {not: [values]} -> the other rows, NULL included."""
    text = with_rule_lines("where: {a: 1, b: [x, y], c: null, d: {not: null}, e: {not: x}, "
                           "f: {not: [1, 2]}}")
    assert load_policy_text(text, "p.yaml", {}).rule("r").filters == (
        Filter("a", Op.EQ, (1,)),
        Filter("b", Op.IN, ("x", "y")),
        Filter("c", Op.IS_NULL),
        Filter("d", Op.NOT_NULL),
        Filter("e", Op.NOT_EQ, ("x",)),
        Filter("f", Op.NOT_IN, (1, 2)),
    )


def test_a_negated_filter_says_that_it_keeps_null() -> None:
    """The plan shows {not: x} as a comparison that NULL passes."""
    assert str(Filter("e", Op.NOT_EQ, ("x",))) == "(e IS NULL OR e <> 'x')"
    assert str(Filter("f", Op.NOT_IN, (1, 2))) == "(f IS NULL OR f NOT IN (1, 2))"


def test_where_that_is_not_a_mapping_is_an_error() -> None:
    """'where: [a]' is refused."""
    assert problems(with_rule_lines("where: [a]")) == [
        "p.yaml:8: rule 'r': 'where' must map columns to values"
    ]


WHERE_FORMS = "use a value, [values], null, {not: value}, {not: [values]} or {not: null}"


@pytest.mark.parametrize("value", ["{gt: 3}", "{not: 1, also: 2}", "{not: {not: 1}}"])
def test_where_with_an_unknown_operator_is_an_error(value: str) -> None:
    """Only `not` is understood, alone, with a value, a list or null."""
    assert problems(with_rule_lines(f"where: {{a: {value}}}")) == [
        f"p.yaml:8: rule 'r': where 'a': {WHERE_FORMS}"
    ]


@pytest.mark.parametrize("value", ["[1, null]", "[1, [2]]", "[{x: 1}]", "{not: [1, null]}",
                                   "{not: [[1]]}"])
def test_where_with_nested_values_is_an_error(value: str) -> None:
    """A list holds plain values."""
    assert problems(with_rule_lines(f"where: {{a: {value}}}")) == [
        "p.yaml:8: rule 'r': where 'a': a list needs plain values"
    ]


@pytest.mark.parametrize(("value", "said"), [
    ("[]", "an empty list matches nothing, so the rule would never select a row; list "
     "the values to match"),
    ("{not: []}", "{not: []} excludes nothing; list the values to exclude or remove the "
     "entry"),
])
def test_where_with_an_empty_list_says_what_it_would_match(value: str, said: str) -> None:
    assert problems(with_rule_lines(f"where: {{a: {value}}}")) == [
        f"p.yaml:8: rule 'r': where 'a': {said}"
    ]


# ---------------------------------------------------------------- action and children


def test_anonymize_strategies_are_read_per_column() -> None:
    """null, redact, truncate_ip, {fixed: V}, hash and {hash: VAR} are all understood."""
    text = with_rule_lines(
        "action: {anonymize: {a: null, b: redact, c: truncate_ip, d: {fixed: 0},"
        " e: hash, f: {hash: MAIL_KEY}}}"
    )
    env = {DEFAULT_HASH_KEY_ENV: "k1", "MAIL_KEY": "k2"}
    action = load_policy_text(text, "p.yaml", env).rule("r").action
    assert action.name == "anonymize"
    assert action.columns == (
        ColumnAction("a", Strategy.NULL),
        ColumnAction("b", Strategy.REDACT),
        ColumnAction("c", Strategy.TRUNCATE_IP),
        ColumnAction("d", Strategy.FIXED, value=0),
        ColumnAction("e", Strategy.HASH, key_env=DEFAULT_HASH_KEY_ENV),
        ColumnAction("f", Strategy.HASH, key_env="MAIL_KEY"),
    )


@pytest.mark.parametrize("action", ["anonymize", "erase", "{anonymize: {}}", "{delete: true}"])
def test_an_action_other_than_delete_or_anonymize_is_an_error(action: str) -> None:
    """The action is 'delete' or {anonymize: {column: strategy}}."""
    assert problems(with_rule_lines(f"action: {action}")) == [
        "p.yaml:8: rule 'r': 'action' must be 'delete' or {anonymize: {column: strategy}}"
    ]


def test_an_unknown_strategy_is_an_error_naming_the_column_and_the_strategies() -> None:
    """'mangle' is not a strategy; the message lists the real ones."""
    assert problems(with_rule_lines("action: {anonymize: {ip: mangle}}")) == [
        "p.yaml:8: rule 'r': anonymize 'ip': unknown strategy 'mangle' "
        "(use null, redact, hash, truncate_ip, fixed)"
    ]


def test_an_unreadable_strategy_mapping_is_an_error() -> None:
    """'{bogus: 1}' is neither {fixed: V} nor {hash: VAR}."""
    assert problems(with_rule_lines("action: {anonymize: {ip: {bogus: 1}}}")) == [
        "p.yaml:8: rule 'r': anonymize 'ip': cannot read strategy {'bogus': 1} "
        "(use null, redact, hash, truncate_ip, fixed)"
    ]


def test_hash_without_its_key_variable_set_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """'hash' needs RETENTION_HASH_KEY in the environment."""
    monkeypatch.delenv(DEFAULT_HASH_KEY_ENV, raising=False)
    assert problems(with_rule_lines("action: {anonymize: {email: hash}}")) == [
        "p.yaml:8: rule 'r': environment variable RETENTION_HASH_KEY (the hash key) is not set"
    ]


def test_hash_with_a_named_key_variable_that_is_not_set_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'{hash: MAIL_KEY}' names MAIL_KEY when it is missing."""
    monkeypatch.delenv("MAIL_KEY", raising=False)
    assert problems(with_rule_lines("action: {anonymize: {email: {hash: MAIL_KEY}}}")) == [
        "p.yaml:8: rule 'r': environment variable MAIL_KEY (the hash key) is not set"
    ]


def test_hash_key_is_looked_up_in_the_env_given_to_the_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``env`` stands for the environment: a key set there satisfies 'hash'."""
    monkeypatch.delenv(DEFAULT_HASH_KEY_ENV, raising=False)
    text = with_rule_lines("action: {anonymize: {email: hash}}")
    policy = load_policy_text(text, "p.yaml", {DEFAULT_HASH_KEY_ENV: "secret"})
    assert policy.rule("r").action.columns[0].key_env == DEFAULT_HASH_KEY_ENV


@pytest.mark.parametrize("children", ["{a: 1}", "[{table: a}]", "[{table: a, key: b, x: 1}]"])
def test_children_other_than_a_list_of_table_and_key_are_an_error(children: str) -> None:
    """Children are a list of {table, key}."""
    message = (
        "'children' must be a list of {table, key}"
        if children.startswith("{")
        else "each child needs exactly 'table' and 'key'"
    )
    assert problems(with_rule_lines(f"children: {children}")) == [f"p.yaml:8: rule 'r': {message}"]


def test_events_that_are_not_a_word_to_column_map_are_an_error() -> None:
    """'events: [a]' is refused."""
    assert problems(with_rule_lines("events: [a]")) == [
        "p.yaml:8: rule 'r': 'events' must map event words to column names"
    ]


# ------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "ten", "true"])
def test_a_batch_size_that_is_not_a_positive_int_is_an_error(value: str) -> None:
    """batch_size is an int of at least 1."""
    [line] = problems(with_rule_lines(f"batch_size: {value}"))
    assert line.startswith("p.yaml:8: rule 'r': 'batch_size' must be ")
    assert f"between 1 and {MAX_BATCH_SIZE}, got " in line


@pytest.mark.parametrize(("key", "value"), [
    ("max_fraction", ".nan"), ("max_fraction", ".inf"), ("lock_timeout", ".nan"),
    ("lock_timeout", "-.inf"), ("statement_timeout", ".NaN"), ("statement_timeout", ".inf"),
    ("batch_size", ".nan"), ("batch_size", str(MAX_BATCH_SIZE + 1)),
    ("batch_size", "123456789012345678901234567890"), ("max_rows", str(MAX_ROWS + 1)),
    ("max_rows", ".inf"), ("lock_timeout", "3600.5"), ("statement_timeout", "86401"),
])
def test_a_nan_an_infinity_or_a_number_past_its_bound_is_an_error(key: str, value: str
                                                                   ) -> None:
    """No NaN (it passes every comparison, so it would switch a limit off), no infinity and
    nothing past the named bound of each setting."""
    [line] = problems(with_rule_lines(f"{key}: {value}"))
    assert line.startswith(f"p.yaml:8: rule 'r': {key!r} must be ")


@pytest.mark.parametrize(("key", "value"), [
    ("batch_size", MAX_BATCH_SIZE), ("max_rows", MAX_ROWS), ("lock_timeout", MAX_LOCK_TIMEOUT),
    ("statement_timeout", MAX_STATEMENT_TIMEOUT), ("lock_timeout", MIN_TIMEOUT),
])
def test_each_bound_itself_is_accepted(key: str, value: float) -> None:
    """The bounds are inclusive."""
    rule = load_policy_text(with_rule_lines(f"{key}: {value}"), "p.yaml", {}).rule("r")
    assert getattr(rule, key) == value


def test_a_long_text_where_a_number_belongs_is_quoted_short() -> None:
    """A 10,000-character value does not make a 10,000-character line."""
    [line] = problems(with_rule_lines("batch_size: " + "x" * 10_000))
    assert line.startswith("p.yaml:8: rule 'r': 'batch_size' must be ") and len(line) < 200


def test_a_nan_from_a_variable_is_an_error_on_the_line_of_the_variable() -> None:
    """`${FRACTION}` set to `.nan` is read as YAML would read it, and refused."""
    [line] = problems(with_rule_lines("max_fraction: ${FRACTION}"), {"FRACTION": ".nan"})
    assert line == ("p.yaml:8: rule 'r': 'max_fraction' must be a float between 0.0 and 1.0, "
                    "got nan")


def test_an_unset_variable_for_a_number_is_one_problem() -> None:
    """The empty text standing in for an unset variable is not also a bad number."""
    assert problems(with_rule_lines("batch_size: ${BATCH}")) == [
        "p.yaml:8: rule 'r': environment variable BATCH is not set"]


@pytest.mark.parametrize(("line", "reason"), [
    ("retain: 1" + "0" * 5000 + " days after x", "is too large"),
    ("retain: 99999999 years after x", "runs off the calendar"),
    ("schedule: every 100000000000 hours", "is too large"),
    ("schedule: every 9000 hours", "longer than 366 days"),
    ("schedule: 0 3 1" + "0" * 5000 + " * *", "is too large"),
])
def test_an_absurd_amount_in_a_phrase_is_an_error_quoting_it_briefly(line: str, reason: str
                                                                     ) -> None:
    """Thousands of digits are refused before Python reads them, and not echoed in full."""
    text = (MINI.replace("    retain: 1 day after x\n", f"    {line}\n")
            if line.startswith("retain:") else with_rule_lines(line))
    [problem] = problems(text)
    assert problem.startswith(f"p.yaml:{text.splitlines().index('    ' + line) + 1}: "
                              "rule 'r': ")
    assert reason in problem and len(problem) < 250


def test_a_cron_field_out_of_range_is_an_error_on_the_schedule_line() -> None:
    """The policy language checks cron fields itself, without the daemon's scheduler."""
    assert problems(with_rule_lines("schedule: 0 24 * * *")) == [
        "p.yaml:8: rule 'r': schedule: hour '24': hour runs from 0 to 23 in '0 24 * * *'"]


def test_loading_a_policy_does_not_import_the_scheduler(tmp_path: Path) -> None:
    """The policy language knows nothing of the daemon: APScheduler stays unimported."""
    path = tmp_path / "p.yaml"
    path.write_text(with_rule_lines("schedule: '*/5 2-4 1,15 jan-jun mon-fri'"))
    code = ("import sys; from retention.policy.load import load_policy; "
            f"load_policy({str(path)!r}); "
            "assert 'apscheduler' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "2", "half", "false"])
def test_a_max_fraction_outside_zero_to_one_is_an_error(value: str) -> None:
    """max_fraction is a number between 0 and 1."""
    [line] = problems(with_rule_lines(f"max_fraction: {value}"))
    assert line.startswith("p.yaml:8: rule 'r': 'max_fraction' must be ")
    assert "between 0.0 and 1.0, got " in line


@pytest.mark.parametrize("value", ["0", "1", "0.25"])
def test_a_max_fraction_between_zero_and_one_is_accepted(value: str) -> None:
    """0, 1 and anything between are valid fractions."""
    text = with_rule_lines(f"max_fraction: {value}")
    assert load_policy_text(text, "p.yaml", {}).rule("r").max_fraction == float(value)


def test_a_negative_max_rows_is_an_error() -> None:
    """max_rows is an int of at least 0."""
    [line] = problems(with_rule_lines("max_rows: -1"))
    assert line.startswith("p.yaml:8: rule 'r': 'max_rows' must be ")


def test_a_bad_default_is_reported_on_the_defaults_line_for_each_rule_using_it() -> None:
    """A bad 'defaults: batch_size' names its own line, once per rule that inherits it."""
    text = MINI + "  s:\n    table: u\n    retain: 2 days after y\ndefaults:\n  batch_size: 0\n"
    assert [line.split(" 'batch_size' must be ")[0] for line in problems(text)] == [
        "p.yaml:12: rule 'r':",
        "p.yaml:12: rule 's':",
    ]


# ---------------------------------------------------------------- whole-file problems


def test_several_problems_are_reported_together_one_per_line_sorted_by_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every problem in the file at once, each as FILE:LINE: [rule 'R':] message, in line order."""
    monkeypatch.delenv(DEFAULT_HASH_KEY_ENV, raising=False)
    text = textwrap.dedent("""\
        policy: webshop
        bogus: 1
        sources:
          shop:
            adapter: sql
            url: ${DB}
        rules:
          orders:
            table: orders
            retain: 6 months after completion plus 7 years
          orders:
            table: again
            retain: 1 day after x
          bad:
            source: nope
            table: t
            retain: 3 fortnights after x
            where: {a: {b: 1}}
            action: {anonymize: {ip: mangle, h: hash}}
            max_fraction: 2
            whatever: 1
        """)
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "policies/shop.yaml", {})
    assert str(caught.value) == "\n".join(
        [
            "policies/shop.yaml:2: unknown key 'bogus'",
            "policies/shop.yaml:6: environment variable DB is not set",
            "policies/shop.yaml:11: rule 'orders': duplicate rule name 'orders'",
            "policies/shop.yaml:15: rule 'bad': unknown source 'nope'",
            "policies/shop.yaml:17: rule 'bad': retain: unknown unit 'fortnights' "
            "(use hours, days, weeks, months or years) in '3 fortnights after x'",
            "policies/shop.yaml:18: rule 'bad': where 'a': use a value, [values], null, "
            "{not: value}, {not: [values]} or {not: null}",
            "policies/shop.yaml:19: rule 'bad': anonymize 'ip': unknown strategy 'mangle' "
            "(use null, redact, hash, truncate_ip, fixed)",
            "policies/shop.yaml:19: rule 'bad': environment variable RETENTION_HASH_KEY "
            "(the hash key) is not set",
            "policies/shop.yaml:20: rule 'bad': 'max_fraction' must be a float between 0.0 and 1.0,"
            " got 2",
            "policies/shop.yaml:21: rule 'bad': unknown key 'whatever'",
        ]
    )
    lines = [p.line or 0 for p in caught.value.problems]
    assert lines == sorted(lines)


def test_a_policy_error_is_a_retention_error_with_exit_code_2() -> None:
    """The CLI maps a PolicyError to exit code 2."""
    with pytest.raises(RetentionError) as caught:
        load_policy_text(MINI + "bogus: 1\n", "p.yaml", {})
    assert caught.value.exit_code == 2
    assert isinstance(caught.value, PolicyError)
    assert caught.value.problems == (Problem("p.yaml", 8, None, "unknown key 'bogus'"),)


def test_invalid_yaml_is_an_error_on_the_line_where_parsing_stopped() -> None:
    """A YAML syntax error names the line PyYAML stopped at."""
    [line] = problems("policy: p\nsources: [\n")
    assert line.startswith("p.yaml:3: not valid YAML: ")


def test_an_empty_file_is_an_error() -> None:
    """An empty file is reported as empty."""
    assert problems("") == ["p.yaml:1: the file is empty"]


def test_a_file_that_is_not_a_mapping_is_an_error() -> None:
    """A top-level list is refused on line 1."""
    assert problems("- a\n- b\n") == [
        "p.yaml:1: the file must be a mapping with 'policy', 'sources' and 'rules'"
    ]


def test_a_file_without_sources_or_rules_reports_both() -> None:
    """Empty 'sources' and 'rules' are two problems on their own lines."""
    assert problems("policy: p\nsources: {}\nrules: {}\n") == [
        "p.yaml:2: 'sources' must name at least one source",
        "p.yaml:3: 'rules' must be a mapping of rule names to rules",
    ]


# ------------------------------------------------------------------------------ files


def test_load_policy_reads_a_file_and_records_its_path_and_hash(tmp_path: Path) -> None:
    """The path and the sha256 of the file's bytes are kept on the Policy."""
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP, encoding="utf-8")
    policy = load_policy(path, SHOP_ENV)
    assert policy.path == str(path)
    assert policy.sha256 == hashlib.sha256(SHOP.encode()).hexdigest()
    assert policy.rule("accounts").batch_size == 100


def test_load_policy_names_the_file_in_every_problem(tmp_path: Path) -> None:
    """Problems in a file start with that file's path."""
    path = tmp_path / "bad.yaml"
    path.write_text(MINI + "bogus: 1\n", encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path, {})
    assert str(caught.value) == f"{path}:8: unknown key 'bogus'"


def test_load_policy_interpolates_from_its_env_argument(tmp_path: Path) -> None:
    """``env`` fills ${VAR} in files too, and a missing one is named with its line."""
    path = tmp_path / "shop.yaml"
    path.write_text(SHOP, encoding="utf-8")
    assert (
        load_policy(path, SHOP_ENV).sources["shop"].options["url"] == SHOP_ENV["SHOP_DATABASE_URL"]
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path, {})
    assert str(caught.value) == f"{path}:7: environment variable SHOP_DATABASE_URL is not set"


@pytest.mark.parametrize(("bad", "line", "rule"), [
    (b"\xff", 2, None), (b"\xc3(", 9, "r"), (b"\xe2\x82", 10, "s")])
def test_bytes_that_are_not_utf8_are_an_error_on_their_line_and_rule(
        tmp_path: Path, bad: bytes, line: int, rule: str | None) -> None:
    """The first byte that is not UTF-8 is named with its line, offset and rule."""
    text = ("policy: p\ndescription: X\nsources:\n  shop: {adapter: sql}\nrules:\n"
            "  r:\n    table: t\n    retain: 1 day after x\n    legal_basis: X\n"
            "  s: {table: u, retain: 1 day after y, description: X}\n")
    lines = text.splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].replace("X", "@")
    raw = "".join(lines).replace("X", "ok").encode().replace(b"@", b"ok " + bad)
    path = tmp_path / "p.yaml"
    path.write_bytes(raw)

    with pytest.raises(PolicyError) as caught:
        load_policy(path, {})

    offset = raw.index(bad)
    assert caught.value.problems == (Problem(
        str(path), line, rule, f"not UTF-8: byte 0x{bad[0]:02x} at offset {offset} "
        "(save the file as UTF-8)"),)


def test_a_missing_file_is_an_error_without_a_line(tmp_path: Path) -> None:
    """A file that cannot be read is one problem: 'FILE: cannot read the file: REASON'."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path, {})
    assert str(caught.value) == f"{path}: cannot read the file: No such file or directory"
