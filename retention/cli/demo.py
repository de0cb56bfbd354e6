"""``retention demo``: build a demo shop database, report, enforce, show the audit log.

Everything lives in one directory: the database, the audit store, a copy of the
example policy and the log file. stdout tells the story; the logs go to the file
(warnings also to stderr), so a terminal shows tables, not log lines. The closing
``Try:`` line uses absolute, shell-quoted paths (the console script's too) and works
from any directory, with or without an activated virtualenv.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import click

from retention import logs
from retention.audit.store import AuditStore
from retention.db import create_engine
from retention.instants import utcnow
from retention.policies import examples
from retention.policy.load import load_policy
from retention.report import build as report_module
from retention.report import render
from retention.run import engine

LOG_FILE = "demo.log"  # in the demo directory


def main(directory: Path, log_level: str = "info") -> int:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "webshop.db"
    audit = directory / "retention-audit.db"
    policy_file = directory / "webshop.yaml"
    log_file = directory / LOG_FILE
    for path in (database, audit, log_file):
        path.unlink(missing_ok=True)
    shutil.copyfile(examples.policy_path("webshop"), policy_file)
    logs.configure(log_level, file=log_file)
    urls = {"SHOP_DATABASE_URL": f"sqlite:///{database}",
            "RETENTION_AUDIT_URL": f"sqlite:///{audit}"}
    os.environ.update(urls)
    now = utcnow()
    target = create_engine(urls["SHOP_DATABASE_URL"])
    examples.create_schema(target, "webshop")
    examples.fill_webshop(target, now)
    target.dispose()
    policy = load_policy(policy_file)

    def say(title: str) -> None:
        click.echo(click.style(f"\n== {title}", bold=True))

    say(f"Demo shop database: {database}")
    click.echo(f"Policy: {policy_file}")
    click.echo(f"Logs: {log_file}")
    say("1. Dry-run report (what is due now, what falls due in 30 days)")
    click.echo(render.report(report_module.build(policy, now), "table"))
    say("2. Enforcement run")
    outcome = engine.run(policy, now)
    click.echo(render.table(
        f"Run {outcome.run_id}", ("rule", "status", "deleted", "anonymized", "held", "children"),
        [[r.rule, r.status.value, r.deleted, r.anonymized, r.held,
          ", ".join(f"{k}: {v}" for k, v in r.children.items())] for r in outcome.rules]))
    say("3. A second run finds nothing left to do")
    again = engine.run(policy, utcnow())
    click.echo(", ".join(f"{r.rule}: {r.deleted + r.anonymized}" for r in again.rules))
    store = AuditStore(policy.audit_url)
    try:
        say("4. Audit log (retention audit list / export)")
        for run in store.runs():
            click.echo(f"{run['run_id']}  {run['mode']}  {run['status']}  as of {run['as_of']}")
        records = list(store.records(run_id=outcome.run_id))
        click.echo(f"{len(records)} audited records in the first run; the first three:")
        for rec in records[:3]:
            click.echo(f"  {rec['rule']} {rec['table_name']} {rec['record_key']} "
                       f"{rec['action']} due {rec['due_at']}")
        say("5. retention audit verify")
        verdict = store.verify()
        click.echo(str(verdict))
    finally:
        store.close()
    assignments = " ".join(f"{name}={shlex.quote(url)}" for name, url in urls.items())
    click.echo(f"\nTry: {assignments} {command()} report {shlex.quote(str(policy_file))} "
               "--format json")
    return outcome.exit_code if verdict.ok else 1


def command() -> str:
    """How to run retention again from any shell: the console script this process runs
    as, by its absolute path (a virtualenv need not be active), else ``PYTHON -m retention``."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name.startswith("retention") and script.is_file():
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m retention"
