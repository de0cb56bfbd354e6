"""A plugin adapter for retention: records kept one JSON object per line.

A source is a directory (``path``); each table is a file ``TABLE.jsonl`` in it whose
lines are ``{"id": "...", "event_at": "ISO-8601 with offset", "note": ...}``.
A batch writes the whole new file beside the old one and renames it into place;
the file also carries the batch's commit marker (a line ``{"_mark": BATCH_ID}``),
so the marker commits exactly when the records change (one ``rename``). One writer
at a time is assumed (retention's lease gives that for its own runs).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retention.adapters import anonymize
from retention.adapters.protocol import (
    AffectedRow,
    Batch,
    BatchHook,
    DueCount,
    Kept,
    Recorded,
    Replayed,
)

from retention.plan import ColumnInfo, ColumnKind, Plan, TableInfo
from retention.policy.rules import Source

_MARK = "_mark"


class JsonlAdapter:
    """``adapter: jsonl`` with ``path``: a directory of ``TABLE.jsonl`` files."""

    name = "jsonl"
    supports_returning = True

    def __init__(self, source: Source) -> None:
        self.dir = Path(str(source.options.get("path") or "."))
        self.url = f"jsonl:{self.dir}"

    # -- the files ----------------------------------------------------------------------

    def _file(self, table: str) -> Path:
        return self.dir / f"{table}.jsonl"

    def _lines(self, table: str) -> list[dict[str, Any]]:
        path = self._file(table)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _records(self, table: str) -> list[dict[str, Any]]:
        return sorted((r for r in self._lines(table) if _MARK not in r), key=lambda r: r["id"])

    def _commit(self, table: str, lines: list[dict[str, Any]]) -> None:
        """Replace the file in one rename (the commit)."""
        path = self._file(table)
        temp = path.with_suffix(".jsonl.tmp")
        with temp.open("w") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)

    # -- the protocol: reading ----------------------------------------------------------

    def reflect(self, table: str) -> TableInfo | None:
        if not self._file(table).exists():
            return None
        text = {"type_name": "TEXT", "temporal": None, "text": True, "python_type": str,
                "kind": ColumnKind.TEXT}
        return TableInfo(table, {
            "id": ColumnInfo("id", nullable=False, **text),  # type: ignore[arg-type]
            "event_at": ColumnInfo("event_at", "TIMESTAMP WITH TIME ZONE", "aware",
                                   kind=ColumnKind.TIMESTAMP),
            "note": ColumnInfo("note", **text),  # type: ignore[arg-type]
        }, ("id",))

    def tables(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.jsonl"))

    @staticmethod
    def _event(record: dict[str, Any], plan: Plan) -> dt.datetime | None:
        value = record.get(plan.event_column)
        return None if value is None else dt.datetime.fromisoformat(value)

    def _pending(self, record: dict[str, Any], plan: Plan) -> bool:
        return not plan.action.columns or any(
            not anonymize.same(record.get(a.column), anonymize.apply(a, record.get(a.column)))
            for a in plan.action.columns)

    def _due(self, record: dict[str, Any], plan: Plan) -> bool:
        event = self._event(record, plan)
        return event is not None and event <= plan.cutoff and self._pending(record, plan)

    def count(self, plan: Plan, ahead: Sequence[Plan] = ()) -> DueCount:
        records = self._records(plan.table)
        held = {k[0] for k in plan.held_keys}
        due = [r for r in records if self._due(r, plan)]
        free = [r for r in due if r["id"] not in held]
        events = [e for r in free if (e := self._event(r, plan)) is not None]
        return DueCount(
            due=len(free), held=len(due) - len(free), total=len(records),
            oldest_due_event=min(events, default=None), children={},
            due_ahead=tuple(sum(1 for r in records if self._due(r, p)
                                and r["id"] not in {k[0] for k in p.held_keys})
                            for p in ahead))

    def sample_keys(self, plan: Plan, limit: int) -> list[dict[str, Any]]:
        held = {k[0] for k in plan.held_keys}
        return [{"id": r["id"]} for r in self._records(plan.table)
                if self._due(r, plan) and r["id"] not in held][:limit]

    def statements(self, plan: Plan) -> list[str]:
        return [f"-- {plan.action} lines of {self._file(plan.table)} whose "
                f"{plan.event_column} <= {plan.cutoff.isoformat()}"]

    def exists(self, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = {r["id"] for r in self._records(table)}
        return [k for k in keys if k["id"] in ids]

    def read(self, table: str, keys: list[dict[str, Any]], columns: list[str]
             ) -> list[dict[str, Any]]:
        wanted = {k["id"] for k in keys}
        return [{"id": r["id"], **{c: r.get(c) for c in columns}}
                for r in self._records(table) if r["id"] in wanted]

    # -- the protocol: changing ---------------------------------------------------------

    def run_batch(self, plan: Plan, after: tuple[Any, ...] | None, hook: BatchHook,
                  batch_id: str | None = None) -> Batch:
        lines = self._lines(plan.table)
        if batch_id is not None and any(line.get(_MARK) == batch_id for line in lines):
            raise ValueError(f"batch {batch_id} was settled already")
        held = {k[0] for k in plan.held_keys}
        chosen = [r for r in self._records(plan.table)
                  if (after is None or r["id"] > after[0]) and r["id"] not in held
                  and self._due(r, plan)][:plan.batch_size]
        ids = {r["id"] for r in chosen}
        kept: list[dict[str, Any]] = []
        rows = []
        for line in lines:
            if line.get("id") not in ids:
                kept.append(line)
                continue
            event = self._event(line, plan)
            assert event is not None
            action = "anonymize" if plan.action.columns else "delete"
            rows.append(AffectedRow(plan.table, {"id": line["id"]}, action, event,
                                    plan.due_instant(event)))
            if plan.action.columns:
                kept.append({**line, **{a.column: anonymize.apply(a, line.get(a.column))
                                        for a in plan.action.columns}})
        if batch_id is not None and rows:
            kept.append({_MARK: batch_id})
        batch = Batch(tuple(sorted(rows, key=lambda r: r.key["id"])), len(chosen),
                      (chosen[-1]["id"],) if chosen else None)
        hook(batch, None)  # raises: nothing was written
        if rows:
            self._commit(plan.table, kept)
        return batch

    def committed(self, batch_ids: list[str]) -> set[str]:
        """Ids whose marker line is in a table file: their rename happened. A batch
        without one never renamed and, its writer being gone, never will."""
        if not self.dir.is_dir():
            raise LookupError(f"{self.dir} is gone")
        found = {line[_MARK] for table in self.tables() for line in self._lines(table)
                 if _MARK in line}
        return {b for b in batch_ids if b in found}

    def forget(self, batch_ids: list[str]) -> None:
        gone = set(batch_ids)
        for table in self.tables():
            lines = self._lines(table)
            if any(line.get(_MARK) in gone for line in lines):
                self._commit(table, [line for line in lines if line.get(_MARK) not in gone])

    def replay(self, plan: Plan, recorded: list[Recorded], hook: BatchHook | None,
               batch_id: str | None = None) -> Replayed:
        by_id = {r["id"]: r for r in self._records(plan.table)}
        kept: list[tuple[Recorded, Kept]] = []
        chosen: list[Recorded] = []
        for rec in recorded:
            row = by_id.get(rec.key["id"])
            if row is None:
                continue
            if self._event(row, plan) != rec.event_at:
                kept.append((rec, Kept.REUSED_KEY))
            elif rec.key["id"] in {k[0] for k in plan.held_keys}:
                kept.append((rec, Kept.HELD))
            elif not self._due(row, plan):
                kept.append((rec, Kept.NOT_SELECTED))
            else:
                chosen.append(rec)
        rows = tuple(AffectedRow(plan.table, dict(r.key), "delete", r.event_at,
                                 plan.due_instant(r.event_at)) for r in chosen)
        if hook is not None and rows:
            ids = {r.key["id"] for r in chosen}
            lines = [line for line in self._lines(plan.table) if line.get("id") not in ids]
            hook(Batch(rows, len(rows), None), None)
            self._commit(plan.table, lines + ([{_MARK: batch_id}] if batch_id else []))
        return Replayed(rows, tuple(kept))

    def close(self) -> None:
        """Nothing is held open."""
