"""Batches of a files source in flight, and the proof of whether each committed.

A batch moves its files into ``<root>/.retention/<batch_id>/`` (one ``rename`` each,
on the same file system, after a manifest saying where each came from), hands the
rows to the engine's hook (the audit intents), and then *decides*: the decision
file ``<batch_id>.decision`` says ``committed`` or ``rolled_back``, and whichever is
written first wins (``link`` refuses to replace a file). That file is the batch's
commit marker. Only after ``committed`` are the staged files deleted (or moved to
the archive); after ``rolled_back`` they are linked back to their paths.

A crash leaves a batch directory with or without a decision; settling it is
idempotent: committed -> finish the deletes (a file already archived with the same
content counts as archived), otherwise decide ``rolled_back`` and restore. A staged
file whose path the application has meanwhile written again stays staged (logged):
it is never put over the new file, and never deleted unrecorded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog
from retention.adapters import files_ops as ops
from retention.adapters.files_tree import STATE_DIR, Found, open_parent

log = structlog.get_logger("retention.adapters.files")

COMMITTED = "committed"
ROLLED_BACK = "rolled_back"
_MANIFEST = "manifest.json"
_TEMP = ".tmp"  # suffix of a batch directory or decision still being written


@dataclass(frozen=True, slots=True)
class Staged:
    """A file moved into its batch directory: where it came from and what it holds."""

    index: int
    rel: str
    size: int
    mtime_ns: int
    sha256: str


class Journal:
    """The state directory of one files source: batch directories and decisions."""

    def __init__(self, root: str, archive: str | None) -> None:
        self.root = root
        self.archive = archive

    # -- the state directory ---------------------------------------------------------

    def _root_fd(self) -> int:
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)

    def _state_fd(self, create: bool) -> int | None:
        root = self._root_fd()
        try:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(STATE_DIR, 0o700, dir_fd=root)
            try:
                return os.open(STATE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                               dir_fd=root)
            except FileNotFoundError:
                return None
        finally:
            os.close(root)

    def exists(self) -> bool:
        fd = self._state_fd(create=False)
        if fd is None:
            return False
        os.close(fd)
        return True

    def batches(self) -> Iterator[tuple[str, str | None]]:
        """Every batch directory left in the state directory, with the rule in its manifest
        (None when it has none: it never staged a file)."""
        state = self._state_fd(create=False)
        if state is None:
            return
        try:
            with os.scandir(state) as entries:
                names = sorted(e.name for e in entries if e.is_dir(follow_symlinks=False)
                               and not e.name.endswith(_TEMP))
            for name in names:
                manifest = self._manifest(state, name)
                yield name, None if manifest is None else str(manifest.get("rule"))
        finally:
            os.close(state)

    # -- one batch ---------------------------------------------------------------------

    def begin(self, batch_id: str, rule: str, files: list[Found]) -> None:
        """Make the batch's directory and its manifest, before any file moves.

        Raises ``FileExistsError`` when ``batch_id`` was used (and maybe settled) before.
        """
        state = self._state_fd(create=True)
        assert state is not None
        try:
            if ops.exists(state, f"{batch_id}.decision"):
                raise FileExistsError(errno.EEXIST, f"batch {batch_id} was settled already")
            if ops.exists(state, batch_id):
                raise FileExistsError(errno.EEXIST, f"batch {batch_id} exists already")
            # made under a temporary name: a batch directory always has its manifest
            temp = f"{batch_id}{_TEMP}"
            os.mkdir(temp, 0o700, dir_fd=state)
            batch = os.open(temp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=state)
            try:
                body = {"rule": rule, "files": [
                    {"i": i, "path": f.rel, "size": f.size, "mtime_ns": f.mtime_ns,
                     "ino": f.ino} for i, f in enumerate(files)]}
                ops.write(batch, _MANIFEST, json.dumps(body).encode())
            finally:
                os.close(batch)
            os.rename(temp, batch_id, src_dir_fd=state, dst_dir_fd=state)
            os.fsync(state)
        finally:
            os.close(state)

    def stage(self, batch_id: str, index: int, found: Found) -> Staged | None:
        """Move ``found`` into the batch if it is still the file that was selected (same
        inode, size and modification time, a regular file); hash it there. None when it
        changed or went: it is left for the next run."""
        root = self._root_fd()
        try:
            try:
                parent, name = open_parent(root, found.rel)
            except (OSError, ValueError):
                return None
            try:
                if not ops.same(ops.lstat(parent, name), found):
                    return None
                state = self._batch_fd(batch_id)
                try:
                    os.rename(name, str(index), src_dir_fd=parent, dst_dir_fd=state)
                    digest = ops.hash_if_same(state, str(index), found)
                    if digest is None:  # written to between the check and the move
                        ops.link_back(state, str(index), root, found.rel)
                        return None
                finally:
                    os.close(state)
            finally:
                os.close(parent)
        finally:
            os.close(root)
        return Staged(index, found.rel, found.size, found.mtime_ns, digest)

    def _batch_fd(self, batch_id: str) -> int:
        state = self._state_fd(create=False)
        if state is None:
            raise FileNotFoundError(errno.ENOENT, f"{STATE_DIR} is gone")
        try:
            return os.open(batch_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=state)
        finally:
            os.close(state)

    def orphans(self, rule: str) -> list[tuple[str, int, Found]]:
        """Files of ``rule``'s rolled-back batches still staged (their paths were taken):
        (batch id, index, the file as it is now, under its old path)."""
        out: list[tuple[str, int, Found]] = []
        for batch_id, owner in list(self.batches()):
            if owner != rule or self.decision(batch_id) != ROLLED_BACK:
                continue
            batch = self._batch_fd(batch_id)
            try:
                manifest = self._manifest_of(batch)
                for entry in manifest["files"] if manifest else []:
                    st = ops.lstat(batch, str(entry["i"]))
                    if st is not None and stat.S_ISREG(st.st_mode):
                        out.append((batch_id, int(entry["i"]), Found(
                            str(entry["path"]), st.st_size, st.st_mtime_ns, st.st_ino)))
            finally:
                os.close(batch)
        return out

    def adopt(self, old: str, index: int, batch_id: str, new_index: int, found: Found
              ) -> Staged | None:
        """Move a file of rolled-back batch ``old`` into batch ``batch_id``; None if it
        changed meanwhile (it then stays staged in ``batch_id``)."""
        source = self._batch_fd(old)
        target = self._batch_fd(batch_id)
        try:
            if not ops.same(ops.lstat(source, str(index)), found):
                return None
            os.rename(str(index), str(new_index), src_dir_fd=source, dst_dir_fd=target)
            digest = ops.hash_if_same(target, str(new_index), found)
        finally:
            os.close(source)
            os.close(target)
        return None if digest is None else Staged(new_index, found.rel, found.size,
                                                  found.mtime_ns, digest)

    def decide(self, batch_id: str, decision: str) -> str:
        """Write the batch's decision unless one is there; return the one that holds."""
        state = self._state_fd(create=True)
        assert state is not None
        try:
            final = f"{batch_id}.decision"
            temp = f"{batch_id}.{uuid.uuid4().hex}{_TEMP}"
            ops.write(state, temp, decision.encode())
            try:
                os.link(temp, final, src_dir_fd=state, dst_dir_fd=state)
            except FileExistsError:
                pass
            except OSError as exc:  # no hard links here (FAT, some FUSE): exclusive create
                if exc.errno not in ops.NO_LINKS:
                    raise
                with contextlib.suppress(FileExistsError):
                    ops.write(state, final, decision.encode())
            finally:
                os.unlink(temp, dir_fd=state)
            os.fsync(state)
            # empty: a crash between creating and writing it, before any delete happened
            return ops.read(state, final) or ROLLED_BACK
        finally:
            os.close(state)

    def decision(self, batch_id: str) -> str | None:
        state = self._state_fd(create=False)
        if state is None:
            return None
        try:
            return ops.read(state, f"{batch_id}.decision") \
                if ops.exists(state, f"{batch_id}.decision") else None
        finally:
            os.close(state)

    def settle(self, batch_id: str) -> bool:
        """Carry out the batch's decision (rolled back if it has none); True if committed.

        Idempotent: a crash in the middle is finished by the next call.
        """
        committed = self.decide(batch_id, ROLLED_BACK) == COMMITTED
        state = self._state_fd(create=False)
        if state is None:
            return committed
        root = self._root_fd()
        try:
            manifest = self._manifest(state, batch_id)
            if manifest is None:
                ops.remove_dir(state, batch_id)
                return committed
            batch = os.open(batch_id, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                            dir_fd=state)
            left = 0
            try:
                for entry in manifest["files"]:
                    index, rel = str(entry["i"]), str(entry["path"])
                    if not ops.exists(batch, index):
                        continue
                    if committed:
                        if self.archive is not None:
                            self._archive(batch, index, rel)
                        os.unlink(index, dir_fd=batch)
                    elif not ops.link_back(batch, index, root, rel):
                        left += 1
                        log.warning("file_not_restored", batch_id=batch_id, path=rel,
                                    reason="the path holds a new file; the old one stays in "
                                           f"{STATE_DIR}/{batch_id}")
            finally:
                os.close(batch)
            if not left:
                os.unlink(f"{batch_id}/{_MANIFEST}", dir_fd=state)
                ops.remove_dir(state, batch_id)
            return committed
        finally:
            os.close(root)
            os.close(state)

    def forget(self, batch_ids: list[str]) -> None:
        """Delete the decisions of ``batch_ids`` (their batches are closed in the audit)."""
        state = self._state_fd(create=False)
        if state is None:
            return
        try:
            for batch_id in batch_ids:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{batch_id}.decision", dir_fd=state)
        finally:
            os.close(state)

    # -- the archive -------------------------------------------------------------------

    def _archive(self, batch: int, index: str, rel: str) -> None:
        """Put the staged file at ``rel`` in the archive (``rel.<sha256>`` when another file
        is there already); nothing when a file with its content is there (a repeated call)."""
        assert self.archive is not None
        digest = ops.hash_file(batch, index)
        archive = os.open(self.archive, os.O_RDONLY | os.O_DIRECTORY)
        try:
            parent, name = open_parent(archive, rel, create=True)
            try:
                for candidate in (name, f"{name}.{digest[:16]}", f"{name}.{digest}"):
                    if ops.exists(parent, candidate):
                        if ops.hash_file(parent, candidate) == digest:
                            return
                        continue
                    ops.place(batch, index, parent, candidate)
                    os.fsync(parent)
                    return
                raise FileExistsError(errno.EEXIST, f"cannot archive {rel!r}: every name "
                                      "is taken by other content")
            finally:
                os.close(parent)
        finally:
            os.close(archive)

    # -- reading -----------------------------------------------------------------------

    @staticmethod
    def _manifest_of(batch: int) -> dict[str, Any] | None:
        try:
            found = json.loads(ops.read(batch, _MANIFEST))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    @staticmethod
    def _manifest(state: int, batch_id: str) -> dict[str, Any] | None:
        try:
            found = json.loads(ops.read(state, f"{batch_id}/{_MANIFEST}"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None
