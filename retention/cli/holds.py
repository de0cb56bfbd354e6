"""``retention hold add|list|release``: legal holds from the command line."""

from __future__ import annotations

import datetime as dt
import json

import click

from retention import calendar, logs
from retention.audit import checkpoints
from retention.audit.store import AuditStore
from retention.cli.common import POLICY, existing_store, load, out
from retention.errors import UsageError
from retention.instants import utcnow
from retention.policy.needs import Need
from retention.policy.rules import Policy
from retention.report import render
from retention.run import engine, holds
from retention.run.outcome import EXIT_OK


@click.group()
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
    loaded = load(policy)
    selected = engine.select_rules(loaded, [rule])[0]
    last_day = _until(until, loaded)
    with engine.Session(loaded) as session:
        assert selected.table is not None
        info = session.adapter(selected.source).reflect(selected.table)
        if info is None:
            raise UsageError(f"table {selected.table!r} of rule {rule!r} does not exist")
        parsed = holds.typed(holds.parse_key(key, info.primary_key), info)
        exists = session.adapter(selected.source).exists(selected.table, [parsed])
    proof = checkpoints.Checkpoints.of(loaded)
    if proof is not None:
        proof.ready()
    store = AuditStore(loaded.audit_url)
    try:
        if proof is not None:
            proof.check_latest(store)
        placed = holds.add(store, loaded.name, rule, parsed, reason, by, last_day)
        if proof is not None:
            proof.append(store, None, "hold_added")
    finally:
        store.close()
    if not exists:
        logs.get("retention.cli").warning("hold_key_not_found", rule=rule, key=parsed)
    out(f"hold {placed.hold_id} placed on {rule} {json.dumps(parsed)}"
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
    loaded = load(policy, Need.AUDIT)
    store = AuditStore.peek(loaded.audit_url)
    found: list[holds.Hold] = []
    if store is not None:
        try:
            found = [h for h in holds.list_holds(store, loaded.name)
                     if show_all or h.released_at is None]
        finally:
            store.close()
    if fmt == "json":
        out(render.to_json([h.as_json() for h in found]))
        return EXIT_OK
    columns = ("hold_id", "rule", "key", "reason", "placed_by", "placed_at", "until",
               "released_at")
    out(render.table("Legal holds", columns, [
        [h.hold_id, h.rule, json.dumps(h.key), h.reason, h.placed_by, h.placed_at,
         h.until, h.released_at] for h in found]))
    return EXIT_OK


@hold.command("release")
@POLICY
@click.argument("hold_id")
@click.option("--by", help="Who releases the hold (default: the OS user).")
def hold_release(policy: str, hold_id: str, by: str | None) -> int:
    """Release a hold: the record follows its rule again."""
    loaded = load(policy, Need.AUDIT)
    proof = checkpoints.Checkpoints.of(loaded)
    if proof is not None:
        proof.ready()
    store = existing_store(loaded)
    try:
        if proof is not None:
            proof.check_latest(store)
        released = holds.release(store, loaded.name, hold_id, by)
        if proof is not None:
            proof.append(store, None, "hold_released")
    finally:
        store.close()
    out(f"hold {released.hold_id} released\n")
    return EXIT_OK
