"""Policy history: the text of every policy version a run used, and what changed.

A run stores its policy's text (passwords masked) once per version in
``retention_policies``. The first version is vouched for by the run's chained
``run_started`` (its ``policy_sha256`` is the text's). When the version differs from
the one the policy's runs used last, the run appends a chained ``policy_changed``
entry (after its ``run_started``) whose detail names both versions (sha256 of the
file, sha256 of the stored text) and lists the changes as readable lines, per rule::

    rule 'orders': retain '6 months after completion plus 7 years' -> '... plus 10 years'
    rule 'leads' added

``retention audit policies`` lists the versions from those entries; ``audit verify``
checks the table's texts against them (:func:`check`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from retention import secrets
from retention.audit import chain
from retention.audit.schema import head, log, policies, runs
from retention.audit.store import AuditStore, now_text
from retention.db import writing
from retention.policy import yamlfile

if TYPE_CHECKING:
    from retention.policy.rules import Policy

KIND = "policy_changed"
NONE = "(none)"  # a setting absent on one side of a change
_LITERAL = "${%s}"


class _AsWritten(Mapping[str, str]):
    """An environment in which every ``${VAR}`` reads as written (diffs show the file)."""

    def __getitem__(self, name: str) -> str:
        return _LITERAL % name

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tree(text: str) -> dict[str, Any]:
    tree, _ = yamlfile.load(text, "<stored policy>", _AsWritten())
    return _plain(tree) if isinstance(tree, dict) else {}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _shown(value: Any) -> str:
    if value is _ABSENT:
        return NONE
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


_ABSENT = object()


def _compare(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str) -> list[str]:
    lines = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if old != new:
            lines.append(f"{prefix}{key} {_shown(old)} -> {_shown(new)}")
    return lines


def _named(before: Mapping[str, Any], after: Mapping[str, Any], what: str,
           effective: Any = None) -> list[str]:
    """Changes of named parts (rules, sources): added, removed, or setting by setting."""
    lines = []
    for name in list(before) + [n for n in after if n not in before]:
        if name not in after:
            lines.append(f"{what} {name!r} removed")
        elif name not in before:
            lines.append(f"{what} {name!r} added")
        else:
            old, new = before[name], after[name]
            if effective is not None:
                old, new = effective[0](old), effective[1](new)
            if not isinstance(old, dict) or not isinstance(new, dict):
                if old != new:
                    lines.append(f"{what} {name!r}: {_shown(old)} -> {_shown(new)}")
                continue
            lines += _compare(old, new, f"{what} {name!r}: ")
    return lines


def changes(before: str | None, after: str) -> list[str]:
    """Readable lines saying what changed from policy text ``before`` to ``after``."""
    if before is None:
        return ["first recorded"]
    old, new = _tree(before), _tree(after)
    lines = _compare({k: v for k, v in old.items() if k not in ("rules", "sources", "defaults")},
                     {k: v for k, v in new.items() if k not in ("rules", "sources", "defaults")},
                     "")
    lines += _named(_dict(old.get("sources")), _dict(new.get("sources")), "source")
    old_defaults, new_defaults = _dict(old.get("defaults")), _dict(new.get("defaults"))
    lines += _named(_dict(old.get("rules")), _dict(new.get("rules")), "rule", (
        lambda r: {**old_defaults, **_dict(r)}, lambda r: {**new_defaults, **_dict(r)}))
    if not lines and before != after:
        lines.append("comments or layout only")
    return lines


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# -- recording -----------------------------------------------------------------------------


def record(store: AuditStore, policy: Policy, run_id: str) -> list[str] | None:
    """Store ``policy``'s text once per version and chain a ``policy_changed`` entry when
    the policy's current version is another (or none yet). Returns the changes, or None
    when the version is the current one. Needs ``policy.text`` (loaded from a file)."""
    if not policy.text:
        return None
    text = secrets.scrub(policy.text)
    with writing(store.engine) as conn:
        # Take the chain's lock first: two runners of a new version record it once.
        conn.execute(head.update().where(head.c.id == 1).values(seq=head.c.seq))
        rows = conn.execute(sa.select(policies).where(policies.c.policy == policy.name)).all()
        current = max(rows, key=lambda r: r.last_seq) if rows else None
        if current is not None and current.sha256 == policy.sha256:
            return None
        found = changes(None if current is None else current.text, text)
        at = now_text()
        if current is not None or _sha(text) != policy.sha256:
            # A first version stored as read is vouched for by the run's run_started
            # (its policy_sha256); a change, or a text with masked passwords, by an entry.
            store.append([{"kind": KIND, "run_id": run_id, "at": at, "detail": json.dumps({
                "policy": policy.name, "version": policy.version, "sha256": policy.sha256,
                "text_sha256": _sha(text),
                "previous_sha256": None if current is None else current.sha256,
                "changes": found}, sort_keys=True)}], conn)
        seq = conn.execute(sa.select(head.c.seq).where(head.c.id == 1)).scalar_one()
        if any(r.sha256 == policy.sha256 for r in rows):
            conn.execute(policies.update().where(policies.c.policy == policy.name,
                                                 policies.c.sha256 == policy.sha256)
                         .values(last_seq=seq))
        else:
            conn.execute(policies.insert().values(
                policy=policy.name, sha256=policy.sha256, version=policy.version, text=text,
                text_sha256=_sha(text), first_run_id=run_id, first_at=at, last_seq=seq))
    return found


# -- reading -------------------------------------------------------------------------------


def _has_table(store: AuditStore) -> bool:
    return sa.inspect(store.engine).has_table(policies.name)


def versions(store: AuditStore, policy: str) -> list[dict[str, Any]]:
    """The policy's versions as the runs took them up, oldest first (SPEC §3):
    ``{"sha256", "version", "first_run_id", "first_at", "changes"}``, the first version
    (``changes`` ["first recorded"]) and one item per ``policy_changed`` entry after it (a
    version taken up again after another appears again)."""
    if not _has_table(store):
        return []
    out = []
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(policies).where(policies.c.policy == policy)).all()
        entries = conn.execute(sa.select(log).where(log.c.kind == KIND).order_by(log.c.seq))
        for entry in entries:
            detail = json.loads(entry.detail or "{}")
            if detail.get("policy") != policy:
                continue
            out.append({"sha256": detail.get("sha256"), "version": detail.get("version"),
                        "first_run_id": entry.run_id, "first_at": entry.at,
                        "changes": detail.get("changes", [])})
    if rows and not (out and out[0]["changes"] == ["first recorded"]):
        first = min(rows, key=lambda r: (r.first_at, r.last_seq))
        out.insert(0, {"sha256": first.sha256, "version": first.version,
                       "first_run_id": first.first_run_id, "first_at": first.first_at,
                       "changes": ["first recorded"]})
    return out


def text_of(store: AuditStore, policy: str, sha256: str) -> dict[str, Any] | None:
    """The stored version whose sha256 is ``sha256`` or starts with it (one match), with
    its text; None when there is none or several match."""
    if not _has_table(store):
        return None
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(policies).where(
            policies.c.policy == policy, policies.c.sha256.startswith(sha256, autoescape=True))
        ).all()
    return dict(rows[0]._mapping) if len(rows) == 1 else None


def changes_since(store: AuditStore, run_id: str, text: str | None = None) -> list[str] | None:
    """What changed in the policy since run ``run_id``: the lines between the version that
    run used and ``text`` (the policy as it is now), or the newest stored version when
    ``text`` is None. None when the run or its version's text is unknown (a run recorded
    before policy texts were kept); [] when nothing changed."""
    if not _has_table(store):
        return None
    with store.engine.connect() as conn:
        used = conn.execute(sa.select(runs.c.policy, runs.c.policy_sha256)
                            .where(runs.c.run_id == run_id)).first()
        if used is None:
            return None
        rows = {r.sha256: r for r in conn.execute(
            sa.select(policies).where(policies.c.policy == used.policy))}
    then = rows.get(used.policy_sha256)
    if then is None:
        return None
    if text is None:
        text = max(rows.values(), key=lambda r: r.last_seq).text
    else:
        text = secrets.scrub(text)
    return [] if text == then.text else changes(then.text, text)


def check(store: AuditStore) -> list[str]:
    """Every stored text that its chained ``policy_changed`` entry does not vouch for."""
    if not _has_table(store):
        return []
    problems = []
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(policies)).all()
        entries = {int(e.seq): dict(e._mapping) for e in conn.execute(
            sa.select(log).where(log.c.seq.in_([r.last_seq for r in rows])))} if rows else {}
        started = {e.run_id: dict(e._mapping) for e in conn.execute(sa.select(log).where(
            log.c.kind == "run_started", log.c.run_id.in_([r.first_run_id for r in rows])))
        } if rows else {}
    for row in rows:
        entry = entries.get(int(row.last_seq))
        if entry is None or entry["kind"] != KIND:  # a first version: its run vouches
            entry = started.get(row.first_run_id)
            detail = json.loads(entry["detail"] or "{}") if entry else {}
            vouched = (entry is not None and chain.entry_hash(entry) == entry["hash"]
                       and detail.get("policy") == row.policy
                       and detail.get("policy_sha256") == row.sha256 == _sha(row.text))
        else:
            detail = json.loads(entry["detail"] or "{}")
            vouched = (chain.entry_hash(entry) == entry["hash"]
                       and detail.get("policy") == row.policy
                       and detail.get("sha256") == row.sha256
                       and detail.get("text_sha256") == _sha(row.text))
        if not vouched:
            problems.append(f"policy version {row.sha256[:12]} of {row.policy!r} in "
                            "retention_policies does not match the chain")
    return problems



def changes_between(store: AuditStore, old_sha256: str, policy: Policy) -> list[str] | None:
    """What changed from the stored version ``old_sha256`` of ``policy`` to the policy as
    it is now (the text of its file, as read): the report's "changed since the last run".
    None when that version's text (or the current text) is unknown; [] when nothing
    changed."""
    then = text_of(store, policy.name, old_sha256)
    if then is None or then["sha256"] != old_sha256 or not policy.text:
        return None
    now = secrets.scrub(policy.text)
    return [] if now == then["text"] else changes(then["text"], now)
