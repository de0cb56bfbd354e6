"""The report for people (``retention.report.view``, ``document``): times in the policy's
zone that say the same instant, totals that add up, a failed rule said in every format."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from retention.report import build, render, view

ZONES = st.sampled_from(["UTC", "Europe/Amsterdam", "America/St_Johns", "Australia/Lord_Howe",
                         "Pacific/Kiritimati"])
INSTANTS = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
                        timezones=st.just(dt.UTC))


@given(INSTANTS, ZONES)
def test_a_cutoff_is_shown_as_the_same_local_instant(instant: dt.datetime, zone: str) -> None:
    """`end of D` exactly when the cutoff is the last microsecond of local day D; any
    other cutoff is its local wall time, to the microsecond when it has a fraction."""
    local = instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    shown = view.local_time(instant.isoformat(), zone, cutoff=True)
    if shown.startswith("end of "):
        assert local == dt.datetime.combine(dt.date.fromisoformat(shown[7:]), view.END_OF_DAY)
    else:
        assert dt.datetime.fromisoformat(shown) == local


@given(INSTANTS, ZONES)
def test_other_times_are_whole_local_seconds(instant: dt.datetime, zone: str) -> None:
    """An event or a run: local wall time without the fraction, never more than 1 s early."""
    local = instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    shown = view.local_time(instant.isoformat(), zone)
    assert "." not in shown
    assert dt.timedelta(0) <= local - dt.datetime.fromisoformat(shown) < dt.timedelta(seconds=1)


FIGURES = st.fixed_dictionaries({
    "due": st.integers(0, 10**9), "held": st.integers(0, 10**6), "total": st.integers(0, 10**9),
    "unreadable_events": st.integers(0, 10**6), "due_next_7d": st.integers(0, 10**6),
    "due_next_30d": st.integers(0, 10**6), "due_next_90d": st.integers(0, 10**6),
    "blocked": st.dictionaries(st.sampled_from(["a", "b", "s.c"]), st.integers(0, 99)),
    "children": st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 99))})


@given(st.lists(st.one_of(FIGURES, st.just({"error": "down"})), max_size=6))
def test_totals_add_up_the_rules_that_were_counted(entries: list[dict[str, Any]]) -> None:
    """Each total is the sum over the counted rules; per-table figures per table; a failed
    rule is counted as failed and adds nothing."""
    totals = build.totals(entries)
    counted = [e for e in entries if "error" not in e]
    assert (totals["rules"], totals["failed"]) == (len(entries), len(entries) - len(counted))
    for name in build.TOTALLED:
        assert totals[name] == sum(e[name] for e in counted)
    for name in ("blocked", "children"):
        assert sum(totals[name].values()) == sum(sum(e[name].values()) for e in counted)


def _report_with_a_failed_rule() -> dict[str, Any]:
    good = {"rule": "ok-rule", "action": "delete", "retain": "1 day after at",
            "legal_basis": None, "source": "db", "table": "t", "records": "all t",
            "kept": "until 1 day after at", "then": "deleted", "due": 3, "held": 1,
            "total": 10, "cutoff": "2026-02-27T22:59:59.999999+00:00",
            "oldest_due_event": "2026-01-01T10:00:00.5+00:00", "children": {},
            "blocked": {"other": 2}, "unreadable_events": 0, "would_stop": None,
            "due_next_7d": 1, "due_next_30d": 2, "due_next_90d": 2,
            "samples": [{"a": 1, "b": "x"}], "last_run": None, "changed_since_last_run": [],
            "computation": {"cutoff": "2026-02-27T22:59:59.999999+00:00",
                            "predicate": "range", "predicate_reason": "native",
                            "plan": "delete t", "statements": ["SELECT 1\n-- parameters: x=1"]}}
    bad = {"rule": "bad-rule", "action": "delete", "retain": "1 day after at",
           "legal_basis": "Contract", "source": "db", "table": "u", "records": "all u",
           "kept": "until 1 day after at", "then": "deleted", "error": "OperationalError: down",
           "last_run": None, "changed_since_last_run": ["rule 'bad-rule' added"]}
    return {"policy": "p", "version": None, "timezone": "Europe/Amsterdam",
            "as_of": "2026-02-28T12:00:00+00:00", "policy_sha256": "0" * 64,
            "rules": [good, bad], "uncovered": [], "ignored": [],
            "totals": build.totals([good, bad])}


def test_a_failed_rule_is_said_in_every_format_and_the_others_are_shown() -> None:
    """The error of a rule that could not be counted, beside the counted rule's figures."""
    data = _report_with_a_failed_rule()
    assert json.loads(render.report(data, "json"))["rules"][1]["error"] == \
        "OperationalError: down"
    for fmt in ("table", "csv", "md", "html"):
        text = render.report(data, fmt)
        assert "OperationalError: down" in text, fmt
        assert "end of 2026-02-27" in text and "a=1, b=x" in text, fmt
        assert "other: 2" in text and "2026-01-01 11:00:00" in text, fmt
        assert "rule &#39;bad-rule&#39; added" in text if fmt == "html" \
            else "rule 'bad-rule' added" in text, fmt
        assert "all 2 rules (1 failed)" in text, fmt


def test_policy_text_is_escaped_in_html_and_markdown() -> None:
    """A rule name or legal basis holding markup is shown as text, never as a tag."""
    data = _report_with_a_failed_rule()
    data["rules"][0]["rule"] = "<b>orders</b>"
    data["rules"][0]["legal_basis"] = "<script>alert(1)</script> | law"
    page = render.report(data, "html")
    assert "<script>alert" not in page and "<b>orders" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; | law" in page
    markdown = render.report(data, "md")
    assert "<script>" not in markdown and "<b>" not in markdown
    assert "&lt;script>alert(1)&lt;/script> \\| law" in markdown
