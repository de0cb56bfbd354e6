"""The one error hierarchy of retention.

Every error the user can cause derives from :class:`RetentionError`; the CLI
maps it to one line on stderr and exit code 2. Subclasses carry their data and
build their message in ``__init__``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class RetentionError(Exception):
    """Root of every error retention raises on purpose."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a policy file."""

    path: str
    line: int | None
    rule: str | None
    message: str
    keys: tuple[str, ...] = field(default=(), compare=False)  # where in the YAML tree

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        who = f" rule '{self.rule}':" if self.rule else ""
        return f"{where}:{who} {self.message}"


class PolicyError(RetentionError):
    """One or more problems in a policy file, each rendered on its own line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, path: str, line: int | None, rule: str | None, message: str) -> PolicyError:
        return cls([Problem(path, line, rule, message)])


class PhraseError(RetentionError):
    """A ``retain`` or ``schedule`` phrase that does not parse."""

    def __init__(self, phrase: str, reason: str) -> None:
        self.phrase = phrase
        self.reason = reason
        super().__init__(f"cannot read {phrase!r}: {reason}")


class UsageError(RetentionError):
    """A command-line argument that cannot be used (bad instant, unknown rule, ...)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class AdapterError(RetentionError):
    """An adapter that cannot be loaded or lacks what the protocol requires."""

    def __init__(self, adapter: str, reason: str) -> None:
        self.adapter = adapter
        self.reason = reason
        super().__init__(f"adapter {adapter!r}: {reason}")


class SourceError(RetentionError):
    """A source that cannot be used as written (a SQLite file that does not exist, ...).

    The adapter says why; the session that opened it names the policy file, the
    source's line and the source.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AuditError(RetentionError):
    """The audit store cannot be opened or is in a state that forbids the operation.

    A wrong URL is bad input (exit 2); a store that cannot be reached is a run-time
    failure (exit 1).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        self.message = message
        self.exit_code = exit_code
        super().__init__(message)


class UrlError(RetentionError):
    """A database URL that cannot be used. The message never holds the URL's text: it
    may hold a password, or a piece of one that an unencoded '@' moved into the host."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"database URL: {reason}")
