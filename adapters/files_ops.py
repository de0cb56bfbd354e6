"""File operations of a files source, relative to directory descriptors: never following
a link, never replacing what is there (``link`` refuses to; a copy across file systems is
synced and linked into place), files written whole and synced, content hashed in chunks.
The journal (:mod:`files_journal`) builds its batches from these.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import uuid

from retention.adapters.files_tree import Found, open_parent

_CHUNK = 1 << 20  # bytes read at a time when hashing or copying
NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV)  # link() refused


def exists(fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return False
    return True


def lstat(fd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=fd)
    except OSError:
        return None


def same(st: os.stat_result | None, found: Found) -> bool:
    return (st is not None and stat.S_ISREG(st.st_mode) and st.st_ino == found.ino
            and st.st_size == found.size and st.st_mtime_ns == found.mtime_ns)


def hash_if_same(fd: int, name: str, found: Found) -> str | None:
    """sha256 of the file, if it is ``found`` before and after reading it."""
    handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    try:
        if not same(os.fstat(handle), found):
            return None
        digest = hashlib.sha256()
        while chunk := os.read(handle, _CHUNK):
            digest.update(chunk)
        return digest.hexdigest() if same(os.fstat(handle), found) else None
    finally:
        os.close(handle)


def hash_file(fd: int, name: str) -> str:
    handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(handle, _CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(handle)


def link_back(fd: int, name: str, root: int, rel: str) -> bool:
    """Put a staged file back at ``rel`` unless something is there now; True if it went."""
    try:
        parent, base = open_parent(root, rel, create=True)
    except (OSError, ValueError):
        return False
    try:
        os.link(name, base, src_dir_fd=fd, dst_dir_fd=parent, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:  # no hard links here: rename if the path is still free
        if exc.errno not in NO_LINKS:
            raise
        if exists(parent, base):
            return False
        os.rename(name, base, src_dir_fd=fd, dst_dir_fd=parent)
        return True
    finally:
        os.close(parent)
    os.unlink(name, dir_fd=fd)
    return True


def place(src: int, name: str, dst: int, target: str) -> None:
    """Link ``name`` into ``dst`` as ``target``; across file systems, a synced copy."""
    try:
        os.link(name, target, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
    temp = f".{target}.{uuid.uuid4().hex}.tmp"
    reader = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src)
    try:
        writer = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dst)
        try:
            while chunk := os.read(reader, _CHUNK):
                os.write(writer, chunk)
            os.fsync(writer)
        finally:
            os.close(writer)
    finally:
        os.close(reader)
    try:
        os.link(temp, target, src_dir_fd=dst, dst_dir_fd=dst)
    finally:
        os.unlink(temp, dir_fd=dst)


def write(fd: int, name: str, data: bytes) -> None:
    handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=fd)
    try:
        os.write(handle, data)
        os.fsync(handle)
    finally:
        os.close(handle)


def read(fd: int, name: str) -> str:
    handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    try:
        out = b""
        while chunk := os.read(handle, _CHUNK):
            out += chunk
        return out.decode()
    finally:
        os.close(handle)


def remove_dir(state: int, batch_id: str) -> None:
    """Remove an emptied batch directory (one holding anything else stays)."""
    try:
        os.rmdir(batch_id, dir_fd=state)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            raise


def sha256_of(root: int, rel: str) -> str | None:
    """sha256 of the file at ``rel`` under ``root`` (links not followed), or None."""
    try:
        parent, name = open_parent(root, rel)
    except (OSError, ValueError):
        return None
    try:
        return hash_file(parent, name)
    except OSError:
        return None
    finally:
        os.close(parent)
