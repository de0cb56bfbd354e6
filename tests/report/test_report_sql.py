"""The report's "how this was computed" section is the plan ``run`` executes: the same
statements ``retention plan`` prints, on PostgreSQL, held keys included."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from markupsafe import escape
from retention.policies import examples

from tests.cli.test_cli import WEBSHOP, WEBSHOP_RULES, Shop

FILLED_AT = dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC)
AS_OF = "2026-04-30T12:00:00+00:00"


def test_the_report_shows_the_statements_retention_plan_prints_on_postgresql(
        postgres_url: str, tmp_path: Path, make_engine: Callable[..., sa.Engine]) -> None:
    """Per rule, every statement of the report's json (with its parameters) is printed by
    ``plan`` at the same instant, PostgreSQL's row locks and the legal hold's key in them;
    md and html show the same statements."""
    eng = make_engine(postgres_url)
    examples.create_schema(eng, "webshop")
    examples.fill_webshop(eng, FILLED_AT)
    shop = Shop(postgres_url, tmp_path / "audit.db", tmp_path)
    held = shop.run("hold", "add", WEBSHOP, "orders", "4711", "--reason", "tax audit")
    assert held.returncode == 0, held.stderr

    plan = shop.run("plan", WEBSHOP, "--as-of", AS_OF)
    report = shop.run("report", WEBSHOP, "--as-of", AS_OF, "--format", "json")

    assert plan.returncode == 0, plan.stderr
    assert report.returncode == 0, report.stderr
    rules = {r["rule"]: r for r in json.loads(report.stdout)["rules"]}
    assert list(rules) == WEBSHOP_RULES
    for name, rule in rules.items():
        computed = rule["computation"]
        assert f"-- cutoff: {computed['cutoff']}" in plan.stdout, name
        assert f"-- {computed['plan']}" in plan.stdout, name
        for statement in computed["statements"]:
            sql, _, params = statement.partition("\n-- parameters:")
            assert sql + ";" + (f"\n-- parameters:{params}" if params else "") in plan.stdout
    select = rules["orders"]["computation"]["statements"][0]
    # PostgreSQL's one-statement batch (the DELETE locks its rows), not SQLite's
    assert "DELETE FROM orders" in select and "%(" in select
    assert "4711" in select and "held" in rules["orders"]["computation"]["plan"]
    for fmt in ("md", "html"):
        shown = shop.run("report", WEBSHOP, "--as-of", AS_OF, "--format", fmt).stdout
        assert "How this was computed" in shown
        for rule in rules.values():
            for statement in rule["computation"]["statements"]:
                first_line = statement.splitlines()[0].rstrip()
                assert (first_line if fmt == "md" else str(escape(first_line))) in shown, (
                    fmt, first_line)
