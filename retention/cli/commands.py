"""The ``retention`` command line (Click). stdout carries results; logs go to stderr."""

from __future__ import annotations

import gc
import importlib
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import click

from retention.cli.common import POLICY, existing_store, load, out
from retention.errors import PhraseError, RetentionError, UsageError
from retention.instants import parse_instant, utcnow
from retention.policy.needs import Need
from retention.policy.rules import MAX_ROWS, MAX_RUNTIME, MIN_RUNTIME
from retention.run.outcome import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from retention.secrets import scrub

MAX_MISFIRE_GRACE = 366 * 86400  # seconds: a slot missed more than a year ago is history

# Each command imports what it needs when it runs (SQLAlchemy, pendulum, structlog,
# rich, the drivers), so ``retention --help`` and a command's ``--help`` stay fast.
# The ``hold`` and ``audit`` groups load from their modules when invoked; their short
# help is here for ``retention --help`` (tests/cli/test_cli.py checks it is theirs).
LAZY_GROUPS = {
    "hold": ("retention.cli.holds", "Legal holds: records no run may touch while the hold "
             "lasts."),
    "audit": ("retention.cli.audit", "Read and check the audit log."),
}


class Commands(click.Group):
    """The ``retention`` group: commands defined here, and groups loaded when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_GROUPS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_GROUPS and cmd_name not in self.commands:
            module = importlib.import_module(LAZY_GROUPS[cmd_name][0])
            self.add_command(getattr(module, cmd_name))
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As Click's, with the lazy groups' short help from ``LAZY_GROUPS`` (not imported)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            command = (click.Command(name, help=LAZY_GROUPS[name][1])  # its help, unloaded
                       if name in LAZY_GROUPS and name not in self.commands
                       else self.get_command(ctx, name))
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=Commands)
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--debug", is_flag=True, help="Print a traceback for unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, log_level: str, debug: bool) -> None:
    """Enforce the retention promises of a privacy statement."""
    from retention import logs

    logs.configure(log_level)
    ctx.obj = {"debug": debug, "log_level": log_level}


@cli.command()
@POLICY
def validate(policy: str) -> int:
    """Check the policy file and the live schemas of its sources."""
    from retention.run import engine

    loaded = load(policy)
    with engine.Session(loaded) as session:
        plans, failed = engine.compile_plans(session, loaded.rules, utcnow())
    for warning in session.warnings:
        click.echo(f"warning: {warning}", err=True)
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
    from retention.run import engine

    loaded = load(policy)
    instant = parse_instant(as_of) if as_of else utcnow()
    selected = engine.select_rules(loaded, rules)
    with engine.Session(loaded) as session:
        plans, failed = engine.compile_plans(session, selected, instant,
                                             engine.held_keys(loaded, instant, None),
                                             nothing_due_before_year_1=True)
        for rule in selected:
            click.echo(f"-- rule {rule.name}: {rule.retain}")
            if rule.name in failed:
                click.echo(f"-- source unreachable: {failed[rule.name]}\n")
                continue
            compiled = plans[rule.name]
            click.echo(f"-- cutoff: {compiled.cutoff.isoformat()}")
            click.echo(f"-- predicate: {compiled.predicate} ({compiled.predicate_reason})")
            click.echo(f"-- {compiled.describe()}")
            for statement in session.adapter(rule.source).statements(compiled):
                sql, _, params = statement.partition("\n-- parameters:")
                click.echo(sql + ";" + (f"\n-- parameters:{params}" if params else ""))
            _show_partitions(session.adapter(rule.source), compiled)
            click.echo("")
    return EXIT_FAILED if failed else EXIT_OK


def _show_partitions(adapter: Any, compiled: Any) -> None:
    """Which partitions of a partitioned table a run drops whole, why the others are kept,
    and the DDL (adapters that know partitions: ``partitions(plan)``)."""
    find = getattr(adapter, "partitions", None)
    found = find(compiled) if find is not None else None
    if found is None:
        return
    for line in found.lines():
        click.echo(f"-- {line}")
    for ddl in found.statements:
        click.echo(ddl + ";")


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
    from retention.report import build as report_module
    from retention.report import render

    loaded = load(policy)
    instant = report_module.parse_as_of(as_of) if as_of else utcnow()
    data = report_module.build(loaded, instant, samples, list(rules) or None)
    out(render.report(data, fmt), output)
    return EXIT_FAILED if any("error" in r for r in data["rules"]) else EXIT_OK


@cli.command()
@POLICY
@click.option("--rule", "rules", multiple=True, help="Only this rule (repeatable).")
@click.option("--as-of", "as_of", help="ISO-8601 instant, not later than now (default: now).")
@click.option("--dry-run", is_flag=True, help="Count what would change; change nothing.")
@click.option("--max-rows", type=click.IntRange(0, MAX_ROWS), help="Lower every rule's max_rows.")
@click.option("--max-runtime", help="Lower every rule's max_runtime: seconds or a duration "
              "such as '30 minutes'; no batch starts later, the next run goes on.")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "json"]))
@click.option("-q", "--quiet", is_flag=True,
              help="Print nothing and log only warnings when every rule succeeds (for cron).")
@click.option("--metrics-file", type=click.Path(dir_okay=False),
              help="Write Prometheus metrics here (node_exporter textfile collector).")
def run(policy: str, rules: tuple[str, ...], as_of: str | None, dry_run: bool,
        max_rows: int | None, max_runtime: str | None, fmt: str, quiet: bool,
        metrics_file: str | None) -> int:
    """Enforce the policy once (for cron, systemd timers, Kubernetes CronJobs).

    On a terminal each rule shows a progress bar on stderr; --dry-run shows how many
    batches each rule takes and, from the rate of an earlier run, how long.
    """
    from retention import logs
    from retention.report import render
    from retention.run import engine, estimate, progress, stop

    if quiet:
        logs.configure("warning")
    runtime = _max_runtime(max_runtime)
    loaded = load(policy)
    now = utcnow()
    instant = parse_instant(as_of) if as_of else now
    if instant > now:
        raise UsageError(f"--as-of {instant.isoformat()} is later than now; a run at a later "
                         "instant would delete early (use 'report' to look ahead)")
    stop.install()
    started = time.monotonic()
    outcome = engine.run(loaded, instant, rules, dry_run=dry_run, max_rows=max_rows,
                         max_runtime=runtime, progress=None if quiet else progress.terminal())
    if metrics_file:
        from retention.daemon.metrics import Metrics

        collected = Metrics()
        collected.observe(outcome, time.monotonic() - started)
        collected.write(metrics_file)
    if quiet and outcome.exit_code == EXIT_OK:
        return EXIT_OK
    if fmt == "json":
        out(render.to_json(outcome.as_json()))
    else:
        columns: tuple[str, ...] = ("rule", "status", "deleted", "anonymized", "held", "due",
                                    "children", "blocked", "note")
        rows = [[r.rule, r.status.value, r.deleted, r.anonymized, r.held, r.due,
                 render.counts(r.children), render.counts(r.blocked), r.error or ""]
                for r in outcome.rules]
        if dry_run:  # the forecast: batches and expected time
            columns = (*columns[:-1], "batches", "expected", columns[-1])
            rows = [[*row[:-1], (r.estimate or {}).get("batches", ""),
                     estimate.shown(r.estimate), row[-1]]
                    for row, r in zip(rows, outcome.rules, strict=True)]
        title = f"{'Dry run' if dry_run else 'Run'} {outcome.run_id} of {loaded.name}"
        out(render.table(title, columns, rows))
    return outcome.exit_code


def _max_runtime(text: str | None) -> float | None:
    """``--max-runtime``: seconds or a duration phrase, within the policy key's bounds."""
    from retention.policy import duration

    if text is None:
        return None
    try:
        seconds = duration.parse(text)
    except PhraseError as exc:
        raise UsageError(f"--max-runtime: {exc.reason} in {text[:80]!r}") from None
    if not MIN_RUNTIME <= seconds <= MAX_RUNTIME:
        raise UsageError(f"--max-runtime must be between {MIN_RUNTIME:g} and {MAX_RUNTIME:g} "
                         f"seconds, got {text[:80]!r}")
    return seconds


@cli.command()
@POLICY
@click.option("--misfire-grace", default=3600, show_default=True,
              type=click.IntRange(1, MAX_MISFIRE_GRACE),
              help="Seconds a missed slot may still run late (also at start-up).")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus metrics on this port.")
@click.option("--metrics-addr", default="127.0.0.1", show_default=True,
              help="Address the metrics endpoint listens on.")
def daemon(policy: str, misfire_grace: int, metrics_port: int | None,
           metrics_addr: str) -> int:
    """Run every rule on its schedule until SIGTERM (SIGHUP reloads the policy)."""
    from retention.daemon.daemon import Daemon
    from retention.daemon.metrics import Metrics

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
    from retention.daemon import status as status_module
    from retention.report import render

    data = status_module.build(load(policy), utcnow())
    if fmt == "json":
        out(render.to_json(data))
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
        out(text)
    stale = any(d["state"] == "stale" for d in data["daemons"])
    return EXIT_FAILED if stale or any("error" in r for r in data["rules"]) else EXIT_OK


@cli.command("schedule")
@POLICY
@click.option("--format", "fmt", default="md", show_default=True,
              type=click.Choice(["md", "html"]))
@click.option("--lang", default="en", show_default=True, type=click.Choice(["en", "nl"]),
              help="The language of the shipped wording.")
@click.option("--templates", type=click.Path(exists=True, file_okay=False),
              help="A directory of your own templates, tried before the shipped ones.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
def schedule_command(policy: str, fmt: str, lang: str, templates: str | None,
                     output: str | None) -> int:
    """The human-readable retention schedule (for the privacy statement).

    It reads the policy file only: no database, no URL or hash key from the environment.
    """
    from retention.report.statement import render_schedule

    out(render_schedule(load(policy, Need.NOTHING), fmt, lang, templates), output)
    return EXIT_OK


@cli.command()
@POLICY
@click.option("--since", required=True, help="Deletions recorded at or after this instant.")
@click.option("--apply", "apply_", is_flag=True, help="Delete the restored rows (default: "
              "only report them).")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def replay(policy: str, since: str, apply_: bool, fmt: str) -> int:
    """Re-apply recorded deletions after a restore from backup."""
    from retention.audit.store import iso
    from retention.report import render
    from retention.run import stop
    from retention.run.replay import replay as replay_deletions

    loaded = load(policy)
    instant = iso(parse_instant(since, "--since"))
    store = existing_store(loaded)
    try:
        stop.install()
        data = replay_deletions(loaded, store, instant, apply_, utcnow())
    finally:
        store.close()
    if fmt == "json":
        out(render.to_json(data))
    else:
        rows = [[r["rule"], table, n, r["deleted"].get(table, 0),
                 r.get("anonymized", {}).get(table, 0),
                 ", ".join(f"{why} {k}" for why, k in r["left_alone"].get(table, {}).items()),
                 r["status"]]
                for r in data["rules"]
                for table, n in {**dict.fromkeys(r["left_alone"], 0), **r["restored"]}.items()]
        verb = "Replayed" if apply_ else "Restored rows found (use --apply to delete them)"
        out(render.table(f"{verb}: deletions since {instant}",
                          ("rule", "table", "restored", "deleted", "anonymized", "left alone",
                           "status"),
                          rows))
    return {"ok": EXIT_OK, "failed": EXIT_FAILED, "skipped": 4}[data["status"]]


@cli.command()
@click.option("--dir", "directory", default="retention-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where to build the demo database.")
@click.pass_context
def demo(ctx: click.Context, directory: str) -> int:
    """Build a demo shop database and show report, run, audit log and verify.

    The logs go to DIR/demo.log (warnings also to stderr).
    """
    from retention.cli import demo as demo_module

    return demo_module.main(Path(directory), log_level=ctx.obj["log_level"])


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exit codes as in SPEC §3, one line per user error."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = cli.main(args=argv, prog_name="retention", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:  # one line, like every other user error
        where = exc.ctx.command_path if exc.ctx is not None else "retention"
        help_hint = f" (see '{where} --help')" if exc.ctx is not None else ""
        click.echo(f"{where}: {exc.format_message()}{help_hint}", err=True)
        code = EXIT_USAGE
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
    if argv is None:  # the process's own command, all closed: the collections at exit need
        # not walk the imports' objects (about 0.08 s of a 1 s report, bench/RESULTS.md)
        gc.freeze()
    sys.exit(code if isinstance(code, int) else 0)
