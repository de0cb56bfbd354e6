"""The hash chain: each entry's hash covers its fields and the previous entry's hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64  # the prev_hash of the first entry


def entry_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of every field but ``hash`` (``prev_hash`` included)."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                           default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking a chain: ``ok``, or the first bad entry and why."""

    ok: bool
    entries: int
    seq: int | None = None
    reason: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.entries} entries"
        return f"audit chain broken at entry {self.seq}: {self.reason}"


def verify(rows: Iterable[Mapping[str, Any]], head: tuple[int, str] | None,
           find: Callable[[str], int | None] | None = None) -> Verdict:
    """Walk ``rows`` in seq order and name the first entry altered, removed or inserted.

    ``head`` is the stored (seq, hash) of the chain's end, or None when empty.
    ``find`` looks up the seq of the entry with a given hash: when an entry points
    back past its predecessor, the entries in between were inserted.
    """
    prev_hash, prev_seq, count = GENESIS, 0, 0
    before_prev = None  # the hash of the entry before the previous one
    for row in rows:
        seq = int(row["seq"])
        if seq != prev_seq + 1:
            if seq <= prev_seq:
                return Verdict(False, count, seq, "inserted: its sequence number repeats")
            return Verdict(False, count, prev_seq + 1,
                           f"removed: entries {prev_seq + 1}..{seq - 1} are missing")
        if row["prev_hash"] != prev_hash:
            if before_prev is not None and row["prev_hash"] == before_prev:
                return Verdict(False, count - 1, seq - 1,
                               "inserted: the entry after it follows the entry before it")
            target = find(row["prev_hash"]) if find is not None else None
            if target is not None and target < seq - 1:
                return Verdict(False, target, target + 1,
                               f"inserted: entries {target + 1}..{seq - 1} are not in the "
                               f"chain (entry {seq} follows entry {target})")
            return Verdict(False, count, seq,
                           "inserted or reordered: it does not follow the entry before it")
        if entry_hash(row) != row["hash"]:
            return Verdict(False, count, seq, "altered: its content does not match its hash")
        before_prev, prev_hash, prev_seq, count = prev_hash, row["hash"], seq, count + 1
    if head is None:
        if count:
            return Verdict(False, count, prev_seq, "the chain head is missing")
        return Verdict(True, 0)
    if head[0] != prev_seq or head[1] != prev_hash:
        if head[0] > prev_seq:
            return Verdict(False, count, prev_seq + 1,
                           f"removed: entries {prev_seq + 1}..{head[0]} at the end are missing")
        if head[0] < prev_seq:
            return Verdict(False, count, head[0] + 1,
                           f"inserted: entries {head[0] + 1}..{prev_seq} lie past the chain head")
        return Verdict(False, count, head[0],
                       "altered or replaced: the last entry does not match the chain head")
    return Verdict(True, count)
