"""What a command needs from the environment: everything, the audit store, or the file alone.

A policy reaches its databases and keys through the environment (``${VAR}`` in a URL,
the hash keys of ``anonymize``). ``retention run`` needs all of them; the ``audit``
commands read only the audit store; ``retention schedule`` reads only the file.
``load_policy(path, need=...)`` asks the environment for what the command needs and
lets the rest be unset. A setting left unset holds an :class:`Unset`, never an empty
string standing in for a URL: using it raises the problem a full load would have
reported, and a policy carrying one (``Policy.unset``) opens no source
(``retention.run.engine.Session``). Every other problem in the file is reported as always.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from retention.errors import PolicyError, Problem

SOURCE_SETTINGS = ("url", "path", "schema")  # where a source's data is and how to reach it


class Need(StrEnum):
    ALL = "all"  # run, report, validate, plan, status, daemon, replay, hold add
    AUDIT = "audit"  # the audit store's URL: audit list|show|verify|export, hold list|release
    NOTHING = "nothing"  # the policy file alone: schedule

    def tolerates(self, keys: tuple[str, ...]) -> bool:
        """May the value at ``keys`` (its place in the YAML tree) be left unset?"""
        if self is Need.ALL:
            return False
        if len(keys) == 3 and keys[0] == "sources" and keys[2] in SOURCE_SETTINGS:
            return True
        return self is Need.NOTHING and keys in (
            ("audit", "url"), ("audit", "checkpoints"), ("audit", "public_key"))

    @property
    def hash_keys(self) -> bool:
        """Must every hash key named in the policy be set?"""
        return self is Need.ALL


@dataclass(frozen=True, slots=True)
class Unset:
    """A setting the environment did not give, in a load that did not need it.

    Not a string: turning it into one (``str``, an f-string, ``or ""``) raises
    :class:`PolicyError` with the problems a full load reports for it.
    """

    problems: tuple[Problem, ...]

    def refuse(self) -> NoReturn:
        raise PolicyError(self.problems)

    def __str__(self) -> str:
        self.refuse()

    def __format__(self, spec: str) -> str:
        self.refuse()

    def __bool__(self) -> bool:
        self.refuse()

    def __repr__(self) -> str:
        return f"Unset({'; '.join(p.message for p in self.problems)})"


def usable(value: str | Unset) -> str:
    """``value`` if it was set; else raise the problems of the unset setting."""
    if isinstance(value, Unset):
        value.refuse()
    return value


def unset_in(values: Iterable[object]) -> list[Problem]:
    """The problems of every :class:`Unset` among ``values`` (and in lists among them,
    such as a source's ``replicas``)."""
    found: list[Problem] = []
    for v in values:
        if isinstance(v, Unset):
            found.extend(v.problems)
        elif isinstance(v, list):
            found.extend(unset_in(v))
    return found
