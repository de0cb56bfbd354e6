"""``load_policy(path, need=...)``: a command asks the environment only for what it reads.

Sources' settings and hash keys (and for ``Need.NOTHING`` the audit store's URL) may be
unset; such a setting is an ``Unset`` that refuses every use, never an empty string, and a
policy carrying one opens no source. Every other problem stays a problem.
"""

from __future__ import annotations

import pytest
from retention.adapters.sql import SqlAdapter

from retention.errors import PolicyError
from retention.policy.load import load_policy_text
from retention.policy.needs import Need, Unset
from retention.run import engine

POLICY = """\
policy: shop
sources:
  shop:
    adapter: sql
    url: postgresql+psycopg://app:${SHOP_PASSWORD}@db/shop
    schema: ${SHOP_SCHEMA}
audit:
  url: ${RETENTION_AUDIT_URL}
rules:
  visits:
    source: shop
    table: visits
    retain: 1 day after visited_at
    action:
      anonymize: {ip: hash, user_agent: {hash: UA_KEY}}
"""
SET = {"SHOP_PASSWORD": "secret", "SHOP_SCHEMA": "public",
       "RETENTION_AUDIT_URL": "sqlite:///audit.db", "RETENTION_HASH_KEY": "k", "UA_KEY": "k"}
LINES = {"SHOP_PASSWORD": 5, "SHOP_SCHEMA": 6, "RETENTION_AUDIT_URL": 8,
         "RETENTION_HASH_KEY": 14, "UA_KEY": 14}
HASH_KEYS = ("RETENTION_HASH_KEY", "UA_KEY")


def problems_of_a_full_load(env: dict[str, str]) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(POLICY, "p.yaml", env)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("need", [Need.AUDIT, Need.NOTHING])
@pytest.mark.parametrize("missing", sorted(SET))
def test_a_tolerated_setting_is_unset_with_the_problem_a_full_load_reports(
        need: Need, missing: str) -> None:
    """Each variable alone: tolerated means Policy.unset holds exactly the full load's
    problem; not tolerated means the same problem, raised."""
    env = {k: v for k, v in SET.items() if k != missing}
    expected = problems_of_a_full_load(env)
    assert len(expected) == 1 and f":{LINES[missing]}:" in expected[0]
    if missing == "RETENTION_AUDIT_URL" and need is Need.AUDIT:
        with pytest.raises(PolicyError) as caught:
            load_policy_text(POLICY, "p.yaml", env, need=need)
        assert [str(p) for p in caught.value.problems] == expected
        return
    policy = load_policy_text(POLICY, "p.yaml", env, need=need)
    assert [str(p) for p in policy.unset] == expected


def test_an_unset_setting_refuses_every_use() -> None:
    """str, an f-string, `or ""` and the audit URL all raise the full load's problem."""
    policy = load_policy_text(POLICY, "p.yaml", {}, need=Need.NOTHING)
    url = policy.sources["shop"].options["url"]
    assert isinstance(url, Unset)
    for use in (lambda: str(url), lambda: f"{url}", lambda: url or "",
                lambda: policy.audit_url):
        with pytest.raises(PolicyError, match="environment variable"):
            use()
    assert "SHOP_PASSWORD" in repr(url)


def test_a_url_with_one_unset_part_is_unset_as_a_whole() -> None:
    """Never the URL with its password left out."""
    env = {k: v for k, v in SET.items() if k != "SHOP_PASSWORD"}
    policy = load_policy_text(POLICY, "p.yaml", env, need=Need.AUDIT)
    assert isinstance(policy.sources["shop"].options["url"], Unset)
    assert policy.sources["shop"].options["schema"] == "public"
    assert policy.audit_url == "sqlite:///audit.db"


def test_a_policy_with_unset_settings_opens_no_source() -> None:
    """engine.Session (run, report, plan, validate, ...) and the adapter both refuse it."""
    policy = load_policy_text(POLICY, "p.yaml", {}, need=Need.NOTHING)
    with pytest.raises(PolicyError) as caught:
        engine.Session(policy)
    assert [str(p) for p in caught.value.problems] == problems_of_a_full_load({})
    with pytest.raises(PolicyError, match="SHOP_PASSWORD is not set"):
        SqlAdapter(policy.sources["shop"])


def test_with_everything_set_every_need_loads_the_same_policy() -> None:
    """With everything set every need loads the same policy."""
    loaded = [load_policy_text(POLICY, "p.yaml", SET, need=n) for n in Need]
    assert all(p == loaded[0] and not p.unset for p in loaded)


@pytest.mark.parametrize("need", list(Need))
@pytest.mark.parametrize(("key", "value", "line"), [
    ("    retain: 1 day after visited_at", "    retain: ${RETAIN}", 13),
    ("    table: visits", "    table: ${TABLE}", 12),
    ("policy: shop", "policy: ${NAME}", 1),
    ("    adapter: sql", "    adapter: ${ADAPTER}", 4),
])
def test_an_unset_variable_outside_the_settings_is_a_problem_for_every_need(
        need: Need, key: str, value: str, line: int) -> None:
    """What the schedule shows (and the rest of the file) must be set, whatever the need."""
    with pytest.raises(PolicyError) as caught:
        load_policy_text(POLICY.replace(key, value), "p.yaml", SET, need=need)
    assert any(p.line == line and "is not set" in p.message for p in caught.value.problems)
