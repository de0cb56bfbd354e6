"""A files source's tree: glob patterns, name patterns, and a walk that never leaves the root.

No file is changed here. Paths are relative to the root and use ``/``; they are
compared as tuples of their parts, which is the order the walk yields them in
(each directory's entries sorted by name), so a batch can resume after a key.
Symbolic links are never followed: a link is neither a file nor a directory to
the walk, and every open goes through directory descriptors with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass

STATE_DIR = ".retention"  # under the root: batches in flight and their decisions

# strptime directives a name pattern may use, and what text each matches
_DIRECTIVES = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}",
    "M": r"\d{1,2}", "S": r"\d{1,2}", "f": r"\d{1,6}", "j": r"\d{1,3}",
    "z": r"(?:Z|[+-]\d{2}:?\d{2})", "%": "%",
}
_TIME_DIRECTIVES = set("HMSf")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")
RESERVED = ("path", "size", "modified")  # columns every files source has


class PatternError(ValueError):
    """A glob or name pattern that does not parse; the message says where."""


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A glob matched against the whole relative path: ``*`` and ``?`` stay inside one
    directory, ``**`` crosses directories (``**/`` also matches no directory), ``[...]``
    is a class of characters. Raises :class:`PatternError`."""
    if not pattern or pattern.startswith("/"):
        raise PatternError(f"glob {pattern!r} must be a path relative to the source's path")
    if any(part == ".." for part in pattern.split("/")):
        raise PatternError(f"glob {pattern!r} leaves the source's path ('..')")
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("***", i):
            raise PatternError(f"glob {pattern!r}: '***' at {i} (use '**' or '*')")
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            j += pattern[j:j + 1] == "!"
            j += pattern[j:j + 1] == "]"  # a ']' first is part of the class
            end = pattern.find("]", j)
            if end < 0:
                raise PatternError(f"glob {pattern!r}: '[' at {i} is never closed")
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                raise PatternError(f"glob {pattern!r}: empty class at {i}")
            out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c in "{}":
            raise PatternError(f"glob {pattern!r}: '{c}' at {i} (braces are no glob syntax)")
        else:
            out.append(re.escape(c))
            i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as exc:
        raise PatternError(f"glob {pattern!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Field:
    """One timestamp in a name pattern: its name (an event of the rules) and format."""

    name: str
    format: str

    @property
    def temporal(self) -> str:
        """``aware`` with an offset, ``naive`` with a time of day, else ``date``."""
        if "%z" in self.format:
            return "aware"
        return "naive" if any(f"%{d}" in self.format for d in _TIME_DIRECTIVES) else "date"

    def read(self, text: str) -> dt.datetime | dt.date | None:
        """The value of ``text`` (None when it is no instant: a month 13, ...)."""
        try:
            found = dt.datetime.strptime(text, self.format)
        except ValueError:
            return None
        return found.date() if self.temporal == "date" else found


@dataclass(frozen=True, slots=True)
class NamePattern:
    """``mail-{date:%Y-%m-%d}.log``: matched against the file's name, or against its
    relative path when the pattern has a ``/``; ``*`` matches any text inside a name."""

    text: str
    regex: re.Pattern[str]
    fields: tuple[Field, ...]

    @property
    def whole_path(self) -> bool:
        return "/" in self.text

    def read(self, rel: str) -> dict[str, dt.datetime | dt.date | None] | None:
        """Each field's value for the file at ``rel`` (None: the name does not match)."""
        found = self.regex.match(rel if self.whole_path else rel.rpartition("/")[2])
        if found is None:
            return None
        return {f.name: f.read(found.group(f.name)) for f in self.fields}


def compile_pattern(text: str) -> NamePattern:
    """Read a name pattern. Raises :class:`PatternError` naming what does not parse."""
    out: list[str] = []
    fields: list[Field] = []
    at = 0
    for found in _FIELD.finditer(text):
        out.append(_literal(text, text[at:found.start()], at))
        name, fmt = found.group(1), found.group(2)
        if name in RESERVED:
            raise PatternError(f"pattern {text!r}: field {name!r} is a column every file has "
                               f"({', '.join(RESERVED)}); name it otherwise")
        if name in {f.name for f in fields}:
            raise PatternError(f"pattern {text!r}: field {name!r} appears twice")
        out.append(f"(?P<{name}>{_format_regex(text, fmt)})")
        fields.append(Field(name, fmt))
        at = found.end()
    out.append(_literal(text, text[at:], at))
    if not fields:
        raise PatternError(f"pattern {text!r} has no field such as {{date:%Y-%m-%d}}")
    return NamePattern(text, re.compile("".join(out) + r"\Z"), tuple(fields))


def _literal(text: str, part: str, at: int) -> str:
    for i, c in enumerate(part):
        if c in "{}":
            raise PatternError(f"pattern {text!r}: '{c}' at {at + i} is not part of a field "
                               "{name:FORMAT}")
    return "".join("[^/]*" if c == "*" else re.escape(c) for c in part)


def _format_regex(text: str, fmt: str) -> str:
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] != "%":
            out.append("[^/]" if fmt[i] == "*" else re.escape(fmt[i]))
            i += 1
            continue
        directive = fmt[i + 1:i + 2]
        if directive not in _DIRECTIVES:
            raise PatternError(f"pattern {text!r}: unknown directive '%{directive}' in "
                               f"{fmt!r} (use {' '.join('%' + d for d in _DIRECTIVES)})")
        out.append(_DIRECTIVES[directive])
        i += 2
    if "%Y" not in fmt and "%y" not in fmt:
        raise PatternError(f"pattern {text!r}: format {fmt!r} has no year (%Y or %y)")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Found:
    """A regular file of the tree, as ``lstat`` saw it during the walk."""

    rel: str
    size: int
    mtime_ns: int
    ino: int


def parts(rel: str) -> tuple[str, ...]:
    return tuple(rel.split("/"))


class Tree:
    """The regular files under ``root`` that the include and exclude globs select."""

    def __init__(self, root: str, include: tuple[re.Pattern[str], ...],
                 exclude: tuple[re.Pattern[str], ...]) -> None:
        self.root = root
        self.include = include
        self.exclude = exclude
        self.skip = {STATE_DIR}  # top-level names never walked (batches in flight)

    def selects(self, rel: str) -> bool:
        return any(g.match(rel) for g in self.include) and \
            not any(g.match(rel) for g in self.exclude)

    def walk(self, after: str | None = None, every: bool = False) -> Iterator[Found]:
        """The selected files (``every``: all regular files) in key order, after ``after``.

        Directories that cannot be read are skipped; the walk never follows a link.
        """
        start = parts(after) if after is not None else None
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield from self._walk(fd, (), start, every)
        finally:
            os.close(fd)

    def _walk(self, fd: int, prefix: tuple[str, ...], start: tuple[str, ...] | None,
              every: bool) -> Iterator[Found]:
        with os.scandir(fd) as entries:
            names = sorted(e.name for e in entries)
        if start is not None and start[:len(prefix)] == prefix and len(start) > len(prefix):
            # resuming inside this directory: every name before the start's own sorts before
            # it, file or directory (a batch of a flat directory lstat's only what follows)
            names = names[bisect.bisect_left(names, start[len(prefix)]):]
        for name in names:
            here = (*prefix, name)
            if not prefix and name in self.skip:
                continue
            try:
                st = os.lstat(name, dir_fd=fd)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):  # after ``start`` or on its path (the bisect above)
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError:
                    continue
                try:
                    yield from self._walk(sub, here, start, every)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                if start is not None and here <= start:
                    continue
                rel = "/".join(here)
                if every or self.selects(rel):
                    yield Found(rel, st.st_size, st.st_mtime_ns, st.st_ino)


def open_parent(root_fd: int, rel: str, create: bool = False) -> tuple[int, str]:
    """A descriptor of the directory holding ``rel`` (opened without following links)
    and the file's name in it. Raises ``OSError``; ``ValueError`` for a path that would
    leave the root."""
    names = rel.split("/")
    if not rel or any(n in ("", ".", "..") for n in names):
        raise ValueError(f"path {rel!r} leaves the root or is no relative path")
    fd = os.dup(root_fd)
    try:
        for name in names[:-1]:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd, names[-1]


def lstat_rel(root_fd: int, rel: str) -> os.stat_result | None:
    """``lstat`` of ``rel`` under the root, or None when it is not there (or not reachable
    without following a link)."""
    try:
        fd, name = open_parent(root_fd, rel)
    except (OSError, ValueError):
        return None
    try:
        return os.lstat(name, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
