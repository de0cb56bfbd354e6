"""retention schedule: the policy as a retention schedule people can read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from retention.policies import examples

from retention.policy.load import load_policy
from retention.report.statement import kept, render_schedule, then


def test_each_rule_reads_as_a_sentence() -> None:
    """Periods, 'then N more', the day rule, and what happens after are spelled out."""
    policy = load_policy(examples.policy_path("webshop"), env={})
    orders, visits, newsletter = (policy.rule(n) for n in ("orders", "visit-ip", "newsletter"))
    assert kept(orders) == "6 months after completion, then 7 years more (to the end of that day)"
    assert then(orders) == "deleted with its order_lines"
    assert kept(newsletter) == "until unsubscribed"
    assert then(visits) == ("ip shortened to the network (IPv4 /24, IPv6 /48); "
                            "user_agent removed")


def test_markdown_and_html_list_every_rule_with_its_legal_basis() -> None:
    """Both formats carry a row per rule with description and legal basis."""
    policy = load_policy(examples.policy_path("saas"), env={"SAAS_HASH_KEY": "k"})
    md = render_schedule(policy, "md")
    html = render_schedule(policy, "html")
    for rule in policy.rules:
        assert rule.description and rule.description in md
        assert rule.legal_basis and rule.legal_basis in md
    assert md.count("\n|") == len(policy.rules) + 2
    assert html.count("<tr>") == len(policy.rules) + 1
    assert "48 hours after recorded" in md


def test_schedule_command_needs_no_database(tmp_path: Path) -> None:
    """`retention schedule` works with the database unreachable, and -o writes a file."""
    exe = str(Path(sys.executable).with_name("retention"))
    env = {"PATH": "/usr/bin:/bin", "SHOP_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1:1/x"}
    out = tmp_path / "schedule.html"
    result = subprocess.run([exe, "schedule", str(examples.policy_path("webshop")), "--format",
                             "html", "-o", str(out)], capture_output=True, text=True, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "<h1>Retention schedule: webshop" in out.read_text()
