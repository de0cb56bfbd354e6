"""The files adapter (``adapter: files``): the files of a directory tree as records.

A source names a root (``path``), which files under it count (``include`` and
``exclude`` globs, relative to the root) and optionally a name ``pattern`` with
timestamp fields (``mail-{date:%Y-%m-%d}.log``) and an ``archive_to`` directory.
Its one table, ``files``, has the columns ``path`` (the key: the path relative to
the root), ``size``, ``modified`` (the modification time, to the nanosecond) and one
per field of the pattern; a rule's event is ``modified`` or a field.

A batch deletes files (or moves them into the archive) with the protocol of
:mod:`retention.adapters.files_journal`: staged, audited as intents, decided,
finished; the decision file is the commit marker. The audit key of a file is its
relative path, its size and the sha256 of its content at deletion. Links are never
followed, a path that would leave the root is refused, and a file that changed since
it was selected (inode, size or modification time) is left for the next run.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from retention.adapters import files_tree as tree
from retention.adapters.files_journal import (
    COMMITTED,
    ROLLED_BACK,
    Journal,
    Staged,
)
from retention.adapters.files_ops import sha256_of
from retention.adapters.protocol import (
    AffectedRow,
    Batch,
    BatchHook,
    DueCount,
    Kept,
    Recorded,
    Replayed,
)

from retention.errors import UsageError
from retention.period import Kind
from retention.plan import ColumnInfo, ColumnKind, EventType, Plan, TableInfo
from retention.policy.rules import Rule, Source

TABLE = "files"  # the one table of a files source
MODIFIED = "modified"  # the column of the modification time
DEFAULT_INCLUDE = ("**",)  # every file under the root
_NOT_FOR_FILES = ("url", "schema", "replicas")  # source keys of SQL sources
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _globs(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


class FilesAdapter:
    """Adapter for a directory tree (``adapter: files``, options ``path``, ``include``,
    ``exclude``, ``pattern``, ``archive_to``)."""

    name = "files"
    supports_returning = True  # a batch knows exactly which files it removed

    def __init__(self, source: Source) -> None:
        self.source = source
        options = source.options
        self.problems: list[tuple[int, str]] = []  # (line, message): said per rule
        self.globs: dict[str, tuple[str, ...]] = {"include": (), "exclude": ()}  # as written
        raw = options.get("path")
        where = f"source {source.name!r}"
        self.root = os.path.realpath(str(raw)) if isinstance(raw, str) and raw else ""
        self.url = f"files:{self.root or raw}"
        if not self.root:
            self._problem("path", f"{where} needs 'path', the directory it holds")
        elif not os.path.isdir(self.root):
            what = "is not a directory" if os.path.exists(self.root) else "does not exist"
            self._problem("path", f"{where}: path {str(raw)!r} {what}")
        include = self._compile("include", options.get("include", list(DEFAULT_INCLUDE)))
        exclude = self._compile("exclude", options.get("exclude", []), empty=True)
        self.pattern: tree.NamePattern | None = None
        if "pattern" in options:
            text = options["pattern"]
            try:
                if not isinstance(text, str):
                    raise tree.PatternError(f"'pattern' must be text, got {text!r}")
                self.pattern = tree.compile_pattern(text)
            except tree.PatternError as exc:
                self._problem("pattern", f"{where}: {exc}")
        self.archive: str | None = None
        for key in _NOT_FOR_FILES:
            if key in options:
                self._problem(key, f"{where}: a files source has no {key!r}")
        if "archive_to" in options:
            archive = options["archive_to"]
            if not isinstance(archive, str) or not os.path.isdir(archive):
                self._problem("archive_to", f"{where}: archive_to {archive!r} is no directory")
            else:
                self.archive = os.path.realpath(archive)
                inside = os.path.relpath(self.archive, self.root or "/")
                if self.root and inside != ".." and not inside.startswith("../"):
                    self._problem("archive_to", f"{where}: archive_to {archive!r} lies inside "
                                  "the source's path; archived files would be selected again")
        self.tree = tree.Tree(self.root, include, exclude)
        self.journal = Journal(self.root, self.archive)
        self._settled: set[str] = set()
        self._adopted: set[str] = set()  # rules whose orphaned files this instance took

    def _problem(self, key: str, message: str) -> None:
        self.problems.append((self.source.lines.get(key, self.source.line), message))

    def _compile(self, key: str, value: Any, empty: bool = False
                 ) -> tuple[Any, ...]:
        where = f"source {self.source.name!r}"
        if empty and value == []:
            return ()
        found = _globs(value)
        if found is None:
            self._problem(key, f"{where}: {key!r} must be a glob or a list of globs")
            return ()
        out = []
        self.globs[key] = found
        for text in found:
            try:
                out.append(tree.compile_glob(text))
            except tree.PatternError as exc:
                self._problem(key, f"{where}: {key}: {exc}")
        return tuple(out)

    # -- validation --------------------------------------------------------------------

    def rule_problems(self, rule: Rule) -> list[tuple[int, str]]:
        """What keeps ``rule`` from running on this source: (line, message)."""
        out = list(self.problems)
        if rule.action.columns:
            out.append((rule.line_of("action"), "files are deleted (or archived with "
                        "'archive_to'), never anonymized"))
        if rule.filters:
            out.append((rule.line_of("where"), "a files source has no 'where': choose the "
                        "files with 'include' and 'exclude' on the source"))
        if rule.children:
            out.append((rule.line_of("children"), "files have no children"))
        if rule.event_format is not None:
            out.append((rule.line_of("event_format"), "'event_format' is for epoch numbers "
                        "in SQL columns; a file's times come from it or its name"))
        return out

    def reflect(self, table: str) -> TableInfo | None:
        """The ``files`` table's columns (None for any other name). Never raises."""
        if table != TABLE:
            return None
        text = dict(type_name="TEXT", temporal=None, nullable=False, text=True,
                    python_type=str, kind=ColumnKind.TEXT)
        columns = {
            "path": ColumnInfo("path", **text),  # type: ignore[arg-type]
            "size": ColumnInfo("size", "INTEGER", None, nullable=False, python_type=int,
                               kind=ColumnKind.INTEGER, low=0, high=2**63 - 1),
            MODIFIED: ColumnInfo(MODIFIED, "TIMESTAMP WITH TIME ZONE", "aware",
                                 nullable=False, python_type=dt.datetime,
                                 kind=ColumnKind.TIMESTAMP),
        }
        for field in self.pattern.fields if self.pattern else ():
            columns[field.name] = ColumnInfo(
                field.name, f"NAME PATTERN {field.format}", field.temporal,
                python_type=dt.date if field.temporal == "date" else dt.datetime,
                kind=ColumnKind.DATE if field.temporal == "date" else ColumnKind.TIMESTAMP)
        return TableInfo(TABLE, columns, ("path",))

    def tables(self) -> list[str]:
        return [TABLE]

    def uncovered(self, covered: set[str]) -> list[str]:
        """Files under the root that no rule selects (every file when no rule uses the
        source); ``covered`` are the source's tables and paths rules or ignores name."""
        if not self.root or not os.path.isdir(self.root):
            return []
        ruled = TABLE in covered
        return [f.rel for f in self.tree.walk(every=True)
                if f.rel not in covered and not (ruled and self.tree.selects(f.rel))]

    # -- reading -----------------------------------------------------------------------

    def _event(self, plan: Plan, found: tree.Found) -> Any:
        """The file's event value in its column's terms; None when it has none."""
        if plan.event_column == MODIFIED:
            return found.mtime_ns
        values = self.pattern.read(found.rel) if self.pattern else None
        return None if values is None else values.get(plan.event_column)

    def _instant(self, plan: Plan, value: Any) -> dt.datetime:
        if plan.event_column == MODIFIED:
            return _EPOCH + int(value // 1000) * _US
        return plan.event_instant(value)

    @staticmethod
    def _due(plan: Plan, value: Any) -> bool:
        """``value <= bound`` as the SQL predicate compares, exact to the nanosecond for
        ``modified``: calendar spans make the cutoff's whole microsecond due."""
        if value is None:
            return False
        if plan.event_column == MODIFIED:
            cut_us = (plan.cutoff - _EPOCH) // _US
            if plan.retain.kind is Kind.CALENDAR:
                return bool(value // 1000 <= cut_us)
            return bool(value <= cut_us * 1000)
        if plan.event_type is EventType.AWARE and value.tzinfo is None:
            return False
        return bool(value <= plan.bound)

    def _selected(self, plan: Plan, after: str | None = None
                  ) -> Iterator[tuple[tree.Found, Any, bool]]:
        """(file, event value, held) for every due file after ``after``, in key order."""
        held = {k[0] for k in plan.held_keys}
        for found in self.tree.walk(after):
            value = self._event(plan, found)
            if self._due(plan, value):
                yield found, value, found.rel in held

    def count(self, plan: Plan, ahead: Sequence[Plan] = ()) -> DueCount:
        """One walk of the tree for every figure."""
        due = held = total = unreadable = 0
        oldest: dt.datetime | None = None
        later = [0] * len(ahead)
        held_later = [{k[0] for k in p.held_keys} for p in ahead]
        own = {k[0] for k in plan.held_keys}
        for found in self.tree.walk():
            total += 1
            value = self._event(plan, found)
            if value is None:
                unreadable += 1
                continue
            if self._due(plan, value):
                if found.rel in own:
                    held += 1
                else:
                    due += 1
                    instant = self._instant(plan, value)
                    oldest = instant if oldest is None or instant < oldest else oldest
            for i, other in enumerate(ahead):
                if self._due(other, value) and found.rel not in held_later[i]:
                    later[i] += 1
        return DueCount(due=due, held=held, total=total, oldest_due_event=oldest,
                        children={}, unreadable=unreadable, due_ahead=tuple(later))

    def sample_keys(self, plan: Plan, limit: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for found, _, is_held in self._selected(plan):
            if len(out) >= limit:
                break
            if not is_held:
                out.append({"path": found.rel})
        return out

    def statements(self, plan: Plan) -> list[str]:
        """What a run does, in words (a files source runs no SQL)."""
        include = ", ".join(self.globs["include"]) or "nothing"
        exclude = ", ".join(self.globs["exclude"])
        event = plan.event_column if plan.event_column == MODIFIED else (
            f"{plan.event_column} from the name pattern {self.pattern.text!r}"
            if self.pattern else plan.event_column)
        bound = plan.bound.isoformat() if isinstance(plan.bound, dt.date) else plan.bound
        then = (f"move into {self.archive} (same relative path)" if self.archive
                else "delete")
        return [
            f"-- walk {self.root} (links not followed), files matching {include}"
            + (f" and not {exclude}" if exclude else "")
            + f"\n-- due: {event} <= {bound}"
            + (f"; {len(plan.held_keys)} held path(s) kept" if plan.held_keys else "")
            + f"\n-- per batch of {plan.batch_size}: re-check inode, size and modified, "
            f"stage in {tree.STATE_DIR}/, record path, size and sha256, decide, {then}",
        ]

    def exists(self, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Those of ``keys`` whose path holds a regular file now. Raises ``OSError``, and
        :class:`UsageError` for a path that is not relative or would leave the root."""
        if self.problems:  # the source cannot be used as written (hold add says why)
            raise UsageError(self.problems[0][1])
        for key in keys:
            rel = str(key.get("path"))
            if rel.startswith("/") or any(p in ("", ".", "..") for p in rel.split("/")):
                raise UsageError(f"path {rel!r} is no path inside the source's path (relative, "
                                 "no '.', '..' or empty parts)")
        root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return [k for k in keys
                    if (st := tree.lstat_rel(root, str(k["path"]))) is not None
                    and stat.S_ISREG(st.st_mode)]
        finally:
            os.close(root)

    def read(self, table: str, keys: list[dict[str, Any]], columns: list[str]
             ) -> list[dict[str, Any]]:
        """Files have no columns to anonymize. Raises ``NotImplementedError``."""
        raise NotImplementedError("files are never anonymized")

    # -- changing ----------------------------------------------------------------------

    def _settle_leftovers(self, rule: str) -> None:
        """Once per rule: settle batch directories of ``rule`` a crash left behind that no
        audit entry names (the lease holder runs this; reconcile already settled the rest)."""
        if rule in self._settled:
            return
        for batch_id, owner in list(self.journal.batches()):
            if owner == rule and not self.journal.settle(batch_id):
                self._forget_rolled_back(batch_id)
        self._settled.add(rule)

    def _forget_rolled_back(self, batch_id: str) -> None:
        """Drop the decision of a rolled-back batch whose directory is gone: nothing can
        commit it any more, and its absence proves the same (only ``committed`` must stay
        until the audit log has confirmed it)."""
        if batch_id not in {b for b, _ in self.journal.batches()} and \
                self.journal.decision(batch_id) == ROLLED_BACK:
            self.journal.forget([batch_id])

    def run_batch(self, plan: Plan, after: tuple[Any, ...] | None, hook: BatchHook,
                  batch_id: str | None = None) -> Batch:
        """Delete (or archive) the next batch of due files after path ``after``.

        The rule's first batch first takes the files a rolled-back batch could not put
        back (their paths hold new files): still due, they are deleted and recorded under
        their old path and content. Raises ``OSError`` when the tree cannot be read or
        changed, ``FileExistsError`` when ``batch_id`` was used before; if ``hook``
        raises, every staged file goes back to its path and the exception propagates.
        """
        self._settle_leftovers(plan.rule)
        batch_id = batch_id or f"local-{uuid.uuid4().hex}"
        if after is None and plan.rule not in self._adopted:
            self._adopted.add(plan.rule)
            orphans = self._orphans(plan)
            if orphans:
                staged = self._stage(plan, batch_id, [f for _, _, f in orphans],
                                     lambda i, f: self.journal.adopt(
                                         orphans[i][0], orphans[i][1], batch_id, i, f))
                for old in {b for b, _, _ in orphans}:
                    self.journal.settle(old)  # empty now: its directory goes
                    self._forget_rolled_back(old)
                rows = tuple(self._row(plan, s, v) for s, v in staged)
                done = self._commit(plan, batch_id, rows, hook)
                return Batch(rows if done else (), plan.batch_size, None)  # then the tree
        chosen: list[tree.Found] = []
        for found, _, is_held in self._selected(plan, None if after is None else after[0]):
            if not is_held:
                chosen.append(found)
            if len(chosen) >= plan.batch_size:
                break
        if not chosen:
            hook(Batch((), 0, None), None)
            return Batch((), 0, None)
        last = (chosen[-1].rel,)
        staged = self._stage(plan, batch_id, chosen,
                             lambda i, f: self.journal.stage(batch_id, i, f))
        rows = tuple(self._row(plan, s, v) for s, v in staged)
        done = self._commit(plan, batch_id, rows, hook)
        return Batch(rows if done else (), len(chosen), last)

    def _orphans(self, plan: Plan) -> list[tuple[str, int, tree.Found]]:
        """Files of the rule's rolled-back batches that could not go back, still due now."""
        held = {k[0] for k in plan.held_keys}
        return [(b, i, f) for b, i, f in self.journal.orphans(plan.rule)
                if f.rel not in held and self.tree.selects(f.rel)
                and self._due(plan, self._event(plan, f))][:plan.batch_size]

    def _stage(self, plan: Plan, batch_id: str, files: list[tree.Found],
               move: Callable[[int, tree.Found], Staged | None]) -> list[tuple[Staged, Any]]:
        """Move ``files`` into the batch (``move``); on any error put every one back."""
        self.journal.begin(batch_id, plan.rule, files)
        out: list[tuple[Staged, Any]] = []
        try:
            for i, found in enumerate(files):
                done = move(i, found)
                if done is not None:
                    out.append((done, self._event(plan, found)))
        except BaseException:
            self._roll_back(batch_id)
            raise
        return out

    def _roll_back(self, batch_id: str) -> None:
        """Undo a batch this process staged: nothing of it can commit later, so once its
        files are back its decision is not needed either."""
        self.journal.decide(batch_id, ROLLED_BACK)
        self.journal.settle(batch_id)
        self._forget_rolled_back(batch_id)

    def _commit(self, plan: Plan, batch_id: str, rows: tuple[AffectedRow, ...],
                hook: BatchHook) -> bool:
        """Record ``rows`` (the hook), decide, finish; False when nothing was staged."""
        try:
            hook(Batch(rows, len(rows), None), None)
        except BaseException:
            self._roll_back(batch_id)
            raise
        if not rows:  # every selected file changed or went: nothing to decide
            self._roll_back(batch_id)
            return False
        self.journal.decide(batch_id, COMMITTED)
        return self.journal.settle(batch_id)

    def _row(self, plan: Plan, staged: Staged, value: Any) -> AffectedRow:
        instant = self._instant(plan, value)
        due = plan.due_instant(instant)
        return AffectedRow(TABLE, {"path": staged.rel, "size": staged.size,
                                   "sha256": staged.sha256}, "delete", instant, due)

    def committed(self, batch_ids: list[str]) -> set[str]:
        """Those of ``batch_ids`` decided ``committed``; every other is decided rolled back
        first. Each batch is finished (deletes done, or files restored) before the answer.
        Raises ``LookupError`` when the state directory is gone, ``OSError`` otherwise."""
        if batch_ids and not self.journal.exists():
            raise LookupError(f"{self.root}/{tree.STATE_DIR} is gone: no batch can be proven")
        return {b for b in batch_ids if self.journal.settle(b)}

    def forget(self, batch_ids: list[str]) -> None:
        self.journal.forget(batch_ids)

    def replay(self, plan: Plan, recorded: list[Recorded], hook: BatchHook | None,
               batch_id: str | None = None) -> Replayed:
        """Delete again the restored files that are the recorded ones: the same path and
        content (sha256) and still selected by ``plan``. Raises ``OSError``."""
        held = {k[0] for k in plan.held_keys}
        kept: list[tuple[Recorded, Kept]] = []
        chosen: list[tuple[tree.Found, Any, Recorded]] = []
        root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for rec in recorded:
                rel = str(rec.key.get("path"))
                st = tree.lstat_rel(root, rel)
                if st is None or not stat.S_ISREG(st.st_mode):
                    continue
                found = tree.Found(rel, st.st_size, st.st_mtime_ns, st.st_ino)
                # the same content is the recorded file, whatever time a restore gave it
                value = ((rec.event_at - _EPOCH) // _US * 1000 if plan.event_column == MODIFIED
                         else self._event(plan, found))
                if st.st_size != rec.key.get("size") or \
                        sha256_of(root, rel) != rec.key.get("sha256"):
                    kept.append((rec, Kept.REUSED_KEY))
                elif rel in held:
                    kept.append((rec, Kept.HELD))
                elif not self._due(plan, value) or not self.tree.selects(rel):
                    kept.append((rec, Kept.NOT_SELECTED))
                else:
                    chosen.append((found, value, rec))
        finally:
            os.close(root)
        if hook is None or not chosen:
            rows = tuple(AffectedRow(TABLE, dict(r.key), "delete", r.event_at,
                                     plan.due_instant(r.event_at)) for _, _, r in chosen)
            return Replayed(rows, tuple(kept))
        bid = batch_id or f"local-{uuid.uuid4().hex}"
        staged = self._stage(plan, bid, [f for f, _, _ in chosen],
                             lambda i, f: self.journal.stage(bid, i, f))
        events = {f.rel: v for f, v, _ in chosen}
        rows = tuple(self._row(plan, s, events[s.rel]) for s, _ in staged)
        done = self._commit(plan, bid, rows, hook)
        return Replayed(rows if done else (), tuple(kept))

    def close(self) -> None:
        """Nothing is held open between calls."""

