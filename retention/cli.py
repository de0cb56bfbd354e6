"""The ``retention`` command line (Click). stdout carries results; logs go to stderr."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import traceback
from pathlib import Path

import click

from retention import calendar, engine, holds, logs, render, stop
from retention import report as report_module
from retention.audit import export
from retention.audit.store import AuditStore, iso
from retention.db import safe_url
from retention.errors import RetentionError, UsageError
from retention.instants import parse_instant, utcnow
from retention.outcome import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from retention.policy import load_policy
from retention.rules import Policy
from retention.secrets import scrub

POLICY = click.argument("policy", envvar="RETENTION_POLICY", type=click.Path(dir_okay=False))


def _load(path: str) -> Policy:
    return load_policy(path)


def _existing_store(policy: Policy) -> AuditStore:
    """The policy's audit store; a missing one is an error, not a new empty store."""
    store = AuditStore.peek(policy.audit_url)
    if store is None:
        raise UsageError(f"no audit store at {safe_url(policy.audit_url)} (check 'audit: url' "
                         "or RETENTION_AUDIT_URL)")
    return store


def _out(text: str, output: str | None = None) -> None:
    text = scrub(text)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=not text.endswith("\n"))


@click.group()
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--debug", is_flag=True, help="Print a traceback for unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, log_level: str, debug: bool) -> None:
    """Enforce the retention promises of a privacy statement."""
    logs.configure(log_level)
    ctx.obj = {"debug": debug}


@cli.command()
@POLICY
def validate(policy: str) -> int:
    """Check the policy file and the live schemas of its sources."""
    loaded = _load(policy)
    with engine.Session(loaded) as session:
        plans, failed = engine.compile_plans(session, loaded.rules, utcnow())
    for rule, reason in failed.items():
        click.echo(f"{policy}: rule '{rule}': source unreachable: {reason}", err=True)
    if failed:
        return EXIT_USAGE
    click.echo(f"{policy}: policy '{loaded.name}' is valid ({len(plans)} rules)")
    return EXIT_OK


@cli.command()
@POLICY
@click.option("--rule", "rules", multiple=True, help="Only this rule (repeatable).")
@click.option("--as-of", "as_of", help="ISO-8601 instant (default: now).")
def plan(policy: str, rules: tuple[str, ...], as_of: str | None) -> int:
    """Show each rule's cutoff and the SQL it will run."""
    loaded = _load(policy)
    instant = parse_instant(as_of) if as_of else utcnow()
    selected = engine.select_rules(loaded, rules)
    with engine.Session(loaded) as session:
        plans, failed = engine.compile_plans(session, selected, instant,
                                             engine.held_keys(loaded, instant, None))
        for rule in selected:
            click.echo(f"-- rule {rule.name}: {rule.retain}")
            if rule.name in failed:
                click.echo(f"-- source unreachable: {failed[rule.name]}\n")
                continue
            compiled = plans[rule.name]
            click.echo(f"-- cutoff: {compiled.cutoff.isoformat()}")
            click.echo(f"-- {compiled.describe()}")
            for statement in session.adapter(rule.source).statements(compiled):
                sql, _, params = statement.partition("\n-- parameters:")
                click.echo(sql + ";" + (f"\n-- parameters:{params}" if params else ""))
            click.echo("")
    return EXIT_FAILED if failed else EXIT_OK


@cli.command()
@POLICY
@click.option("--as-of", "as_of", help="ISO-8601 instant (default: now).")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json", "csv", "md", "html"]))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
@click.option("--samples", default=0, show_default=True, type=click.IntRange(0, 1000),
              help="List up to N keys of due records per rule.")
@click.option("--rule", "rules", multiple=True, help="Only this rule (repeatable).")
def report(policy: str, as_of: str | None, fmt: str, output: str | None, samples: int,
           rules: tuple[str, ...]) -> int:
    """Dry run for auditors: what is due, what is held, why. Changes nothing."""
    loaded = _load(policy)
    instant = parse_instant(as_of) if as_of else utcnow()
    data = report_module.build(loaded, instant, samples, list(rules) or None)
    _out(render.report(data, fmt), output)
    return EXIT_FAILED if any("error" in r for r in data["rules"]) else EXIT_OK


@cli.command()
@POLICY
@click.option("--rule", "rules", multiple=True, help="Only this rule (repeatable).")
@click.option("--as-of", "as_of", help="ISO-8601 instant, not later than now (default: now).")
@click.option("--dry-run", is_flag=True, help="Count what would change; change nothing.")
@click.option("--max-rows", type=click.IntRange(0), help="Lower every rule's max_rows.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json"]))
@click.option("-q", "--quiet", is_flag=True,
              help="Print nothing and log only warnings when every rule succeeds (for cron).")
@click.option("--metrics-file", type=click.Path(dir_okay=False),
              help="Write Prometheus metrics here (node_exporter textfile collector).")
def run(policy: str, rules: tuple[str, ...], as_of: str | None, dry_run: bool,
        max_rows: int | None, fmt: str, quiet: bool, metrics_file: str | None) -> int:
    """Enforce the policy once (for cron, systemd timers, Kubernetes CronJobs)."""
    if quiet:
        logs.configure("warning")
    loaded = _load(policy)
    now = utcnow()
    instant = parse_instant(as_of) if as_of else now
    if instant > now:
        raise UsageError(f"--as-of {instant.isoformat()} is later than now; a run at a later "
                         "instant would delete early (use 'report' to look ahead)")
    stop.install()
    started = time.monotonic()
    outcome = engine.run(loaded, instant, rules, dry_run=dry_run, max_rows=max_rows)
    if metrics_file:
        from retention.metrics import Metrics

        collected = Metrics()
        collected.observe(outcome, time.monotonic() - started)
        collected.write(metrics_file)
    if quiet and outcome.exit_code == EXIT_OK:
        return EXIT_OK
    if fmt == "json":
        _out(render.to_json(outcome.as_json()))
    else:
        columns = ("rule", "status", "deleted", "anonymized", "held", "due", "children",
                   "note")
        rows = [[r.rule, r.status.value, r.deleted, r.anonymized, r.held, r.due,
                 ", ".join(f"{t}: {n}" for t, n in r.children.items()), r.error or ""]
                for r in outcome.rules]
        title = f"{'Dry run' if dry_run else 'Run'} {outcome.run_id} of {loaded.name}"
        _out(render.table(title, columns, rows))
    return outcome.exit_code


@cli.command()
@POLICY
@click.option("--misfire-grace", default=3600, show_default=True, type=click.IntRange(1),
              help="Seconds a missed slot may still run late (also at start-up).")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics on this port.")
@click.option("--metrics-addr", default="127.0.0.1", show_default=True,
              help="Address the metrics endpoint listens on.")
def daemon(policy: str, misfire_grace: int, metrics_port: int | None,
           metrics_addr: str) -> int:
    """Run every rule on its schedule until SIGTERM (SIGHUP reloads the policy)."""
    from retention.daemon import Daemon
    from retention.metrics import Metrics

    metrics = Metrics() if metrics_port else None
    runner = Daemon(policy, misfire_grace, metrics)
    if metrics is not None and metrics_port is not None:
        metrics.serve(metrics_port, metrics_addr)
    return runner.run()


@cli.command()
@POLICY
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def status(policy: str, fmt: str) -> int:
    """Last run, next run and backlog of every rule; daemon heartbeats."""
    from retention import status as status_module

    data = status_module.build(_load(policy), utcnow())
    if fmt == "json":
        _out(render.to_json(data))
    else:
        rows = []
        for r in data["rules"]:
            last = r["last_run"] or {}
            rows.append([r["rule"], r["schedule"], r["next_run"], last.get("started_at"),
                         last.get("status"), last.get("deleted"), last.get("anonymized"),
                         r["backlog"] if r["backlog"] is not None else r.get("error")])
        text = render.table(f"Status of {data['policy']}", (
            "rule", "schedule", "next_run", "last_run", "status", "deleted", "anonymized",
            "backlog"), rows)
        for d in data["daemons"]:
            text += (f"daemon {d['daemon_id']} on {d['host']} pid {d['pid']}: {d['state']} "
                     f"(last heartbeat {d['age_seconds']} s ago)\n")
        if not data["daemons"]:
            text += "no daemon has run for this policy\n"
        _out(text)
    stale = any(d["state"] == "stale" for d in data["daemons"])
    return EXIT_FAILED if stale or any("error" in r for r in data["rules"]) else EXIT_OK


@cli.command("schedule")
@POLICY
@click.option("--format", "fmt", default="md", show_default=True,
              type=click.Choice(["md", "html"]))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
def schedule_command(policy: str, fmt: str, output: str | None) -> int:
    """The human-readable retention schedule (for the privacy statement)."""
    from retention.statement import render_schedule

    _out(render_schedule(_load(policy), fmt), output)
    return EXIT_OK


@cli.command()
@POLICY
@click.option("--since", required=True, help="Deletions recorded at or after this instant.")
@click.option("--apply", "apply_", is_flag=True, help="Delete the restored rows (default: "
              "only report them).")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def replay(policy: str, since: str, apply_: bool, fmt: str) -> int:
    """Re-apply recorded deletions after a restore from backup."""
    from retention.replay import replay as replay_deletions

    loaded = _load(policy)
    instant = iso(parse_instant(since, "--since"))
    store = _existing_store(loaded)
    try:
        stop.install()
        data = replay_deletions(loaded, store, instant, apply_, utcnow())
    finally:
        store.close()
    if fmt == "json":
        _out(render.to_json(data))
    else:
        rows = [[r["rule"], table, n, r["deleted"].get(table, 0), r["status"]]
                for r in data["rules"] for table, n in r["restored"].items()]
        verb = "Replayed" if apply_ else "Restored rows found (use --apply to delete them)"
        _out(render.table(f"{verb}: deletions since {instant}",
                          ("rule", "table", "restored", "deleted", "status"), rows))
    return {"ok": EXIT_OK, "failed": EXIT_FAILED, "skipped": 4}[data["status"]]


@cli.group()
def hold() -> None:
    """Legal holds: records no run may touch while the hold lasts."""


@hold.command("add")
@POLICY
@click.argument("rule")
@click.argument("key")
@click.option("--reason", required=True, help="Why the record is held (recorded).")
@click.option("--until", "until", help="Last date (YYYY-MM-DD) the hold lasts; default: "
              "until released.")
@click.option("--by", help="Who places the hold (default: the OS user).")
def hold_add(policy: str, rule: str, key: str, reason: str, until: str | None,
             by: str | None) -> int:
    """Hold RULE's record KEY (4711, or col=value,col=value for composite keys)."""
    loaded = _load(policy)
    selected = engine.select_rules(loaded, [rule])[0]
    last_day = _until(until, loaded)
    with engine.Session(loaded) as session:
        assert selected.table is not None
        info = session.adapter(selected.source).reflect(selected.table)
        if info is None:
            raise UsageError(f"table {selected.table!r} of rule {rule!r} does not exist")
        parsed = holds.typed(holds.parse_key(key, info.primary_key), info)
        exists = session.adapter(selected.source).exists(selected.table, [parsed])
    store = AuditStore(loaded.audit_url)
    try:
        placed = holds.add(store, loaded.name, rule, parsed, reason, by, last_day)
    finally:
        store.close()
    if not exists:
        logs.get("retention.cli").warning("hold_key_not_found", rule=rule, key=parsed)
    _out(f"hold {placed.hold_id} placed on {rule} {json.dumps(parsed)}"
         + (f" until {last_day.isoformat()}" if last_day else "") + "\n")
    return EXIT_OK


def _until(until: str | None, policy: Policy) -> dt.date | None:
    if until is None:
        return None
    try:
        day = dt.date.fromisoformat(until)
    except ValueError:
        raise UsageError(f"--until: {until!r} is not a date (YYYY-MM-DD)") from None
    today = calendar.local_date(utcnow(), calendar.zone(policy.timezone))
    if day < today:
        raise UsageError(f"--until {day.isoformat()} is in the past")
    return day


@hold.command("list")
@POLICY
@click.option("--all", "show_all", is_flag=True, help="Include released holds.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def hold_list(policy: str, show_all: bool, fmt: str) -> int:
    """The holds of the policy (active ones unless --all)."""
    loaded = _load(policy)
    store = AuditStore.peek(loaded.audit_url)
    found: list[holds.Hold] = []
    if store is not None:
        try:
            found = [h for h in holds.list_holds(store, loaded.name)
                     if show_all or h.released_at is None]
        finally:
            store.close()
    if fmt == "json":
        _out(render.to_json([h.as_json() for h in found]))
        return EXIT_OK
    columns = ("hold_id", "rule", "key", "reason", "placed_by", "placed_at", "until",
               "released_at")
    _out(render.table("Legal holds", columns, [
        [h.hold_id, h.rule, json.dumps(h.key), h.reason, h.placed_by, h.placed_at,
         h.until, h.released_at] for h in found]))
    return EXIT_OK


@hold.command("release")
@POLICY
@click.argument("hold_id")
@click.option("--by", help="Who releases the hold (default: the OS user).")
def hold_release(policy: str, hold_id: str, by: str | None) -> int:
    """Release a hold: the record follows its rule again."""
    loaded = _load(policy)
    store = _existing_store(loaded)
    try:
        released = holds.release(store, loaded.name, hold_id, by)
    finally:
        store.close()
    _out(f"hold {released.hold_id} released\n")
    return EXIT_OK


@cli.group()
def audit() -> None:
    """Read and check the audit log."""


@audit.command("list")
@POLICY
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def audit_list(policy: str, limit: int, fmt: str) -> int:
    """The latest runs."""
    store = _existing_store(_load(policy))
    try:
        runs = store.runs(limit)
    finally:
        store.close()
    if fmt == "json":
        _out(render.to_json(runs))
        return EXIT_OK
    columns = ("run_id", "mode", "as_of", "started_at", "status", "policy_version")
    _out(render.table("Runs", columns, [[r[c] for c in columns] for r in runs]))
    return EXIT_OK


@audit.command("show")
@POLICY
@click.argument("run_id")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def audit_show(policy: str, run_id: str, fmt: str) -> int:
    """One run: its rules and the records it changed."""
    store = _existing_store(_load(policy))
    try:
        found = store.run(run_id)
        if found is None:
            raise UsageError(f"no run {run_id!r} in the audit store {store.url}")
        found["summary"] = json.loads(found["summary"] or "[]")
        records = [export.record_json(r) for r in store.records(run_id=run_id)]
    finally:
        store.close()
    if fmt == "json":
        _out(render.to_json({**found, "records": records}))
        return EXIT_OK
    rules = found["summary"]
    text = render.table(f"Run {run_id} ({found['status']})",
                        ("rule", "status", "deleted", "anonymized", "held", "cutoff"),
                        [[r.get(c) for c in ("rule", "status", "deleted", "anonymized",
                                             "held", "cutoff")] for r in rules])
    text += render.table("Records", ("rule", "table", "key", "action", "event_at", "due_at"),
                         [[r["rule"], r["table"], json.dumps(r["key"]), r["action"],
                           r["event_at"], r["due_at"]] for r in records])
    _out(text)
    return EXIT_OK


@audit.command("verify")
@POLICY
def audit_verify(policy: str) -> int:
    """Recheck the whole hash chain; name the first entry altered, removed or inserted."""
    store = _existing_store(_load(policy))
    try:
        verdict = store.verify()
    finally:
        store.close()
    _out(str(verdict))
    return EXIT_OK if verdict.ok else EXIT_FAILED


@audit.command("export")
@POLICY
@click.option("--format", "fmt", default="jsonl", show_default=True,
              type=click.Choice(["jsonl", "csv"]))
@click.option("--since", help="Only records at or after this ISO-8601 instant.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
def audit_export(policy: str, fmt: str, since: str | None, output: str | None) -> int:
    """One line per affected record."""
    instant = iso(parse_instant(since, "--since")) if since else None
    store = _existing_store(_load(policy))
    try:
        stream = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
        try:
            export.write(store.records(since=instant), fmt, stream)
        finally:
            if output:
                stream.close()
    finally:
        store.close()
    return EXIT_OK


@cli.command()
@click.option("--dir", "directory", default="retention-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where to build the demo database.")
def demo(directory: str) -> int:
    """Build a demo shop database and show report, run, audit log and verify."""
    from retention import demo as demo_module

    return demo_module.main(Path(directory))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exit codes as in SPEC §3, one line per user error."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="retention", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = EXIT_USAGE
    except click.Abort:
        click.echo("aborted", err=True)
        code = EXIT_USAGE
    except RetentionError as exc:
        click.echo(scrub(str(exc)), err=True)
        code = exc.exit_code
    except Exception as exc:  # unexpected: one line, a traceback only when asked
        message = scrub(f"error: {type(exc).__name__}: {exc}".splitlines()[0])
        click.echo(message + ("" if debug else " (run with --debug for a traceback)"),
                   err=True)
        if debug:
            click.echo(scrub("".join(traceback.format_exception(exc))), err=True)
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)


