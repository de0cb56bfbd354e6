"""``retention audit ...``: reading and checking the audit log (list, show, verify, export,
checkpoint, policies)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from retention.audit import export
from retention.audit.store import iso
from retention.cli.common import POLICY, existing_store, load, out
from retention.errors import UsageError
from retention.instants import parse_instant
from retention.policy.needs import Need
from retention.report import render
from retention.run.outcome import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from retention.audit.checkpoints import Checkpoints
    from retention.audit.store import AuditStore

MAX_LIST = 1_000_000  # runs 'audit list' shows at most (the limit is bound into SQL)


@click.group()
def audit() -> None:
    """Read and check the audit log."""


@audit.command("list")
@POLICY
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, MAX_LIST))
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def audit_list(policy: str, limit: int, fmt: str) -> int:
    """The latest runs."""
    store = existing_store(load(policy, Need.AUDIT))
    try:
        runs = store.runs(limit)
    finally:
        store.close()
    if fmt == "json":
        out(render.to_json(runs))
        return EXIT_OK
    columns = ("run_id", "mode", "as_of", "started_at", "status", "policy_version")
    out(render.table("Runs", columns, [[r[c] for c in columns] for r in runs]))
    return EXIT_OK


@audit.command("show")
@POLICY
@click.argument("run_id")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def audit_show(policy: str, run_id: str, fmt: str) -> int:
    """One run: its rules, counts, batches, recovered records and errors."""
    from retention.audit.runview import run_view

    store = existing_store(load(policy, Need.AUDIT))
    try:
        found = run_view(store, run_id)
        if found is None:
            raise UsageError(f"no run {run_id!r} in the audit store {store.url}")
    finally:
        store.close()
    if fmt == "json":
        out(render.to_json(found))
        return EXIT_OK
    out(_shown_run(found))
    return EXIT_OK


def _shown_run(run: dict[str, Any]) -> str:
    """``audit show`` as tables a person reads: the run, its rules, batches, errors."""
    head = [["run", run["run_id"]], ["policy", f"{run['policy']} (version "
                                     f"{run['policy_version'] or '-'}, sha256 "
                                     f"{run['policy_sha256'][:12]})"],
            ["mode", run["mode"]], ["as of", run["as_of"]], ["started", run["started_at"]],
            ["finished", run["finished_at"] or "not finished"],
            ["status", run["status"] or "-"], ["records", len(run["records"])]]
    text = render.table(f"Run {run['run_id']}", ("", ""), head)
    columns = ("rule", "action", "status", "due", "deleted", "anonymized", "held", "children",
               "blocked", "recovered", "cutoff")
    text += render.table("Rules", columns, [[
        r.get("rule"), r.get("action"), r.get("status"), r.get("due"), r.get("deleted"),
        r.get("anonymized"), r.get("held"), _counts(r.get("children")),
        _counts(r.get("blocked")), r.get("recovered"), r.get("cutoff")]
        for r in run["summary"]])
    text += render.table("Batches", ("batch", "rule", "status", "at", "records"), [
        [b["batch_id"], b["rule"], b["status"], b["at"], _counts(b["records"])]
        for b in run["batches"]])
    if run["errors"]:
        text += render.table("Errors", ("rule", "status", "error"),
                             [[e["rule"], e["status"], e["error"]] for e in run["errors"]])
    return text


def _counts(value: Any) -> str:
    if not value:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


@audit.command("verify")
@POLICY
def audit_verify(policy: str) -> int:
    """Recheck the whole hash chain, the holds and runs tables against it, and the
    checkpoints; name the first entry altered, removed or inserted."""
    from retention.audit import checkpoints

    loaded = load(policy, Need.AUDIT)
    proof = checkpoints.Checkpoints.of(loaded, signing=False)
    store = existing_store(loaded)
    try:
        lines, ok = _verified(store, proof)
    finally:
        store.close()
    out("\n".join(lines) + "\n")
    return EXIT_OK if ok else EXIT_FAILED


def _verified(store: AuditStore, proof: Checkpoints | None) -> tuple[list[str], bool]:
    """What ``audit verify`` says, line by line, and whether everything holds."""
    from retention.audit import covered, policies

    verdict = store.verify()
    problems = (covered.check_holds(store)[1] + covered.check_runs(store)
                + policies.check(store))
    lines = [str(verdict)]
    if proof is not None:
        found = proof.check(store)
        problems += found
        if not found:
            lines.append(f"checkpoints agree: {len(proof.read()[0])} in {proof.path}")
    lines += [f"not intact: {p}" for p in problems]
    return lines, verdict.ok and not problems


@audit.command("checkpoint")
@POLICY
def audit_checkpoint(policy: str) -> int:
    """Append a checkpoint now (after checking the store as 'audit verify' does)."""
    from retention.audit import checkpoints

    loaded = load(policy, Need.AUDIT)
    proof = checkpoints.Checkpoints.of(loaded)
    if proof is None:
        raise UsageError(f"policy {loaded.name!r} keeps no checkpoints: set "
                         "'audit: {checkpoints: PATH}'")
    proof.ready()
    store = existing_store(loaded)
    try:
        lines, ok = _verified(store, proof)
        if not ok:
            out("\n".join([*lines, "no checkpoint written"]) + "\n")
            return EXIT_FAILED
        point = proof.append(store, None, "manual")
    finally:
        store.close()
    out(json.dumps(point.as_json()) + "\n")
    return EXIT_OK


@audit.command("export")
@POLICY
@click.option("--format", "fmt", default="jsonl", show_default=True,
              type=click.Choice(["jsonl", "csv"]))
@click.option("--since", help="Only records at or after this ISO-8601 instant.")
@click.option("--until", help="Only records before this ISO-8601 instant.")
@click.option("--rule", help="Only the records of this rule.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
def audit_export(policy: str, fmt: str, since: str | None, until: str | None,
                 rule: str | None, output: str | None) -> int:
    """One line per affected record (--since inclusive, --until exclusive)."""
    start = iso(parse_instant(since, "--since")) if since else None
    end = iso(parse_instant(until, "--until")) if until else None
    if start is not None and end is not None and end <= start:
        raise UsageError(f"--until {until} is not after --since {since}")
    loaded = load(policy, Need.AUDIT)
    if rule is not None and rule not in {r.name for r in loaded.rules}:
        # A rule removed from the policy still has its records: export them, but say so.
        from retention import logs

        logs.get("retention.cli").warning("rule_not_in_policy", rule=rule,
                                          rules=[r.name for r in loaded.rules])
    store = existing_store(loaded)
    try:
        stream = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
        try:
            export.stream(store, fmt, stream, since=start, until=end, rule=rule)
        finally:
            if output:
                stream.close()
    finally:
        store.close()
    return EXIT_OK


@audit.command("policies")
@POLICY
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
@click.option("--show", "show", metavar="SHA256",
              help="Print the text of this version (a unique prefix of its sha256 will do).")
def audit_policies(policy: str, fmt: str, show: str | None) -> int:
    """Every policy version the runs used, oldest first, with what changed."""
    from retention.audit import policies

    loaded = load(policy, Need.AUDIT)
    store = existing_store(loaded)
    try:
        if show is not None:
            found = policies.text_of(store, loaded.name, show.strip().lower())
            if found is None:
                raise UsageError(f"no single stored version of policy {loaded.name!r} has a "
                                 f"sha256 starting with {show!r}")
            if fmt == "json":
                out(render.to_json({k: v for k, v in found.items() if k != "last_seq"}))
            else:
                out(found["text"])
            return EXIT_OK
        versions = policies.versions(store, loaded.name)
    finally:
        store.close()
    if fmt == "json":
        out(render.to_json([{k: v for k, v in item.items() if k != "seq"} for item in versions]))
        return EXIT_OK
    out(render.table(f"Policy versions of {loaded.name}",
                     ("sha256", "version", "first_at", "first_run_id", "changes"),
                     [[v["sha256"][:12], v["version"], v["first_at"], v["first_run_id"],
                       "\n".join(v["changes"])] for v in versions]))
    return EXIT_OK
