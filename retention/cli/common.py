"""What the command-line modules share: the POLICY argument, loading, output."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from retention.errors import UsageError
from retention.policy.needs import Need
from retention.secrets import scrub

if TYPE_CHECKING:
    from retention.audit.store import AuditStore
    from retention.policy.rules import Policy

POLICY = click.argument("policy", envvar="RETENTION_POLICY", type=click.Path(dir_okay=False))


def load(path: str, need: Need = Need.ALL) -> Policy:
    """The policy, asking the environment only for what the command ``need``s."""
    from retention.policy.load import load_policy

    return load_policy(path, need=need)


def existing_store(policy: Policy) -> AuditStore:
    """The policy's audit store; a missing one is an error, not a new empty store."""
    from retention.audit.store import AuditStore
    from retention.db import safe_url

    store = AuditStore.peek(policy.audit_url)
    if store is None:
        raise UsageError(f"no audit store at {safe_url(policy.audit_url)} (check 'audit: url' "
                         "or RETENTION_AUDIT_URL)")
    return store


def out(text: str, output: str | None = None) -> None:
    text = scrub(text)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=not text.endswith("\n"))


